//go:build kubernetes

package main

import (
	"log/slog"
	"testing"

	"github.com/connprobe/connprobe/configs"
)

// With -tags kubernetes, the shipped Kubernetes config builds into jobs
// (the clients are made when the sources start, so no cluster is needed).
func TestKubernetesConfigBuilds(t *testing.T) {
	cfg, err := configs.Load(t.Context(), "../../configs/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := buildJobs(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != len(cfg.Probes) {
		t.Errorf("got %d jobs, want %d", len(jobs), len(cfg.Probes))
	}
}
