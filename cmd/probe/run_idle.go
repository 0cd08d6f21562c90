//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
	repeats      int
}

func addIdleFlags(fl *pflag.FlagSet, f *idleFlags) {
	fl.DurationVar(&f.idle, "idle", idle.DefaultIdle, "kind idle: how long to hold the connection idle")
	fl.StringVar(&f.mode, "idle-mode", string(idle.ModeClientFirst), "kind idle: who speaks after the idle time: client-first, server-after-delay (both need probe responder), plain (any server: --send after the idle time, optional --expect)")
	fl.DurationVar(&f.replyTimeout, "reply-timeout", idle.DefaultReplyTimeout, "kind idle: how long to wait for the answer after the idle time")
	fl.BoolVar(&f.find, "find-idle-timeout", false, "kind idle: search the idle time the path survives (parallel connections, narrowing down) and report it")
	fl.DurationVar(&f.maxIdle, "max-idle", 20*time.Minute, "kind idle: longest idle time --find-idle-timeout tries")
	fl.DurationVar(&f.minIdle, "min-idle", time.Second, "kind idle: shortest idle time --find-idle-timeout tries")
	fl.IntVar(&f.repeats, "find-repeats", 0, fmt.Sprintf("kind idle: connections per idle time in --find-idle-timeout, a loss on any counts (0: 1 with a responder, %d in plain mode, where a VIP may re-DNAT a forgotten session to the backend that holds it)", idle.DefaultRepeats))
}

// runIdleConfig is kind idle's Config from `probe run` flags; --timeout
// bounds the handshake and the first echo.
func runIdleConfig(c runSettings) (idle.Config, error) {
	if c.conn.UserTimeout != 0 {
		return idle.Config{}, fmt.Errorf("--user-timeout is not supported by kind idle")
	}
	return idle.Config{
		Mode:           idle.Mode(c.f.idleF.mode),
		Idle:           c.f.idleF.idle,
		ConnectTimeout: c.f.timeout,
		ReplyTimeout:   c.f.idleF.replyTimeout,
		Source:         c.conn.Source,
		Resolver:       c.conn.Resolver,
		Send:           c.conn.Send,
		Expect:         c.conn.Expect,
	}, nil
}

// findResult is the JSON shape of one --find-idle-timeout search.
type findResult struct {
	Target          string       `json:"target"`
	Found           bool         `json:"found"`
	Trustworthy     bool         `json:"trustworthy"`
	Verdict         string       `json:"verdict"`
	SurvivedSeconds float64      `json:"survived_seconds"`
	LostSeconds     float64      `json:"lost_seconds,omitempty"`
	LostReason      probe.Reason `json:"lost_reason,omitempty"`
	ClosedAtSeconds float64      `json:"closed_at_seconds,omitempty"`
	Untrusted       string       `json:"untrusted,omitempty"`
	Repeats         int          `json:"repeats"`
	Rounds          int          `json:"rounds"`
	Connections     int          `json:"connections"`
	ElapsedSeconds  float64      `json:"elapsed_seconds"`
	Evidence        []string     `json:"evidence"`
	Error           string       `json:"error,omitempty"`
}

// heartbeatEvery is how often a long idle time or search says it is still
// running (on stderr); idleNotice is the shortest idle time that gets a
// line when it starts. Variables for tests.
var (
	heartbeatEvery = time.Minute
	idleNotice     = 10 * time.Second
)

