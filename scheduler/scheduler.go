// Package scheduler runs jobs: for each job it follows the job's target
// source, diffs consecutive target sets, and runs one loop per (job, target).
//
// A loop is a timer, not a goroutine: time.AfterFunc fires once per interval
// (first at a random offset within the interval, so targets do not burst)
// and the attempt runs in the timer's goroutine, which ends with the attempt.
// An idle target costs a timer and a few words, so 10k targets need no 10k
// parked stacks. A loop owns Concurrency probers; each firing takes a free
// one, so a kind whose attempts last longer than the interval (idle and
// keep-alive probes hold a connection for minutes) runs as a staggered pool
// that still yields a result every interval. A firing that finds no free
// prober, or that comes so late that the process must have stalled, is an
// overrun: counted, never queued, so a stall never becomes a burst.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/stall"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// Job is a probe kind on a set of targets.
type Job struct {
	Name     string
	Kind     string
	Interval time.Duration
	// Timeout bounds one attempt (the attempt's ctx deadline).
	Timeout time.Duration
	// Concurrency is how many attempts on one target may overlap (>= 1);
	// each has its own Prober, so a Prober is never used concurrently.
	Concurrency int
	// Expect is what the job wants of its targets: that they answer, or
	// that they are blocked (Expect.Fail).
	Expect probe.Expectation
	// Latency is the threshold of the job's latency SLI: the Sink counts
	// successful attempts slower than it (0: only degraded ones).
	Latency time.Duration
	// Objective is the job's own SLO objective in (0, 1); 0: none, the
	// SLO rules' default applies.
	Objective float64
	// Source yields the targets.
	Source targets.Source
	// New builds a Prober for one target.
	New func(probe.Target) (probe.Prober, error)
	// Fingerprint identifies the job's configuration: on Update, a running
	// job with the same name and fingerprint keeps running untouched.
	Fingerprint string
	// Background, when set, runs beside each target's loop for as long as
	// the target is probed (a periodic idle-timeout search): it starts with
	// the loop, its ctx is canceled when the loop stops (target gone, job
	// changed or removed, shutdown), and the loop waits for it before
	// closing the probers and forgetting the target's series. sink is the
	// target's recorder.
	Background func(ctx context.Context, t probe.Target, sink TargetSink)
}

// Sink receives what the scheduler sees. Its methods must not block.
type Sink interface {
	// Target returns the recorder of one (job, target); called when the
	// target's loop starts.
	Target(job *Job, t probe.Target) TargetSink
	// Forget drops every series of a target that went away.
	Forget(job *Job, t probe.Target)
	// Targets reports the number of targets a job probes now; n < 0 means
	// the job was removed.
	Targets(job *Job, n int)
}

// TargetSink records one (job, target).
type TargetSink interface {
	// Scheduled is called at every firing with how late it fired.
	Scheduled(late time.Duration)
	// Overrun is called when a firing found every prober busy, fired more
	// than a tenth of the interval late, or when whole intervals were
	// skipped because the process fell behind.
	Overrun(n int)
	// Result is called with the outcome of every attempt that was not cut
	// short by the scheduler itself; an attempt during which the prober
	// stalled arrives as reason prober_stalled. r is only valid during the
	// call.
	Result(r *probe.Result)
}

// Follower is an optional interface of a probe.Prober: the scheduler calls
// Followup with each attempt's result once the sink has it (or once it was
// discarded because the loop was stopped). Anything an attempt's outcome
// sets in motion that may stop the loop (a vantage dropping a vanished
// namespace's targets) belongs here rather than in Probe, where it would
// race the recording of that very result.
type Follower interface {
	Followup(r *probe.Result)
}

// testHookAttemptCtx runs right after an attempt's context (and so its
// deadline) is made; tests stop the clock there.
var testHookAttemptCtx = func() {}

