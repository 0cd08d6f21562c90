package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/idle"
)

// idleFlags are `probe run --kind idle`'s own flags.
type idleFlags struct {
	idle         time.Duration
	mode         string
	replyTimeout time.Duration
	find         bool
	maxIdle      time.Duration
	minIdle      time.Duration
}

func addIdleFlags(fl *pflag.FlagSet, f *idleFlags) {
	fl.DurationVar(&f.idle, "idle", idle.DefaultIdle, "kind idle: how long to hold the connection idle")
	fl.StringVar(&f.mode, "idle-mode", string(idle.ModeClientFirst), "kind idle: who speaks after the idle time: client-first, server-after-delay (both need probe responder), plain (any server: --send after the idle time, optional --expect)")
	fl.DurationVar(&f.replyTimeout, "reply-timeout", idle.DefaultReplyTimeout, "kind idle: how long to wait for the answer after the idle time")
	fl.BoolVar(&f.find, "find-idle-timeout", false, "kind idle: search the idle time the path survives (parallel connections, narrowing down) and report it")
	fl.DurationVar(&f.maxIdle, "max-idle", 20*time.Minute, "kind idle: longest idle time --find-idle-timeout tries")
	fl.DurationVar(&f.minIdle, "min-idle", time.Second, "kind idle: shortest idle time --find-idle-timeout tries")
}

// idleConfig is kind idle's Config from `probe run` flags; --timeout
// bounds the handshake and the first echo.
func (c runConfigs) idleConfig() (idle.Config, error) {
	if c.conn.UserTimeout != 0 {
		return idle.Config{}, fmt.Errorf("--user-timeout is not supported by kind idle")
	}
	return idle.Config{
		Mode:           idle.Mode(c.f.idleF.mode),
		Idle:           c.f.idleF.idle,
		ConnectTimeout: c.f.timeout,
		ReplyTimeout:   c.f.idleF.replyTimeout,
		Source:         c.conn.Source,
		Send:           c.conn.Send,
		Expect:         c.conn.Expect,
	}, nil
}

// findResult is the JSON shape of one --find-idle-timeout search.
type findResult struct {
	Target          string       `json:"target"`
	Found           bool         `json:"found"`
	Verdict         string       `json:"verdict"`
	SurvivedSeconds float64      `json:"survived_seconds"`
	LostSeconds     float64      `json:"lost_seconds,omitempty"`
	LostReason      probe.Reason `json:"lost_reason,omitempty"`
	ClosedAtSeconds float64      `json:"closed_at_seconds,omitempty"`
	Rounds          int          `json:"rounds"`
	Connections     int          `json:"connections"`
	ElapsedSeconds  float64      `json:"elapsed_seconds"`
	Evidence        []string     `json:"evidence"`
	Error           string       `json:"error,omitempty"`
}

// runFindIdle searches every target's idle timeout at once and prints one
// verdict per target. Exit status 1 when a search could not run (path down).
func runFindIdle(ctx context.Context, plan *runPlan, f runFlags) error {
	var mu sync.Mutex
	failed := false
	enc := json.NewEncoder(os.Stdout)
	var wg sync.WaitGroup
	for _, p := range plan.probers {
		ip, ok := p.(*idle.Prober)
		if !ok {
			return usagef("--find-idle-timeout needs --kind idle")
		}
		wg.Go(func() {
			b, err := ip.Find(ctx, idle.FindOptions{MaxIdle: f.idleF.maxIdle, MinIdle: f.idleF.minIdle})
			if ctx.Err() != nil {
				return
			}
			name := ip.Target().Name
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = true
			}
			if f.output == "json" {
				fr := findResult{Target: name, Found: b.Found(), Verdict: b.String(), SurvivedSeconds: b.Survived.Seconds(),
					LostSeconds: b.Lost.Seconds(), LostReason: b.LostReason, ClosedAtSeconds: b.ClosedAt.Seconds(),
					Rounds: b.Rounds, Connections: b.Attempts, ElapsedSeconds: b.Elapsed.Seconds(), Evidence: b.Evidence}
				if err != nil {
					fr.Verdict, fr.Error = "", err.Error()
				}
				_ = enc.Encode(fr)
				return
			}
			if err != nil {
				fmt.Printf("%s: idle timeout search failed: %v\n", name, err)
				return
			}
			fmt.Printf("%s: %s\n", name, b)
			for _, e := range b.Evidence {
				fmt.Printf("  %s\n", e)
			}
			fmt.Printf("  %d round(s), %d connection(s), %s\n", b.Rounds, b.Attempts, b.Elapsed.Round(100*time.Millisecond))
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if failed {
		return errFailed
	}
	return nil
}

// checkIdleFlags reports problems of the idle flags; --find-idle-timeout
// and the idle-only flags need --kind idle.
func checkIdleFlags(f runFlags, kind string, changed func(string) bool) []error {
	var errs []error
	if changed == nil {
		changed = func(string) bool { return false }
	}
	if kind != idle.Kind {
		for _, n := range []string{"idle", "idle-mode", "reply-timeout", "find-idle-timeout", "max-idle", "min-idle"} {
			if changed(n) {
				errs = append(errs, fmt.Errorf("--%s needs --kind idle", n))
			}
		}
		return errs
	}
	if f.idleF.find && f.idleF.maxIdle <= f.idleF.minIdle {
		errs = append(errs, fmt.Errorf("--max-idle %s must be longer than --min-idle %s", f.idleF.maxIdle, f.idleF.minIdle))
	}
	if f.idleF.idle <= 0 {
		errs = append(errs, errors.New("--idle must be positive"))
	}
	return errs
}
