package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// fakeProber's attempts last `hold` and honour ctx unless ignoreCtx.
type fakeProber struct {
	w         *world
	target    string
	hold      time.Duration
	ignoreCtx bool
	busy      bool
	closed    bool
}

func (p *fakeProber) Probe(ctx context.Context) probe.Result {
	p.w.mu.Lock()
	if p.busy {
		p.w.concurrentUse = true
	}
	p.busy = true
	p.w.calls[p.target] = append(p.w.calls[p.target], time.Now())
	p.w.inflight++
	p.w.maxInflight = max(p.w.maxInflight, p.w.inflight)
	if dl, ok := ctx.Deadline(); ok {
		p.w.deadlines = append(p.w.deadlines, dl.Sub(time.Now()))
	}
	p.w.mu.Unlock()
	start := time.Now()
	r := probe.Result{Target: p.target, Kind: "fake", Start: start, Reason: probe.ReasonOK}
	if p.ignoreCtx {
		time.Sleep(p.hold)
	} else {
		select {
		case <-time.After(p.hold):
		case <-ctx.Done():
			r.Reason = probe.Classify(probe.InPhase(probe.PhaseHandshake, ctx.Err()))
		}
	}
	r.Duration = time.Since(start)
	p.w.mu.Lock()
	p.busy = false
	p.w.inflight--
	p.w.mu.Unlock()
	return r
}

func (p *fakeProber) Close() error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	p.closed = true
	return nil
}

// world is the fake prober factory and the sink.
type world struct {
	mu            sync.Mutex
	hold          time.Duration
	ignoreCtx     bool
	probers       []*fakeProber
	calls         map[string][]time.Time
	deadlines     []time.Duration
	inflight      int
	maxInflight   int
	concurrentUse bool
	results       map[string][]probe.Result
	late          []time.Duration
	overruns      int
	forgotten     []string
	counts        []int
}

func newWorld(hold time.Duration) *world {
	return &world{hold: hold, calls: map[string][]time.Time{}, results: map[string][]probe.Result{}}
}

func (w *world) New(t probe.Target) (probe.Prober, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := &fakeProber{w: w, target: t.Name, hold: w.hold, ignoreCtx: w.ignoreCtx}
	w.probers = append(w.probers, p)
	return p, nil
}

func (w *world) Target(job *Job, t probe.Target) TargetSink { return &tsink{w: w, name: t.Name} }
func (w *world) Forget(job *Job, t probe.Target) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.forgotten = append(w.forgotten, t.Name)
}
func (w *world) Targets(job *Job, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts = append(w.counts, n)
}

func (w *world) openProbers() (open int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.probers {
		if !p.closed {
			open++
		}
	}
	return open
}

type tsink struct {
	w    *world
	name string
}

func (s *tsink) Scheduled(late time.Duration) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.late = append(s.w.late, late)
}
func (s *tsink) Overrun(n int) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.overruns += n
}
func (s *tsink) Result(r *probe.Result) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.results[s.name] = append(s.w.results[s.name], *r)
}

// pushSource pushes the sets sent on its channel.
type pushSource chan []probe.Target

func (s pushSource) Run(ctx context.Context, update func([]probe.Target)) error {
	for {
		select {
		case ts := <-s:
			update(ts)
		case <-ctx.Done():
			return nil
		}
	}
}

func tgts(names ...string) []probe.Target {
	var out []probe.Target
	for _, n := range names {
		out = append(out, probe.Target{Name: n, Host: "127.0.0.1", Port: 1})
	}
	return out
}

