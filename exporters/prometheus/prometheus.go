// Package prometheus exports what the scheduler sees as Prometheus metrics
// on a private registry. It is a scheduler.Sink: each (job, target) gets a
// recorder holding its metric children, created once when the target appears
// (every reason pre-created at 0, so rate() and increase() see the first
// failure) and deleted when the target goes away, so a deleted pod leaves no
// stale series. Recording a result is a handful of atomic adds: no label
// lookups, no allocation. The per-target series are kept compactly and
// streamed on scrape (see series.go): 10k targets fit in a few MiB.
//
// Prober-class results (permission, local_error, prober_stalled,
// prober_budget: the prober's own faults) touch none of the results,
// failures, success or duration series an SLI is built on: they count in
// connprobe_prober_faults_total only. A probe that panicked (Err is
// probe.ErrPanic) counts as reason other and as cause panic.
//
// Metrics (see docs/serve.md):
//
//	connprobe_probe_results_total{job,target,kind,reason}  every attempt, by reason
//	connprobe_probe_failures_total{job,target}             attempts that did not meet the job's expectation
//	connprobe_probe_slow_total{job,target}                 attempts that met the expectation, slower than the job's latency threshold
//	connprobe_probe_success{job,target}                    1 if the last attempt met the expectation
//	connprobe_probe_duration_seconds{job}                  attempt duration (classic + native histogram)
//	connprobe_probe_handshake_seconds{job,target}          last handshake time
//	connprobe_probe_tcp_rtt_seconds{job,target}            last kernel smoothed RTT
//	connprobe_probe_syn_retransmits_total{job,target}      SYN retransmissions the handshakes needed
//	connprobe_idle_timeout_boundary_seconds{job,target,bound} idle time survived / lost (idle find_timeout)
//	connprobe_idle_timeout_searches_total{job,target,result}  idle-timeout searches: found, not_found, failed
//	connprobe_prober_faults_total{job,cause}               attempts the prober could not make properly (never a target failure)
//	connprobe_job_info{job,kind,expect}                    1 per job
//	connprobe_job_targets{job}                             targets per job
//	connprobe_job_slo_objective{job}                       the job's own SLO objective (only when its config sets one)
//	connprobe_job_slo_latency_seconds{job}                 the job's latency threshold
//	connprobe_scheduler_lateness_seconds{job}              how late attempts start
//	connprobe_scheduler_overruns_total{job}                firings skipped: every prober busy
//	connprobe_config_last_reload_successful                1 if the last (re)load worked
//	connprobe_config_last_reload_success_timestamp_seconds when it last worked
//	connprobe_build_info{version,revision,goversion}       1
package prometheus

