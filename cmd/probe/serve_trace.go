//go:build linux

package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/connprobe/connprobe/configs"
	promexp "github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/trace"
	"github.com/connprobe/connprobe/scheduler"
)

// traceLimiter bounds the traces of the whole process, every job and
// target together: one every traceEvery on average, traceBurst at once.
// Each trace's SYNs also draw from the SYN packet budget.
var traceLimiter = rate.NewLimiter(rate.Every(traceEvery), traceBurst)

const (
	traceEvery = 5 * time.Second
	traceBurst = 3
)

// paths is the exporter of the running serve, where traces record their
// path metrics (nil outside serve: not recorded).
var paths atomic.Pointer[promexp.Exporter]

func recordPath(job, target string, hops int, changed bool) {
	if e := paths.Load(); e != nil {
		e.Path(job, target, hops, changed)
	}
}

// pathRecorder receives each trace's hop count and whether the path (the
// responders hop by hop) differs from the target's previous trace.
type pathRecorder func(job, target string, hops int, changed bool)

// withTrace wraps a job's prober factory so that each prober traces the path
// once when its target turns from ok (or from its first attempt) to
// syn_timeout or unreachable in the handshake, at most once per
// min_interval per target and within the process-wide traceLimiter. The
// trace runs after the attempt, inside the job's timeout, which buildJobs
// extends by the trace's budget: the inner attempt keeps its own timeout.
func withTrace(j *configs.Job, nsPath string, newProber func(probe.Target) (probe.Prober, error), rec pathRecorder, log *slog.Logger) (func(probe.Target) (probe.Prober, error), time.Duration) {
	if j.Trace == nil || !j.Trace.Enabled {
		return newProber, 0
	}
	cfg := j.Trace.Config()
	cfg.NetNS = nsPath
	st := &traceState{last: map[string]traceMemo{}}
	return func(t probe.Target) (probe.Prober, error) {
		p, err := newProber(t)
		if err != nil {
			return nil, err
		}
		tcfg := cfg
		if t.NetNS != "" {
			tcfg.NetNS = t.NetNS // a vantage's namespace
		}
		return &tracingProber{Prober: p, job: j.Name, target: t.Name, timeout: j.Timeout.D, every: j.Trace.Every(),
			cfg: tcfg, st: st, rec: rec, log: log}, nil
	}, j.Trace.Budget()
}

// traceState is shared by the probers of one job: per target, the last
// trace's time and path, and whether the last attempt was a success.
type traceState struct {
	mu   sync.Mutex
	last map[string]traceMemo
}

type traceMemo struct {
	at      time.Time
	path    []string
	failing bool // the last attempt was a network failure: no new transition
	seen    bool
}

type tracingProber struct {
	probe.Prober
	job, target string
	timeout     time.Duration
	every       time.Duration
	cfg         trace.Config
	st          *traceState
	rec         pathRecorder
	log         *slog.Logger
}

// Followup passes the result on to the wrapped prober if it follows
// results (scheduler.Follower: a vantage's netns_gone).
func (p *tracingProber) Followup(r *probe.Result) {
	if f, ok := p.Prober.(scheduler.Follower); ok {
		f.Followup(r)
	}
}

// Probe runs the attempt with the job's own timeout, then maybe a trace.
func (p *tracingProber) Probe(ctx context.Context) probe.Result {
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	r := p.Prober.Probe(actx)
	cancel()
	if !p.due(r) {
		return r
	}
	tr := trace.Run(ctx, r.Target, r.Remote, p.cfg)
	if tr.End == trace.EndError && ctx.Err() != nil {
		return r // cut short by shutdown: no verdict
	}
	r.Evidence = append(r.Evidence, "trace: "+tr.Verdict)
	p.st.mu.Lock()
	m := p.st.last[p.target]
	changed := m.path != nil && tr.End != trace.EndBudget && tr.End != trace.EndError && !slices.Equal(m.path, tr.Path())
	if tr.End != trace.EndBudget && tr.End != trace.EndError {
		m.path = tr.Path()
	}
	p.st.last[p.target] = m
	p.st.mu.Unlock()
	if tr.End != trace.EndError {
		p.rec(p.job, p.target, tr.Reached(), changed)
	}
	p.log.Info("path traced", "job", p.job, "target", p.target, "reason", r.Reason, "end", tr.End, "hops", tr.Reached(), "verdict", tr.Verdict)
	return r
}

// due records r and reports whether it is a transition to trace now.
func (p *tracingProber) due(r probe.Result) bool {
	failure := r.Phase == probe.PhaseHandshake && (r.Reason == probe.ReasonSynTimeout || r.Reason == probe.ReasonUnreachable) && r.Remote.IsValid()
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	m := p.st.last[p.target]
	// Prober faults and cancellations say nothing about the target: they
	// neither start nor end a failure.
	if c := r.Reason.Class(); c == probe.ClassProber || r.Reason == probe.ReasonCanceled {
		return false
	}
	wasFailing := m.failing
	m.failing, m.seen = failure, true
	p.st.last[p.target] = m
	if !failure || wasFailing {
		return false
	}
	now := time.Now()
	if !m.at.IsZero() && now.Sub(m.at) < p.every {
		return false
	}
	if !traceLimiter.Allow() {
		return false
	}
	m.at = now
	p.st.last[p.target] = m
	return true
}
