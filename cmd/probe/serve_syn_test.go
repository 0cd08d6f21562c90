package main

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe/syn"
)

// TestServeSynRate: global.syn_rate sets the process-wide raw SYN budget at
// start and on reload; a bad value on reload keeps the running budget.
func TestServeSynRate(t *testing.T) {
	lab.RequirePriv(t) // the syn job opens raw sockets
	t.Cleanup(func() { syn.SetRate(syn.DefaultRate, syn.DefaultBurst) })
	up := listen(t).Addr().String()
	cfg := func(rate string) string {
		return "global:\n  syn_rate: " + rate + "\nprobes:\n  - name: db\n    kind: syn\n    interval: 200ms\n    targets: {static: [\"" + up + "\"]}\n"
	}
	rs := startServe(t, cfg("7"), "")
	if got := syn.CurrentRate(); got != 7 {
		t.Fatalf("after start with syn_rate 7: budget %d packets/s", got)
	}
	// The syn job runs under that budget: its SYNs are answered.
	series := `connprobe_probe_results_total{job="db",kind="syn",reason="ok",target="` + up + `"}`
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body := rs.get(t, "/metrics")
		if strings.Contains(body, series) && metricValue(t, body, series) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ok syn result; /metrics:\n%s", grepLines(body, "results_total"))
		}
	}

	for _, step := range []struct {
		rate   string
		status int
		want   int
	}{
		{"250", http.StatusOK, 250},
		{"0", http.StatusInternalServerError, 250}, // rejected: the old budget stays
		{"-1", http.StatusInternalServerError, 250},
	} {
		if err := os.WriteFile(rs.config, []byte(cfg(step.rate)), 0o644); err != nil {
			t.Fatal(err)
		}
		if status, body := rs.reload(t); status != step.status {
			t.Errorf("reload with syn_rate %s: status %d (%s), want %d", step.rate, status, body, step.status)
		}
		if got := syn.CurrentRate(); got != step.want {
			t.Errorf("after reload with syn_rate %s: budget %d packets/s, want %d", step.rate, got, step.want)
		}
	}
}

// Kind syn takes application URLs as `probe run --kind syn mysql://db:3306`
// does: only the port is SYN-probed. A scheme no kind knows is refused.
func TestServeSynURLTarget(t *testing.T) {
	lab.RequirePriv(t) // raw sockets
	up := "mysql://" + listen(t).Addr().String()
	rs := startServe(t, "probes:\n  - name: db\n    kind: syn\n    interval: 200ms\n    targets: {static: [\""+up+"\"]}\n", "")
	series := `connprobe_probe_results_total{job="db",kind="syn",reason="ok",target="` + up + `"}`
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body := rs.get(t, "/metrics")
		if strings.Contains(body, series) && metricValue(t, body, series) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ok syn result for %s; /metrics:\n%s", up, grepLines(body, "results_total"))
		}
	}

	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("probes:\n  - name: db\n    kind: syn\n    targets: {static: [\"foo://127.0.0.1:1\"]}\n"), 0o644)
	_, _, err := loadJobs(t.Context(), path, slog.New(slog.DiscardHandler))
	want := "config " + path + `: probes[0] "db": targets.static[0]: target "foo://127.0.0.1:1": scheme "foo" is not supported by kind syn (want host:port, tcp:// or an application URL, of which only the port counts)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}
