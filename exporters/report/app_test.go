package report

import (
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe"
)

func TestAppSummarySaysWhere(t *testing.T) {
	var out strings.Builder
	w, err := New("text", &out)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	res := []probe.Result{
		{Reason: probe.ReasonOK, Phase: probe.PhaseDone, Timings: probe.Timings{Handshake: time.Millisecond, App: 3 * time.Millisecond}},
		{Reason: probe.ReasonOK, Phase: probe.PhaseDone, Timings: probe.Timings{Handshake: time.Millisecond, App: 3 * time.Millisecond}},
		{Reason: probe.ReasonSynTimeout, Phase: probe.PhaseHandshake, Timings: probe.Timings{Handshake: time.Second}},
		{Reason: probe.ReasonRefused, Phase: probe.PhaseHandshake, Timings: probe.Timings{Handshake: time.Millisecond}},
		{Reason: probe.ReasonAppError, Phase: probe.PhaseApp, Timings: probe.Timings{Handshake: time.Millisecond, App: time.Millisecond}, Evidence: []string{"server answered with an error: ERROR 1040 (08004): Too many connections"}},
		{Reason: probe.ReasonPeerClosed, Phase: probe.PhaseApp, Timings: probe.Timings{Handshake: time.Millisecond, App: time.Millisecond}},
	}
	for _, r := range res {
		r.Target, r.Kind, r.Start = "mysql://db:3306", "app", start
		if err := w.Result(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Summary(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"app=3.000ms",
		"app       min/p50/p90/max = 1.000ms/1.000ms/3.000ms/3.000ms",
		"time (p50): network+tcp handshake 1.000ms, server 1.000ms (50% in the server)",
		"failures: network 1, tcp 1, server 2 (",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output misses %q:\n%s", want, got)
		}
	}
}

func TestLayer(t *testing.T) {
	for _, tc := range []struct {
		r    probe.Result
		want string
	}{
		{probe.Result{Reason: probe.ReasonSynRetransmitted}, ""},
		{probe.Result{Reason: probe.ReasonSynTimeout, Phase: probe.PhaseHandshake}, "network"},
		{probe.Result{Reason: probe.ReasonUnreachable, Phase: probe.PhaseHandshake}, "network"},
		{probe.Result{Reason: probe.ReasonRefused, Phase: probe.PhaseHandshake}, "tcp"},
		{probe.Result{Reason: probe.ReasonAppTimeout, Phase: probe.PhaseApp}, "server"},
		{probe.Result{Reason: probe.ReasonReset, Phase: probe.PhaseApp}, "server"},
		{probe.Result{Reason: probe.ReasonPermission, Phase: probe.PhaseSetup}, "local"},
	} {
		if got := Layer(tc.r); got != tc.want {
			t.Errorf("Layer(%s in %s) = %q, want %q", tc.r.Reason, tc.r.Phase, got, tc.want)
		}
	}
}
