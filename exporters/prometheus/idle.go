package prometheus

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The idle-timeout search of idle jobs with find_timeout (docs/idle.md):
// few targets, so ordinary client_golang vectors.

// Results of an idle-timeout search (the result label).
const (
	IdleSearchFound    = "found"     // a loss below max_idle: both bounds known
	IdleSearchNotFound = "not_found" // every idle time up to max_idle survived
	IdleSearchFailed   = "failed"    // no boundary (path down, cut short): the last one stays
)

// IdleTimeoutRecorder is what a target's recorder offers the idle-timeout
// search (scheduler.SinkAs finds it through a Tee).
type IdleTimeoutRecorder interface {
	IdleTimeoutSearches()
	IdleTimeout(survived, lost time.Duration, failed bool)
}

var _ IdleTimeoutRecorder = (*recorder)(nil)

func (e *Exporter) newIdleMetrics() {
	e.idleBoundary = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "idle_timeout_boundary_seconds",
		Help: "Idle-timeout search: the longest idle time a connection survived (bound=survived) and the shortest after which one was lost (bound=lost; absent when none was lost up to max_idle).",
	}, []string{"job", "target", "bound"})
	e.idleSearches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "idle_timeout_searches_total",
		Help: "Idle-timeout searches by result: found, not_found (survived up to max_idle), failed.",
	}, []string{"job", "target", "result"})
}

func (e *Exporter) forgetIdle(l prometheus.Labels) {
	e.idleBoundary.DeletePartialMatch(l)
	e.idleSearches.DeletePartialMatch(l)
}

// IdleTimeoutSearches creates the target's search counters at 0, so the
// first search's result is seen by rate() and increase().
func (r *recorder) IdleTimeoutSearches() {
	for _, res := range []string{IdleSearchFound, IdleSearchNotFound, IdleSearchFailed} {
		r.e.idleSearches.WithLabelValues(r.s.job, r.s.target, res)
	}
}

// IdleTimeout records one idle-timeout search of the target: the longest
// idle time survived and the shortest lost (0: none lost up to the maximum
// tried). A failed search (failed true) leaves the last boundary in place.
func (r *recorder) IdleTimeout(survived, lost time.Duration, failed bool) {
	job, target := r.s.job, r.s.target
	switch {
	case failed:
		r.e.idleSearches.WithLabelValues(job, target, IdleSearchFailed).Inc()
		return
	case lost > 0:
		r.e.idleBoundary.WithLabelValues(job, target, "lost").Set(lost.Seconds())
		r.e.idleSearches.WithLabelValues(job, target, IdleSearchFound).Inc()
	default:
		r.e.idleBoundary.DeleteLabelValues(job, target, "lost")
		r.e.idleSearches.WithLabelValues(job, target, IdleSearchNotFound).Inc()
	}
	r.e.idleBoundary.WithLabelValues(job, target, "survived").Set(survived.Seconds())
}
