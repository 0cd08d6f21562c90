package scheduler

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultMinStall is the least time without progress Health tolerates: it
// keeps a GC pause, a CPU-throttled minute or a slow config change from
// reading as a stuck scheduler.
const DefaultMinStall = 30 * time.Second

// progress is what a job's loops report for Health. Stamps are monotonic
// nanoseconds since the Scheduler was made (plus one, so 0 means never).
type progress struct {
	s        *Scheduler
	loops    atomic.Int64 // running loops
	started  atomic.Int64 // last time a loop started
	fired    atomic.Int64 // last firing of any loop
	ended    atomic.Int64 // last attempt that returned
	applying atomic.Int64 // a target change being applied since; 0 when idle
}

// markEvery bounds how often a stamp is written: at 10k targets the loops
// of a job fire thousands of times a second and need not all write the
// same cache line.
const markEvery = int64(10 * time.Millisecond)

func (p *progress) mark(a *atomic.Int64) {
	if now := p.s.stamp(); now-a.Load() > markEvery {
		a.Store(now)
	}
}

func (s *Scheduler) stamp() int64 { return int64(time.Since(s.base)) + 1 }

// Health reports whether the scheduler is making progress: nil, or an error
// naming each thing that is stuck. It is cheap (a few atomic loads per job)
// and safe to call from any goroutine. With m = max(MinStall, 3 intervals)
// of the job, it reports:
//   - Run not running (never started, or returned);
//   - a config update (Update) or a job's target change being applied for
//     longer than MinStall: a stopping target's attempt or Background does
//     not end;
//   - a job with targets whose timers have not fired for m since its last
//     loop started or fired (timers not running);
//   - a job with targets none of whose attempts has returned for
//     timeout + m (probes that ignore their deadline hold every prober).
func (s *Scheduler) Health() error {
	if !s.started.Load() {
		return errors.New("scheduler: not started")
	}
	select {
	case <-s.stopped:
		return ErrStopped
	default:
	}
	minStall := s.MinStall
	if minStall <= 0 {
		minStall = DefaultMinStall
	}
	now := s.stamp()
	since := func(stamp int64) time.Duration { return time.Duration(now - stamp).Round(time.Millisecond) }
	var errs []error
	if a := s.applying.Load(); a != 0 && since(a) > minStall {
		errs = append(errs, fmt.Errorf("scheduler: applying a config update for %s: a stopping job's attempts or background work have not ended", since(a)))
	}
	var jobs []*jobRunner
	if p := s.jobs.Load(); p != nil {
		jobs = *p
	}
	for _, jr := range jobs {
		p, j := &jr.progress, jr.job
		if a := p.applying.Load(); a != 0 && since(a) > minStall {
			errs = append(errs, fmt.Errorf("job %q: applying a target change for %s: a removed target's attempt or background work has not ended", j.Name, since(a)))
		}
		if p.loops.Load() == 0 {
			continue
		}
		m := max(minStall, 3*j.Interval)
		if last := max(p.started.Load(), p.fired.Load()); since(last) > m {
			errs = append(errs, fmt.Errorf("job %q: no firing for %s (interval %s): its timers are not running", j.Name, since(last), j.Interval))
		}
		if last := max(p.started.Load(), p.ended.Load()); since(last) > j.Timeout+m {
			errs = append(errs, fmt.Errorf("job %q: no attempt returned for %s (interval %s, timeout %s): its probes are stuck", j.Name, since(last), j.Interval, j.Timeout))
		}
	}
	return errors.Join(errs...)
}