// Scheduler runs the current set of jobs.
type Scheduler struct {
	sink    Sink
	stall   *stall.Detector
	log     *slog.Logger
	updates chan update
	stopped chan struct{} // closed when Run returns

	// MinStall is the least time without progress Health tolerates before
	// it reports a job stuck (zero: DefaultMinStall); see Health. Set it
	// before Run.
	MinStall time.Duration

	base     time.Time    // the origin of the monotonic stamps below
	started  atomic.Bool  // Run was called
	applying atomic.Int64 // stamp of when Run began applying an update; 0 when idle
	jobs     atomic.Pointer[[]*jobRunner]
}

// update is one Update call: Run closes applied once the change is in
// place, so it never waits for a caller that has gone.
type update struct {
	jobs    []*Job
	applied chan struct{}
}

// ErrStopped is returned by Update when Run has returned.
var ErrStopped = errors.New("scheduler: stopped")

// New returns a Scheduler reporting to sink.
func New(sink Sink, log *slog.Logger) *Scheduler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{sink: sink, log: log, updates: make(chan update), stopped: make(chan struct{}), base: time.Now()}
}

// DetectStalls makes every attempt check d (which the caller runs): an
// attempt during which the prober was not running is reported as
// prober_stalled, never as the target's. Call before Run.
func (s *Scheduler) DetectStalls(d *stall.Detector) { s.stall = d }

