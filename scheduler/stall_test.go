package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/stall"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// stoppedClock is the clock of a process that gets stopped: stop makes it
// jump, as the monotonic clock does across a SIGSTOP while no goroutine of
// the process runs.
type stoppedClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *stoppedClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *stoppedClock) stop(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// stallingProber is a healthy target probed by a process that is stopped
// for 3 s during its third attempt: that attempt "times out", as a real
// one does when the deadline timer fires before the socket is read. The
// heartbeat last beat up to one tick before the stop: a 2.95-3 s pause.
type stallingProber struct {
	clock *stoppedClock
	n     int
}

func (p *stallingProber) Probe(ctx context.Context) probe.Result {
	p.n++
	r := probe.Result{Target: "a:1", Kind: "fake", Start: time.Now(), Reason: probe.ReasonOK}
	time.Sleep(10 * time.Millisecond)
	if p.n == 3 {
		p.clock.stop(3 * time.Second)
		r.Reason, r.Duration = probe.ReasonSynTimeout, 3*time.Second
		r.Timings.Handshake = 2460 * time.Millisecond
	}
	return r
}

func (p *stallingProber) Close() error { return nil }

// runStalling runs one job of target a:1 probed by p, with a stall
// detector on clock, for d inside a synctest bubble, and returns its results.
func runStalling(t *testing.T, clock *stoppedClock, p probe.Prober, d time.Duration) []probe.Result {
	t.Helper()
	det := stall.New(stall.Options{CPUStat: "none", Now: clock.now})
	w := newWorld(0)
	j := job(w, "web", targets.Static(tgts("a:1")))
	j.New = func(probe.Target) (probe.Prober, error) { return p, nil }
	s := New(w, nil)
	s.DetectStalls(det)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { det.Run(ctx) })
	wg.Go(func() { s.Run(ctx) })
	if err := s.Update(ctx, []*Job{j}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	cancel()
	wg.Wait()
	return w.results["a:1"]
}

func TestStalledAttemptIsDiscarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := &stoppedClock{}
		rs := runStalling(t, clock, &stallingProber{clock: clock}, 5500*time.Millisecond)
		if len(rs) < 5 {
			t.Fatalf("%d results, want 5 or more", len(rs))
		}
		for i, r := range rs {
			want := probe.ReasonOK
			if i == 2 {
				want = probe.ReasonProberStalled
			}
			if r.Reason != want {
				t.Errorf("attempt %d: reason %s, want %s", i+1, r.Reason, want)
			}
		}
		r := rs[2]
		if r.Success() || r.Timings != (probe.Timings{}) {
			t.Errorf("stalled attempt: success %v timings %+v, want neither", r.Success(), r.Timings)
		}
		ev := strings.Join(r.Evidence, "\n")
		for _, want := range []string{"not scheduled for 2.9", "would have read syn_timeout after 3s"} {
			if !strings.Contains(ev, want) {
				t.Errorf("evidence %q lacks %q", ev, want)
			}
		}
	})
}

// expiredProber answers every attempt ok, except the third, whose deadline
// had passed before it began: it "times out" at once, as a real probe does.
type expiredProber struct{ n int }

func (p *expiredProber) Probe(ctx context.Context) probe.Result {
	p.n++
	r := probe.Result{Target: "a:1", Kind: "fake", Start: time.Now(), Reason: probe.ReasonOK}
	if p.n == 3 {
		r.Reason = probe.ReasonSynTimeout
	}
	return r
}

func (p *expiredProber) Close() error { return nil }

// TestStallBeforeTheProbeBegins: the process stops right after the
// scheduler made the attempt's deadline and before the probe began; the
// deadline passes during the stop, and the probe fails at once. The stall
// ate the attempt's time, so the attempt is the prober's, not the target's.
func TestStallBeforeTheProbeBegins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := &stoppedClock{}
		attempts := 0
		testHookAttemptCtx = func() {
			if attempts++; attempts == 3 {
				// Stopped for 3 s; on resume the heartbeat runs first
				// and closes the pause's window before the probe begins.
				clock.stop(3 * time.Second)
				time.Sleep(60 * time.Millisecond)
			}
		}
		defer func() { testHookAttemptCtx = func() {} }()
		rs := runStalling(t, clock, &expiredProber{}, 4500*time.Millisecond)
		if len(rs) < 4 {
			t.Fatalf("%d results, want 4 or more", len(rs))
		}
		if rs[2].Reason != probe.ReasonProberStalled {
			t.Errorf("attempt 3, whose deadline passed while the process was stopped: %s, want prober_stalled", rs[2].Reason)
		}
	})
}
