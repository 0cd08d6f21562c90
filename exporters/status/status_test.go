package status

import (
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

var t0 = time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)

// res builds a result of attempt i (one per second from t0).
func res(i int, reason probe.Reason, evidence ...string) *probe.Result {
	r := &probe.Result{
		Start: t0.Add(time.Duration(i) * time.Second), Duration: 1500 * time.Microsecond, Reason: reason,
		Phase: probe.PhaseDone, Evidence: evidence,
	}
	if r.Success() {
		r.Timings.Handshake = 300 * time.Microsecond
		r.Local = netip.MustParseAddrPort("10.0.0.1:40000")
		if reason == probe.ReasonSynRetransmitted {
			r.Retransmits = 1
			r.Timings.Handshake = time.Second
		}
	} else {
		r.Phase = probe.PhaseHandshake
		r.Duration = time.Second
	}
	return r
}

func newTarget(s *Status, job, name string, expectFail bool) scheduler.TargetSink {
	j := &scheduler.Job{Name: job, Kind: "connect", Expect: probe.Expectation{Fail: expectFail}}
	s.Targets(j, 1)
	return s.Target(j, probe.Target{Name: name})
}

func TestRingKeepsTheLastNAttemptsWithTheirEvidence(t *testing.T) {
	s := New(Options{Attempts: 8, Failures: 3})
	ts := newTarget(s, "db", "10.96.20.5:5432", false)
	for i := 1; i <= 20; i++ {
		if i%4 == 0 {
			ts.Result(res(i, probe.ReasonSynTimeout, fmt.Sprintf("attempt %d: 3 SYNs, no answer", i), "second line"))
		} else {
			ts.Result(res(i, probe.ReasonOK, "handshake ok"))
		}
	}
	h, ok := s.History("db", "10.96.20.5:5432")
	if !ok {
		t.Fatal("no history")
	}
	if len(h.Attempts) != 8 {
		t.Fatalf("kept %d attempts, want 8", len(h.Attempts))
	}
	for k, a := range h.Attempts {
		i := 13 + k
		if a.Seq != uint64(i) {
			t.Errorf("attempt %d: seq %d, want %d", k, a.Seq, i)
		}
		if want := t0.Add(time.Duration(i) * time.Second); !a.Start.Equal(want) {
			t.Errorf("attempt %d: start %v, want %v", i, a.Start, want)
		}
		if i%4 == 0 {
			want := []string{fmt.Sprintf("attempt %d: 3 SYNs, no answer", i), "second line"}
			if a.Reason != probe.ReasonSynTimeout || a.Met || a.Class != probe.ClassFailure || a.Phase != probe.PhaseHandshake {
				t.Errorf("attempt %d: %+v, want an unmet syn_timeout in handshake", i, a)
			}
			if d := cmp.Diff(want, a.Evidence); d != "" {
				t.Errorf("attempt %d evidence (-want +got):\n%s", i, d)
			}
		} else {
			if a.Reason != probe.ReasonOK || !a.Met || a.Evidence != nil || a.Handshake != 300*time.Microsecond {
				t.Errorf("attempt %d: %+v, want ok with a 300µs handshake and no evidence kept", i, a)
			}
		}
	}
	// The last K=3 failures are kept whole, beyond the ring: 12, 16, 20.
	var seqs []uint64
	for _, f := range h.Failures {
		seqs = append(seqs, f.Seq)
		if len(f.Evidence) != 2 || f.Timings.Handshake != 0 || f.Reason != probe.ReasonSynTimeout {
			t.Errorf("failure %d: %+v", f.Seq, f)
		}
	}
	if d := cmp.Diff([]uint64{12, 16, 20}, seqs); d != "" {
		t.Errorf("failures kept (-want +got):\n%s", d)
	}
	if h.Total != 20 || h.Attempts[7].Seq != 20 {
		t.Errorf("total %d, newest seq %d; want 20, 20", h.Total, h.Attempts[7].Seq)
	}
}

func TestRingEvidenceRollsOverWithoutLying(t *testing.T) {
	// N=4 evidence lines for 4 attempts: a failure with 3 lines followed by
	// one with 3 lines overwrites part of the first; the page must say so,
	// not show the wrong lines.
	s := New(Options{Attempts: 4})
	ts := newTarget(s, "j", "t:1", false)
	ts.Result(res(1, probe.ReasonRefused, "a1", "a2", "a3"))
	ts.Result(res(2, probe.ReasonReset, "b1", "b2", "b3"))
	h, _ := s.History("j", "t:1")
	if !h.Attempts[0].EvidenceEvicted || h.Attempts[0].Evidence != nil {
		t.Errorf("first attempt: evidence %q evicted=%v, want evicted", h.Attempts[0].Evidence, h.Attempts[0].EvidenceEvicted)
	}
	if d := cmp.Diff([]string{"b1", "b2", "b3"}, h.Attempts[1].Evidence); d != "" {
		t.Errorf("second attempt (-want +got):\n%s", d)
	}
	if got := h.Failures[0].Evidence; len(got) != 3 || got[0] != "a1" {
		t.Errorf("the first failure kept whole: %q", got)
	}
}

