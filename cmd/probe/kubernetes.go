package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/connprobe/connprobe/scheduler/targets/kubernetes"
)

// newKubernetesSource builds the source of one `kubernetes` target block.
// The node facts come from the environment the DaemonSet sets with the
// downward API (deploy/daemonset.yaml): NODE_NAME and HOST_IP.

func newKubernetesSource(cfg kubernetes.Config, nsPath string, log *slog.Logger) (*kubernetes.Source, error) {
	opts := kubernetes.Options{NodeName: os.Getenv("NODE_NAME"), NetNS: nsPath, Logger: log}
	if ip := os.Getenv("HOST_IP"); ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("HOST_IP %q: not an IP address", ip)
		}
		opts.NodeIP = a
	}
	// The client is made when the source starts (from cfg.Kubeconfig, else
	// in-cluster), so `probe lint` checks a file away from any cluster.
	return kubernetes.New(nil, cfg, opts)
}
