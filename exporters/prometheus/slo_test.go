package prometheus

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

// The latency SLI: which attempts count in connprobe_probe_slow_total.
func TestSlowAttempts(t *testing.T) {
	ms := time.Millisecond
	ok := func(hs, dur, idle time.Duration) *probe.Result {
		r := okResult()
		r.Timings.Handshake, r.Duration, r.Timings.Idle = hs, dur, idle
		return r
	}
	retrans := ok(1005*ms, 1010*ms, 0)
	retrans.Reason, retrans.Retransmits = probe.ReasonSynRetransmitted, 1
	refused := &probe.Result{Reason: probe.ReasonRefused, Duration: ms}
	timeout := &probe.Result{Reason: probe.ReasonSynTimeout, Duration: 2 * time.Second}
	for _, tt := range []struct {
		name    string
		kind    string
		expect  probe.Expectation
		latency time.Duration
		res     *probe.Result
		slow    float64
	}{
		{"connect: fast handshake", "connect", probe.Expectation{}, 100 * ms, ok(2*ms, 3*ms, 0), 0},
		{"connect: slow handshake", "connect", probe.Expectation{}, 100 * ms, ok(150*ms, 151*ms, 0), 1},
		{"connect: fast handshake, slow send/expect (not the handshake's)", "connect", probe.Expectation{}, 100 * ms, ok(2*ms, 500*ms, 0), 0},
		// Incident 002: the retransmitted SYN is good for availability,
		// bad for latency, whatever the threshold.
		{"connect: SYN retransmitted under a loose threshold", "connect", probe.Expectation{}, 5 * time.Second, retrans, 1},
		{"syn: slow answer", "syn", probe.Expectation{}, 100 * ms, ok(120*ms, 121*ms, 0), 1},
		{"app: the whole attempt", "app", probe.Expectation{}, 100 * ms, ok(2*ms, 250*ms, 0), 1},
		{"app: fast", "app", probe.Expectation{}, 100 * ms, ok(2*ms, 50*ms, 0), 0},
		{"idle: the idle time does not count", "idle", probe.Expectation{}, 100 * ms, ok(2*ms, 30*time.Second+50*ms, 30*time.Second), 0},
		{"idle: slow reply after the idle time", "idle", probe.Expectation{}, 100 * ms, ok(2*ms, 30*time.Second+300*ms, 30*time.Second), 1},
		{"keepalive: held connection, no handshake", "keepalive", probe.Expectation{}, 100 * ms, ok(0, time.Second, 0), 0},
		{"keepalive: slow reconnect", "keepalive", probe.Expectation{}, 100 * ms, ok(200*ms, time.Second, 0), 1},
		// A failure is an availability error, never also slow.
		{"failure: not slow", "connect", probe.Expectation{}, 100 * ms, timeout, 0},
		// expect: fail jobs have no latency SLI: a blocked attempt is not
		// slow, and one that got through is a failure.
		{"expect fail: blocked", "connect", probe.Expectation{Fail: true}, 100 * ms, refused, 0},
		{"expect fail: got through slowly", "connect", probe.Expectation{Fail: true}, 100 * ms, ok(150*ms, 151*ms, 0), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Options{NoRuntimeMetrics: true})
			job := &scheduler.Job{Name: "j", Kind: tt.kind, Expect: tt.expect, Latency: tt.latency}
			r := e.Target(job, probe.Target{Name: "t:1"})
			r.Result(tt.res)
			want := `
# HELP connprobe_probe_slow_total ` + famSlow.help + `
# TYPE connprobe_probe_slow_total counter
connprobe_probe_slow_total{job="j",target="t:1"} ` + map[float64]string{0: "0", 1: "1"}[tt.slow] + "\n"
			if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want), "connprobe_probe_slow_total"); err != nil {
				t.Error(err)
			}
			checkStreamMatchesGather(t, e)
		})
	}
}

// The job's objective is exported only when its config sets one (the
// rules' default applies otherwise); the latency threshold always.
func TestJobSLOGauges(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	own := &scheduler.Job{Name: "own", Kind: "connect", Objective: 0.99, Latency: 100 * time.Millisecond}
	def := &scheduler.Job{Name: "default", Kind: "connect", Latency: 500 * time.Millisecond}
	e.Targets(own, 1)
	e.Targets(def, 1)
	want := `
# HELP connprobe_job_slo_latency_seconds The job's latency threshold (slo.latency): successful attempts slower than it count in connprobe_probe_slow_total.
# TYPE connprobe_job_slo_latency_seconds gauge
connprobe_job_slo_latency_seconds{job="default"} 0.5
connprobe_job_slo_latency_seconds{job="own"} 0.1
# HELP connprobe_job_slo_objective The job's own SLO objective (slo.objective): the fraction of attempts that must be good. Absent: the SLO rules' default.
# TYPE connprobe_job_slo_objective gauge
connprobe_job_slo_objective{job="own"} 0.99
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want),
		"connprobe_job_slo_objective", "connprobe_job_slo_latency_seconds"); err != nil {
		t.Error(err)
	}
	// A reload drops own's objective; then the job goes away.
	e.Targets(&scheduler.Job{Name: "own", Kind: "connect", Latency: 200 * time.Millisecond}, 1)
	e.Targets(def, -1)
	want = `
# HELP connprobe_job_slo_latency_seconds The job's latency threshold (slo.latency): successful attempts slower than it count in connprobe_probe_slow_total.
# TYPE connprobe_job_slo_latency_seconds gauge
connprobe_job_slo_latency_seconds{job="own"} 0.2
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want),
		"connprobe_job_slo_objective", "connprobe_job_slo_latency_seconds"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(e.Gatherer()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
