package status

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON log lines, each reduced to msg and the attributes
// named in keep.
func (l *logBuf) lines(t *testing.T, keep ...string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		r := map[string]any{"msg": m["msg"]}
		for _, k := range keep {
			if v, ok := m[k]; ok {
				r[k] = v
			}
		}
		out = append(out, r)
	}
	l.b.Reset()
	return out
}

// attempt feeds one attempt of reason at the bubble's now.
func attempt(ts scheduler.TargetSink, reason probe.Reason, evidence ...string) {
	r := res(0, reason, evidence...)
	r.Start = time.Now()
	ts.Result(r)
}

// TestFailureLogStreak: per target, the first failure of a streak, each new
// reason, a summary every SummaryEvery and a recovery line, on a fake clock;
// an hour of failures at one a second is a handful of lines, not 3600.
func TestFailureLogStreakSummaryRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf logBuf
		s := New(Options{Attempts: 8, SummaryEvery: 5 * time.Minute, Log: slog.New(slog.NewJSONHandler(&buf, nil))})
		ts := newTarget(s, "db", "10.96.20.5:5432", false)
		other := newTarget(s, "db", "10.96.20.6:5432", false)
		tick := func() { time.Sleep(time.Second) }

		for range 10 {
			attempt(ts, probe.ReasonOK)
			attempt(other, probe.ReasonOK)
			tick()
		}
		if got := buf.lines(t); len(got) != 0 {
			t.Fatalf("successes logged: %v", got)
		}

		// 12 minutes of SYN timeouts with a few refusals.
		for i := range 720 {
			if i%36 == 35 {
				attempt(ts, probe.ReasonRefused, "RST from 10.244.1.7:5432")
			} else {
				attempt(ts, probe.ReasonSynTimeout, "3 SYNs at 0s,1.0s,2.0s; no reply")
			}
			attempt(other, probe.ReasonOK)
			tick()
		}
		want := []map[string]any{
			{"msg": "target failing", "target": "10.96.20.5:5432", "job": "db", "reason": "syn_timeout", "phase": "handshake",
				"evidence": []any{"3 SYNs at 0s,1.0s,2.0s; no reply"}},
			{"msg": "target failing: new reason", "target": "10.96.20.5:5432", "job": "db", "reason": "refused", "from": "syn_timeout", "phase": "handshake",
				"evidence": []any{"RST from 10.244.1.7:5432"}},
			{"msg": "target still failing", "target": "10.96.20.5:5432", "job": "db", "reason": "syn_timeout", "for": "5m0s",
				"attempts": 301.0, "reasons": "syn_timeout=293 refused=8", "phase": "handshake",
				"evidence": []any{"3 SYNs at 0s,1.0s,2.0s; no reply"}},
			{"msg": "target still failing", "target": "10.96.20.5:5432", "job": "db", "reason": "syn_timeout", "for": "10m0s",
				"attempts": 601.0, "reasons": "syn_timeout=585 refused=16", "phase": "handshake",
				"evidence": []any{"3 SYNs at 0s,1.0s,2.0s; no reply"}},
		}
		got := buf.lines(t, "target", "job", "reason", "phase", "evidence", "from", "for", "attempts", "reasons")
		for _, g := range got {
			if f, ok := g["for"].(float64); ok { // slog JSON renders durations in ns
				g["for"] = time.Duration(f).String()
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("failure log (-want +got):\n%s", d)
		}

		attempt(ts, probe.ReasonOK)
		got = buf.lines(t, "after", "failed_attempts", "reasons")
		if len(got) != 1 || got[0]["msg"] != "target recovered" || got[0]["failed_attempts"] != 720.0 ||
			got[0]["reasons"] != "syn_timeout=700 refused=20" || time.Duration(got[0]["after"].(float64)) != 720*time.Second {
			t.Errorf("recovery: %v", got)
		}
	})
}

// TestFailureLogFlappingIsNotAStorm: a target that fails every other
// attempt logs its first failure and recovery, then summaries, not a pair
// of lines per flap.
func TestFailureLogFlappingIsNotAStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf logBuf
		s := New(Options{Attempts: 8, SummaryEvery: time.Minute, Log: slog.New(slog.NewJSONHandler(&buf, nil))})
		ts := newTarget(s, "web", "10.0.0.1:80", false)
		for i := range 600 { // 10 minutes
			if i%2 == 0 {
				attempt(ts, probe.ReasonReset, "RST")
			} else {
				attempt(ts, probe.ReasonOK)
			}
			time.Sleep(time.Second)
		}
		got := buf.lines(t, "flaps")
		if len(got) > 2+10+1 {
			t.Errorf("%d lines for 10 minutes of flapping, want at most first + recovery + one summary a minute", len(got))
		}
		if got[0]["msg"] != "target failing" || got[1]["msg"] != "target recovered" {
			t.Errorf("first lines: %v", got[:2])
		}
		if got[2]["msg"] != "target flapping" || got[2]["flaps"] == nil {
			t.Errorf("third line: %v, want a flapping summary", got[2])
		}
		// Quiet for longer than SummaryEvery: the streak ends with a final word.
		for range 70 {
			attempt(ts, probe.ReasonOK)
			time.Sleep(time.Second)
		}
		got = buf.lines(t, "flaps", "failed_attempts")
		if len(got) != 1 || got[0]["msg"] != "target recovered" || got[0]["failed_attempts"] != 300.0 {
			t.Errorf("after a quiet minute: %v", got)
		}
		attempt(ts, probe.ReasonReset, "RST")
		if got := buf.lines(t); len(got) != 1 || got[0]["msg"] != "target failing" {
			t.Errorf("a new streak: %v", got)
		}
	})
}

func TestFailureLogProberFaultsAndForget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf logBuf
		s := New(Options{Attempts: 8, Log: slog.New(slog.NewJSONHandler(&buf, nil))})
		j := &scheduler.Job{Name: "j", Kind: "syn"}
		tg := probe.Target{Name: "10.0.0.9:443"}
		ts := s.Target(j, tg)
		// Prober faults are logged where they happen (the stall detector,
		// the preflight), once, not per target: here they log nothing.
		attempt(ts, probe.ReasonProberBudget, "no SYN budget in time")
		attempt(ts, probe.ReasonProberStalled, "the prober itself stalled")
		attempt(ts, probe.ReasonSynTimeout, "no reply")
		attempt(ts, probe.ReasonProberStalled, "the prober itself stalled")
		s.Forget(j, tg)
		got := buf.lines(t, "class", "failed_attempts")
		want := []map[string]any{
			{"msg": "target failing", "class": "failure"},
			{"msg": "target removed while failing", "failed_attempts": 1.0},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	})
}

func TestDebugLogsEveryAttemptWithEvidence(t *testing.T) {
	var buf logBuf
	s := New(Options{Attempts: 8, Log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ts := newTarget(s, "j", "t:1", false)
	ts.Result(res(1, probe.ReasonOK, "connected"))
	got := buf.lines(t, "reason", "evidence")
	if len(got) != 1 || got[0]["msg"] != "attempt" || got[0]["reason"] != "ok" {
		t.Errorf("debug: %v", got)
	}
}