import (
	"compress/gzip"
	"errors"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

const ns = "connprobe"

// Exporter is a scheduler.Sink that keeps metrics on its own registry.
type Exporter struct {
	reg     *prometheus.Registry // everything but the per-target series
	series  *seriesSet           // the per-target series
	all     prometheus.Gatherers // reg and series
	handler http.Handler         // protobuf scrapes: everything gathered

	duration *prometheus.HistogramVec

	jobInfo  *prometheus.GaugeVec
	targets  *prometheus.GaugeVec
	sloObj   *prometheus.GaugeVec
	sloLat   *prometheus.GaugeVec
	lateness *prometheus.HistogramVec
	overruns *prometheus.CounterVec
	faults   *prometheus.CounterVec

	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge

	// jobFaults holds each job's prober-fault counters by cause, shared by
	// its targets' recorders (a map per target was 3 MiB at 10k targets).
	jobMu     sync.Mutex
	jobFaults map[string]map[string]prometheus.Counter

	idleBoundary *prometheus.GaugeVec   // idle.go
	idleSearches *prometheus.CounterVec // idle.go
	pathHops     *prometheus.GaugeVec   // path.go
	pathChanges  *prometheus.CounterVec // path.go
}

// Options tune an Exporter.
type Options struct {
	Version  string // build version for connprobe_build_info
	Revision string // git revision for connprobe_build_info; "" = the toolchain's vcs.revision
	// NoRuntimeMetrics leaves out the go_* and process_* collectors (tests).
	NoRuntimeMetrics bool
}

// Buckets of connprobe_probe_duration_seconds: loopback to multi-second
// SYN retransmit ladders.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// LatenessBuckets of connprobe_scheduler_lateness_seconds.
var LatenessBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// New returns an Exporter with every metric registered.
func New(o Options) *Exporter {
	reg := prometheus.NewRegistry()
	e := &Exporter{
		reg:    reg,
		series: newSeriesSet(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "probe_duration_seconds",
			Help:                            "Duration of probe attempts, per job.",
			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"job"}),
		jobInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "job_info",
			Help: "Always 1: a configured job, its kind and its expectation (success or fail).",
		}, []string{"job", "kind", "expect"}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "job_targets",
			Help: "Targets a job probes now.",
		}, []string{"job"}),
		sloObj: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "job_slo_objective",
			Help: "The job's own SLO objective (slo.objective): the fraction of attempts that must be good. Absent: the SLO rules' default.",
		}, []string{"job"}),
		sloLat: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "job_slo_latency_seconds",
			Help: "The job's latency threshold (slo.latency): successful attempts slower than it count in connprobe_probe_slow_total.",
		}, []string{"job"}),
		lateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "scheduler_lateness_seconds",
			Help:    "How late attempts started against their schedule.",
			Buckets: LatenessBuckets,
		}, []string{"job"}),
		overruns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "scheduler_overruns_total",
			Help: "Scheduled attempts skipped because every prober of the target was still busy (counted, never queued).",
		}, []string{"job"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "prober_faults_total",
			Help: "Attempts the prober itself could not make properly, by cause (budget, stalled, permission, local_resource, panic): never counted as a target failure.",
		}, []string{"job", "cause"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "config_last_reload_successful",
			Help: "1 if the last configuration (re)load succeeded.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration (re)load.",
		}),
	}
	version, revision := o.Version, o.Revision
	if bi, ok := debug.ReadBuildInfo(); ok && revision == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "dev"
	}
	if revision == "" {
		revision = "unknown"
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Name: "build_info",
		Help: "Always 1: the version of connprobe.",
	}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(version, revision, runtime.Version()).Set(1)
	e.newIdleMetrics()
	e.newPathMetrics()
	reg.MustRegister(e.duration, e.jobInfo, e.targets, e.sloObj, e.sloLat, e.lateness, e.overruns, e.faults, e.reloadOK, e.reloadTime, build,
		e.idleBoundary, e.idleSearches)
	if !o.NoRuntimeMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	sreg := prometheus.NewRegistry()
	sreg.MustRegister(e.series)
	e.all = prometheus.Gatherers{reg, sreg}
	e.handler = promhttp.HandlerFor(e.all, promhttp.HandlerOpts{})
	return e
}

// Gatherer gathers every metric (for tests and protobuf scrapes).
func (e *Exporter) Gatherer() prometheus.Gatherer { return e.all }

// Handler serves /metrics: the per-target series streamed from their
// counters (no per-scrape structs), in the text format, or in the
// length-delimited protobuf format when the scraper asks for it (Prometheus
// does for native histograms, or with scrape_protocols: [PrometheusProto]);
// gzip-compressed when the scraper accepts it (Prometheus always does: 10k
// targets are about 20 MB of text). The protobuf text and compact-text
// debugging formats go through client_golang, which negotiates itself.
func (e *Exporter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		if strings.Contains(r.Header.Get("Accept"), "application/vnd.google.protobuf") {
			format = expfmt.Negotiate(r.Header)
			if format.FormatType() != expfmt.TypeProtoDelim {
				e.handler.ServeHTTP(w, r)
				return
			}
		}
		mfs, err := e.reg.Gather()
		if err != nil {
			http.Error(w, "gather: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", string(format))
		h.Add("Vary", "Accept-Encoding")
		var out io.Writer = w
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzipWriters.Get().(*gzip.Writer)
			gz.Reset(w)
			defer func() {
				_ = gz.Close()
				gz.Reset(io.Discard) // drop the ResponseWriter before pooling
				gzipWriters.Put(gz)
			}()
			out = gz
		}
		enc := expfmt.NewEncoder(out, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				return // the client went away
			}
		}
		if format.FormatType() == expfmt.TypeProtoDelim {
			_ = e.series.WriteProto(out)
			return
		}
		_ = e.series.WriteText(out)
	})
}

