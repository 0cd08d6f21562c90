//go:build linux && kubernetes

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"

	"k8s.io/klog/v2"

	"github.com/connprobe/connprobe/scheduler/targets"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes/spec"
)

// kubernetesBuilt says this binary links the Kubernetes client (client-go);
// see kubernetes_off.go for the build without it.
const kubernetesBuilt = true

// newKubernetesSource builds the source of one `kubernetes` target block.
// The node facts come from the environment the DaemonSet sets with the
// downward API (deploy/daemonset.yaml): NODE_NAME and HOST_IP.
func newKubernetesSource(cfg spec.Config, nsPath string, log *slog.Logger, h *targets.Health, job string) (targets.Source, error) {
	opts := kubernetes.Options{NodeName: os.Getenv("NODE_NAME"), NetNS: nsPath, Logger: log, Health: h, Job: job}
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

// newPodSource builds the pod source of a vantage block's pods_selector.
// Like the kubernetes target source, NODE_NAME comes from the downward API;
// without it, or without an API, the Vantage logs why and keeps its last
// set of pods.
func newPodSource(sel spec.PodSelector, log *slog.Logger, h *targets.Health, job string) (targets.PodSource, error) {
	return kubernetes.NewPods(nil, sel, kubernetes.Options{NodeName: os.Getenv("NODE_NAME"), Logger: log, Health: h, Job: job})
}

// routeKlog sends client-go's own log lines (klog) through log, so they
// follow --log.level and --log.format like every other line. klog's logger
// may be set only before client-go runs (klog.SetSlogLogger is not safe
// for concurrent use), so it is set once, to a handler that forwards to
// the logger of the latest call.
func routeKlog(log *slog.Logger) {
	klogTo.Store(log.With("source", "client-go"))
	klogOnce.Do(func() { klog.SetSlogLogger(slog.New(klogHandler{})) })
}

var (
	klogOnce sync.Once
	klogTo   atomic.Pointer[slog.Logger]
)

// klogHandler forwards to klogTo's handler, replaying its own attributes
// and groups on it.
type klogHandler struct {
	ops []func(slog.Handler) slog.Handler
}

func (h klogHandler) cur() slog.Handler {
	c := klogTo.Load().Handler()
	for _, op := range h.ops {
		c = op(c)
	}
	return c
}

func (h klogHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.cur().Enabled(ctx, l) }

func (h klogHandler) Handle(ctx context.Context, r slog.Record) error { return h.cur().Handle(ctx, r) }

func (h klogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return klogHandler{append(slices.Clone(h.ops), func(c slog.Handler) slog.Handler { return c.WithAttrs(as) })}
}

func (h klogHandler) WithGroup(g string) slog.Handler {
	return klogHandler{append(slices.Clone(h.ops), func(c slog.Handler) slog.Handler { return c.WithGroup(g) })}
}

// newPodClient makes the client podUIDFromAPI asks (tests replace it).
var newPodClient = func() (clientset.Interface, error) { return kubernetes.NewClient("") }

// podAPITimeout bounds podUIDFromAPI's one GET.
const podAPITimeout = 5 * time.Second

// podUIDFromAPI asks the Kubernetes API (in-cluster, else $KUBECONFIG) for
// pod NAMESPACE/NAME's UID, by which --pod finds its namespace (the UID in
// the cgroup of a process inside): names from the API, not from the
// container's HOSTNAME. No API (not in a cluster, no kubeconfig) or an API
// that does not answer is "" (discovery's names are used, with a note on
// stderr); a pod the API says does not exist is an error.
func podUIDFromAPI(ctx context.Context, ns, name string) (string, error) {
	c, err := newPodClient()
	if err != nil {
		return "", nil // no API here: match by the pod's own names
	}
	ctx, cancel := context.WithTimeout(ctx, podAPITimeout)
	defer cancel()
	p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("pod %s/%s: not found in the Kubernetes API", ns, name)
	case err != nil:
		fmt.Fprintf(os.Stderr, "probe: --pod: the Kubernetes API did not answer (%v); matching the pod by the names its processes give\n", err)
		return "", nil
	case p.Spec.HostNetwork:
		return "", fmt.Errorf("pod %s/%s: uses the host network: probe without --pod", ns, name)
	}
	return string(p.UID), nil
}
