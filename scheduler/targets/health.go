package targets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultBlindAfter is how long a source may go without a view of its
// targets (not synced yet, or its watch, lookup or read failing) before
// Health logs a warning.
const DefaultBlindAfter = 15 * time.Second

// Health tracks whether each running discovery source (file_sd, DNS,
// Kubernetes) sees its targets, so that a blind source is seen: it logs a
// WARN when a source has not synced, or has failed, for longer than
// BlindAfter and an INFO when it recovers; it counts every failed attempt
// per job and source; and it says whether every source has synced once
// (readiness). A nil *Health tracks nothing.
//
// A source calls Start when it starts running, then OK after every attempt
// that gave it a current view (a list, a watch established, a lookup, a
// file read) and Error after every one that failed. A source that keeps
// failing keeps probing its last targets: blindness is reported, not
// acted on.
type Health struct {
	// Log receives the warnings and recoveries; nil: discarded.
	Log *slog.Logger
	// BlindAfter is how long a source may be without a view before the
	// warning; 0: DefaultBlindAfter.
	BlindAfter time.Duration

	mu      sync.Mutex
	running map[*SourceStatus]struct{}
	errors  map[sourceKey]uint64
	expect  map[string]int // per job, how many sources its config has
}

type sourceKey struct{ job, source string }

// SourceStatus is one running source's state; its methods are safe on a
// nil receiver (a source built without a Health).
type SourceStatus struct {
	h                  *Health
	job, source, name  string
	start              time.Time
	synced, ok         bool
	since              time.Time // when the current blind spell began
	lastErr            error
	warned, stopped    bool
	timer              *time.Timer
	errorsSinceHealthy int
}

func (h *Health) blindAfter() time.Duration {
	if h.BlindAfter > 0 {
		return h.BlindAfter
	}
	return DefaultBlindAfter
}

func (h *Health) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

// Start registers a running source of job: source is its kind ("file_sd",
// "dns", "kubernetes": a label value), name says which one in logs (a DNS
// name, a role and namespaces). The source stays registered until ctx is
// done, also after a Run that failed for good (it stays blind then).
func (h *Health) Start(ctx context.Context, job, source, name string) *SourceStatus {
	if h == nil {
		return nil
	}
	now := time.Now()
	s := &SourceStatus{h: h, job: job, source: source, name: name, start: now, since: now}
	h.mu.Lock()
	if h.running == nil {
		h.running = map[*SourceStatus]struct{}{}
		h.errors = map[sourceKey]uint64{}
	}
	h.running[s] = struct{}{}
	if _, ok := h.errors[sourceKey{job, source}]; !ok {
		h.errors[sourceKey{job, source}] = 0
	}
	s.timer = time.AfterFunc(h.blindAfter(), s.blind)
	h.mu.Unlock()
	context.AfterFunc(ctx, s.stop)
	return s
}

// OK records an attempt that gave the source a current view: its first
// marks it synced; after a warning it logs the recovery.
func (s *SourceStatus) OK() {
	if s == nil {
		return
	}
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.stopped || s.ok {
		return
	}
	s.timer.Stop()
	first := !s.synced
	s.ok, s.synced = true, true
	if s.warned {
		args := []any{"job", s.job, "source", s.source, "name", s.name,
			"blind_for", time.Since(s.since).Round(time.Millisecond).String(), "errors", s.errorsSinceHealthy}
		if first {
			h.log().Info("discovery: source synced", args...)
		} else {
			h.log().Info("discovery: source recovered; its targets are current again", args...)
		}
	}
	s.warned, s.lastErr, s.errorsSinceHealthy = false, nil, 0
}

// Error records a failed attempt: it counts it and, if the source had a
// view, starts a blind spell that is warned about once it lasts longer
// than BlindAfter.
func (s *SourceStatus) Error(err error) {
	if s == nil {
		return
	}
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.stopped {
		return
	}
	h.errors[sourceKey{s.job, s.source}]++
	s.lastErr = err
	s.errorsSinceHealthy++
	if s.ok {
		s.ok = false
		s.since = time.Now()
		s.timer.Reset(h.blindAfter())
	}
}

// blind runs when a blind spell has lasted BlindAfter.
func (s *SourceStatus) blind() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.stopped || s.ok || s.warned {
		return
	}
	s.warned = true
	args := []any{"job", s.job, "source", s.source, "name", s.name,
		"for", time.Since(s.since).Round(time.Millisecond).String(), "errors", s.errorsSinceHealthy}
	if s.lastErr != nil {
		args = append(args, "err", s.lastErr.Error())
	}
	if !s.synced {
		h.log().Warn("discovery: source has not synced; its job has no targets from it", args...)
		return
	}
	h.log().Warn("discovery: source lost its view; probing its last known targets", args...)
}

func (s *SourceStatus) stop() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	s.stopped = true
	s.timer.Stop()
	delete(h.running, s)
	for o := range h.running {
		if o.job == s.job {
			return
		}
	}
	// The job's last source stopped (the job was removed or restarts):
	// its error counters go with it, like every other series of a job.
	for k := range h.errors {
		if k.job == s.job {
			delete(h.errors, k)
		}
	}
}

// Expect sets how many sources each job of the running config has (jobs
// without file_sd, DNS or Kubernetes sources need no entry), for Ready: a
// job whose sources have not all started yet is not ready.
func (h *Health) Expect(sources map[string]int) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expect = sources
}

// Ready returns nil once every expected source is running and has synced
// once, else an error naming those that have not.
func (h *Health) Ready() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := map[string]int{}
	var waiting []string
	for s := range h.running {
		if _, ok := h.expect[s.job]; !ok {
			continue // a job on its way out
		}
		n[s.job]++
		if !s.synced {
			waiting = append(waiting, fmt.Sprintf("job %q: %s %s has not synced", s.job, s.source, s.name))
		}
	}
	for job, want := range h.expect {
		if n[job] < want {
			waiting = append(waiting, fmt.Sprintf("job %q: %d of %d target sources started", job, n[job], want))
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	slices.Sort(waiting)
	return errors.New("discovery: " + strings.Join(waiting, "; "))
}

// JobStatus is one job's discovery state, for metrics.
type JobStatus struct {
	Job string
	// Synced: every running source of the job has synced and its last
	// attempt worked.
	Synced bool
	// Errors counts the failed attempts per source kind.
	Errors map[string]uint64
}

// Jobs returns the state of every job with a running source, by name.
func (h *Health) Jobs() []JobStatus {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	byJob := map[string]*JobStatus{}
	for s := range h.running {
		j := byJob[s.job]
		if j == nil {
			j = &JobStatus{Job: s.job, Synced: true, Errors: map[string]uint64{}}
			byJob[s.job] = j
		}
		j.Synced = j.Synced && s.ok
	}
	for k, n := range h.errors {
		if j := byJob[k.job]; j != nil {
			j.Errors[k.source] = n
		}
	}
	out := make([]JobStatus, 0, len(byJob))
	for _, j := range byJob {
		out = append(out, *j)
	}
	slices.SortFunc(out, func(a, b JobStatus) int { return strings.Compare(a.Job, b.Job) })
	return out
}
