package prometheus

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

// The prober's own faults are counted by cause and move none of the series
// the availability SLI (deploy/prometheus/rules.yml) is built on: results,
// failures, success, duration. A panic counts as reason other and as cause
// panic.
func TestProberFaultsDoNotMoveTheSLI(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	web := &scheduler.Job{Name: "web", Kind: "syn"}
	deny := &scheduler.Job{Name: "deny", Kind: "connect", Expect: probe.Expectation{Fail: true, Blocked: []probe.Reason{probe.ReasonRefused}}}
	tgt := probe.Target{Name: "10.0.0.1:80"}
	rw := e.Target(web, tgt)
	rd := e.Target(deny, tgt)
	e.Targets(web, 1)
	e.Targets(deny, 1)

	rw.Result(okResult())
	rd.Result(&probe.Result{Reason: probe.ReasonRefused, Duration: time.Millisecond})
	for _, r := range []probe.Reason{probe.ReasonPermission, probe.ReasonPermission, probe.ReasonLocalError,
		probe.ReasonProberStalled, probe.ReasonProberBudget, probe.ReasonCanceled} {
		res := &probe.Result{Reason: r, Duration: 3 * time.Second, Timings: probe.Timings{Handshake: 2460 * time.Millisecond}}
		rw.Result(res)
		rd.Result(res) // an expect: fail job: not "blocked as expected" either
	}
	// Not the reason the deny job expects: the block is not the one asked for.
	rd.Result(&probe.Result{Reason: probe.ReasonSynTimeout, Duration: time.Second})
	// A probe that panicked: reason other, cause panic.
	rw.Result(&probe.Result{Reason: probe.ReasonOther, Duration: time.Millisecond, Err: fmt.Errorf("syn: %w", probe.ErrPanic)})

	want := `
# HELP connprobe_prober_faults_total Attempts the prober itself could not make properly, by cause (budget, stalled, permission, local_resource, panic): never counted as a target failure.
# TYPE connprobe_prober_faults_total counter
connprobe_prober_faults_total{cause="budget",job="deny"} 1
connprobe_prober_faults_total{cause="budget",job="web"} 1
connprobe_prober_faults_total{cause="local_resource",job="deny"} 1
connprobe_prober_faults_total{cause="local_resource",job="web"} 1
connprobe_prober_faults_total{cause="panic",job="deny"} 0
connprobe_prober_faults_total{cause="panic",job="web"} 1
connprobe_prober_faults_total{cause="permission",job="deny"} 2
connprobe_prober_faults_total{cause="permission",job="web"} 2
connprobe_prober_faults_total{cause="stalled",job="deny"} 1
connprobe_prober_faults_total{cause="stalled",job="web"} 1
# HELP connprobe_probe_failures_total Probe attempts whose outcome did not meet the job's expectation (a failure; for expect: fail jobs, a success).
# TYPE connprobe_probe_failures_total counter
connprobe_probe_failures_total{job="deny",target="10.0.0.1:80"} 1
connprobe_probe_failures_total{job="web",target="10.0.0.1:80"} 1
# HELP connprobe_probe_success 1 if the last attempt met the job's expectation, else 0.
# TYPE connprobe_probe_success gauge
connprobe_probe_success{job="deny",target="10.0.0.1:80"} 0
connprobe_probe_success{job="web",target="10.0.0.1:80"} 0
# HELP connprobe_probe_handshake_seconds TCP handshake time of the last attempt that completed one.
# TYPE connprobe_probe_handshake_seconds gauge
connprobe_probe_handshake_seconds{job="web",target="10.0.0.1:80"} 0.002
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want), "connprobe_prober_faults_total",
		"connprobe_probe_failures_total", "connprobe_probe_success", "connprobe_probe_handshake_seconds"); err != nil {
		t.Error(err)
	}
	// The results counted only the verdicts: web ok + other, deny refused + syn_timeout.
	var text strings.Builder
	if err := e.series.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	body := text.String()
	for _, mf := range mfs {
		if mf.GetName() == "connprobe_probe_duration_seconds" {
			for _, m := range mf.GetMetric() {
				if n := m.GetHistogram().GetSampleCount(); n != 2 {
					t.Errorf("the duration histogram of %v saw %d attempts, want the 2 verdicts", m.GetLabel(), n)
				}
			}
		}
	}
	var total float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "connprobe_probe_results_total{") {
			var v float64
			fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
			total += v
			for _, d := range probe.Reasons {
				if d.Class == probe.ClassProber && strings.Contains(l, `reason="`+string(d.Reason)+`"`) {
					t.Errorf("prober-class reason exported as a result: %s", l)
				}
			}
		}
	}
	if total != 4 {
		t.Errorf("results_total sums to %v, want the 4 verdicts", total)
	}
	if probs, err := testutil.GatherAndLint(e.Gatherer()); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", err, probs)
	}
	// A removed job leaves no fault series.
	e.Forget(deny, tgt)
	e.Targets(deny, -1)
	if n := testutil.CollectAndCount(e.faults); n != len(ProberFaultCauses) {
		t.Errorf("%d fault series after removing deny, want %d", n, len(ProberFaultCauses))
	}
}