func TestHostileEvidenceIsBounded(t *testing.T) {
	s := New(Options{Attempts: 4})
	ts := newTarget(s, "j", "t:1", false)
	long := strings.Repeat("x", 10*MaxEvidenceLen)
	ev := make([]string, 100)
	for i := range ev {
		ev[i] = long
	}
	ts.Result(res(1, probe.ReasonAppError, ev...))
	h, _ := s.History("j", "t:1")
	if n := len(h.Failures[0].Evidence); n != MaxEvidenceLines {
		t.Errorf("failure kept %d lines, want %d", n, MaxEvidenceLines)
	}
	if n := len(h.Attempts[0].Evidence); n > 4 {
		t.Errorf("ring kept %d lines for one attempt, more than its N=4 lines", n)
	}
	for _, l := range h.Failures[0].Evidence {
		if len(l) > MaxEvidenceLen+len("…") {
			t.Fatalf("line of %d bytes kept", len(l))
		}
	}
}

func TestPackedDurations(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 2047 * time.Microsecond, 2048 * time.Microsecond,
		3 * time.Millisecond, 215 * time.Microsecond, 1021 * time.Millisecond, 85 * time.Second, time.Hour, 30 * 24 * time.Hour} {
		got := unpackDur(packDur(d))
		if err := math.Abs(float64(got-d)) / math.Max(float64(d), 1); err > 0.001 && got-d > time.Microsecond {
			t.Errorf("%v → %v: error %.4f", d, got, err)
		}
	}
	if got := unpackDur(packDur(1000 * 24 * time.Hour)); got < 40*24*time.Hour {
		t.Errorf("a huge duration should saturate high, got %v", got)
	}
	if packDur(-time.Second) != 0 {
		t.Error("negative durations pack as 0")
	}
}

func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		expectFail bool
		reasons    []probe.Reason
		want       Verdict
		avail      float64 // NaN: none
	}{
		{"no attempt", false, nil, VerdictPending, math.NaN()},
		{"all ok", false, []probe.Reason{"ok", "ok"}, VerdictOK, 1},
		{"failing now", false, []probe.Reason{"ok", "ok", "syn_timeout"}, VerdictFailing, 2.0 / 3},
		{"recovered: degraded while the window holds the failure", false, []probe.Reason{"refused", "ok"}, VerdictDegraded, 0.5},
		{"slow handshakes are degraded", false, []probe.Reason{"ok", "syn_retransmitted"}, VerdictDegraded, 1},
		{"prober fault: unknown, never a failure", false, []probe.Reason{"ok", "prober_stalled"}, VerdictProberFault, 1},
		{"only prober faults: no availability", false, []probe.Reason{"prober_budget", "permission"}, VerdictProberFault, math.NaN()},
		{"expect fail: refused is what is wanted", true, []probe.Reason{"refused", "syn_timeout"}, VerdictOK, 1},
		{"expect fail: a connection that got through fails", true, []probe.Reason{"refused", "ok"}, VerdictFailing, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Attempts: 16})
			ts := newTarget(s, "j", "t:1", tc.expectFail)
			for i, r := range tc.reasons {
				ts.Result(res(i, r, "evidence"))
			}
			sum := s.Query(Query{}).Targets[0]
			if sum.Verdict != tc.want {
				t.Errorf("verdict %s, want %s", sum.Verdict, tc.want)
			}
			if got := sum.Availability; !(got == tc.avail || got != got && tc.avail != tc.avail) {
				t.Errorf("availability %v, want %v", got, tc.avail)
			}
		})
	}
}

