package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/responder"
)

// startLabResponders runs `probe responder` on both backends of l, on port.
func startLabResponders(t *testing.T, l *lab.Lab, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		srv, err := responder.New(responder.Config{}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				t.Errorf("responder: %v", err)
			}
		})
	}
}

// TestServeIdleTimeoutSearch: an idle job with find_timeout searches the
// path's idle timeout in the background (the node's conntrack forgets
// established flows after 3 s) and exports the boundary; a reload that
// drops the job cancels the search and deletes the series.
func TestServeIdleTimeoutSearch(t *testing.T) {
	l := lab.New(t)
	startLabResponders(t, l, 7700)
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.ConntrackTimeout, Timeout: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(l.VIP, 7700).String()
	rs := startServe(t, `
probes:
  - name: vip-idle
    kind: idle
    netns: `+l.Pod+`
    interval: 2s
    timeout: 7s
    concurrency: 4
    idle:
      idle: 1s
      connect_timeout: 1s
      reply_timeout: 1s
      find_timeout: {every: 10m, max_idle: 8s, min_idle: 500ms}
    targets: {static: ["`+vip+`"]}
`, "")
	rs.waitMetric(t, `connprobe_idle_timeout_searches_total{job="vip-idle",result="found",target="`+vip+`"} 0`)
	start := time.Now()
	var body string
	for {
		_, body = rs.get(t, "/metrics")
		if strings.Contains(body, `connprobe_idle_timeout_boundary_seconds{bound="lost",job="vip-idle",target="`+vip+`"}`) {
			break
		}
		if strings.Contains(body, `result="failed",target="`+vip+`"} 1`) || time.Since(start) > 60*time.Second {
			t.Fatalf("no boundary after %s:\n%s\nlogs:\n%s", time.Since(start), grepLines(body, "idle_timeout"), rs.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	survived := metricValue(t, body, `connprobe_idle_timeout_boundary_seconds{bound="survived",job="vip-idle",target="`+vip+`"}`)
	lost := metricValue(t, body, `connprobe_idle_timeout_boundary_seconds{bound="lost",job="vip-idle",target="`+vip+`"}`)
	t.Logf("boundary %gs–%gs after %s; %s", survived, lost, time.Since(start).Round(time.Millisecond), grepLines(rs.logs.String(), "idle-timeout search"))
	if survived < 2 || lost > 4.5 || survived >= lost {
		t.Errorf("boundary %gs–%gs, want around the 3s conntrack timeout", survived, lost)
	}
	if v := metricValue(t, body, `connprobe_idle_timeout_searches_total{job="vip-idle",result="found",target="`+vip+`"}`); v != 1 {
		t.Errorf("found searches = %v, want 1", v)
	}
	// The regular idle probes (1s idle, below the timeout) still work.
	rs.waitMetric(t, `connprobe_probe_success{job="vip-idle",target="`+vip+`"} 1`)

	// A new config with a longer search: reload while it runs cancels it.
	cfg := strings.Replace(readFile(t, rs.config), "max_idle: 8s", "max_idle: 30s", 1)
	if err := os.WriteFile(rs.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := rs.reload(t); code != 200 {
		t.Fatalf("reload: %d %s", code, msg)
	}
	_, body = rs.get(t, "/metrics")
	if strings.Contains(body, "connprobe_idle_timeout_boundary_seconds{") {
		t.Errorf("boundary of the replaced job remains:\n%s", grepLines(body, "idle_timeout"))
	}
	time.Sleep(3 * time.Second) // the new job's search is under way
	t0 := time.Now()
	if err := os.WriteFile(rs.config, []byte("probes: [{name: other, interval: 1s, targets: {static: ['"+listen(t).Addr().String()+"']}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := rs.reload(t); code != 200 {
		t.Fatalf("reload: %d %s", code, msg)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("reload took %s: the running search was not canceled", d)
	}
	_, body = rs.get(t, "/metrics")
	if strings.Contains(body, `job="vip-idle"`) {
		t.Errorf("series of the removed job remain:\n%s", grepAll(body, "vip-idle"))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
