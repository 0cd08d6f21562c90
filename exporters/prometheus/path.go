package prometheus

import "github.com/prometheus/client_golang/prometheus"

// Path traces of jobs with trace enabled (docs/trace.md): they run only when
// a target turns to syn_timeout or unreachable, so few series.

func (e *Exporter) newPathMetrics() {
	e.pathHops = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "path_hops",
		Help: "Hops to the last responder of the target's last path trace (the target's own hop when it answered; 0: nothing answered).",
	}, []string{"job", "target"})
	e.pathChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "path_changes_total",
		Help: "Path traces whose responders, hop by hop, differ from the target's previous trace.",
	}, []string{"job", "target"})
	e.reg.MustRegister(e.pathHops, e.pathChanges)
}

func (e *Exporter) forgetPath(l prometheus.Labels) {
	e.pathHops.DeletePartialMatch(l)
	e.pathChanges.DeletePartialMatch(l)
}

// Path records a path trace of (job, target): hops to the last responder,
// and whether the path changed since the previous trace.
func (e *Exporter) Path(job, target string, hops int, changed bool) {
	e.pathHops.WithLabelValues(job, target).Set(float64(hops))
	c := e.pathChanges.WithLabelValues(job, target)
	if changed {
		c.Inc()
	}
}
