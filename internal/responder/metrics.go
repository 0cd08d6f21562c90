package responder

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connprobe/connprobe/probe/idle"
)

// metrics are the responder's own series; every label is from a closed set.
type metrics struct {
	open       prometheus.Gauge
	conns      *prometheus.CounterVec
	requests   *prometheus.CounterVec
	bad        *prometheus.CounterVec
	delayed    *prometheus.CounterVec
	resets     *prometheus.CounterVec
	idleCloses prometheus.Counter
	// firstTimeouts counts connections closed for sending no first request
	// within --first-request-timeout (also in errors_total{code="idle"}).
	firstTimeouts prometheus.Counter
}

// DelayedOutcomes are the values of the outcome label of
// connprobe_responder_delayed_replies_total.
var DelayedOutcomes = []string{
	"delivered",          // the client read it (it sent again or closed with FIN)
	"reset",              // the client's kernel answered the reply with RST: stale session on the path
	"reset_before_reply", // the client reset the connection during the delay
	"client_closed",      // the client closed (FIN) during the delay
	"unacked",            // never acknowledged before the responder gave up
	"write_error",        // the reply could not be written
}

func newMetrics() *metrics {
	const ns = "connprobe_responder"
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections",
			Help: "Open probe connections."}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_total",
			Help: "Connections by admission result: accepted, or refused by the busy (total) or source_busy (per source) limit."}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Well-formed requests by verb (ECHO, DELAY)."}, []string{"verb"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
			Help: "Connections ended with an ERR reply, by code."}, []string{"code"}),
		delayed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "delayed_replies_total",
			Help: "What became of delayed replies; outcome=reset is a reply the client's kernel rejected (stale NAT/IPVS session)."}, []string{"outcome"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "resets_total",
			Help: "Connections reset by the client side outside a delayed reply, by state."}, []string{"state"}),
		idleCloses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "idle_closes_total",
			Help: "Connections the responder closed (FIN) because they were idle for --close-idle."}),
		firstTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "first_request_timeouts_total",
			Help: "Connections closed with ERR idle because no complete first request came within --first-request-timeout."}),
	}
	// Pre-create every series so a first event is a change, not a new series.
	for _, r := range []string{"accepted", string(idle.ErrBusy), string(idle.ErrSourceBusy)} {
		m.conns.WithLabelValues(r)
	}
	for _, v := range []idle.Verb{idle.VerbEcho, idle.VerbDelay} {
		m.requests.WithLabelValues(string(v))
	}
	for _, c := range []idle.ErrCode{idle.ErrMalformed, idle.ErrTooLong, idle.ErrDelayTooLong, idle.ErrEarlyData, idle.ErrIdle} {
		m.bad.WithLabelValues(string(c))
	}
	for _, o := range DelayedOutcomes {
		m.delayed.WithLabelValues(o)
	}
	m.resets.WithLabelValues("idle")
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.open, m.conns, m.requests, m.bad, m.delayed, m.resets, m.idleCloses, m.firstTimeouts} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
