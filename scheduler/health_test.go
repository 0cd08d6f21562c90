package scheduler

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// healthAt samples Health every step for d and returns the first error
// seen and when (zero when none).
func healthAt(s *Scheduler, d, step time.Duration) (error, time.Duration) {
	t0 := time.Now()
	for time.Since(t0) < d {
		time.Sleep(step)
		synctest.Wait()
		if err := s.Health(); err != nil {
			return err, time.Since(t0)
		}
	}
	return nil, 0
}

func TestHealthyWhileProbing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(700 * time.Millisecond) // close to the 800ms timeout
		s := New(w, nil)
		if err := s.Health(); err == nil || !strings.Contains(err.Error(), "not started") {
			t.Errorf("before Run: %v, want not started", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		src := make(pushSource)
		slow := job(w, "slow", targets.Static(tgts("a:1")))
		slow.Interval, slow.Timeout = 5*time.Minute, time.Minute // fires rarely: m is 3 intervals
		if err := s.Update(ctx, []*Job{job(w, "web", src), slow}); err != nil {
			t.Fatal(err)
		}
		if err := s.Health(); err != nil {
			t.Errorf("a job without targets: %v", err)
		}
		src <- tgts("a:1", "b:1")
		if err, at := healthAt(s, 30*time.Minute, 5*time.Second); err != nil {
			t.Errorf("healthy probing reported unhealthy after %s: %v", at, err)
		}
		src <- nil // every target gone: nothing is due
		if err, at := healthAt(s, 10*time.Minute, 5*time.Second); err != nil {
			t.Errorf("a job whose targets left reported unhealthy after %s: %v", at, err)
		}
		cancel()
		<-done
		if err := s.Health(); err != ErrStopped {
			t.Errorf("after Run returned: %v, want ErrStopped", err)
		}
	})
}

// TestHealthReportsStuckProbes: attempts that ignore their deadline hold
// every prober; no result ever comes. Health says so once the timeout plus
// the stall bound has passed, not before.
func TestHealthReportsStuckProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(24 * time.Hour)
		w.ignoreCtx = true
		s, stop := start(t, w, job(w, "web", targets.Static(tgts("a:1", "b:1"))))
		defer stop()
		err, at := healthAt(s, 5*time.Minute, time.Second)
		// The first attempt starts within 1s and never returns: stuck from
		// about 0.8s (timeout) + 30s (DefaultMinStall) after the loops started.
		if err == nil || !strings.Contains(err.Error(), `job "web": no attempt returned for`) || !strings.Contains(err.Error(), "probes are stuck") {
			t.Fatalf("Health = %v, want the stuck probes named", err)
		}
		if at < 30*time.Second || at > 33*time.Second {
			t.Errorf("reported after %s, want about 31s", at)
		}
		if strings.Contains(err.Error(), "timers") {
			t.Errorf("timers fire (as overruns) but Health says %v", err)
		}
		// Shutdown is not delayed by the health check (nothing to clean up
		// beyond what stop already waits for): release the stuck attempts.
		w.mu.Lock()
		for _, p := range w.probers {
			p.hold = 0
		}
		w.mu.Unlock()
	})
}

// TestHealthReportsStoppedTimers: a job with targets whose timers no longer
// fire (here stopped behind the scheduler's back) is reported.
func TestHealthReportsStoppedTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(10 * time.Millisecond)
		s, stop := start(t, w, job(w, "web", targets.Static(tgts("a:1"))))
		defer stop()
		if err, at := healthAt(s, 2*time.Minute, time.Second); err != nil {
			t.Fatalf("unhealthy after %s: %v", at, err)
		}
		jr := (*s.jobs.Load())[0]
		for _, l := range jr.loops { // jr.run is idle: synctest.Wait above
			l.mu.Lock()
			l.timer.Stop()
			l.mu.Unlock()
		}
		err, at := healthAt(s, 2*time.Minute, time.Second)
		if err == nil || !strings.Contains(err.Error(), `job "web": no firing for`) {
			t.Fatalf("Health = %v, want the stopped timers named", err)
		}
		if at < 29*time.Second || at > 32*time.Second {
			t.Errorf("reported %s after the timers stopped, want about 30s", at)
		}
	})
}

// TestHealthReportsStuckUpdate: a config update that cannot finish (a
// stopping job's background work ignores its ctx) is reported while it
// lasts; once it finishes the scheduler is healthy again.
func TestHealthReportsStuckUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(10 * time.Millisecond)
		j := job(w, "idle", targets.Static(tgts("a:1")))
		j.Background = func(ctx context.Context, _ probe.Target, _ TargetSink) {
			<-ctx.Done()
			time.Sleep(2 * time.Minute) // ignores the cancel for 2 minutes
		}
		s, stop := start(t, w, j)
		defer stop()
		time.Sleep(time.Second) // a:1's loop and Background are running
		synctest.Wait()
		updated := make(chan error, 1)
		go func() { updated <- s.Update(context.Background(), nil) }()
		err, at := healthAt(s, 90*time.Second, time.Second)
		if err == nil || !strings.Contains(err.Error(), "scheduler: applying a config update for") {
			t.Fatalf("Health = %v, want the stuck update named", err)
		}
		if at < 30*time.Second || at > 32*time.Second {
			t.Errorf("reported after %s, want about 31s", at)
		}
		if err := <-updated; err != nil {
			t.Fatal(err)
		}
		if err := s.Health(); err != nil {
			t.Errorf("after the update finished: %v", err)
		}
	})
}

// TestHealthReportsStuckTargetChange: removing a target whose attempt
// ignores cancellation blocks its job's runner; Health names the job.
func TestHealthReportsStuckTargetChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(30 * time.Minute)
		w.ignoreCtx = true
		src := make(pushSource)
		j := job(w, "web", src)
		j.Timeout, j.Interval = 5*time.Minute, 10*time.Minute
		s, stop := start(t, w, j)
		defer stop()
		src <- tgts("a:1")
		time.Sleep(10 * time.Minute) // the attempt is in flight
		src <- nil
		err, _ := healthAt(s, time.Minute, time.Second)
		if err == nil || !strings.Contains(err.Error(), `job "web": applying a target change for`) {
			t.Fatalf("Health = %v, want the stuck target change named", err)
		}
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if err := s.Health(); err != nil {
			t.Errorf("after the attempt returned: %v", err)
		}
	})
}