// Update replaces the set of jobs: removed jobs stop, changed jobs restart
// (the series of both are forgotten first), unchanged jobs keep running. It
// returns once the change is applied, or when ctx is done: a change Run has
// already taken is then still applied, but nobody waits for it (Run never
// blocks on a caller that gave up, such as an HTTP client that hung up).
// After Run has returned it returns ErrStopped.
func (s *Scheduler) Update(ctx context.Context, jobs []*Job) error {
	u := update{jobs: jobs, applied: make(chan struct{})}
	select {
	case s.updates <- u:
	case <-s.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-u.applied:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs jobs until ctx is done, then stops every loop, waits for the
// attempts in flight (their ctx is canceled) and closes every prober.
func (s *Scheduler) Run(ctx context.Context) error {
	s.started.Store(true)
	defer close(s.stopped)
	running := map[string]*jobRunner{}
	defer func() {
		for _, jr := range running {
			jr.cancel()
		}
		for _, jr := range running {
			<-jr.done
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-s.updates:
			s.applying.Store(s.stamp())
			s.apply(ctx, running, u.jobs)
			s.applying.Store(0)
			close(u.applied)
		}
	}
}

// apply starts, restarts and stops jobs to match jobs.
func (s *Scheduler) apply(ctx context.Context, running map[string]*jobRunner, jobs []*Job) {
	want := map[string]*Job{}
	for _, j := range jobs {
		want[j.Name] = j
	}
	for name, jr := range running {
		if j, ok := want[name]; !ok || j.Fingerprint != jr.job.Fingerprint {
			jr.forget = true // a changed job may lose targets: start its series afresh
			jr.cancel()
			<-jr.done
			delete(running, name)
		}
	}
	for _, j := range jobs {
		if _, ok := running[j.Name]; ok {
			continue
		}
		jr := &jobRunner{s: s, job: j, done: make(chan struct{})}
		jr.progress.s = s
		var jctx context.Context
		jctx, jr.cancel = context.WithCancel(ctx)
		running[j.Name] = jr
		go jr.run(jctx) // owned: Run waits on jr.done
	}
	snap := make([]*jobRunner, 0, len(running))
	for _, jr := range running {
		snap = append(snap, jr)
	}
	s.jobs.Store(&snap)
}

// jobRunner follows one job's targets.
type jobRunner struct {
	s        *Scheduler
	job      *Job
	cancel   context.CancelFunc
	done     chan struct{}
	forget   bool // the job was removed or changed: forget its series when stopping
	loops    map[string]*loop
	progress progress // read by Health
}

func (jr *jobRunner) run(ctx context.Context) {
	defer close(jr.done)
	jr.loops = map[string]*loop{}
	sets := make(chan []probe.Target, 1)
	srcDone := make(chan error, 1)
	go func() { // owned: waited for below
		srcDone <- jr.job.Source.Run(ctx, func(ts []probe.Target) {
			// Latest set wins: replace a set not yet taken.
			for {
				select {
				case sets <- ts:
					return
				default:
				}
				select {
				case <-sets:
				default:
				}
			}
		})
	}()
	for {
		select {
		case ts := <-sets:
			jr.progress.applying.Store(jr.s.stamp())
			jr.apply(ctx, ts)
			jr.progress.applying.Store(0)
		case err := <-srcDone:
			if err != nil && ctx.Err() == nil {
				jr.s.log.Error("target source failed; keeping its last targets", "job", jr.job.Name, "err", err)
			}
			srcDone = nil // a nil channel never fires: wait for ctx
		case <-ctx.Done():
			if srcDone != nil {
				<-srcDone
			}
			jr.stopAll()
			return
		}
	}
}

func (jr *jobRunner) stopAll() {
	for _, l := range jr.loops {
		l.halt()
	}
	jr.progress.loops.Store(0)
	for key, l := range jr.loops {
		l.wait()
		if jr.forget {
			jr.s.sink.Forget(jr.job, l.target)
		}
		delete(jr.loops, key)
	}
	if jr.forget {
		jr.s.sink.Targets(jr.job, -1)
	}
}

// apply diffs the new target set against the running loops.
func (jr *jobRunner) apply(ctx context.Context, ts []probe.Target) {
	want := make(map[string]probe.Target, len(ts))
	for _, t := range ts {
		if _, dup := want[t.Name]; !dup {
			want[t.Name] = t
		}
	}
	var gone []*loop
	for name, l := range jr.loops {
		if t, ok := want[name]; !ok || t.NetNS != l.target.NetNS || t.Host != l.target.Host || t.Port != l.target.Port {
			l.halt()
			gone = append(gone, l)
			delete(jr.loops, name)
		}
	}
	for _, l := range gone {
		l.wait()
		jr.s.sink.Forget(jr.job, l.target)
	}
	var fresh []*loop
	for _, t := range ts {
		if _, ok := jr.loops[t.Name]; ok {
			continue
		}
		l, err := newLoop(ctx, jr.job, t)
		if err != nil {
			jr.s.log.Warn("cannot probe target; skipped", "job", jr.job.Name, "target", t.Name, "err", err)
			continue
		}
		l.sink = jr.s.sink.Target(jr.job, t)
		l.progress = &jr.progress
		l.stall = jr.s.stall
		jr.loops[t.Name] = l
		fresh = append(fresh, l)
	}
	for _, l := range fresh {
		l.start(rand.N(jr.job.Interval))
	}
	if len(fresh) > 0 {
		// A new loop fires within an interval: Health measures from here.
		jr.progress.started.Store(jr.s.stamp())
	}
	jr.progress.loops.Store(int64(len(jr.loops)))
	jr.s.sink.Targets(jr.job, len(jr.loops))
}

// loop probes one target every interval.
type loop struct {
	job      *Job
	target   probe.Target
	sink     TargetSink
	progress *progress // the job's, for Health
	// ctx is the job's; a loop has no context of its own (at 10k targets a
	// cancelCtx per loop, with its Done channel and children map, was a
	// fifth of the live heap): halt cancels the attempts in flight through
	// their slots, and the Background through bgCancel.
	ctx      context.Context
	bgCancel context.CancelFunc
	stall    *stall.Detector // nil: no stall detection

	mu      sync.Mutex
	timer   *time.Timer
	next    time.Time // when the current firing is due
	stopped bool
	free    []*slot // slots not in an attempt
	all     []*slot
	wg      sync.WaitGroup // attempts in flight and the Background
}

// slot is one prober of a loop with the result of its last attempt: the
// Result lives here rather than escaping to the heap on every attempt.
type slot struct {
	p      probe.Prober
	r      probe.Result
	cancel context.CancelFunc // of the attempt in flight; guarded by loop.mu
}

func newLoop(ctx context.Context, job *Job, t probe.Target) (*loop, error) {
	n := max(job.Concurrency, 1)
	l := &loop{job: job, target: t}
	for range n {
		p, err := job.New(t)
		if err != nil {
			for _, sl := range l.all {
				sl.p.Close()
			}
			return nil, fmt.Errorf("scheduler: %w", err)
		}
		l.all = append(l.all, &slot{p: p})
	}
	l.free = append(make([]*slot, 0, n), l.all...)
	l.ctx = ctx
	return l, nil
}

func (l *loop) start(offset time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next = time.Now().Add(offset)
	l.timer = time.AfterFunc(offset, l.fire)
	if bg := l.job.Background; bg != nil {
		var ctx context.Context
		ctx, l.bgCancel = context.WithCancel(l.ctx)
		l.wg.Go(func() { bg(ctx, l.target, l.sink) }) // owned: wait() waits for it
	}
}

// fire runs in the timer's goroutine: it schedules the next firing first
// (so attempts longer than the interval can overlap), then makes one attempt
// on a free prober.
func (l *loop) fire() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	late := now.Sub(l.next)
	iv := l.job.Interval
	l.next = l.next.Add(iv)
	skipped := 0
	if !l.next.After(now) {
		// Fell behind by whole intervals (a paused process): skip them.
		k := now.Sub(l.next)/iv + 1
		l.next = l.next.Add(k * iv)
		skipped = int(k)
	}
	l.timer.Reset(l.next.Sub(now))
	l.progress.mark(&l.progress.fired)
	var sl *slot
	// A firing more than a tenth of the interval late means the process
	// was stalled (CPU starvation, a paused VM): every loop's timer is now
	// due at once, and starting them all would turn the stall into a burst
	// of thousands of simultaneous attempts. Skip it instead (an overrun);
	// the next firings keep their spread offsets.
	if n := len(l.free); n > 0 && late <= iv/10 {
		sl = l.free[n-1]
		l.free = l.free[:n-1]
		l.wg.Add(1)
	}
	l.mu.Unlock()

	l.sink.Scheduled(late)
	if sl == nil {
		skipped++
	}
	if skipped > 0 {
		l.sink.Overrun(skipped)
	}
	if sl == nil {
		return
	}
	defer l.wg.Done()
	// The attempt's stall window opens before its deadline is made: a
	// stop in between eats the attempt's time, and must count as its stall.
	var start time.Time
	if l.stall != nil {
		start = l.stall.Now()
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.job.Timeout)
	testHookAttemptCtx()
	l.mu.Lock()
	if l.stopped {
		cancel() // halted between the firing and now
	}
	sl.cancel = cancel
	l.mu.Unlock()
	// A panicking probe (a library choking on a peer's bytes) is one
	// failed attempt, never a dead agent.
	sl.r = probe.SafeProbe(ctx, sl.p)
	if sl.r.Target == "" {
		sl.r.Target = l.target.Name
	}
	if sl.r.Kind == "" {
		sl.r.Kind = l.job.Kind
	}
	l.progress.mark(&l.progress.ended)
	if l.stall != nil {
		// The prober not running during the attempt (stopped, throttled,
		// paused) spoils its timings and its verdict: discard it.
		if st, stalled := l.stall.Check(start, l.stall.Now()); stalled {
			stall.Mark(&sl.r, st)
		}
	}
	l.mu.Lock()
	sl.cancel = nil
	halted := l.stopped
	l.mu.Unlock()
	cancel()
	if !halted && l.ctx.Err() == nil && sl.r.Reason != probe.ReasonCanceled {
		// Not cut short by the scheduler (that is not a network failure).
		l.sink.Result(&sl.r)
	}
	if f, ok := sl.p.(Follower); ok {
		f.Followup(&sl.r)
	}
	l.mu.Lock()
	l.free = append(l.free, sl)
	l.mu.Unlock()
}

// halt stops future firings and cancels the attempts in flight.
func (l *loop) halt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
	for _, sl := range l.all {
		if sl.cancel != nil {
			sl.cancel()
		}
	}
	if l.bgCancel != nil {
		l.bgCancel()
	}
}

// wait waits for the attempts in flight and closes the probers.
func (l *loop) wait() {
	l.wg.Wait()
	var errs []error
	for _, sl := range l.all {
		errs = append(errs, sl.p.Close())
	}
	_ = errors.Join(errs...)
}
