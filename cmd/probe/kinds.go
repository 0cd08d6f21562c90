package main

import (
	"fmt"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/keepalive"
	"github.com/connprobe/connprobe/probe/syn"
)

// proberFactory is the one place that maps a configured job's kind to its
// probe package for `probe serve`: it converts the job's option block into
// the package's typed Config (validated once, here) and returns the function
// the scheduler calls for each target (once per concurrent attempt slot).
//
// Adding a kind: give configs.Job an option block (configs.XxxOptions with a
// Config method), list it in configs.Job.optionBlocks, and add a case here.
func proberFactory(j *configs.Job) (func(probe.Target) (probe.Prober, error), error) {
	switch j.Kind {
	case connect.Kind:
		cfg, err := j.Connect.Config(j.Timeout.D)
		if err != nil {
			return nil, err
		}
		return func(t probe.Target) (probe.Prober, error) {
			if t.Scheme != "tcp" {
				return nil, fmt.Errorf("target %q: scheme %q is not supported by kind connect (want host:port or tcp://)%s", t.Name, t.Scheme, appHint(t))
			}
			return connect.New(t, cfg)
		}, nil
	case syn.Kind:
		cfg, err := j.Syn.Config(j.Timeout.D)
		if err != nil {
			return nil, err
		}
		return func(t probe.Target) (probe.Prober, error) {
			if t.Scheme != "tcp" {
				return nil, fmt.Errorf("target %q: scheme %q is not supported by kind syn (want host:port or tcp://)", t.Name, t.Scheme)
			}
			return syn.New(t, cfg)
		}, nil
	case app.Kind:
		cfg, err := j.App.Config(j.Timeout.D)
		if err != nil {
			return nil, err
		}
		return func(t probe.Target) (probe.Prober, error) { return app.New(t, cfg) }, nil
	case keepalive.Kind:
		cfg, err := j.Keepalive.Config(j.Timeout.D)
		if err != nil {
			return nil, err
		}
		// Each prober holds one connection across attempts; the scheduler
		// keeps it per (job, target) and closes it when the target goes.
		return func(t probe.Target) (probe.Prober, error) {
			if t.Scheme != "tcp" {
				return nil, fmt.Errorf("target %q: scheme %q is not supported by kind keepalive (want host:port or tcp://)", t.Name, t.Scheme)
			}
			return keepalive.New(t, cfg)
		}, nil
	case idle.Kind:
		cfg, err := j.Idle.Config(j.Timeout.D)
		if err != nil {
			return nil, err
		}
		// Each concurrency slot holds its own long connection: the
		// scheduler staggers them one interval apart.
		return func(t probe.Target) (probe.Prober, error) { return idle.New(t, cfg) }, nil
	}
	return nil, fmt.Errorf("kind %q: no prober for it in this build", j.Kind)
}

// appHint points a URL target under a TCP-only kind to kind app.
func appHint(t probe.Target) string {
	if !app.Supports(t.Scheme) {
		return ""
	}
	return fmt.Sprintf("; a %s:// target speaks its protocol under kind app (set kind: app, or leave kind unset in a job whose static targets are all such URLs)", t.Scheme)
}
