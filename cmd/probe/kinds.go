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

// kindConfigs supplies the typed Config of each probe kind: `probe serve`
// builds them from a job's YAML option blocks (jobConfigs), `probe run` from
// its flags (runConfigs, run.go). proberFactory asks only for the one its
// kind needs.
type kindConfigs interface {
	connectConfig() (connect.Config, error)
	synConfig() (syn.Config, error)
	appConfig() (app.Config, error)
	idleConfig() (idle.Config, error)
	keepaliveConfig() (keepalive.Config, error)
}

// proberFactory is the one place that maps a kind to its probe package, for
// `probe serve` and `probe run` alike: it takes the kind's typed Config from
// c (validated once, there) and returns the function that builds a Prober
// for a target (once per target, or per concurrent attempt slot in serve).
//
// Adding a kind: give configs.Job an option block (configs.XxxOptions with a
// Config method), list it in configs.Job.optionBlocks, add a method to
// kindConfigs (jobConfigs, runConfigs) and a case here.
func proberFactory(kind string, c kindConfigs) (func(probe.Target) (probe.Prober, error), error) {
	switch kind {
	case connect.Kind:
		cfg, err := c.connectConfig()
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
		cfg, err := c.synConfig()
		if err != nil {
			return nil, err
		}
		return func(t probe.Target) (probe.Prober, error) {
			if err := portOnly(t, syn.Kind); err != nil {
				return nil, err
			}
			return syn.New(t, cfg)
		}, nil
	case app.Kind:
		cfg, err := c.appConfig()
		if err != nil {
			return nil, err
		}
		return func(t probe.Target) (probe.Prober, error) { return app.New(t, cfg) }, nil
	case keepalive.Kind:
		cfg, err := c.keepaliveConfig()
		if err != nil {
			return nil, err
		}
		// Each prober holds one connection across attempts; the scheduler
		// keeps it per (job, target) and closes it when the target goes.
		return func(t probe.Target) (probe.Prober, error) {
			if err := portOnly(t, keepalive.Kind); err != nil {
				return nil, err
			}
			return keepalive.New(t, cfg)
		}, nil
	case idle.Kind:
		cfg, err := c.idleConfig()
		if err != nil {
			return nil, err
		}
		// Each concurrency slot holds its own long connection: the
		// scheduler staggers them one interval apart.
		return func(t probe.Target) (probe.Prober, error) { return idle.New(t, cfg) }, nil
	}
	return nil, unknownKindError{kind}
}

// unknownKindError is proberFactory's error for a kind it does not know.
type unknownKindError struct{ kind string }

func (e unknownKindError) Error() string {
	return fmt.Sprintf("kind %q: want connect, syn, app, idle or keepalive", e.kind)
}

// portOnly accepts the targets of a kind that uses only a target's address
// and port: host:port, tcp://, and application URLs (mysql://db:3306 is
// SYN-probed or held open at db:3306, as `probe run --kind syn` does).
func portOnly(t probe.Target, kind string) error {
	if t.Scheme == "tcp" || app.Supports(t.Scheme) {
		return nil
	}
	return fmt.Errorf("target %q: scheme %q is not supported by kind %s (want host:port, tcp:// or an application URL, of which only the port counts)", t.Name, t.Scheme, kind)
}

// appHint points a URL target under a TCP-only kind to kind app.
func appHint(t probe.Target) string {
	if !app.Supports(t.Scheme) {
		return ""
	}
	return fmt.Sprintf("; a %s:// target speaks its protocol under kind app (set kind: app, or leave kind unset in a job whose static targets are all such URLs)", t.Scheme)
}

// jobConfigs are the typed Configs of a `probe serve` job: its option
// block converted for the job's timeout, with the job's resolver.
type jobConfigs struct{ j *configs.Job }

func (c jobConfigs) connectConfig() (connect.Config, error) {
	cfg, err := c.j.Connect.Config(c.j.Timeout.D)
	cfg.Resolver = c.j.DNSResolver()
	return cfg, err
}

func (c jobConfigs) synConfig() (syn.Config, error) {
	cfg, err := c.j.Syn.Config(c.j.Timeout.D)
	cfg.Resolver = c.j.DNSResolver()
	return cfg, err
}

func (c jobConfigs) appConfig() (app.Config, error) {
	cfg, err := c.j.App.Config(c.j.Timeout.D)
	cfg.Resolver = c.j.DNSResolver()
	return cfg, err
}

func (c jobConfigs) idleConfig() (idle.Config, error) {
	cfg, err := c.j.Idle.Config(c.j.Timeout.D)
	cfg.Resolver = c.j.DNSResolver()
	return cfg, err
}

func (c jobConfigs) keepaliveConfig() (keepalive.Config, error) {
	cfg, err := c.j.Keepalive.Config(c.j.Timeout.D)
	cfg.Resolver = c.j.DNSResolver()
	return cfg, err
}