// start runs a scheduler with jobs until the returned stop is called.
func start(t *testing.T, w *world, jobs ...*Job) (s *Scheduler, stop func()) {
	s = New(w, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if err := s.Update(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func job(w *world, name string, src targets.Source) *Job {
	return &Job{Name: name, Kind: "fake", Interval: time.Second, Timeout: 800 * time.Millisecond,
		Concurrency: 1, Source: src, New: w.New, Fingerprint: name}
}

func TestLoopTimingSpreadAndExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(10 * time.Millisecond)
		t0 := time.Now()
		_, stop := start(t, w, job(w, "web", targets.Static(tgts("a:1", "b:1", "c:1", "d:1"))))
		time.Sleep(10*time.Second + 500*time.Millisecond)
		stop()

		firsts := map[time.Duration]bool{}
		for name, calls := range w.calls {
			if len(calls) < 10 || len(calls) > 11 {
				t.Errorf("%s: %d attempts in 10.5s at 1s, want 10 or 11", name, len(calls))
			}
			first := calls[0].Sub(t0)
			if first < 0 || first >= time.Second {
				t.Errorf("%s: first attempt at %s, want within the first interval", name, first)
			}
			firsts[first] = true
			for i := 1; i < len(calls); i++ {
				if d := calls[i].Sub(calls[i-1]); d != time.Second {
					t.Errorf("%s: attempts %d and %d are %s apart, want 1s", name, i-1, i, d)
				}
			}
			if got := len(w.results[name]); got != len(calls) {
				t.Errorf("%s: %d results for %d attempts", name, got, len(calls))
			}
		}
		if len(firsts) < 2 {
			t.Errorf("all 4 targets started at the same offset: no spread")
		}
		for _, l := range w.late {
			if l != 0 {
				t.Errorf("lateness %s under a fake clock, want 0", l)
			}
		}
		if w.overruns != 0 {
			t.Errorf("overruns = %d, want 0", w.overruns)
		}
		for _, d := range w.deadlines {
			if d != 800*time.Millisecond {
				t.Errorf("attempt deadline %s ahead, want the job timeout 800ms", d)
			}
		}
		if n := w.openProbers(); n != 0 {
			t.Errorf("%d probers left open after shutdown", n)
		}
	})
}

func TestTimeoutEndsAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(time.Hour) // never answers on its own
		_, stop := start(t, w, job(w, "slow", targets.Static(tgts("a:1"))))
		time.Sleep(5 * time.Second)
		stop()
		rs := w.results["a:1"]
		if len(rs) < 4 {
			t.Fatalf("%d results in 5s, want >= 4", len(rs))
		}
		for _, r := range rs {
			if r.Reason != probe.ReasonSynTimeout || r.Duration != 800*time.Millisecond {
				t.Errorf("result %s after %s, want syn_timeout after the 800ms timeout", r.Reason, r.Duration)
			}
		}
		if w.overruns != 0 {
			t.Errorf("overruns = %d, want 0", w.overruns)
		}
	})
}

func TestOverrunsCountedNotQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(2500 * time.Millisecond)
		w.ignoreCtx = true // a misbehaving kind that overstays its timeout
		_, stop := start(t, w, job(w, "stuck", targets.Static(tgts("a:1"))))
		time.Sleep(20 * time.Second)
		stop()
		calls := w.calls["a:1"]
		for i := 1; i < len(calls); i++ {
			if d := calls[i].Sub(calls[i-1]); d != 3*time.Second {
				t.Errorf("attempts %d and %d are %s apart, want 3s (next free slot, nothing queued)", i-1, i, d)
			}
		}
		if w.overruns < 12 || w.maxInflight != 1 {
			t.Errorf("overruns %d, max in flight %d; want >= 12 overruns and 1 in flight", w.overruns, w.maxInflight)
		}
	})
}

func TestStaggeredPoolForLongProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(2500 * time.Millisecond)
		j := job(w, "idle", targets.Static(tgts("a:1")))
		j.Concurrency, j.Timeout = 3, 2900*time.Millisecond
		_, stop := start(t, w, j)
		time.Sleep(10 * time.Second)
		stop()
		rs := w.results["a:1"]
		// Attempts start every second and end 2.5s later: 7 or 8 done.
		if len(rs) < 7 {
			t.Errorf("%d results in 10s, want a result every interval after the first 2.5s", len(rs))
		}
		for i := 1; i < len(rs); i++ {
			if d := rs[i].Start.Sub(rs[i-1].Start); d != time.Second {
				t.Errorf("results %d and %d started %s apart, want staggered 1s", i-1, i, d)
			}
		}
		if w.overruns != 0 || w.maxInflight != 3 || w.concurrentUse {
			t.Errorf("overruns %d, max in flight %d, prober used concurrently %v; want 0, 3, false",
				w.overruns, w.maxInflight, w.concurrentUse)
		}
		if len(w.probers) != 3 {
			t.Errorf("%d probers for concurrency 3", len(w.probers))
		}
	})
}

func TestTargetsComeAndGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(300 * time.Millisecond)
		src := make(pushSource)
		_, stop := start(t, w, job(w, "web", src))
		for _, set := range [][]string{{"a:1", "b:1"}, {"b:1", "c:1"}, {}, {"d:1"}} {
			src <- tgts(set...)
			time.Sleep(3 * time.Second)
			synctest.Wait()
			if got := w.openProbers(); got != len(set) {
				t.Errorf("after set %q: %d open probers, want %d", set, got, len(set))
			}
		}
		stop()
		if want := []string{"a:1", "b:1", "c:1"}; !sameSet(w.forgotten, want) {
			t.Errorf("forgotten %q, want %q", w.forgotten, want)
		}
		if want := []int{2, 2, 0, 1}; !slices.Equal(w.counts, want) {
			t.Errorf("target counts %v, want %v", w.counts, want)
		}
		if n := w.openProbers(); n != 0 {
			t.Errorf("%d probers left open", n)
		}
		// A removed target is never probed after its removal.
		for _, c := range w.calls["a:1"] {
			if c.Sub(w.calls["b:1"][0]) > 3*time.Second+time.Second {
				t.Errorf("a:1 probed at %v after removal", c)
			}
		}
	})
}

func TestUpdateKeepsRestartsAndRemovesJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(10 * time.Millisecond)
		a := job(w, "a", targets.Static(tgts("x:1")))
		b := job(w, "b", targets.Static(tgts("y:1")))
		s, stop := start(t, w, a, b)
		time.Sleep(2 * time.Second)
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.probers) != 2 {
			t.Fatalf("%d probers, want 2", len(w.probers))
		}
		// Same a, changed b: a keeps its prober, b gets a new one.
		b2 := job(w, "b", targets.Static(tgts("y:1")))
		b2.Fingerprint = "b-v2"
		w.mu.Unlock()
		if err := s.Update(t.Context(), []*Job{a, b2}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		w.mu.Lock()
		var aClosed, oldBClosed bool
		for i, p := range w.probers {
			switch {
			case p.target == "x:1":
				aClosed = p.closed
			case p.target == "y:1" && i < 2:
				oldBClosed = p.closed
			}
		}
		if len(w.probers) != 3 || aClosed || !oldBClosed {
			t.Errorf("after changing b: %d probers, a's closed %v, old b's closed %v; want 3, false, true",
				len(w.probers), aClosed, oldBClosed)
		}
		if !slices.Equal(w.forgotten, []string{"y:1"}) {
			t.Errorf("a restarted job forgot %q, want its old targets", w.forgotten)
		}
		w.forgotten = nil
		// Remove a: its series are forgotten.
		w.mu.Unlock()
		if err := s.Update(t.Context(), []*Job{b2}); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		if !slices.Equal(w.forgotten, []string{"x:1"}) || !slices.Contains(w.counts, -1) {
			t.Errorf("removing a: forgotten %q, counts %v", w.forgotten, w.counts)
		}
		w.mu.Unlock()
		stop()
		w.mu.Lock()
	})
}

func TestShutdownCancelsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(100 * time.Hour)
		j := job(w, "long", targets.Static(tgts("a:1", "b:1")))
		j.Timeout = 11 * time.Hour
		j.Interval = 6 * time.Hour
		j.Concurrency = 2
		_, stop := start(t, w, j)
		time.Sleep(6 * time.Hour) // both attempts are now in flight
		synctest.Wait()
		w.mu.Lock()
		inflight := w.inflight
		w.mu.Unlock()
		if inflight < 2 {
			t.Errorf("%d attempts in flight, want >= 2", inflight)
		}
		t0 := time.Now()
		stop()
		if d := time.Since(t0); d != 0 {
			t.Errorf("shutdown took %s with attempts in flight, want immediate", d)
		}
		if n := len(w.results["a:1"]) + len(w.results["b:1"]); n != 0 {
			t.Errorf("%d results recorded for attempts cut short by shutdown, want 0", n)
		}
		if n := w.openProbers(); n != 0 {
			t.Errorf("%d probers left open", n)
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

var _ = fmt.Sprint

// TestBackgroundFollowsTheLoop: a job's Background runs once per target
// while the target is probed and ends (ctx canceled, waited for) before the
// target's probers close and its series are forgotten: on target removal,
// on a job change and at shutdown.
func TestBackgroundFollowsTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(10 * time.Millisecond)
		var mu sync.Mutex
		running := map[string]int{}
		var order []string
		bg := func(ctx context.Context, tg probe.Target, sink TargetSink) {
			if sink == nil {
				t.Error("Background without the target's sink")
			}
			mu.Lock()
			running[tg.Name]++
			mu.Unlock()
			<-ctx.Done()
			time.Sleep(time.Second) // winding down takes a while: the loop must wait
			w.mu.Lock()
			for _, p := range w.probers {
				if p.target == tg.Name && p.closed {
					t.Errorf("%s: prober closed before its Background ended", tg.Name)
				}
			}
			if slices.Contains(w.forgotten, tg.Name) {
				t.Errorf("%s: forgotten before its Background ended", tg.Name)
			}
			w.mu.Unlock()
			mu.Lock()
			running[tg.Name]--
			order = append(order, "bg-done "+tg.Name)
			mu.Unlock()
		}
		src := make(pushSource)
		j := job(w, "idle", src)
		j.Background = bg
		s, stop := start(t, w, j)
		src <- tgts("a:1", "b:1")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		mu.Lock()
		if running["a:1"] != 1 || running["b:1"] != 1 {
			t.Errorf("running %v, want one per target", running)
		}
		mu.Unlock()

		src <- tgts("b:1")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		mu.Lock()
		if running["a:1"] != 0 || running["b:1"] != 1 {
			t.Errorf("after a:1 went: running %v", running)
		}
		mu.Unlock()
		w.mu.Lock()
		if !slices.Equal(w.forgotten, []string{"a:1"}) {
			t.Errorf("forgotten %v", w.forgotten)
		}
		w.mu.Unlock()

		// A changed job restarts: the old Background ends before Update returns.
		j2 := job(w, "idle", targets.Static(tgts("c:1")))
		j2.Fingerprint = "changed"
		j2.Background = bg
		if err := s.Update(t.Context(), []*Job{j2}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if running["b:1"] != 0 {
			t.Errorf("b:1's Background still running after its job changed")
		}
		mu.Unlock()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		stop()
		mu.Lock()
		defer mu.Unlock()
		for name, n := range running {
			if n != 0 {
				t.Errorf("%s: %d Backgrounds running after shutdown", name, n)
			}
		}
		if len(order) != 3 {
			t.Errorf("Backgrounds ended: %v, want a:1, b:1, c:1", order)
		}
		if n := w.openProbers(); n != 0 {
			t.Errorf("%d probers open", n)
		}
	})
}

// TestNoAttemptWhileTargetsAreAdded: a set of new targets starts firing
// only once every one of its loops is made. Making 10,000 probers, sinks
// and series is a burst of work (and of first-touched memory, whose page
// faults are dear in a VM); firings that overlapped it ran slow, piled up
// behind the raw socket's send lock, and each held a grown stack: 7,000
// goroutines and 70 MiB at the start of 10k SYN targets.
func TestNoAttemptWhileTargetsAreAdded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(time.Millisecond)
		j := job(w, "web", nil)
		j.Interval = 100 * time.Millisecond
		var lastMade time.Time
		j.New = func(tg probe.Target) (probe.Prober, error) {
			time.Sleep(5 * time.Millisecond) // making this prober takes a while
			lastMade = time.Now()
			return w.New(tg)
		}
		var names []string
		for i := range 100 {
			names = append(names, fmt.Sprintf("t%d:1", i))
		}
		j.Source = targets.Static(tgts(names...))
		_, stop := start(t, w, j)
		time.Sleep(time.Second)
		stop()
		var first time.Time
		for _, calls := range w.calls {
			if first.IsZero() || calls[0].Before(first) {
				first = calls[0]
			}
		}
		if first.IsZero() {
			t.Fatal("no attempt made")
		}
		if first.Before(lastMade) {
			t.Errorf("first attempt %v before the last of 100 probers was made: targets fired while others were still being added", lastMade.Sub(first))
		}
		if len(w.calls) != 100 {
			t.Errorf("%d targets probed, want 100", len(w.calls))
		}
	})
}
