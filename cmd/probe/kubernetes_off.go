//go:build linux && !kubernetes

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/connprobe/connprobe/scheduler/targets"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes/spec"
)

// This build leaves the Kubernetes client out: client-go alone costs
// about 20 MiB of resident memory (its packages' init touches that much of
// the binary) and 45 MB of binary, which a host prober pays for nothing.
// The image (Dockerfile) and `make build TAGS=kubernetes` link it.

// kubernetesBuilt says this binary links the Kubernetes client.
const kubernetesBuilt = false

// errNoKubernetes is what a kubernetes block gets from this build.
var errNoKubernetes = errors.New("this probe binary was built without Kubernetes support (rebuild with `make build TAGS=kubernetes`; the connprobe image has it)")

func newKubernetesSource(spec.Config, string, *slog.Logger, *targets.Health, string) (targets.Source, error) {
	return nil, errNoKubernetes
}

func newPodSource(spec.PodSelector, *slog.Logger, *targets.Health, string) (targets.PodSource, error) {
	return nil, errNoKubernetes
}

// routeKlog has nothing to route: this build has no client-go.
func routeKlog(*slog.Logger) {}

// podUIDFromAPI: this build has no API client; --pod matches the pod by
// the namespace/name its processes give (scheduler/targets.Discovery).
func podUIDFromAPI(context.Context, string, string) (string, error) { return "", nil }
