package prometheus

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

func okResult() *probe.Result {
	return &probe.Result{Reason: probe.ReasonOK, Duration: 3 * time.Millisecond,
		Local:   netip.MustParseAddrPort("127.0.0.1:40000"),
		Timings: probe.Timings{Handshake: 2 * time.Millisecond, RTT: 100 * time.Microsecond}}
}

func TestExpositionResultsAndForget(t *testing.T) {
	e := New(Options{Version: "v1.2.3", NoRuntimeMetrics: true})
	web := &scheduler.Job{Name: "web", Kind: "connect"}
	policy := &scheduler.Job{Name: "deny", Kind: "connect", Expect: probe.Expectation{Fail: true}}
	a := probe.Target{Name: "10.0.0.1:80"}
	b := probe.Target{Name: "10.0.0.2:80"}
	ra := e.Target(web, a)
	rb := e.Target(web, b)
	rp := e.Target(policy, a)
	e.Targets(web, 2)
	e.Targets(policy, 1)

	ra.Scheduled(200 * time.Microsecond)
	ra.Result(okResult())
	retrans := okResult()
	retrans.Reason, retrans.Retransmits, retrans.Duration = probe.ReasonSynRetransmitted, 2, 2*time.Second
	ra.Result(retrans)
	rb.Result(&probe.Result{Reason: probe.ReasonRefused, Duration: 400 * time.Microsecond})
	rb.Overrun(1)
	// The policy job's target answered: for expect: fail that is the failure.
	rp.Result(okResult())

	want := `
# HELP connprobe_probe_failures_total Probe attempts whose outcome did not meet the job's expectation (a failure; for expect: fail jobs, a success).
# TYPE connprobe_probe_failures_total counter
connprobe_probe_failures_total{job="deny",target="10.0.0.1:80"} 1
connprobe_probe_failures_total{job="web",target="10.0.0.1:80"} 0
connprobe_probe_failures_total{job="web",target="10.0.0.2:80"} 1
# HELP connprobe_probe_success 1 if the last attempt met the job's expectation, else 0.
# TYPE connprobe_probe_success gauge
connprobe_probe_success{job="deny",target="10.0.0.1:80"} 0
connprobe_probe_success{job="web",target="10.0.0.1:80"} 1
connprobe_probe_success{job="web",target="10.0.0.2:80"} 0
# HELP connprobe_probe_syn_retransmits_total SYN retransmissions the handshakes needed.
# TYPE connprobe_probe_syn_retransmits_total counter
connprobe_probe_syn_retransmits_total{job="deny",target="10.0.0.1:80"} 0
connprobe_probe_syn_retransmits_total{job="web",target="10.0.0.1:80"} 2
connprobe_probe_syn_retransmits_total{job="web",target="10.0.0.2:80"} 0
# HELP connprobe_probe_handshake_seconds TCP handshake time of the last attempt that completed one.
# TYPE connprobe_probe_handshake_seconds gauge
connprobe_probe_handshake_seconds{job="deny",target="10.0.0.1:80"} 0.002
connprobe_probe_handshake_seconds{job="web",target="10.0.0.1:80"} 0.002
# HELP connprobe_job_info Always 1: a configured job, its kind and its expectation (success or fail).
# TYPE connprobe_job_info gauge
connprobe_job_info{expect="fail",job="deny",kind="connect"} 1
connprobe_job_info{expect="success",job="web",kind="connect"} 1
# HELP connprobe_job_targets Targets a job probes now.
# TYPE connprobe_job_targets gauge
connprobe_job_targets{job="deny"} 1
connprobe_job_targets{job="web"} 2
# HELP connprobe_scheduler_overruns_total Scheduled attempts skipped because every prober of the target was still busy (counted, never queued).
# TYPE connprobe_scheduler_overruns_total counter
connprobe_scheduler_overruns_total{job="deny"} 0
connprobe_scheduler_overruns_total{job="web"} 1
# HELP connprobe_build_info Always 1: the version of connprobe.
# TYPE connprobe_build_info gauge
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want),
		"connprobe_probe_failures_total", "connprobe_probe_success", "connprobe_probe_syn_retransmits_total",
		"connprobe_probe_handshake_seconds", "connprobe_job_info", "connprobe_job_targets",
		"connprobe_scheduler_overruns_total"); err != nil {
		t.Error(err)
	}

	// Every reason about the target is pre-created at 0 for every target;
	// the prober-class ones (canceled, permission, …) never are: they are
	// counted in connprobe_prober_faults_total.
	n := testutil.CollectAndCount(e.series, "connprobe_probe_results_total")
	verdicts := 0
	for _, d := range probe.Reasons {
		if d.Class != probe.ClassProber {
			verdicts++
		}
	}
	if want := 3 * verdicts; n != want {
		t.Errorf("%d results series for 3 targets, want %d", n, want)
	}
	want = `
# HELP connprobe_probe_duration_seconds Duration of probe attempts, per job.
# TYPE connprobe_probe_duration_seconds histogram
connprobe_probe_duration_seconds_bucket{job="deny",le="0.0005"} 0
connprobe_probe_duration_seconds_bucket{job="deny",le="0.001"} 0
connprobe_probe_duration_seconds_bucket{job="deny",le="0.0025"} 0
connprobe_probe_duration_seconds_bucket{job="deny",le="0.005"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="0.01"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="0.025"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="0.05"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="0.1"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="0.25"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="0.5"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="1"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="2.5"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="5"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="10"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="30"} 1
connprobe_probe_duration_seconds_bucket{job="deny",le="+Inf"} 1
connprobe_probe_duration_seconds_sum{job="deny"} 0.003
connprobe_probe_duration_seconds_count{job="deny"} 1
connprobe_probe_duration_seconds_bucket{job="web",le="0.0005"} 1
connprobe_probe_duration_seconds_bucket{job="web",le="0.001"} 1
connprobe_probe_duration_seconds_bucket{job="web",le="0.0025"} 1
connprobe_probe_duration_seconds_bucket{job="web",le="0.005"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="0.01"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="0.025"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="0.05"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="0.1"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="0.25"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="0.5"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="1"} 2
connprobe_probe_duration_seconds_bucket{job="web",le="2.5"} 3
connprobe_probe_duration_seconds_bucket{job="web",le="5"} 3
connprobe_probe_duration_seconds_bucket{job="web",le="10"} 3
connprobe_probe_duration_seconds_bucket{job="web",le="30"} 3
connprobe_probe_duration_seconds_bucket{job="web",le="+Inf"} 3
connprobe_probe_duration_seconds_sum{job="web"} 2.0034
connprobe_probe_duration_seconds_count{job="web"} 3
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want), "connprobe_probe_duration_seconds"); err != nil {
		t.Error(err)
	}
	// The streamed text is what Gather sees, series for series.
	checkStreamMatchesGather(t, e)
	var text strings.Builder
	if err := e.series.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`connprobe_probe_results_total{job="web",kind="connect",reason="syn_retransmitted",target="10.0.0.1:80"} 1`,
		`connprobe_probe_results_total{job="web",kind="connect",reason="ok",target="10.0.0.1:80"} 1`,
		`connprobe_probe_results_total{job="web",kind="connect",reason="refused",target="10.0.0.2:80"} 1`,
		`connprobe_probe_results_total{job="web",kind="connect",reason="refused",target="10.0.0.1:80"} 0`,
		`connprobe_probe_tcp_rtt_seconds{job="web",target="10.0.0.1:80"} 0.0001`,
	} {
		if !strings.Contains(text.String(), line+"\n") {
			t.Errorf("streamed text lacks %s", line)
		}
	}
	if problems, err := testutil.GatherAndLint(e.Gatherer()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// Target b goes away, then job deny: no series of theirs remain.
	e.Forget(web, b)
	e.Forget(policy, a)
	e.Targets(policy, -1)
	e.Targets(web, 1)
	mfs, err := e.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "target" && lp.GetValue() == b.Name || lp.GetName() == "job" && lp.GetValue() == "deny" {
					t.Errorf("%s still has a series for a removed target or job: %v", mf.GetName(), m.GetLabel())
				}
			}
		}
	}
}

