//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/keepalive"
	"github.com/connprobe/connprobe/probe/syn"
	"github.com/connprobe/connprobe/scheduler"
)

// newProberFunc builds the Prober of one target (once per target, or per
// concurrent attempt slot in serve).
type newProberFunc = func(probe.Target) (probe.Prober, error)

// backgroundFunc is a scheduler.Job.Background: work per target beside the
// probes (idle's find_timeout search).
type backgroundFunc = func(context.Context, probe.Target, scheduler.TargetSink)

// kinds is the table of probe kinds, for `probe serve` and `probe run`
// alike: a kind is one entry. Adding a kind: its probe package (with Kind,
// Config, New), its option block in configs (kinds.go there), and an entry
// here. configs.Kinds and this table list the same kinds in the same order
// (TestKindsTable).
var kinds = []probeKind{
	kindSpec[connect.Config]{
		name:  connect.Kind,
		flags: []string{"user-timeout"},
		job:   (*configs.Job).ConnectConfig,
		run:   func(r runSettings) (connect.Config, error) { return r.conn, nil },
		prober: func(cfg connect.Config) newProberFunc {
			return func(t probe.Target) (probe.Prober, error) {
				if t.Scheme != "tcp" {
					return nil, fmt.Errorf("target %q: scheme %q is not supported by kind connect (want host:port or tcp://)%s", t.Name, t.Scheme, appHint(t))
				}
				return connect.New(t, cfg)
			}
		},
	}.kind(),
	kindSpec[syn.Config]{
		name:  syn.Kind,
		flags: []string{"syn-rate"},
		job:   (*configs.Job).SynConfig,
		run: func(r runSettings) (syn.Config, error) {
			return syn.Config{Timeout: r.conn.Timeout, Source: r.conn.Source, Resolver: r.conn.Resolver, PAWS: r.f.paws}, nil
		},
		prober: func(cfg syn.Config) newProberFunc {
			return func(t probe.Target) (probe.Prober, error) {
				if err := portOnly(t, syn.Kind); err != nil {
					return nil, err
				}
				return syn.New(t, cfg)
			}
		},
	}.kind(),
	kindSpec[app.Config]{
		name:  app.Kind,
		flags: []string{"user-timeout"},
		job:   (*configs.Job).AppConfig,
		run:   func(r runSettings) (app.Config, error) { return r.app, nil },
		prober: func(cfg app.Config) newProberFunc {
			return func(t probe.Target) (probe.Prober, error) { return app.New(t, cfg) }
		},
	}.kind(),
	kindSpec[idle.Config]{
		name:  idle.Kind,
		flags: []string{"idle", "idle-mode", "reply-timeout", "find-idle-timeout", "max-idle", "min-idle", "find-repeats"},
		job:   (*configs.Job).IdleConfig,
		run:   runIdleConfig, // run_idle.go
		// Each concurrency slot holds its own long connection: the
		// scheduler staggers them one interval apart.
		prober: func(cfg idle.Config) newProberFunc {
			return func(t probe.Target) (probe.Prober, error) { return idle.New(t, cfg) }
		},
		background: idleBackground, // serve_idle.go
	}.kind(),
	kindSpec[keepalive.Config]{
		name:  keepalive.Kind,
		flags: []string{"ka-idle", "ka-interval", "ka-count", "user-timeout"},
		job:   (*configs.Job).KeepaliveConfig,
		run:   runKeepaliveConfig, // run_keepalive.go
		// Each prober holds one connection across attempts; the scheduler
		// keeps it per (job, target) and closes it when the target goes.
		prober: func(cfg keepalive.Config) newProberFunc {
			return func(t probe.Target) (probe.Prober, error) {
				if err := portOnly(t, keepalive.Kind); err != nil {
					return nil, err
				}
				return keepalive.New(t, cfg)
			}
		},
	}.kind(),
}

// kindSpec is one kind with its typed Config C: where C comes from (a
// serve job's option block, run's flags) and what it builds.
type kindSpec[C any] struct {
	name string
	// flags are the `probe run` flags this kind takes beyond the common
	// ones; given with another kind they are a usage error.
	flags []string
	// job converts a `probe serve` job's option block (configs.Job).
	job func(*configs.Job) (C, error)
	// run makes C from `probe run`'s flags.
	run func(runSettings) (C, error)
	// prober returns the function that builds a target's Prober.
	prober func(C) newProberFunc
	// background, if set, returns a serve job's per-target background
	// work (nil: none).
	background func(*configs.Job, C, *slog.Logger) (backgroundFunc, error)
}

// probeKind is a kindSpec with its Config type hidden, so that one table
// holds every kind.
type probeKind struct {
	name  string
	flags []string
	job   func(*configs.Job, *slog.Logger) (newProberFunc, backgroundFunc, error)
	run   func(runSettings) (newProberFunc, error)
}

func (s kindSpec[C]) kind() probeKind {
	return probeKind{
		name:  s.name,
		flags: s.flags,
		job: func(j *configs.Job, log *slog.Logger) (newProberFunc, backgroundFunc, error) {
			cfg, err := s.job(j) // the one conversion of the job's block
			if err != nil {
				return nil, nil, err
			}
			var bg backgroundFunc
			if s.background != nil {
				if bg, err = s.background(j, cfg, log); err != nil {
					return nil, nil, err
				}
			}
			return s.prober(cfg), bg, nil
		},
		run: func(r runSettings) (newProberFunc, error) {
			cfg, err := s.run(r)
			if err != nil {
				return nil, err
			}
			return s.prober(cfg), nil
		},
	}
}

// lookupKind returns the entry of kinds named name.
func lookupKind(name string) (probeKind, error) {
	i := slices.IndexFunc(kinds, func(k probeKind) bool { return k.name == name })
	if i < 0 {
		return probeKind{}, unknownKindError{name}
	}
	return kinds[i], nil
}

// jobKind builds a `probe serve` job's prober factory and background work
// (nil for most kinds) from its kind's option block.
func jobKind(j *configs.Job, log *slog.Logger) (newProberFunc, backgroundFunc, error) {
	k, err := lookupKind(j.Kind)
	if err != nil {
		return nil, nil, err
	}
	return k.job(j, log)
}

// runProberFactory builds the prober factory of kind for `probe run`.
func runProberFactory(kind string, r runSettings) (newProberFunc, error) {
	k, err := lookupKind(kind)
	if err != nil {
		return nil, err
	}
	return k.run(r)
}

// kindNames lists the kinds, in table order.
func kindNames() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name
	}
	return names
}

// unknownKindError is the error for a kind not in the table.
type unknownKindError struct{ kind string }

func (e unknownKindError) Error() string {
	return fmt.Sprintf("kind %q: want %s", e.kind, orList(kindNames()))
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