// gzipWriters pools compressors: a gzip.Writer holds about 1 MiB of state.
// BestSpeed: a 20 MB scrape compresses about 25× at a fraction of the CPU
// of the default level (BENCHMARKS.md).
var gzipWriters = sync.Pool{New: func() any {
	gz, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return gz
}}

// acceptsGzip reports whether Accept-Encoding values list gzip with a
// non-zero quality (RFC 9110 section 12.5.3).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			k, q, ok := strings.Cut(strings.TrimSpace(params), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
				return err == nil && f > 0
			}
			return true
		}
	}
	return false
}

// Register adds c (kernel evidence, …) to the metrics /metrics serves.
func (e *Exporter) Register(c prometheus.Collector) error { return e.reg.Register(c) }

// ConfigLoaded records the outcome of a configuration (re)load at t.
func (e *Exporter) ConfigLoaded(ok bool, t time.Time) {
	if ok {
		e.reloadOK.Set(1)
		e.reloadTime.Set(float64(t.UnixNano()) / 1e9)
		return
	}
	e.reloadOK.Set(0)
}

// reasonIndex maps a reason to its slot in a recorder.
var reasonIndex = func() map[probe.Reason]int {
	m := make(map[probe.Reason]int, len(probe.Reasons))
	for i, d := range probe.Reasons {
		m[d.Reason] = i
	}
	return m
}()

// Causes of connprobe_prober_faults_total: probe.Reason.ProberCause of the
// prober-class reasons, and panic.
const (
	CauseBudget        = "budget"
	CauseStalled       = "stalled"
	CausePermission    = "permission"
	CauseLocalResource = "local_resource"
	CausePanic         = "panic"
)

// ProberFaultCauses are the cause label values, pre-created per job.
var ProberFaultCauses = []string{CauseBudget, CauseStalled, CausePermission, CauseLocalResource, CausePanic}

// Target implements scheduler.Sink: it creates the target's series.
func (e *Exporter) Target(job *scheduler.Job, t probe.Target) scheduler.TargetSink {
	r := &recorder{
		e:        e,
		s:        e.series.add(job.Name, t.Name, job.Kind),
		expect:   job.Expect,
		latency:  job.Latency,
		timing:   timingOf(job.Kind),
		duration: e.duration.WithLabelValues(job.Name),
		lateness: e.lateness.WithLabelValues(job.Name),
		overruns: e.overruns.WithLabelValues(job.Name),
		faults:   e.faultsOf(job.Name),
	}
	return r
}

// faultsOf returns job's prober-fault counters by cause, made once per job
// (and again after the job was removed: Targets(job, -1) drops them).
func (e *Exporter) faultsOf(job string) map[string]prometheus.Counter {
	e.jobMu.Lock()
	defer e.jobMu.Unlock()
	if m, ok := e.jobFaults[job]; ok {
		return m
	}
	m := make(map[string]prometheus.Counter, len(ProberFaultCauses))
	for _, c := range ProberFaultCauses {
		m[c] = e.faults.WithLabelValues(job, c)
	}
	if e.jobFaults == nil {
		e.jobFaults = map[string]map[string]prometheus.Counter{}
	}
	e.jobFaults[job] = m
	return m
}

// Forget implements scheduler.Sink: it deletes every series of the target.
func (e *Exporter) Forget(job *scheduler.Job, t probe.Target) {
	e.series.remove(job.Name, t.Name)
	e.forgetIdle(prometheus.Labels{"job": job.Name, "target": t.Name})
	e.forgetPath(prometheus.Labels{"job": job.Name, "target": t.Name})
}

