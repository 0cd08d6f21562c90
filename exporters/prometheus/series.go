package prometheus

import (
	"bufio"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connprobe/connprobe/probe"
)

// The per-target series are the bulk of the exposition: with every reason
// pre-created, 10k targets are 200k+ series. client_golang keeps ~800 bytes
// per child and materialises every series as protobuf structs on each
// scrape, which alone would need over 100 MiB at 10k targets. So they live
// here compactly — one struct of atomics per target — and are streamed as
// text straight from those atomics. They are also a prometheus.Collector,
// so Gather (protobuf scrapes, tests, GatherAndLint) sees exactly the same
// series.

// family describes one per-target metric family.
type family struct {
	name, help, typ string
	desc            *prometheus.Desc
}

func newFamily(name, help, typ string, labels ...string) family {
	return family{name: name, help: help, typ: typ, desc: prometheus.NewDesc(name, help, labels, nil)}
}

var (
	famResults    = newFamily("connprobe_probe_results_total", "Probe attempts by outcome reason (ok on success; see docs for the closed list); the prober's own faults are in connprobe_prober_faults_total.", "counter", "job", "target", "kind", "reason")
	famFailures   = newFamily("connprobe_probe_failures_total", "Probe attempts whose outcome did not meet the job's expectation (a failure; for expect: fail jobs, a success).", "counter", "job", "target")
	famSuccess    = newFamily("connprobe_probe_success", "1 if the last attempt met the job's expectation, else 0.", "gauge", "job", "target")
	famSlow       = newFamily("connprobe_probe_slow_total", "Attempts that met the job's expectation but slower than its latency threshold (connprobe_job_slo_latency_seconds), or only after a SYN retransmission: bad for the latency SLI, good for availability.", "counter", "job", "target")
	famSynRetrans = newFamily("connprobe_probe_syn_retransmits_total", "SYN retransmissions the handshakes needed.", "counter", "job", "target")
	famHandshake  = newFamily("connprobe_probe_handshake_seconds", "TCP handshake time of the last attempt that completed one.", "gauge", "job", "target")
	famRTT        = newFamily("connprobe_probe_tcp_rtt_seconds", "Kernel smoothed RTT (TCP_INFO) of the last established connection.", "gauge", "job", "target")
)

// series is one (job, target)'s state.
type series struct {
	job, target, kind string
	results           []atomic.Uint64 // by index in probe.Reasons; prober-class ones stay unused
	failures          atomic.Uint64
	slow              atomic.Uint64
	synRetrans        atomic.Uint64
	success           atomic.Int32  // -1 until the first result
	handshake, rtt    atomic.Uint64 // float64 bits; 0: never measured
}

// seriesSet holds every target's series.
type seriesSet struct {
	mu sync.RWMutex
	m  map[[2]string]*series
}

func newSeriesSet() *seriesSet { return &seriesSet{m: map[[2]string]*series{}} }

func (s *seriesSet) add(job, target, kind string) *series {
	sr := &series{job: job, target: target, kind: kind, results: make([]atomic.Uint64, len(probe.Reasons))}
	sr.success.Store(-1)
	s.mu.Lock()
	s.m[[2]string{job, target}] = sr
	s.mu.Unlock()
	return sr
}

func (s *seriesSet) remove(job, target string) {
	s.mu.Lock()
	delete(s.m, [2]string{job, target})
	s.mu.Unlock()
}

// sorted returns the series ordered by job and target.
func (s *seriesSet) sorted() []*series {
	s.mu.RLock()
	out := make([]*series, 0, len(s.m))
	for _, sr := range s.m {
		out = append(out, sr)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *series) int {
		if c := strings.Compare(a.job, b.job); c != 0 {
			return c
		}
		return strings.Compare(a.target, b.target)
	})
	return out
}

