package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/connprobe/connprobe/deploy"
	"github.com/connprobe/connprobe/internal/responder"
)

// TestServeDashboardQueriesMatchExport checks every query of
// deploy/grafana/connprobe.json against what a real `probe serve` exports
// on /metrics (a connect job with an slo block, an idle job with
// find_timeout, kernel evidence of its namespace), plus the labels
// Prometheus adds (instance, node), the series deploy/prometheus/rules.yml
// records and the responder's metrics: each metric a panel queries must be
// there, with every label the panel matches on or aggregates by.
func TestServeDashboardQueriesMatchExport(t *testing.T) {
	// A real responder for the idle job, with its metrics on its own
	// registry (it is another process in a deployment).
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := responder.New(responder.Config{}, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, echo) })
	t.Cleanup(func() { cancel(); echo.Close(); wg.Wait() })
	up := listen(t).Addr().String()
	rs := startServe(t, fmt.Sprintf(`
global:
  kernel: {}
probes:
  - name: web
    interval: 200ms
    timeout: 150ms
    slo: {objective: 0.99, latency: 100ms}
    targets: {static: ["%s", "%s"]}
  - name: idle
    kind: idle
    interval: 1s
    timeout: 3800ms
    concurrency: 4
    idle: {idle: 1s, reply_timeout: 500ms, connect_timeout: 500ms, find_timeout: {every: 10s, min_idle: 1s, max_idle: 2s}}
    targets: {static: ["%s"]}
`, up, closedPort(t), echo.Addr()), "")

	// Scrape until every family has series (the idle-timeout boundary
	// comes with the first search, within a few seconds).
	var exported map[string][]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		exported = scrapeLabels(t, "http://"+rs.addr+"/metrics")
		if _, ok := exported["connprobe_idle_timeout_boundary_seconds"]; ok {
			break
		}
		if time.Now().After(deadline) {
			resp, err := http.Get("http://" + rs.addr + "/metrics")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, `job="idle"`) && !strings.HasSuffix(l, " 0") {
						t.Log(l)
					}
				}
			}
			t.Logf("serve log:\n%s", rs.logs.String())
			t.Fatalf("no idle-timeout boundary exported after 30s; families: %s", keys(exported))
		}
		time.Sleep(250 * time.Millisecond)
	}
	for name, ls := range exported {
		exported[name] = append(ls, deploy.ScrapeLabels...)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for name, ls := range familyLabels(mfs) {
		exported[name] = append(ls, deploy.ScrapeLabels...)
	}
	rules, err := os.ReadFile("../../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := deploy.Recorded(rules)
	if err != nil {
		t.Fatal(err)
	}
	for name, ls := range recorded {
		exported[name] = ls
	}
	b, err := os.ReadFile("../../deploy/grafana/connprobe.json")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := deploy.Dashboard(b)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range queries {
		for _, p := range deploy.Check(q, exported) {
			t.Error(p)
		}
		n += len(deploy.Metrics(q.Expr))
	}
	t.Logf("%d queries, %d selectors checked against %d exported and recorded series names", len(queries), n, len(exported))
}

// scrapeLabels fetches a text exposition and returns each series name
// (histograms as _bucket, _sum, _count) with the label names its series carry.
func scrapeLabels(t *testing.T, url string) map[string][]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var mfs []*dto.MetricFamily
	for _, mf := range fams {
		mfs = append(mfs, mf)
	}
	return familyLabels(mfs)
}

func familyLabels(mfs []*dto.MetricFamily) map[string][]string {
	out := map[string][]string{}
	for _, mf := range mfs {
		var names []string
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(names, lp.GetName()) {
					names = append(names, lp.GetName())
				}
			}
		}
		if len(mf.GetMetric()) == 0 {
			continue
		}
		out[mf.GetName()] = names
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			out[mf.GetName()+"_bucket"] = append(slices.Clone(names), "le")
			out[mf.GetName()+"_sum"] = names
			out[mf.GetName()+"_count"] = names
		}
	}
	return out
}
