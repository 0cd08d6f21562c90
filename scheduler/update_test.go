package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// TestAbandonedUpdateNeverBlocksRun: a caller that gives up on Update while
// the change is being applied (an HTTP reload whose client hung up) must not
// leave Run blocked handing it the result: the next Update, and shutdown,
// still work.
func TestAbandonedUpdateNeverBlocksRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(10 * time.Millisecond)
		// Stopping a target takes a second (its Background winds down),
		// so every change below outlasts its caller's 10ms.
		slowStop := func(ctx context.Context, _ probe.Target, _ TargetSink) {
			<-ctx.Done()
			time.Sleep(time.Second)
		}
		old := job(w, "a", targets.Static(tgts("x:1")))
		old.Background = slowStop
		s, stop := start(t, w, old)
		abandoned := 0
		for i := range 200 {
			j := job(w, "a", targets.Static(tgts("x:1")))
			j.Fingerprint = fmt.Sprint("v", i) // changed: Run must stop the old one
			j.Background = slowStop
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			err := s.Update(ctx, []*Job{j})
			cancel()
			if err == nil {
				continue
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("abandoned update %d: %v, want the caller's deadline", i, err)
			}
			abandoned++
		}
		if abandoned < 100 {
			t.Fatalf("only %d of 200 updates were abandoned mid-way; the test does not test", abandoned)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		final := job(w, "b", targets.Static(tgts("y:1")))
		if err := s.Update(ctx, []*Job{final}); err != nil {
			t.Fatalf("update after abandoned ones: %v", err)
		}
		time.Sleep(2 * time.Second)
		stop()
		if n := w.openProbers(); n != 0 {
			t.Errorf("%d probers open after shutdown", n)
		}
	})
}

// TestUpdateAfterRunReturned: an Update sent to a scheduler that stopped
// returns at once instead of waiting for its (maybe unbounded) ctx.
func TestUpdateAfterRunReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(time.Millisecond)
		s, stop := start(t, w, job(w, "a", targets.Static(tgts("x:1"))))
		stop()
		if err := s.Update(context.Background(), nil); !errors.Is(err, ErrStopped) {
			t.Errorf("Update after Run returned: %v, want ErrStopped", err)
		}
	})
}

// followProber drops its own target from the job's source once it has
// reported, the way a vantage drops a vanished namespace's targets after
// its netns_gone.
type followProber struct {
	*fakeProber
	src      pushSource
	recorded []int // results the sink held for the target at each Followup
}

func (p *followProber) Followup(r *probe.Result) {
	p.w.mu.Lock()
	p.recorded = append(p.recorded, len(p.w.results[p.target]))
	p.w.mu.Unlock()
	p.src <- nil
}

// TestFollowupAfterTheResultIsRecorded: what an attempt's outcome sets in
// motion (here: the target dropped) runs only once the sink has that
// attempt, so the result that caused it is never lost with the loop.
func TestFollowupAfterTheResultIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(time.Millisecond)
		src := make(pushSource)
		var fp *followProber
		j := job(w, "a", src)
		j.New = func(tg probe.Target) (probe.Prober, error) {
			p, _ := w.New(tg)
			fp = &followProber{fakeProber: p.(*fakeProber), src: src}
			return fp, nil
		}
		_, stop := start(t, w, j)
		src <- tgts("x:1")
		time.Sleep(5 * time.Second)
		stop()
		if fp == nil {
			t.Fatal("no prober made")
		}
		if got := len(w.results["x:1"]); got != 1 {
			t.Errorf("%d results recorded, want the one attempt before the target was dropped", got)
		}
		if len(fp.recorded) != 1 || fp.recorded[0] != 1 {
			t.Errorf("Followup saw %v results recorded, want [1]: it must run after the sink has the result", fp.recorded)
		}
	})
}
