package scheduler

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// blockProber's attempts last until ctx is done and record why they ended.
type blockProber struct {
	mu      *sync.Mutex
	started *int
	ended   *[]error
}

func (p blockProber) Probe(ctx context.Context) probe.Result {
	p.mu.Lock()
	*p.started++
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	*p.ended = append(*p.ended, ctx.Err())
	p.mu.Unlock()
	return probe.Result{Reason: probe.ReasonSynTimeout}
}

func (blockProber) Close() error { return nil }

// TestRemovedTargetCancelsAttemptInFlight: when a target leaves a job that
// keeps running, its attempt in flight is canceled at once (not left to run
// into its timeout), and its result is not reported.
func TestRemovedTargetCancelsAttemptInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(0)
		var mu sync.Mutex
		started := 0
		var ended []error
		src := make(pushSource)
		j := job(w, "web", src)
		j.New = func(t probe.Target) (probe.Prober, error) {
			if t.Name == "a:1" {
				return blockProber{&mu, &started, &ended}, nil
			}
			return w.New(t) // b:1: quick attempts
		}
		_, stop := start(t, w, j)
		defer stop()
		src <- tgts("a:1", "b:1")
		for range 200 {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			mu.Lock()
			n := started
			mu.Unlock()
			if n > 0 {
				break
			}
		}
		t0 := time.Now()
		src <- tgts("b:1") // a:1 goes; the job and b:1 stay
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if started != 1 || len(ended) != 1 {
			t.Fatalf("%d attempts on a:1 started, %d ended; want 1 and 1", started, len(ended))
		}
		if ended[0] != context.Canceled {
			t.Errorf("attempt ended with %v, want context.Canceled", ended[0])
		}
		if d := time.Since(t0); d != 0 {
			t.Errorf("removing the target took %s under a fake clock, want 0", d)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if n := len(w.results["a:1"]); n != 0 {
			t.Errorf("%d results reported for the canceled attempt, want 0", n)
		}
	})
}
