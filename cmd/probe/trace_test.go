package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
)

// TestTraceCLI: probe trace in the lab, text and JSON, and probe run
// --trace appending the verdict to a failed attempt.
func TestTraceCLI(t *testing.T) {
	lab.RequirePriv(t)
	l := lab.New(t)
	serveBackends(t, l, 80)
	vip := l.VIP.String() + ":80"
	fast := []string{"--netns", l.Pod, "--queries", "2", "--hop-timeout", "300ms", "--gap", "2"}

	stdout, stderr, code := probeCmd(t, append(append([]string{"trace"}, fast...), "--explain", vip)...)
	if code != exitOK || !strings.Contains(stdout, "verdict: SYN/ACK from 10.96.0.10:80 at hop 2") || !strings.Contains(stdout, l.Router+" DNATs it to 10.244.2.1") {
		t.Fatalf("healthy VIP: exit %d, want 0 and the DNAT\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	out, err := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.Router, "nft", "add rule ip fault filter_forward iifname veth-pod tcp flags & (syn|ack) == syn drop").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	stdout, stderr, code = probeCmd(t, append(append([]string{"trace"}, fast...), "-o", "json", "10.244.2.20:3306")...)
	var j struct {
		Hops []struct {
			Hop        int      `json:"hop"`
			Address    *string  `json:"address"`
			RTTSeconds *float64 `json:"rtt_seconds"`
			Sent       int      `json:"sent"`
			Answered   int      `json:"answered"`
		} `json:"hops"`
		End     string `json:"end"`
		EndHop  int    `json:"end_hop"`
		Verdict string `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		t.Fatalf("json: %v\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if code != exitFailed || j.End != "silence" || j.EndHop != 1 || len(j.Hops) != 3 || j.Hops[0].Address == nil || *j.Hops[0].Address != "10.244.1.1" ||
		j.Hops[0].RTTSeconds == nil || j.Hops[0].Sent != 2 || j.Hops[0].Answered != 2 || j.Hops[1].Address != nil || j.Hops[1].Answered != 0 {
		t.Errorf("node fault: exit %d, %+v", code, j)
	}
	if want := "SYNs reach 10.244.1.1 (hop 1) and die after it: nothing from hop 2 to 3; the target never answered"; j.Verdict != want {
		t.Errorf("verdict: got %q, want %q", j.Verdict, want)
	}

	stdout, stderr, code = probeCmd(t, "run", "--netns", l.Pod, "--timeout", "500ms", "--trace", "--trace-queries", "1", "--trace-hop-timeout", "300ms", "--trace-gap", "2", "10.244.2.20:3306")
	if code != exitFailed || !strings.Contains(stdout, "syn_timeout") || !strings.Contains(stdout, "trace: SYNs reach 10.244.1.1 (hop 1) and die after it") {
		t.Errorf("run --trace: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	_, stderr, code = probeCmd(t, "run", "--trace-queries", "1", "10.96.0.10:80")
	if code != exitUsage || !strings.Contains(stderr, "--trace-queries needs --trace") {
		t.Errorf("--trace-queries without --trace: exit %d, stderr %q", code, stderr)
	}

	_, stderr, code = probeCmd(t, "trace", "10.96.0.10")
	if code != exitUsage || !strings.Contains(stderr, "want ip:port") {
		t.Errorf("no port: exit %d, stderr %q", code, stderr)
	}
}

// fakeProber returns scripted reasons: the wrapper's transitions are tested
// against a real trace in the lab.
type fakeProber struct {
	reasons []probe.Reason
	remote  netip.AddrPort
}

func (f *fakeProber) Probe(ctx context.Context) probe.Result {
	r := probe.Result{Target: "db", Reason: f.reasons[0], Phase: probe.PhaseHandshake, Remote: f.remote}
	f.reasons = f.reasons[1:]
	return r
}
func (f *fakeProber) Close() error { return nil }

// TestServeTraceTransitions: serve's trace runs once when a target turns
// from ok to syn_timeout, not again while it stays failing, not within
// min_interval, not for a prober fault; its verdict lands in the failure's
// evidence and its hop count in the path recorder.
func TestServeTraceTransitions(t *testing.T) {
	lab.RequirePriv(t)
	l := lab.New(t)
	out, err := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.Router, "nft", "add rule ip fault filter_forward iifname veth-pod tcp flags & (syn|ack) == syn drop").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	j := &configs.Job{Name: "db", Interval: configs.Duration{D: time.Minute}, Timeout: configs.Duration{D: time.Second},
		Trace: &configs.TraceOptions{Enabled: true, Queries: 1, HopTimeout: configs.Duration{D: 200 * time.Millisecond}, Gap: 2, MinInterval: configs.Duration{D: time.Hour}}}
	script := []probe.Reason{probe.ReasonOK, probe.ReasonSynTimeout, probe.ReasonSynTimeout, probe.ReasonProberBudget, probe.ReasonSynTimeout, probe.ReasonOK, probe.ReasonSynTimeout}
	type rec struct {
		hops    int
		changed bool
	}
	var recs []rec
	newProber, budget := withTrace(j, l.Path(l.Pod), func(probe.Target) (probe.Prober, error) {
		return &fakeProber{reasons: script, remote: netip.AddrPortFrom(l.DBIP, 3306)}, nil
	}, func(_, _ string, hops int, changed bool) { recs = append(recs, rec{hops, changed}) }, slog.New(slog.DiscardHandler))
	if budget <= 0 {
		t.Fatalf("budget %s: the job's timeout must grow by the trace's", budget)
	}
	p, err := newProber(probe.Target{Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	traced := make([]bool, len(script))
	for i := range script {
		r := p.Probe(t.Context())
		for _, e := range r.Evidence {
			if strings.HasPrefix(e, "trace: ") {
				traced[i] = true
				if !strings.Contains(e, "SYNs reach 10.244.1.1 (hop 1) and die after it") {
					t.Errorf("attempt %d: evidence %q", i, e)
				}
			}
		}
	}
	// ok, syn_timeout (traced), syn_timeout (still failing), prober_budget
	// (says nothing), syn_timeout (still failing), ok, syn_timeout (a new
	// transition, but within min_interval).
	want := []bool{false, true, false, false, false, false, false}
	for i := range want {
		if traced[i] != want[i] {
			t.Errorf("attempt %d (%s): traced %v, want %v", i, script[i], traced[i], want[i])
		}
	}
	if len(recs) != 1 || recs[0].hops != 1 || recs[0].changed {
		t.Errorf("path records %+v, want one: 1 hop, not changed", recs)
	}
}
