package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/connprobe/connprobe/internal/lab"
)

// shortWindows maps the SLO rules' windows to seconds for the end-to-end
// tests: the same rules, on a clock a few hundred times faster.
var shortWindows = strings.NewReplacer("[5m]", "[3s]", "[30m]", "[4s]", "[1h]", "[6s]", "[6h]", "[8s]", "[3d]", "[10s]")

// shortFor shortens the rules' for: clauses alike.
var shortFor = regexp.MustCompile(`(?m)^(\s+for:) \d+[mh]$`)

// shortRules returns deploy/prometheus/rules.yml on the end-to-end tests'
// clock: windows of seconds, for: 5s.
func shortRules(t *testing.T) string {
	t.Helper()
	rules, err := os.ReadFile("../../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	short := shortFor.ReplaceAllString(shortWindows.Replace(string(rules)), "$1 5s")
	if !strings.Contains(short, "for: 5s") || strings.Contains(short, "[5m]") {
		t.Fatal("shortRules: the rules' windows or for: clauses are not where the e2e tests expect them")
	}
	return short
}

// startPrometheus runs a real Prometheus (Debian's) with the shortened
// rules, scraping the agents at addrs every second in the text format, and
// waits until it is ready.
func startPrometheus(t *testing.T, addrs ...string) *promAPI {
	t.Helper()
	return startPrometheusWith(t, nil, addrs...)
}

// startPrometheusWith is startPrometheus with more command-line flags.
func startPrometheusWith(t *testing.T, flags []string, addrs ...string) *promAPI {
	t.Helper()
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (Debian package prometheus, in .ci/packages.txt): %v", err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules.yml"), shortRules(t))
	targets, _ := json.Marshal(addrs)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yml]
scrape_configs:
  - job_name: connprobe
    honor_labels: true
    static_configs: [{targets: %s}]
`, targets))
	promAddr := closedPort(t)
	cmd := exec.Command(promBin, append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + promAddr, "--log.level=warn"}, flags...)...)
	var promLog syncBuffer
	promLog.mu = make(chan struct{}, 1)
	cmd.Stdout, cmd.Stderr = &promLog, &promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	})
	api := &promAPI{base: "http://" + promAddr}
	api.waitReady(t)
	return api
}

// TestServeE2EPrometheusAlerts: probe serve probes a Service VIP from the
// lab's pod namespace; a real Prometheus scrapes it and evaluates
// deploy/prometheus/rules.yml with shortened windows. A SYN blackhole on the
// node raises the VIP's error ratio and fires the fast burn-rate alert;
// clearing it resolves the alert. Prometheus scrapes in the delimited
// protobuf format here (native histograms on: Prometheus then asks for it
// first), through a proxy that checks it did; the vantage test scrapes text.
func TestServeE2EPrometheusAlerts(t *testing.T) {
	l := lab.New(t)
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, ":8080")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { lab.Serve(ln, lab.Echo) })
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}
	vip := netip.AddrPortFrom(l.VIP, 8080)
	rs := startServe(t, fmt.Sprintf(`
probes:
  - name: vip
    interval: 250ms
    timeout: 200ms
    netns: %s
    targets: {static: ["%s"]}
  - name: deny-db
    expect: fail
    interval: 250ms
    timeout: 200ms
    netns: %s
    targets: {static: ["%s"]}
`, l.Path(l.Pod), vip, l.Path(l.Pod), netip.AddrPortFrom(l.DBIP, 5432)), "")

	proxy := protoCheckingProxy(t, rs.addr)
	api := startPrometheusWith(t, []string{"--enable-feature=native-histograms"}, proxy.addr)

	ratio := `connprobe:probe_error:ratio_rate5m{job="vip"}`
	alert := `ALERTS{alertname="ConnprobeErrorBudgetBurnFast",alertstate="firing",job="vip"}`
	// Healthy: the SLI exists and is 0; the policy job's refused attempts are
	// what it expects, so its error ratio is 0 too.
	api.waitFor(t, "healthy VIP", 30*time.Second, func() bool {
		v, ok := api.value(t, ratio)
		d, okd := api.value(t, `connprobe:probe_error:ratio_rate5m{job="deny-db"}`)
		return ok && v == 0 && okd && d == 0
	})
	if _, firing := api.value(t, alert); firing {
		t.Fatal("alert firing before any fault")
	}

	// Fault: the node drops every SYN to the VIP.
	t0 := time.Now()
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop, Dst: vip}); err != nil {
		t.Fatal(err)
	}
	api.waitFor(t, "error ratio > 0.5", 30*time.Second, func() bool {
		v, ok := api.value(t, ratio)
		return ok && v > 0.5
	})
	api.waitFor(t, "fast burn alert firing", 30*time.Second, func() bool {
		_, ok := api.value(t, alert)
		return ok
	})
	t.Logf("alert fired %s after the fault", time.Since(t0).Round(100*time.Millisecond))
	if v, ok := api.value(t, `increase(connprobe_probe_results_total{job="vip",reason="syn_timeout"}[10s])`); !ok || v == 0 {
		t.Errorf("no syn_timeout attempts recorded during a SYN blackhole (%v %v)", v, ok)
	}

	// Clear: the ratio falls back and the alert resolves.
	t1 := time.Now()
	if err := l.ClearFaults(t.Context()); err != nil {
		t.Fatal(err)
	}
	api.waitFor(t, "alert resolved", 30*time.Second, func() bool {
		_, ok := api.value(t, alert)
		return !ok
	})
	t.Logf("alert resolved %s after the fault cleared", time.Since(t1).Round(100*time.Millisecond))
	api.waitFor(t, "error ratio back to 0", 30*time.Second, func() bool {
		v, ok := api.value(t, ratio)
		return ok && v == 0
	})
	if n, other := proxy.counts(); n == 0 || other > 0 {
		t.Errorf("%d scrapes answered in delimited protobuf, %d in another format: want all protobuf", n, other)
	}
}

// scrapeProxy forwards Prometheus's scrapes to an agent and counts the
// answers by format.
type scrapeProxy struct {
	addr         string
	proto, other atomic.Int64
}

func (p *scrapeProxy) counts() (int64, int64) { return p.proto.Load(), p.other.Load() }

// protoCheckingProxy serves a reverse proxy to the agent at addr on a
// loopback port of its own.
func protoCheckingProxy(t *testing.T, addr string) *scrapeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &scrapeProxy{addr: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path == "/metrics" {
			if expfmt.ResponseFormat(r.Header).FormatType() == expfmt.TypeProtoDelim {
				p.proto.Add(1)
			} else {
				p.other.Add(1)
			}
		}
		return nil
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// promAPI is a minimal Prometheus HTTP API client.
type promAPI struct{ base string }

func (p *promAPI) waitReady(t *testing.T) {
	t.Helper()
	p.waitFor(t, "prometheus ready", 30*time.Second, func() bool {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// promSample is one sample of an instant query's answer.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query and returns its samples.
func (p *promAPI) query(t *testing.T, q string) []promSample {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.base+"/api/v1/query?query="+url.QueryEscape(q), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, body.Error)
	}
	return body.Data.Result
}

// value runs an instant query and returns the first sample's value.
func (p *promAPI) value(t *testing.T, q string) (float64, bool) {
	t.Helper()
	res := p.query(t, q)
	if len(res) == 0 {
		return 0, false
	}
	s, _ := res[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// labels runs an instant query and returns each sample's labels.
func (p *promAPI) labels(t *testing.T, q string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, r := range p.query(t, q) {
		out = append(out, r.Metric)
	}
	return out
}

func (p *promAPI) waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
