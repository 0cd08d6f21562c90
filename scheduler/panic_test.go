package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// panicProber panics on its first attempt, as a client library does on a
// short packet from a broken server, and succeeds afterwards.
type panicProber struct {
	mu    *sync.Mutex
	calls *int
}

func (p panicProber) Probe(context.Context) probe.Result {
	p.mu.Lock()
	*p.calls++
	n := *p.calls
	p.mu.Unlock()
	if n == 1 {
		var greeting []byte
		_ = greeting[1:5] // slice bounds out of range
	}
	return probe.Result{Target: "db:3306", Kind: "fake", Reason: probe.ReasonOK}
}

func (panicProber) Close() error { return nil }

// TestPanickingProbeIsOneFailedAttempt: a probe that panics yields one
// result with reason other (the panic in the evidence, ErrPanic in Err), and
// the scheduler keeps probing.
func TestPanickingProbeIsOneFailedAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(0)
		var mu sync.Mutex
		calls := 0
		src := make(pushSource)
		j := job(w, "db", src)
		j.New = func(probe.Target) (probe.Prober, error) { return panicProber{&mu, &calls}, nil }
		_, stop := start(t, w, j)
		src <- tgts("db:3306")
		time.Sleep(3*time.Second + 500*time.Millisecond)
		synctest.Wait()
		stop()

		w.mu.Lock()
		defer w.mu.Unlock()
		rs := w.results["db:3306"]
		if len(rs) < 3 {
			t.Fatalf("%d results, want one per interval (>= 3): the scheduler stopped after the panic", len(rs))
		}
		first := rs[0]
		if first.Reason != probe.ReasonOther || first.Success() {
			t.Errorf("first result %s (success %v), want other", first.Reason, first.Success())
		}
		if !errors.Is(first.Err, probe.ErrPanic) {
			t.Errorf("first result's err %v does not wrap probe.ErrPanic", first.Err)
		}
		if len(first.Evidence) != 1 || !strings.Contains(first.Evidence[0], "panic in the probe: runtime error: slice bounds out of range") {
			t.Errorf("evidence %q, want the panic", first.Evidence)
		}
		if first.Target != "db:3306" || first.Kind != "fake" {
			t.Errorf("target %q kind %q, want the loop's", first.Target, first.Kind)
		}
		for i, r := range rs[1:] {
			if r.Reason != probe.ReasonOK {
				t.Errorf("result %d after the panic: %s, want ok", i+1, r.Reason)
			}
		}
	})
}
