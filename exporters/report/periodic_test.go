package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe"
)

func TestSummaryReportTableAndQuietOK(t *testing.T) {
	var b bytes.Buffer
	w, _ := New("text", &b)
	txt := w.(*Text)
	txt.QuietOK()
	at := time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)
	for i := range 10 {
		r := probe.Result{Target: "10.0.0.1:80", Kind: "connect", Start: at, Reason: probe.ReasonOK, Phase: probe.PhaseDone,
			Timings: probe.Timings{Handshake: time.Duration(i+1) * time.Millisecond}}
		if i == 9 {
			r.Reason, r.Retransmits = probe.ReasonSynRetransmitted, 1
		}
		txt.Result(r)
		txt.Result(probe.Result{Target: "10.0.0.2:5432", Kind: "connect", Start: at, Reason: probe.ReasonSynTimeout,
			Phase: probe.PhaseHandshake, Evidence: []string{"3 SYN(s) sent: no SYN/ACK"}})
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	// 10 failures and the degraded success; no plain ok.
	if len(lines) != 11 || strings.Count(b.String(), " ok ") != 0 || !strings.Contains(b.String(), "syn_retransmitted") {
		t.Errorf("attempt lines with QuietOK:\n%s", b.String())
	}
	b.Reset()
	if err := txt.Report(at.Add(10*time.Second), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"--- 03:00:10 summary: 2 target(s), 10s ---",
		"  TARGET         SENT  OK  LOSS%    LAST      P50      P90   WORST  REASONS\n",
		"  10.0.0.1:80      10  10    0.0  10.0ms  5.000ms  9.000ms  10.0ms  ok=9 syn_retransmitted=1\n",
		"  10.0.0.2:5432    10   0  100.0       -        -        -       -  syn_timeout=10\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}