func TestQueryFiltersSortsAndPages(t *testing.T) {
	s := New(Options{Attempts: 8})
	feed := func(job, name string, reasons ...probe.Reason) {
		ts := newTarget(s, job, name, false)
		for i, r := range reasons {
			ts.Result(res(i, r, "ev"))
		}
	}
	feed("web", "a:1", "ok", "ok")
	feed("web", "b:1", "ok", "refused")
	feed("web", "c:1", "syn_timeout", "syn_timeout", "ok", "ok")
	feed("db", "d:1", "syn_timeout", "syn_timeout")
	feed("db", "e:1", "ok", "prober_stalled")
	names := func(q Query) []string {
		var out []string
		for _, s := range s.Query(q).Targets {
			out = append(out, s.Job+"/"+s.Target)
		}
		return out
	}
	for _, tc := range []struct {
		q    Query
		want []string
	}{
		// Worst first: failing (lowest availability first), prober fault, degraded, ok.
		{Query{}, []string{"db/d:1", "web/b:1", "db/e:1", "web/c:1", "web/a:1"}},
		{Query{Sort: "name"}, []string{"db/d:1", "db/e:1", "web/a:1", "web/b:1", "web/c:1"}},
		{Query{Job: "web"}, []string{"web/b:1", "web/c:1", "web/a:1"}},
		{Query{Verdict: VerdictFailing}, []string{"db/d:1", "web/b:1"}},
		{Query{NotOK: true, Job: "web"}, []string{"web/b:1", "web/c:1"}},
		{Query{Reason: probe.ReasonSynTimeout}, []string{"db/d:1", "web/c:1"}},
		{Query{Text: "c:"}, []string{"web/c:1"}},
		{Query{Offset: 1, Limit: 2}, []string{"web/b:1", "db/e:1"}},
		{Query{Offset: 9}, nil},
	} {
		if d := cmp.Diff(tc.want, names(tc.q)); d != "" {
			t.Errorf("%+v (-want +got):\n%s", tc.q, d)
		}
	}
	snap := s.Query(Query{Limit: 1})
	if snap.Total != 5 || len(snap.Jobs) != 2 {
		t.Fatalf("total %d jobs %d", snap.Total, len(snap.Jobs))
	}
	db := snap.Jobs[0]
	if db.Name != "db" || db.Targets != 2 || db.ByVerdict[VerdictFailing] != 1 || db.ByVerdict[VerdictProberFault] != 1 {
		t.Errorf("db job: %+v", db)
	}
	// db: d has 2 failures, e 1 ok and a prober fault that does not count.
	if db.Availability != 1.0/3 {
		t.Errorf("db availability %v, want 1/3", db.Availability)
	}
}

func TestForgetDropsTheHistory(t *testing.T) {
	s := New(Options{Attempts: 8})
	j := &scheduler.Job{Name: "j", Kind: "connect"}
	tg := probe.Target{Name: "t:1"}
	s.Target(j, tg).Result(res(1, probe.ReasonOK))
	s.Forget(j, tg)
	if _, ok := s.History("j", "t:1"); ok {
		t.Error("a forgotten target still has a history")
	}
	s.Targets(j, -1)
	if n := len(s.Query(Query{}).Jobs); n != 0 {
		t.Errorf("%d jobs after the job was removed", n)
	}
}

