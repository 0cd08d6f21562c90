// Package status keeps why attempts failed, in always-on mode: a bounded
// history per (job, target), a status page at /, a JSON query API and a
// failure log. It is a scheduler.Sink; probe serve feeds it beside the
// Prometheus exporter (scheduler.Tee).
//
// History. Every target keeps its last N attempts in a ring of fixed-size
// 12-byte entries (start, duration, handshake, reason, phase, SYN
// retransmits, whether the attempt met the job's expectation), allocated
// once when the target appears. Evidence is kept for the attempts that were
// not plain successes (degraded, failed, prober faults): their lines go to a
// per-target ring of N evidence lines that is only allocated when the target
// first fails, so a healthy target pays for its N entries and nothing else.
// Beside the ring, the last K failures are kept whole (every timing, the
// addresses, up to MaxEvidenceLines lines of evidence) for longer than the
// ring lasts. Recording an attempt copies into that reused storage: no
// allocation per attempt (evidence strings are immutable and are kept as
// they are).
//
// Verdict. The newest attempt decides: a prober fault makes the target's
// state unknown (prober_fault), an attempt that missed the job's
// expectation makes it failing; otherwise it is degraded when the window
// holds a failure or a degraded success, else ok. Availability over the
// window counts attempts that met the expectation among those that were not
// prober faults: a prober fault is never a target failure.
//
// Failure log. One structured line per streak event, not per attempt: the
// first failure of a streak, a change of reason, a summary every
// SummaryEvery while it lasts and a recovery line (see faillog.go). At debug
// level every attempt is logged too.
package status