// lineWriter serializes whole lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// runFindIdle searches every target's idle timeout at once. Each round is
// printed as it starts and ends (stdout in text mode, stderr with -o json),
// a heartbeat goes to stderr every heartbeatEvery, and one verdict per
// target ends it. Exit status 1 when a loss was found or a search could not
// run (path down, server fault).
func runFindIdle(ctx context.Context, plan *runPlan, f runFlags) error {
	stdout, stderr := &lineWriter{w: f.stdoutW()}, &lineWriter{w: f.stderrW()}
	progress := stdout
	if f.output == "json" {
		progress = stderr
	}
	var mu sync.Mutex
	failed := false
	var wg sync.WaitGroup
	for _, p := range plan.probers {
		ip, ok := p.(*idle.Prober)
		if !ok {
			return usagef("--find-idle-timeout needs --kind idle")
		}
		wg.Go(func() {
			name := ip.Target().Name
			var (
				rmu   sync.Mutex
				round string
			)
			start := time.Now()
			o := idle.FindOptions{MaxIdle: f.idleF.maxIdle, MinIdle: f.idleF.minIdle, Repeats: f.idleF.repeats,
				Progress: func(line string) {
					rmu.Lock()
					round, _, _ = strings.Cut(line, ":")
					rmu.Unlock()
					progress.printf("%s: %s", name, line)
				}}
			stop := heartbeat(ctx, func(elapsed time.Duration) {
				rmu.Lock()
				defer rmu.Unlock()
				stderr.printf("%s: idle-timeout search still running: %s, %s elapsed", name, round, beatRound(elapsed))
			}, start)
			b, err := ip.Find(ctx, o)
			stop()
			if ctx.Err() != nil {
				return
			}
			mu.Lock()
			failed = failed || err != nil || b.Found()
			mu.Unlock()
			if f.output == "json" {
				fr := findResult{Target: name, Found: b.Found(), Trustworthy: err == nil && b.Untrusted == "", Verdict: b.String(),
					SurvivedSeconds: b.Survived.Seconds(), LostSeconds: b.Lost.Seconds(), LostReason: b.LostReason,
					ClosedAtSeconds: b.ClosedAt.Seconds(), Untrusted: b.Untrusted, Repeats: b.Repeats,
					Rounds: b.Rounds, Connections: b.Attempts, ElapsedSeconds: b.Elapsed.Seconds(), Evidence: b.Evidence}
				if err != nil {
					fr.Verdict, fr.Error = "", err.Error()
				}
				out, _ := json.Marshal(fr)
				stdout.printf("%s", out)
				return
			}
			if err != nil {
				stdout.printf("%s: idle timeout search failed: %v", name, err)
				return
			}
			stdout.printf("%s: %s", name, b)
			tries := ""
			if b.Repeats > 1 {
				tries = fmt.Sprintf(", each idle time tried %d times (a loss on any counts)", b.Repeats)
			}
			stdout.printf("  %d round(s), %d connection(s)%s, %s", b.Rounds, b.Attempts, tries, b.Elapsed.Round(100*time.Millisecond))
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

// heartbeat calls beat with the time since start every heartbeatEvery
// until the returned stop is called (stop waits for it).
func heartbeat(ctx context.Context, beat func(elapsed time.Duration), start time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				beat(time.Since(start))
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// watchIdle makes p announce, on stderr, each idle time of at least
// idleNotice when it starts, and heartbeat every heartbeatEvery while it
// lasts; the returned stop ends the heartbeats of a finished attempt.
func watchIdle(ctx context.Context, p *idle.Prober, stderr *lineWriter) (stop func()) {
	var mu sync.Mutex
	var stopBeat func()
	end := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopBeat != nil {
			stopBeat()
			stopBeat = nil
		}
	}
	p.OnIdle(func(e idle.IdleStarted) {
		if e.Idle < idleNotice {
			return
		}
		name := p.Target().Name
		via := ""
		if e.Server.IsValid() && e.Server != e.Remote {
			via = " (responder " + e.Server.String() + ")"
		}
		stderr.printf("%s: connection %s -> %s%s idle for %s, until %s", name, e.Local, e.Remote, via, e.Idle, e.At.Add(e.Idle).Format("15:04:05"))
		end()
		mu.Lock()
		stopBeat = heartbeat(ctx, func(elapsed time.Duration) {
			stderr.printf("%s: idle %s of %s", name, beatRound(min(elapsed, e.Idle)), e.Idle)
		}, e.At)
		mu.Unlock()
	})
	return end
}

// checkIdleFlags reports problems of the idle flags; --find-idle-timeout
// and the idle-only flags need --kind idle.
func checkIdleFlags(f runFlags, kind string, changed func(string) bool) []error {
	var errs []error
	if changed == nil {
		changed = func(string) bool { return false }
	}
	if kind != idle.Kind {
		return errs // checkKindFlags names the idle flags given with another kind
	}
	if f.idleF.find && f.idleF.maxIdle <= f.idleF.minIdle {
		errs = append(errs, fmt.Errorf("--max-idle %s must be longer than --min-idle %s", f.idleF.maxIdle, f.idleF.minIdle))
	}
	if f.idleF.repeats < 0 {
		errs = append(errs, fmt.Errorf("--find-repeats %d must not be negative", f.idleF.repeats))
	}
	if f.idleF.idle <= 0 {
		errs = append(errs, errors.New("--idle must be positive"))
	}
	return errs
}

// beatRound rounds a heartbeat's elapsed time to the heartbeat's own scale.
func beatRound(d time.Duration) time.Duration {
	if heartbeatEvery >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}