func TestResultAllocatesNothing(t *testing.T) {
	s := New(Options{Attempts: DefaultAttempts})
	ok := newTarget(s, "j", "ok:1", false)
	bad := newTarget(s, "j", "bad:1", false)
	okRes := res(1, probe.ReasonOK, "handshake")
	badRes := res(2, probe.ReasonSynTimeout, "3 SYNs at 0s,1.0s,2.0s; no reply", "conntrack: no entry")
	for range 100 { // fill the rings and the failure slots
		ok.Result(okRes)
		bad.Result(badRes)
	}
	if n := testing.AllocsPerRun(1000, func() { ok.Result(okRes) }); n != 0 {
		t.Errorf("an ok attempt allocates %.1f times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { bad.Result(badRes) }); n != 0 {
		t.Errorf("a failed attempt in a streak allocates %.1f times", n)
	}
}

// TestHistoryMemoryAt10kTargets measures the live heap of 10k targets with
// full rings of successes (the steady state of a healthy fleet): the issue's
// budget is 16 MiB of RSS on top of the serve figure, and the live heap must
// leave room for the GC's headroom (GOGC=50 in serve).
func TestHistoryMemoryAt10kTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 10k rings")
	}
	const n = 10000
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s := New(Options{Attempts: DefaultAttempts})
	j := &scheduler.Job{Name: "bench", Kind: "connect"}
	r := res(0, probe.ReasonOK)
	for i := range n {
		ts := s.Target(j, probe.Target{Name: fmt.Sprintf("127.0.0.1:%d", 20000+i)})
		for k := range DefaultAttempts + 1 {
			r.Start = t0.Add(time.Duration(k) * time.Second)
			ts.Result(r)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	t.Logf("heap %d → %d, total alloc %d", m0.HeapAlloc, m1.HeapAlloc, m1.TotalAlloc-m0.TotalAlloc)
	per := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	t.Logf("live heap per target with %d attempts kept: %.0f bytes; %.2f MiB at 10k", DefaultAttempts, per, per*n/(1<<20))
	if per*n > 11<<20 {
		t.Errorf("history of 10k healthy targets holds %.1f MiB of live heap; with GOGC=50 headroom that exceeds the 16 MiB budget", per*n/(1<<20))
	}
	runtime.KeepAlive(s)
}

// TestFailingTargetMemoryIsBounded measures the worst case: every target
// failing on every attempt with two fresh lines of evidence each (the
// strings are kept as the probe made them), after the rings have wrapped.
func TestFailingTargetMemoryIsBounded(t *testing.T) {
	const n = 1000
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s := New(Options{Attempts: DefaultAttempts})
	j := &scheduler.Job{Name: "bench", Kind: "connect"}
	for i := range n {
		ts := s.Target(j, probe.Target{Name: fmt.Sprintf("127.0.0.1:%d", 20000+i)})
		for k := range 3 * DefaultAttempts {
			ts.Result(res(k, probe.ReasonSynTimeout, "deadline exceeded: no answer in time",
				fmt.Sprintf("%d SYN(s) sent over %d.%02dms: no SYN/ACK, no RST, no ICMP", 1+k%3, 200+k, i%100)))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	per := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	t.Logf("live heap per failing target: %.0f bytes; %.1f MiB at 10k", per, per*10000/(1<<20))
	if per > 16<<10 {
		t.Errorf("a failing target holds %.0f bytes, more than 16 KiB", per)
	}
	runtime.KeepAlive(s)
}

// TestOneProberFaultCostsOneFailure: a stall spoils the attempt in flight
// of every target at once (prober_stalled); each target then keeps that
// one failure, not room for Failures of them (at 10k targets, one stall at
// start held 18 MiB for good).
func TestOneProberFaultCostsOneFailure(t *testing.T) {
	const n = 1000
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s := New(Options{Attempts: DefaultAttempts})
	j := &scheduler.Job{Name: "bench", Kind: "connect"}
	for i := range n {
		ts := s.Target(j, probe.Target{Name: fmt.Sprintf("127.0.0.1:%d", 20000+i)})
		ts.Result(res(0, probe.ReasonProberStalled, "the prober itself stalled during the attempt"))
		for k := 1; k <= DefaultAttempts; k++ {
			ts.Result(res(k, probe.ReasonOK))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	per := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	t.Logf("live heap per target with one prober fault among %d attempts: %.0f bytes", DefaultAttempts+1, per)
	// The ring (about 1 KiB), the failure-log state a bad target gets, and
	// one failure; the evidence ring (1.3 KiB) is dropped once the ring has
	// moved a whole turn past the fault. 5 KiB before failures were kept as
	// they came and that evidence ring for good.
	if per > 2000 {
		t.Errorf("a target with one prober fault holds %.0f bytes, more than 2000", per)
	}
	runtime.KeepAlive(s)
}

// TestEvidenceRingDroppedAfterATurn: a bad attempt's evidence is shown as
// long as the attempt is in the ring, and the evidence ring is let go once
// the ring has moved a whole turn past it; the failure itself stays.
func TestEvidenceRingDroppedAfterATurn(t *testing.T) {
	s := New(Options{Attempts: DefaultAttempts})
	j := &scheduler.Job{Name: "bench", Kind: "syn"}
	ts := s.Target(j, probe.Target{Name: "127.0.0.1:1"}).(*target)
	ts.Result(res(0, probe.ReasonSynRetransmitted, "handshake needed 1 SYN retransmit(s)"))
	for k := 1; k < DefaultAttempts; k++ {
		ts.Result(res(k, probe.ReasonOK))
	}
	h := ts.history()
	if ev := h.Attempts[0].Evidence; len(ev) != 1 || ev[0] != "handshake needed 1 SYN retransmit(s)" {
		t.Fatalf("oldest attempt's evidence %q, want the retransmit line while it is in the ring", ev)
	}
	ts.Result(res(DefaultAttempts, probe.ReasonOK))
	if ts.bad.evLines != nil {
		t.Errorf("evidence ring kept after the ring moved a whole turn past its last bad attempt")
	}
	ts.Result(res(DefaultAttempts+1, probe.ReasonSynTimeout, "no SYN/ACK"))
	h = ts.history()
	if ev := h.Attempts[len(h.Attempts)-1].Evidence; len(ev) != 1 || ev[0] != "no SYN/ACK" {
		t.Errorf("newest attempt's evidence %q after the ring was dropped, want it kept again", ev)
	}
	if len(h.Failures) != 1 || h.Failures[0].Reason != probe.ReasonSynTimeout {
		t.Errorf("failures %+v, want the syn_timeout kept", h.Failures)
	}
}