func TestBuildInfoAndReload(t *testing.T) {
	e := New(Options{Version: "v9", NoRuntimeMetrics: true})
	e.ConfigLoaded(true, time.Unix(1700000000, 0))
	e.ConfigLoaded(false, time.Unix(1700000100, 0))
	want := `
# HELP connprobe_config_last_reload_success_timestamp_seconds Time of the last successful configuration (re)load.
# TYPE connprobe_config_last_reload_success_timestamp_seconds gauge
connprobe_config_last_reload_success_timestamp_seconds 1.7e+09
# HELP connprobe_config_last_reload_successful 1 if the last configuration (re)load succeeded.
# TYPE connprobe_config_last_reload_successful gauge
connprobe_config_last_reload_successful 0
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want),
		"connprobe_config_last_reload_successful", "connprobe_config_last_reload_success_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	mfs, _ := e.Gatherer().Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "connprobe_build_info" {
			for _, lp := range mf.GetMetric()[0].GetLabel() {
				found = found || lp.GetName() == "version" && lp.GetValue() == "v9"
			}
		}
	}
	if !found {
		t.Error("connprobe_build_info{version=\"v9\"} missing")
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	r := e.Target(&scheduler.Job{Name: "web", Kind: "connect", Latency: time.Millisecond}, probe.Target{Name: "a:1"})
	res := okResult() // a 2ms handshake: slow, so the latency path runs too
	r.Result(res)     // first use creates the lazy gauges
	allocs := testing.AllocsPerRun(1000, func() {
		r.Scheduled(time.Millisecond)
		r.Result(res)
	})
	if allocs > 0 {
		t.Errorf("recording a result allocates %.1f times, want 0", allocs)
	}
}

func BenchmarkRecord(b *testing.B) {
	e := New(Options{NoRuntimeMetrics: true})
	r := e.Target(&scheduler.Job{Name: "web", Kind: "connect"}, probe.Target{Name: "a:1"})
	res := okResult()
	b.ReportAllocs()
	for b.Loop() {
		r.Scheduled(time.Millisecond)
		r.Result(res)
	}
}

// checkStreamMatchesGather compares /metrics (text, streamed) with the
// text encoding of Gather, as sorted sets of sample lines.
func checkStreamMatchesGather(t *testing.T, e *Exporter) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	streamed := sampleLines(t, rec.Body)
	mfs, err := e.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	gathered := sampleLines(t, &buf)
	if !slices.Equal(streamed, gathered) {
		for _, l := range streamed {
			if !slices.Contains(gathered, l) {
				t.Errorf("only streamed: %s", l)
			}
		}
		for _, l := range gathered {
			if !slices.Contains(streamed, l) {
				t.Errorf("only gathered: %s", l)
			}
		}
	}
	// And the text parser accepts the stream.
	var p expfmt.TextParser
	if _, err := p.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes())); err != nil {
		t.Errorf("streamed text does not parse: %v", err)
	}
	checkProtoMatchesGather(t, e, mfs)
}

// checkProtoMatchesGather scrapes e in the delimited protobuf format, plain
// and gzipped, and checks that client_golang's decoder reads the very
// families Gather gives: names, help, types and samples.
func checkProtoMatchesGather(t *testing.T, e *Exporter, gathered []*dto.MetricFamily) {
	t.Helper()
	format := expfmt.NewFormat(expfmt.TypeProtoDelim)
	for _, gz := range []bool{false, true} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept", string(format))
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		e.Handler().ServeHTTP(rec, req)
		if ct := rec.Header().Get("Content-Type"); expfmt.ResponseFormat(rec.Header()).FormatType() != expfmt.TypeProtoDelim {
			t.Fatalf("protobuf scrape answered Content-Type %q", ct)
		}
		var body io.Reader = rec.Body
		if gz {
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		dec := expfmt.NewDecoder(body, format)
		got := map[string]*dto.MetricFamily{}
		for {
			mf := new(dto.MetricFamily)
			if err := dec.Decode(mf); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("protobuf scrape does not decode: %v", err)
			}
			if _, dup := got[mf.GetName()]; dup {
				t.Errorf("family %s sent twice", mf.GetName())
			}
			got[mf.GetName()] = mf
		}
		if len(got) != len(gathered) {
			t.Errorf("protobuf scrape has %d families, Gather %d", len(got), len(gathered))
		}
		for _, want := range gathered {
			mf, ok := got[want.GetName()]
			if !ok {
				t.Errorf("protobuf scrape lacks %s", want.GetName())
				continue
			}
			if mf.GetHelp() != want.GetHelp() || mf.GetType() != want.GetType() {
				t.Errorf("%s: help %q type %s, want %q %s", want.GetName(), mf.GetHelp(), mf.GetType(), want.GetHelp(), want.GetType())
			}
			if a, b := familyLines(t, mf), familyLines(t, want); !slices.Equal(a, b) {
				t.Errorf("%s: protobuf samples differ from Gather's:\n got %q\nwant %q", want.GetName(), a, b)
			}
		}
	}
}

// familyLines is mf's samples as sorted text lines.
func familyLines(t *testing.T, mf *dto.MetricFamily) []string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
		t.Fatal(err)
	}
	return sampleLines(t, &buf)
}

func sampleLines(t *testing.T, r io.Reader) []string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func TestStreamEscapesLabels(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	r := e.Target(&scheduler.Job{Name: "we\"ird\\job", Kind: "connect"}, probe.Target{Name: "line\nbreak:80"})
	r.Result(okResult())
	checkStreamMatchesGather(t, e)
}

// TestMemoryPerTarget bounds what one target's series cost, so 10k targets
// stay far inside the 64 MiB budget.
func TestMemoryPerTarget(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	j := &scheduler.Job{Name: "bench", Kind: "connect"}
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("127.0.0.1:%d", 40000+i)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	rs := make([]scheduler.TargetSink, len(names))
	for i, n := range names {
		rs[i] = e.Target(j, probe.Target{Name: n})
		rs[i].Result(okResult())
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	per := (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / int64(len(names))
	t.Logf("%d bytes per target", per)
	if per > 640 {
		t.Errorf("%d bytes of heap per target, want <= 640 (the job's handles are shared, not copied per target)", per)
	}
	runtime.KeepAlive(rs)
}
