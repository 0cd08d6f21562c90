package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe"
)

func result(reason probe.Reason, hs time.Duration, retx int, ev ...string) probe.Result {
	r := probe.Result{
		Target: "10.96.0.10:80", Kind: "connect",
		Start:  time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		Reason: reason, Retransmits: retx,
		Timings: probe.Timings{Handshake: hs}, Evidence: ev,
	}
	if reason.Success() {
		r.Phase = probe.PhaseDone
	} else {
		r.Phase = probe.PhaseHandshake
	}
	return r
}

func TestTextLinesAndSummary(t *testing.T) {
	var buf bytes.Buffer
	w, err := New("text", &buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []probe.Result{
		result(probe.ReasonOK, 200*time.Microsecond, 0, "established 10.0.0.2:1 -> 10.96.0.10:80 in 200µs"),
		result(probe.ReasonSynRetransmitted, 1020*time.Millisecond, 1, "handshake needed 1 SYN retransmit(s)"),
		result(probe.ReasonSynTimeout, 2*time.Second, 2, "3 SYN(s) sent over 2s: no SYN/ACK, no RST, no ICMP"),
		result(probe.ReasonOK, 300*time.Microsecond, 0, "established"),
	} {
		if err := w.Result(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Summary(); err != nil {
		t.Fatal(err)
	}
	want := `10:00:00.000  10.96.0.10:80          ok                   0.200ms  retx=0  established 10.0.0.2:1 -> 10.96.0.10:80 in 200µs
10:00:00.000  10.96.0.10:80          syn_retransmitted     1.020s  retx=1  handshake needed 1 SYN retransmit(s)
10:00:00.000  10.96.0.10:80          syn_timeout           2.000s  retx=2  3 SYN(s) sent over 2s: no SYN/ACK, no RST, no ICMP
10:00:00.000  10.96.0.10:80          ok                   0.300ms  retx=0  established
--- 10.96.0.10:80 connect statistics ---
4 sent, 3 ok, 25% failed; by reason: ok=2 syn_retransmitted=1 syn_timeout=1
handshake min/p50/p90/max = 0.200ms/0.300ms/1.020s/1.020s
`
	if got := buf.String(); got != want {
		t.Errorf("text output:\n%s\nwant:\n%s", got, want)
	}
}

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New("json", &buf)
	w.Result(result(probe.ReasonRefused, time.Millisecond, 0, "RST"))
	w.Result(result(probe.ReasonOK, time.Millisecond, 0))
	w.Summary()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2: %q", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		for _, k := range []string{"target", "kind", "start", "duration_seconds", "success", "reason", "phase", "retransmits", "timings", "evidence"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %q lacks %q", l, k)
			}
		}
	}
}

func TestBadFormat(t *testing.T) {
	if _, err := New("yaml", nil); err == nil || !strings.Contains(err.Error(), "want text or json") {
		t.Errorf("New(yaml) error = %v", err)
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]time.Duration{0.5: 5, 0.9: 9, 1: 10, 0: 1} {
		if got := Quantile(d, q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

func TestJSONDoesNotEscapeArrows(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New("json", &buf)
	w.Result(result(probe.ReasonOK, time.Millisecond, 0, "established 10.0.0.2:1 -> 10.96.0.10:80 in 1ms", "a < b & c"))
	if got := buf.String(); !strings.Contains(got, `"established 10.0.0.2:1 -> 10.96.0.10:80 in 1ms","a < b & c"`) {
		t.Errorf("JSON escapes evidence: %s", got)
	}
}

func TestTextShowsAttemptDurationAndEveryEvidenceItem(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New("text", &buf)
	hung := result(probe.ReasonReplyTimeout, 112*time.Microsecond, 0, "sent 5 bytes, no reply in 5s")
	hung.Duration = 5 * time.Second
	w.Result(hung)
	paws := result(probe.ReasonOK, 0, 0, "SYN/ACK in 61µs", "fresh and older TSval both answered: no PAWS drop")
	paws.Kind, paws.Duration = "syn", 2*time.Millisecond
	w.Result(paws)
	conn := result(probe.ReasonOK, 450*time.Microsecond, 0, "established")
	conn.Duration = 470 * time.Microsecond
	w.Result(conn)
	lines := strings.Split(buf.String(), "\n")
	for i, want := range []string{
		"reply_timeout         5.000s  retx=0  hs=0.112ms  sent 5 bytes, no reply in 5s",
		"ok                   2.000ms  retx=0  SYN/ACK in 61µs; fresh and older TSval both answered: no PAWS drop",
		"ok                   0.470ms  retx=0  established", // no hs= when it is the attempt
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], want)
		}
	}
}

// The prober's own faults are not the target's failures: the summary counts
// them apart and leaves them out of the failed share.
func TestSummaryLeavesProberFaultsOut(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New("text", &buf)
	for _, r := range []probe.Result{
		result(probe.ReasonOK, 200*time.Microsecond, 0),
		result(probe.ReasonProberStalled, 0, 0, "the prober itself stalled during the attempt"),
		result(probe.ReasonRefused, 0, 0),
	} {
		w.Result(r)
	}
	w.Summary()
	want := "3 sent, 1 ok, 50% failed (1 not counted: the prober's own fault); by reason: ok=1 prober_stalled=1 refused=1\n"
	if !strings.Contains(buf.String(), want) {
		t.Errorf("summary:\n%s\nwant the line %q", buf.String(), want)
	}
}
