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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
	"golang.org/x/crypto/bcrypt"
)

// runningServe is `probe serve` running in-process on a loopback port.
type runningServe struct {
	addr   string
	config string
	hup    chan os.Signal
	logs   *syncBuffer
}

type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

func startServe(t *testing.T, config, webConfig string) *runningServe {
	t.Helper()
	return startServeWith(t, config, func(f *serveFlags) { f.webConfig, f.lifecycle = webConfig, true })
}

// startServeWith is startServe with the flags set by set.
func startServeWith(t *testing.T, config string, set func(*serveFlags)) *runningServe {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := &runningServe{config: path, hup: make(chan os.Signal, 1), logs: &syncBuffer{mu: make(chan struct{}, 1)}}
	log := slog.New(slog.NewTextHandler(rs.logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	f := serveFlags{config: path, listen: "127.0.0.1:0"}
	set(&f)
	go func() { done <- serve(ctx, f, log, rs.hup, func(a net.Addr) { ready <- a }) }()
	select {
	case a := <-ready:
		rs.addr = a.String()
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of cancel")
		}
	})
	return rs
}

func (rs *runningServe) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + rs.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (rs *runningServe) reload(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+rs.addr+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitMetric polls /metrics until it contains line.
func (rs *runningServe) waitMetric(t *testing.T, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := rs.get(t, "/metrics")
		if strings.Contains(body, line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q; last:\n%s", line, grepLines(body, "connprobe_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	return testlisten.Loopback(t, testlisten.Close)
}

// closedPort returns a loopback port with no listener.
func closedPort(t *testing.T) string {
	t.Helper()
	return testlisten.ClosedAddr(t)
}

func TestServeProbesAndReloads(t *testing.T) {
	up := listen(t).Addr().String()
	down := closedPort(t)
	rs := startServe(t, `
probes:
  - name: web
    interval: 100ms
    targets: {static: ["`+up+`", "`+down+`"]}
  - name: deny
    expect: fail
    interval: 100ms
    targets: {static: ["`+down+`"]}
`, "")
	if code, body := rs.get(t, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	rs.waitMetric(t, `connprobe_probe_results_total{job="web",kind="connect",reason="ok",target="`+up+`"} `)
	rs.waitMetric(t, `connprobe_probe_success{job="web",target="`+up+`"} 1`)
	rs.waitMetric(t, `connprobe_probe_success{job="web",target="`+down+`"} 0`)
	rs.waitMetric(t, `connprobe_probe_success{job="deny",target="`+down+`"} 1`)
	_, body := rs.get(t, "/metrics")
	if !strings.Contains(body, `connprobe_probe_results_total{job="web",kind="connect",reason="refused",target="`+down+`"}`) {
		t.Errorf("no refused series for the closed port:\n%s", grepLines(body, "results_total"))
	}

	// Each bad config is refused with its exact error; the old one keeps running.
	bad, _ := filepath.Glob("../../configs/testdata/bad-*.yaml")
	if len(bad) < 5 {
		t.Fatalf("found %d bad configs", len(bad))
	}
	for _, f := range bad {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(rs.config, b, 0o644); err != nil {
			t.Fatal(err)
		}
		code, msg := rs.reload(t)
		if code != http.StatusInternalServerError || !strings.HasPrefix(msg, "reload: config "+rs.config+": ") {
			t.Errorf("reload with %s: %d %q, want 500 with the config's problems", f, code, msg)
		}
		rs.waitMetric(t, "connprobe_config_last_reload_successful 0")
		rs.waitMetric(t, `connprobe_job_targets{job="web"} 2`)
	}
	if !strings.Contains(rs.logs.String(), "reload failed; the previous config keeps running") {
		t.Error("failed reloads were not logged")
	}
	_, before := rs.get(t, "/metrics")
	time.Sleep(300 * time.Millisecond)
	_, after := rs.get(t, "/metrics")
	if metricValue(t, after, `connprobe_probe_results_total{job="web",kind="connect",reason="ok",target="`+up+`"}`) <=
		metricValue(t, before, `connprobe_probe_results_total{job="web",kind="connect",reason="ok",target="`+up+`"}`) {
		t.Error("the old config stopped probing after failed reloads")
	}

	// A good config by SIGHUP: deny goes, web loses a target, api comes.
	good := `
probes:
  - name: web
    interval: 100ms
    targets: {static: ["` + up + `"]}
  - name: api
    interval: 100ms
    targets: {static: ["` + up + `"]}
`
	if err := os.WriteFile(rs.config, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	rs.hup <- os.Interrupt
	rs.waitMetric(t, "connprobe_config_last_reload_successful 1")
	rs.waitMetric(t, `connprobe_probe_success{job="api",target="`+up+`"} 1`)
	rs.waitMetric(t, `connprobe_job_targets{job="web"} 1`)
	_, body = rs.get(t, "/metrics")
	for _, gone := range []string{`job="deny"`, `target="` + down + `"`} {
		if strings.Contains(body, gone) {
			t.Errorf("series with %s remain after reload:\n%s", gone, grepAll(body, gone))
		}
	}
	if code, _ := rs.get(t, "/-/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload = %d, want 405", code)
	}
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			var v float64
			if _, err := fmtSscan(strings.TrimPrefix(l, series+" "), &v); err == nil {
				return v
			}
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func TestServeWebConfigBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(web, []byte("basic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := listen(t).Addr().String()
	rs := startServe(t, "probes:\n  - name: web\n    targets: {static: [\""+up+"\"]}\n", web)
	if code, _ := rs.get(t, "/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials = %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", "http://"+rs.addr+"/metrics", nil)
	req.SetBasicAuth("prom", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/metrics with credentials = %d, want 200", resp.StatusCode)
	}
}

func TestLintCommand(t *testing.T) {
	for _, tt := range []struct {
		file string
		want int
	}{
		{"../../configs/example.yaml", exitOK},
		{"../../configs/discovery.yaml", exitOK},
		{"../../configs/testdata/bad-timeout.yaml", exitUsage},
		{"../../configs/testdata/bad-unknown-field.yaml", exitUsage},
		{"/nonexistent/config.yaml", exitUsage},
	} {
		if got := run(context.Background(), []string{"lint", "--config", tt.file}); got != tt.want {
			t.Errorf("probe lint --config %s = exit %d, want %d", tt.file, got, tt.want)
		}
	}
}

func TestBuildJobsReportsKindProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(`
probes:
  - name: app
    kind: connect
    targets: {static: ["redis://127.0.0.1:6379"]}
  - name: ns
    netns: connprobe-no-such-ns
    targets: {static: ["127.0.0.1:1"]}
`), 0o644)
	_, _, err := loadJobs(t.Context(), path, slog.New(slog.DiscardHandler))
	want := "config " + path + `: probes[0] "app": targets.static[0]: target "redis://127.0.0.1:6379": scheme "redis" is not supported by kind connect (want host:port or tcp://); a redis:// target speaks its protocol under kind app (set kind: app, or leave kind unset in a job whose static targets are all such URLs)` + "\n" +
		`probes[1] "ns": netns "connprobe-no-such-ns": /run/netns/connprobe-no-such-ns: network namespace not found (no such name in /run/netns; ip netns list or probe netns ls shows the ones there are)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func fmtSscan(s string, v *float64) (int, error) { return fmt.Sscan(s, v) }

func grepAll(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
