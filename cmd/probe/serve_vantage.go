//go:build linux

package main

import (
	"fmt"
	"log/slog"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// withVantage wraps a job's target source and prober factory for its
// vantage block (docs/podnetns.md): every target is fanned out over the
// matching namespaces of this node, and a probe that finds its namespace
// gone makes the source look again at once, so the vanished namespace's
// targets are dropped after one netns_gone. Without a block both are
// returned unchanged.
func withVantage(j *configs.Job, src targets.Source, newProber func(probe.Target) (probe.Prober, error), log *slog.Logger, h *targets.Health) (targets.Source, func(probe.Target) (probe.Prober, error), error) {
	o := j.Vantage
	if o == nil {
		return src, newProber, nil
	}
	var ms []func(targets.Namespace) bool
	if len(o.Pods) > 0 {
		m, err := targets.MatchPods(o.Pods...)
		if err != nil {
			return nil, nil, err // checked by Validate
		}
		ms = append(ms, m)
	}
	if len(o.NetNS) > 0 {
		m, err := targets.MatchNamed(o.NetNS...)
		if err != nil {
			return nil, nil, err
		}
		ms = append(ms, m)
	}
	v := targets.NewVantage(src, targets.MatchAny(ms...))
	v.Refresh, v.Log = o.RefreshInterval.D, log.With("job", j.Name)
	if o.PodsSelector != nil {
		p, err := newPodSource(*o.PodsSelector, v.Log, h, j.Name) // kubernetes.go
		if err != nil {
			return nil, nil, fmt.Errorf("vantage.pods_selector: %w", err)
		}
		v.Pods = p
	}
	return v, func(t probe.Target) (probe.Prober, error) {
		p, err := newProber(t)
		if err != nil {
			return nil, err
		}
		return goneProber{p, v.Recheck}, nil
	}, nil
}

// goneProber reports a netns_gone result to its vantage source, after the
// scheduler has recorded it (scheduler.Follower): asked from Probe, the
// source could drop the target, and so discard that result, first.
type goneProber struct {
	probe.Prober
	gone func()
}

// Followup implements scheduler.Follower.
func (p goneProber) Followup(r *probe.Result) {
	if r.Reason == probe.ReasonNetNSGone {
		p.gone()
	}
}