// each calls fn for every sample of family f in sr, with the label values
// in the family's label order, held in the caller's scratch lv (so a scrape
// does not allocate per sample); it skips unset samples.
func (sr *series) each(f *family, lv *[4]string, fn func(v float64, labelValues []string)) {
	lv[0], lv[1] = sr.job, sr.target
	two := lv[:2]
	switch f {
	case &famResults:
		lv[2] = sr.kind
		for i, d := range probe.Reasons {
			if d.Class == probe.ClassProber {
				continue // counted in connprobe_prober_faults_total
			}
			lv[3] = string(d.Reason)
			fn(float64(sr.results[i].Load()), lv[:4])
		}
	case &famFailures:
		fn(float64(sr.failures.Load()), two)
	case &famSlow:
		fn(float64(sr.slow.Load()), two)
	case &famSuccess:
		if v := sr.success.Load(); v >= 0 {
			fn(float64(v), two)
		}
	case &famSynRetrans:
		fn(float64(sr.synRetrans.Load()), two)
	case &famHandshake:
		if b := sr.handshake.Load(); b != 0 {
			fn(math.Float64frombits(b), two)
		}
	case &famRTT:
		if b := sr.rtt.Load(); b != 0 {
			fn(math.Float64frombits(b), two)
		}
	}
}

var families = []*family{&famResults, &famFailures, &famSlow, &famSuccess, &famSynRetrans, &famHandshake, &famRTT}

// Describe implements prometheus.Collector.
func (s *seriesSet) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (s *seriesSet) Collect(ch chan<- prometheus.Metric) {
	all := s.sorted()
	for _, f := range families {
		vt := prometheus.GaugeValue
		if f.typ == "counter" {
			vt = prometheus.CounterValue
		}
		var lv [4]string
		for _, sr := range all {
			sr.each(f, &lv, func(v float64, lv []string) {
				ch <- prometheus.MustNewConstMetric(f.desc, vt, v, lv...)
			})
		}
	}
}

// labelNames of each family, in the order the text format writes them
// (sorted, as expfmt does), with the index into the label values.
var textLabels = map[*family][]struct {
	name string
	idx  int
}{
	&famResults:    {{"job", 0}, {"kind", 2}, {"reason", 3}, {"target", 1}},
	&famFailures:   {{"job", 0}, {"target", 1}},
	&famSlow:       {{"job", 0}, {"target", 1}},
	&famSuccess:    {{"job", 0}, {"target", 1}},
	&famSynRetrans: {{"job", 0}, {"target", 1}},
	&famHandshake:  {{"job", 0}, {"target", 1}},
	&famRTT:        {{"job", 0}, {"target", 1}},
}

// yieldEvery is how many targets' series a scrape writes before it lets
// the processor go to the goroutines waiting for it (yieldAt).
const yieldEvery = 256

// yieldAt lets the processor go (runtime.Gosched) at every yieldEvery-th
// target of a scrape. Writing 10,000 targets' series takes tens of
// milliseconds of CPU; with one processor (the DaemonSet's GOMAXPROCS)
// the firings that came due meanwhile waited for the runtime's 10 ms
// preemption and then queued behind each other, and a scrape made hundreds
// of them more than 25 ms late (TestScrapeLetsFiringsRun).
func yieldAt(i int) {
	if i%yieldEvery == yieldEvery-1 {
		runtime.Gosched()
	}
}

// WriteText streams every per-target series in the Prometheus text format
// (version 0.0.4), without materialising them.
func (s *seriesSet) WriteText(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	all := s.sorted()
	buf := make([]byte, 0, 256)
	var scratch [4]string
	for _, f := range families {
		buf = append(buf[:0], "# HELP "...)
		buf = append(buf, f.name...)
		buf = append(buf, ' ')
		buf = appendEscaped(buf, f.help, false)
		buf = append(buf, "\n# TYPE "...)
		buf = append(buf, f.name...)
		buf = append(buf, ' ')
		buf = append(buf, f.typ...)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		names := textLabels[f]
		for i, sr := range all {
			yieldAt(i)
			var werr error
			sr.each(f, &scratch, func(v float64, lv []string) {
				buf = append(buf[:0], f.name...)
				buf = append(buf, '{')
				for i, ln := range names {
					if i > 0 {
						buf = append(buf, ',')
					}
					buf = append(buf, ln.name...)
					buf = append(buf, '=', '"')
					buf = appendEscaped(buf, lv[ln.idx], true)
					buf = append(buf, '"')
				}
				buf = append(buf, '}', ' ')
				buf = appendFloat(buf, v)
				buf = append(buf, '\n')
				if _, err := bw.Write(buf); err != nil && werr == nil {
					werr = err
				}
			})
			if werr != nil {
				return werr
			}
		}
	}
	return bw.Flush()
}

// appendEscaped escapes as the text format wants: \\ and \n always, \" in
// label values.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '"' && quote:
			b = append(b, '\\', '"')
		default:
			b = append(b, c)
		}
	}
	return b
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case math.IsInf(f, 1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