// Targets implements scheduler.Sink.
func (e *Exporter) Targets(job *scheduler.Job, n int) {
	l := prometheus.Labels{"job": job.Name}
	if n < 0 {
		e.targets.Delete(l)
		e.sloObj.Delete(l)
		e.sloLat.Delete(l)
		e.duration.Delete(l)
		e.jobInfo.DeletePartialMatch(l)
		e.lateness.Delete(l)
		e.overruns.Delete(l)
		e.faults.DeletePartialMatch(l)
		e.jobMu.Lock()
		delete(e.jobFaults, job.Name)
		e.jobMu.Unlock()
		e.forgetIdle(l)
		e.forgetPath(l)
		return
	}
	e.targets.With(l).Set(float64(n))
	if job.Objective > 0 {
		e.sloObj.With(l).Set(job.Objective)
	} else {
		e.sloObj.Delete(l) // a reload dropped it: the rules' default applies
	}
	e.sloLat.With(l).Set(job.Latency.Seconds())
	for _, c := range ProberFaultCauses {
		e.faults.WithLabelValues(job.Name, c) // 0 until the first fault
	}
	expect := "success"
	if job.Expect.Fail {
		expect = "fail"
	}
	info := prometheus.Labels{"job": job.Name, "kind": job.Kind, "expect": expect}
	if _, err := e.jobInfo.GetMetricWith(info); err == nil {
		// Drop a previous kind/expect of a job with this name.
		e.jobInfo.DeletePartialMatch(l)
	}
	e.jobInfo.With(info).Set(1)
}

// recorder records one (job, target): atomic adds, no lookups, no allocation.
type recorder struct {
	e        *Exporter
	s        *series
	expect   probe.Expectation
	latency  time.Duration                 // the job's latency threshold
	timing   timing                        // which timing the threshold applies to
	duration prometheus.Observer           // per job
	lateness prometheus.Observer           // per job
	overruns prometheus.Counter            // per job
	faults   map[string]prometheus.Counter // per job, by cause; shared, read only
}

// Scheduled implements scheduler.TargetSink.
func (r *recorder) Scheduled(late time.Duration) { r.lateness.Observe(late.Seconds()) }

// Overrun implements scheduler.TargetSink.
func (r *recorder) Overrun(n int) { r.overruns.Add(float64(n)) }

// timing is which of an attempt's timings the latency threshold applies to.
type timing uint8

const (
	timingHandshake timing = iota // connect, syn, keepalive: the TCP handshake
	timingAttempt                 // app: the whole attempt
	timingActive                  // idle: the attempt less its deliberate idle time
)

func timingOf(kind string) timing {
	switch kind {
	case "app":
		return timingAttempt
	case "idle":
		return timingActive
	}
	return timingHandshake
}

// slow reports whether a successful attempt counts against the latency
// SLI: a degraded success (the handshake needed a SYN retransmission), or
// its timing over the job's threshold.
func (r *recorder) slow(res *probe.Result) bool {
	if res.Reason.Class() == probe.ClassDegraded {
		return true
	}
	if r.latency <= 0 {
		return false
	}
	var d time.Duration
	switch r.timing {
	case timingHandshake:
		d = res.Timings.Handshake // 0 when no handshake was made (a held keep-alive connection)
	case timingAttempt:
		d = res.Duration
	case timingActive:
		d = res.Duration - res.Timings.Idle
	}
	return d > r.latency
}

// Result implements scheduler.TargetSink.
func (r *recorder) Result(res *probe.Result) {
	if res.Reason.ProberFault() {
		// The prober's own fault: no verdict on the target, its timings
		// are the prober's. Canceled has no cause and counts nowhere.
		if c, ok := r.faults[res.Reason.ProberCause()]; ok {
			c.Inc()
		}
		return
	}
	if res.Err != nil && errors.Is(res.Err, probe.ErrPanic) {
		r.faults[CausePanic].Inc()
	}
	s := r.s
	if i, ok := reasonIndex[res.Reason]; ok {
		s.results[i].Add(1)
	} else {
		s.results[reasonIndex[probe.ReasonOther]].Add(1)
	}
	if met, judged := r.expect.Judge(res); judged {
		if met {
			s.success.Store(1)
			if !r.expect.Fail && r.slow(res) {
				s.slow.Add(1)
			}
		} else {
			s.success.Store(0)
			s.failures.Add(1)
		}
	}
	r.duration.Observe(res.Duration.Seconds())
	if res.Retransmits > 0 {
		s.synRetrans.Add(uint64(res.Retransmits))
	}
	if res.Timings.Handshake > 0 && res.Local.IsValid() { // the handshake completed
		s.handshake.Store(math.Float64bits(res.Timings.Handshake.Seconds()))
	}
	if res.Timings.RTT > 0 {
		s.rtt.Store(math.Float64bits(res.Timings.RTT.Seconds()))
	}
}