import (
	"cmp"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

// Defaults of Options.
const (
	DefaultAttempts     = 64
	DefaultFailures     = 8
	DefaultSummaryEvery = 5 * time.Minute
	// MaxEvidenceLines bounds the evidence kept per attempt; MaxEvidenceLen
	// bounds one line.
	MaxEvidenceLines = 15
	MaxEvidenceLen   = 1024
)

// Options tune a Status.
type Options struct {
	// Attempts is N, the attempts kept per target (0: no history; the
	// failure log still runs).
	Attempts int
	// Failures is K, the failures kept whole per target.
	Failures int
	// SummaryEvery is how often the failure log summarises a streak.
	SummaryEvery time.Duration
	// Log receives the failure log (nil: discarded).
	Log *slog.Logger
	// Node names this agent on the page (the node name, or the host name).
	Node string
	// Now is the clock (nil: time.Now); tests use testing/synctest instead.
	Now func() time.Time
}

// Status is a scheduler.Sink that keeps the history of every target.
type Status struct {
	o   Options
	log *slog.Logger

	mu      sync.RWMutex
	jobs    map[string]*jobState
	targets map[key]*target
}

type key struct{ job, target string }

var nan = math.NaN()

type jobState struct {
	name, kind string
	expectFail bool
	n          int // targets the job probes now
}

// New returns a Status; zero fields of o take their defaults, except
// Attempts, where 0 means no history.
func New(o Options) *Status {
	if o.Attempts < 0 {
		o.Attempts = 0
	}
	if o.Failures <= 0 {
		o.Failures = DefaultFailures
	}
	if o.SummaryEvery <= 0 {
		o.SummaryEvery = DefaultSummaryEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Status{o: o, log: log, jobs: map[string]*jobState{}, targets: map[key]*target{}}
}

// HistoryEnabled reports whether attempts are kept (Attempts > 0).
func (s *Status) HistoryEnabled() bool { return s.o.Attempts > 0 }

// Target implements scheduler.Sink.
func (s *Status) Target(job *scheduler.Job, t probe.Target) scheduler.TargetSink {
	tg := &target{
		s:          s,
		job:        job.Name,
		kind:       job.Kind,
		name:       t.Name,
		expectFail: job.Expect.Fail,
		expect:     job.Expect,
		ring:       make([]entry, s.o.Attempts),
	}
	// Write the ring once now, while the target is being added: a fresh
	// heap page is only mapped at its first write, and that page fault is
	// dear in a VM (10 µs and more here). Left to the target's first
	// attempt, 10,000 targets' rings faulted in during their first second
	// of attempts, which then ran slow and piled up (TestRingFaultedIn).
	clear(tg.ring)
	s.mu.Lock()
	js, ok := s.jobs[job.Name]
	if !ok {
		js = &jobState{name: job.Name}
		s.jobs[job.Name] = js
	}
	js.kind, js.expectFail = job.Kind, job.Expect.Fail
	s.targets[key{job.Name, t.Name}] = tg
	s.mu.Unlock()
	return tg
}

// Forget implements scheduler.Sink: the target's history goes with it; a
// streak in progress is closed with a last line.
func (s *Status) Forget(job *scheduler.Job, t probe.Target) {
	k := key{job.Name, t.Name}
	s.mu.Lock()
	tg := s.targets[k]
	delete(s.targets, k)
	s.mu.Unlock()
	if tg != nil {
		tg.forgotten()
	}
}

// Targets implements scheduler.Sink.
func (s *Status) Targets(job *scheduler.Job, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 0 {
		delete(s.jobs, job.Name)
		return
	}
	js, ok := s.jobs[job.Name]
	if !ok {
		js = &jobState{name: job.Name}
		s.jobs[job.Name] = js
	}
	js.kind, js.expectFail, js.n = job.Kind, job.Expect.Fail, n
}

// entry is one attempt in a ring: 12 bytes.
type entry struct {
	start  uint32 // milliseconds since target.base
	dur    uint16 // packed microseconds (packDur)
	hs     uint16 // handshake, packed microseconds; 0 if none completed
	reason uint8  // index in probe.Reasons
	phase  uint8  // index in phases
	retx   uint8
	flags  uint8 // flagMet | evidence line count << 4
}

const (
	flagUsed = 1 << 0
	flagMet  = 1 << 1
)

// phases are the phases an entry can name; index 0 is unknown.
var phases = []probe.Phase{"", probe.PhaseSetup, probe.PhaseResolve, probe.PhaseHandshake, probe.PhaseSend,
	probe.PhaseReply, probe.PhaseApp, probe.PhaseIdle, probe.PhaseKeepalive, probe.PhaseDone}

func phaseIndex(p probe.Phase) uint8 {
	if i := slices.Index(phases, p); i > 0 {
		return uint8(i)
	}
	return 0
}

var reasonIndex = func() map[probe.Reason]uint8 {
	m := make(map[probe.Reason]uint8, len(probe.Reasons))
	for i, d := range probe.Reasons {
		m[d.Reason] = uint8(i)
	}
	return m
}()

// reasonClass is probe.Reasons[i].Class, by index: a summary classifies
// every entry of every ring.
var reasonClass = func() []probe.Class {
	c := make([]probe.Class, len(probe.Reasons))
	for i, d := range probe.Reasons {
		c[i] = d.Class
	}
	return c
}()

// entryClass is cellClass of an entry without looking its reason up.
func entryClass(e entry) probe.Class {
	c := probe.ClassFailure
	if int(e.reason) < len(reasonClass) {
		c = reasonClass[e.reason]
	}
	switch {
	case c == probe.ClassProber:
		return probe.ClassProber
	case e.flags&flagMet == 0:
		return probe.ClassFailure
	case c == probe.ClassDegraded:
		return probe.ClassDegraded
	}
	return probe.ClassOK
}

func reasonOf(i uint8) probe.Reason {
	if int(i) < len(probe.Reasons) {
		return probe.Reasons[i].Reason
	}
	return probe.ReasonOther
}

// packDur packs d into 16 bits: microseconds with an 11-bit mantissa and a
// 5-bit exponent, exact below 2.048 ms, within 0.1% above, saturating at
// about 50 days.
func packDur(d time.Duration) uint16 {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < 2048 {
		return uint16(us)
	}
	e := uint64(0)
	for us >= 2048 {
		us >>= 1
		e++
	}
	if e > 31 {
		return 0xffff
	}
	return uint16(e<<11 | us&0x7ff) // us is in [1024, 2047]: its top bit is kept
}

func unpackDur(p uint16) time.Duration {
	e := p >> 11
	m := uint64(p & 0x7ff)
	if e == 0 {
		return time.Duration(m) * time.Microsecond
	}
	// The middle of the rounding interval.
	return time.Duration((m<<e)+(uint64(1)<<(e-1))) * time.Microsecond
}

// failure is one failed attempt kept whole.
type failure struct {
	seq      uint64
	start    time.Time
	dur      time.Duration
	reason   probe.Reason
	phase    probe.Phase
	retx     int
	timings  probe.Timings
	local    netip.AddrPort
	remote   netip.AddrPort
	evidence []string // reused: copied into, never reallocated once grown
}

// target is the recorder and the history of one (job, target).
type target struct {
	s          *Status
	job, kind  string
	name       string
	expectFail bool
	expect     probe.Expectation

	mu   sync.Mutex
	base int64   // unix milliseconds entry.start counts from
	ring []entry // N slots
	next int     // slot of the next attempt
	seq  uint64  // attempts recorded so far

	// bad holds what only a target that failed needs; allocated at its
	// first attempt that was not a plain success, then reused.
	bad *badState
}

// badState is the part of a target's history that only failures use.
type badState struct {
	// Evidence of the ring's entries: evLines is a ring of N lines,
	// evStart[slot] the absolute line number of the slot's first line.
	evLines   []string
	evStart   []uint32
	evWritten uint32
	// evLast is the seq of the newest attempt that wrote evidence: once the
	// ring has moved a whole turn past it, no entry refers to evLines any
	// more, and they are dropped (a target that failed, or retransmitted a
	// SYN, once at start does not keep them for good).
	evLast uint64

	fails    []failure // the last K failures, a ring
	failNext int

	streak streak // the failure log's state (faillog.go)
}

// Scheduled implements scheduler.TargetSink.
func (t *target) Scheduled(time.Duration) {}

// Overrun implements scheduler.TargetSink.
func (t *target) Overrun(int) {}

// met reports whether r met the job's expectation; prober faults never do
// and never fail it (see Class).
func (t *target) met(r *probe.Result) bool {
	met, _ := t.expect.Judge(r)
	return met
}

// cellClass is the class an attempt is shown with: prober faults are the
// prober's; an attempt that missed the expectation is a failure (for an
// expect: fail job, a handshake that worked); a degraded success stays
// degraded.
func cellClass(reason probe.Reason, met bool) probe.Class {
	c := reason.Class()
	switch {
	case c == probe.ClassProber:
		return probe.ClassProber
	case !met:
		return probe.ClassFailure
	case c == probe.ClassDegraded:
		return probe.ClassDegraded
	}
	return probe.ClassOK
}

// Result implements scheduler.TargetSink. It copies r into the target's
// reused storage and returns; the failure log's line, if any, is written
// after the lock is released.
func (t *target) Result(r *probe.Result) {
	met := t.met(r)
	class := cellClass(r.Reason, met)
	t.mu.Lock()
	t.seq++
	if class != probe.ClassOK && t.bad == nil {
		t.bad = &badState{}
	}
	if len(t.ring) > 0 {
		t.record(r, met, class)
	}
	var ev eventData
	if t.bad != nil {
		if class != probe.ClassOK && class != probe.ClassDegraded {
			t.keepFailure(r)
		}
		// A prober fault says nothing about the target: it neither starts
		// nor ends a streak. Its causes are process- or job-wide (a stall,
		// the SYN budget, a capability) and are logged once there, not once
		// per target: a 150 ms stall spoils every attempt in flight.
		if class != probe.ClassProber {
			ev = t.bad.streak.observe(t.s.o.Now(), t.s.o.SummaryEvery, r.Reason, class)
		}
	}
	t.mu.Unlock()
	t.s.logAttempt(t, r, class, ev)
}

func (t *target) record(r *probe.Result, met bool, class probe.Class) {
	ms := r.Start.UnixMilli()
	if t.seq == 1 || ms < t.base {
		t.rebase(ms)
	}
	if ms-t.base > 1<<31 {
		// 24 days past the base: move the base to the oldest entry kept.
		t.rebase(ms)
	}
	i := t.next
	off := min(ms-t.base, 1<<32-1)
	e := entry{
		start:  uint32(off),
		dur:    packDur(r.Duration),
		reason: reasonIndex[r.Reason],
		phase:  phaseIndex(r.Phase),
		retx:   uint8(min(max(r.Retransmits, 0), 255)),
		flags:  flagUsed,
	}
	if _, ok := reasonIndex[r.Reason]; !ok {
		e.reason = reasonIndex[probe.ReasonOther]
	}
	if met {
		e.flags |= flagMet
	}
	if r.Timings.Handshake > 0 && r.Local.IsValid() {
		e.hs = packDur(r.Timings.Handshake)
		if e.hs == 0 {
			e.hs = 1 // a sub-microsecond handshake still completed
		}
	}
	if class != probe.ClassOK && len(r.Evidence) > 0 {
		b := t.bad
		if b.evLines == nil {
			b.evLines = make([]string, len(t.ring))
			b.evStart = make([]uint32, len(t.ring))
		}
		n := min(len(r.Evidence), MaxEvidenceLines, len(b.evLines))
		b.evStart[i] = b.evWritten
		b.evLast = t.seq
		for _, line := range r.Evidence[:n] {
			b.evLines[b.evWritten%uint32(len(b.evLines))] = clip(line)
			b.evWritten++
		}
		e.flags |= uint8(n) << 4
	}
	t.ring[i] = e
	t.next = (i + 1) % len(t.ring)
	if b := t.bad; b != nil && b.evLines != nil && t.seq-b.evLast >= uint64(len(t.ring)) {
		b.evLines, b.evStart, b.evWritten = nil, nil, 0
	}
}

// rebase moves the time base to ms or to the oldest entry, whichever is
// earlier, and shifts the entries.
func (t *target) rebase(ms int64) {
	nb := ms
	for _, e := range t.ring {
		if e.flags&flagUsed != 0 {
			nb = min(nb, t.base+int64(e.start))
		}
	}
	for i, e := range t.ring {
		if e.flags&flagUsed != 0 {
			t.ring[i].start = uint32(min(max(t.base+int64(e.start)-nb, 0), 1<<32-1))
		}
	}
	t.base = nb
}

func clip(s string) string {
	if len(s) > MaxEvidenceLen {
		return strings.Clone(s[:MaxEvidenceLen]) + "…"
	}
	return s
}

func (t *target) keepFailure(r *probe.Result) {
	k := t.s.o.Failures
	b := t.bad
	// fails grows as failures come (append), up to k: a target that failed
	// once, or met one prober fault (a stall spoils every target's attempt
	// in flight), holds one, not room for k.
	var f *failure
	if len(b.fails) < k {
		b.fails = append(b.fails, failure{})
		f = &b.fails[len(b.fails)-1]
	} else {
		f = &b.fails[b.failNext]
		b.failNext = (b.failNext + 1) % k
	}
	n := min(len(r.Evidence), MaxEvidenceLines)
	old := f.evidence
	*f = failure{
		seq: t.seq, start: r.Start, dur: r.Duration, reason: r.Reason, phase: r.Phase,
		retx: r.Retransmits, timings: r.Timings, local: r.Local, remote: r.Remote,
		evidence: old[:0],
	}
	for _, line := range r.Evidence[:n] {
		f.evidence = append(f.evidence, clip(line))
	}
	clear(f.evidence[len(f.evidence):cap(f.evidence)]) // drop the strings of an older failure
}

// Attempt is one attempt of a target's history, as the page and the API
// show it.
type Attempt struct {
	Seq         uint64 // 1 for the target's first attempt
	Start       time.Time
	Duration    time.Duration
	Reason      probe.Reason
	Class       probe.Class // as shown: see cellClass
	Phase       probe.Phase
	Met         bool // met the job's expectation
	Handshake   time.Duration
	Retransmits int
	Evidence    []string
	// EvidenceEvicted: the attempt had evidence, but newer attempts'
	// evidence took its place (see the target's last failures).
	EvidenceEvicted bool
}

// Failure is one of a target's last failures, kept whole.
type Failure struct {
	Seq         uint64
	Start       time.Time
	Duration    time.Duration
	Reason      probe.Reason
	Class       probe.Class
	Phase       probe.Phase
	Retransmits int
	Timings     probe.Timings
	Local       netip.AddrPort
	Remote      netip.AddrPort
	Evidence    []string
}

// Verdict is a target's current state.
type Verdict string

// The verdicts, worst first.
const (
	VerdictFailing     Verdict = "failing"      // the newest attempt missed the expectation
	VerdictProberFault Verdict = "prober_fault" // the newest attempt was the prober's fault: state unknown
	VerdictDegraded    Verdict = "degraded"     // the newest attempt met it; the window holds failures or slow handshakes
	VerdictPending     Verdict = "pending"      // no attempt yet
	VerdictOK          Verdict = "ok"           // every attempt in the window was a plain success
)

// Verdicts lists the verdicts worst first.
var Verdicts = []Verdict{VerdictFailing, VerdictProberFault, VerdictDegraded, VerdictPending, VerdictOK}

func (v Verdict) rank() int { return slices.Index(Verdicts, v) }

// Summary is a target's state without its attempts.
type Summary struct {
	Job, Kind, Target string
	ExpectFail        bool
	Verdict           Verdict
	Attempts          int // in the window
	Failed            int // missed the expectation
	Degraded          int
	ProberFaults      int
	Availability      float64 // met / (attempts - prober faults); NaN when there are none
	Total             uint64  // attempts since the target appeared
	Last              Attempt
	HasLast           bool
	// FailingSince is the start of the current failure streak (zero when
	// none); StreakAttempts its length.
	FailingSince   time.Time
	StreakAttempts int
	reasons        uint64 // bit per reason index seen in the window
	rank           int    // of Verdict, for sorting
}

// HasReason reports whether an attempt of the window ended with r.
func (s *Summary) HasReason(r probe.Reason) bool {
	i, ok := reasonIndex[r]
	return ok && s.reasons&(1<<i) != 0
}

func (t *target) at(slot int) (entry, bool) {
	e := t.ring[slot]
	return e, e.flags&flagUsed != 0
}

// slots returns the used slots oldest first (at most N).
func (t *target) slots(yield func(slot int) bool) {
	n := len(t.ring)
	for k := range n {
		i := (t.next + k) % n
		if _, ok := t.at(i); ok && !yield(i) {
			return
		}
	}
}

// attempt renders slot i; the caller holds t.mu.
func (t *target) attempt(i int, evidence bool) Attempt {
	e := t.ring[i]
	met := e.flags&flagMet != 0
	r := reasonOf(e.reason)
	a := Attempt{
		Start:       time.UnixMilli(t.base + int64(e.start)),
		Duration:    unpackDur(e.dur),
		Reason:      r,
		Class:       entryClass(e),
		Phase:       phases[min(int(e.phase), len(phases)-1)],
		Met:         met,
		Retransmits: int(e.retx),
	}
	if e.hs != 0 {
		a.Handshake = unpackDur(e.hs)
	}
	// The slot's sequence number: the newest slot is t.seq.
	age := (t.next - 1 - i + len(t.ring)) % len(t.ring)
	a.Seq = t.seq - uint64(age)
	if n := uint32(e.flags >> 4); n > 0 && evidence {
		b := t.bad
		st := b.evStart[i]
		if b.evWritten-st > uint32(len(b.evLines)) {
			a.EvidenceEvicted = true
		} else {
			a.Evidence = make([]string, n)
			for k := range n {
				a.Evidence[k] = b.evLines[(st+k)%uint32(len(b.evLines))]
			}
		}
	}
	return a
}

// summary computes the target's Summary, with the evidence of its last
// attempt when evidence is set; the caller holds t.mu.
func (t *target) summary(evidence bool) Summary {
	s := Summary{Job: t.job, Kind: t.kind, Target: t.name, ExpectFail: t.expectFail, Total: t.seq, Verdict: VerdictPending}
	newest := -1
	for i := range t.slots {
		e := t.ring[i]
		s.Attempts++
		s.reasons |= 1 << e.reason
		switch entryClass(e) {
		case probe.ClassProber:
			s.ProberFaults++
		case probe.ClassFailure:
			s.Failed++
		case probe.ClassDegraded:
			s.Degraded++
		}
		newest = i
	}
	if n := s.Attempts - s.ProberFaults; n > 0 {
		s.Availability = float64(n-s.Failed) / float64(n)
	} else {
		s.Availability = nan
	}
	if newest >= 0 {
		s.Last, s.HasLast = t.attempt(newest, evidence), true
		switch {
		case s.Last.Class == probe.ClassProber:
			s.Verdict = VerdictProberFault
		case s.Last.Class == probe.ClassFailure:
			s.Verdict = VerdictFailing
		case s.Failed > 0 || s.Degraded > 0:
			s.Verdict = VerdictDegraded
		default:
			s.Verdict = VerdictOK
		}
	} else if t.seq > 0 {
		s.Verdict = VerdictOK // no history kept: the streak decides below
	}
	if t.bad != nil && t.bad.streak.active && t.bad.streak.failing {
		st := &t.bad.streak
		s.FailingSince = st.since
		s.StreakAttempts = st.attempts
		if newest < 0 {
			s.Verdict = VerdictFailing
			if st.class == probe.ClassProber {
				s.Verdict = VerdictProberFault
			}
		}
	}
	return s
}

// History is everything a target keeps.
type History struct {
	Summary
	Attempts []Attempt // oldest first
	Failures []Failure // oldest first
}

func (t *target) history() History {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := History{Summary: t.summary(true)}
	for i := range t.slots {
		h.Attempts = append(h.Attempts, t.attempt(i, true))
	}
	var fails []failure
	var next int
	if t.bad != nil {
		fails, next = t.bad.fails, t.bad.failNext
	}
	k := len(fails)
	for j := range k {
		f := &fails[(next+j)%k]
		h.Failures = append(h.Failures, Failure{
			Seq: f.seq, Start: f.start, Duration: f.dur, Reason: f.reason,
			Class: cellClass(f.reason, false), Phase: f.phase, Retransmits: f.retx, Timings: f.timings,
			Local: f.local, Remote: f.remote, Evidence: slices.Clone(f.evidence),
		})
	}
	return h
}

// Query selects targets; zero fields select everything.
type Query struct {
	Job     string
	Reason  probe.Reason // an attempt of the window ended with it
	Verdict Verdict      // "" any; see also NotOK
	NotOK   bool         // any verdict but ok and pending
	Text    string       // substring of the target's name
	Sort    string       // "worst" (default) or "name"
	Offset  int
	Limit   int // 0: all
}

// JobSummary counts a job's targets by verdict.
type JobSummary struct {
	Name, Kind   string
	ExpectFail   bool
	Targets      int
	ByVerdict    map[Verdict]int
	Attempts     int
	Met          int
	Availability float64
}

// Snapshot is the state of every target at one moment.
type Snapshot struct {
	At      time.Time
	Jobs    []JobSummary
	Total   int       // targets matching the query
	Targets []Summary // the page of them
}

// Query returns the jobs and the targets q selects, worst first.
func (s *Status) Query(q Query) Snapshot {
	s.mu.RLock()
	tgs := make([]*target, 0, len(s.targets))
	for _, t := range s.targets {
		tgs = append(tgs, t)
	}
	jobs := make([]JobSummary, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, JobSummary{Name: j.name, Kind: j.kind, ExpectFail: j.expectFail, ByVerdict: map[Verdict]int{}})
	}
	s.mu.RUnlock()
	slices.SortFunc(jobs, func(a, b JobSummary) int { return strings.Compare(a.Name, b.Name) })
	snap := Snapshot{At: s.o.Now()}
	all := make([]Summary, len(tgs))
	match := make([]*Summary, 0, len(tgs))
	for i, t := range tgs {
		t.mu.Lock()
		all[i] = t.summary(false)
		t.mu.Unlock()
		sum := &all[i]
		if j, ok := slices.BinarySearchFunc(jobs, sum.Job, func(a JobSummary, n string) int { return strings.Compare(a.Name, n) }); ok {
			js := &jobs[j]
			js.Targets++
			js.ByVerdict[sum.Verdict]++
			js.Attempts += sum.Attempts - sum.ProberFaults
			js.Met += sum.Attempts - sum.ProberFaults - sum.Failed
		}
		if q.Job != "" && sum.Job != q.Job ||
			q.Reason != "" && !sum.HasReason(q.Reason) ||
			q.Verdict != "" && sum.Verdict != q.Verdict ||
			q.NotOK && (sum.Verdict == VerdictOK || sum.Verdict == VerdictPending) ||
			q.Text != "" && !strings.Contains(sum.Target, q.Text) {
			continue
		}
		match = append(match, sum)
	}
	for i := range jobs {
		jobs[i].Availability = nan
		if jobs[i].Attempts > 0 {
			jobs[i].Availability = float64(jobs[i].Met) / float64(jobs[i].Attempts)
		}
	}
	byName := func(a, b *Summary) int {
		if c := strings.Compare(a.Job, b.Job); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	}
	if q.Sort == "name" {
		slices.SortFunc(match, byName)
	} else {
		for _, m := range match {
			m.rank = m.Verdict.rank()
		}
		slices.SortFunc(match, func(a, b *Summary) int {
			if c := cmp.Compare(a.rank, b.rank); c != 0 {
				return c
			}
			if c := cmpAvail(a.Availability, b.Availability); c != 0 {
				return c
			}
			return byName(a, b)
		})
	}
	snap.Jobs = jobs
	snap.Total = len(match)
	lo := min(max(q.Offset, 0), len(match))
	hi := len(match)
	if q.Limit > 0 {
		hi = min(lo+q.Limit, hi)
	}
	snap.Targets = make([]Summary, 0, hi-lo)
	for _, m := range match[lo:hi] {
		sum := *m
		if t := s.lookup(sum.Job, sum.Target); t != nil {
			t.mu.Lock()
			sum = t.summary(true) // with the last attempt's evidence
			t.mu.Unlock()
		}
		snap.Targets = append(snap.Targets, sum)
	}
	return snap
}

func (s *Status) lookup(job, name string) *target {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.targets[key{job, name}]
}

// cmpAvail orders lower availability first; no data (NaN) last.
func cmpAvail(a, b float64) int {
	switch an, bn := a != a, b != b; {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	}
	return cmp.Compare(a, b)
}

// History returns one target's history.
func (s *Status) History(job, name string) (History, bool) {
	s.mu.RLock()
	t := s.targets[key{job, name}]
	s.mu.RUnlock()
	if t == nil {
		return History{}, false
	}
	return t.history(), true
}
