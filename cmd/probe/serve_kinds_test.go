package main

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
)

// TestServeAppKind: a job whose static targets are http:// URLs is kind app
// (inferred, as probe run does); a 200 is ok, a 503 is app_error.
func TestServeAppKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(srv.Close)
	ok, fail := srv.URL+"/healthz", srv.URL+"/fail"
	rs := startServe(t, `
probes:
  - name: web
    interval: 100ms
    targets: {static: ["`+ok+`", "`+fail+`"]}
  - name: web-explicit
    kind: app
    interval: 100ms
    app: {user_timeout: 1s}
    targets: {static: ["`+ok+`"]}
`, "")
	rs.waitMetric(t, `connprobe_job_info{expect="success",job="web",kind="app"} 1`)
	rs.waitMetric(t, `connprobe_probe_success{job="web",target="`+ok+`"} 1`)
	rs.waitMetric(t, `connprobe_probe_success{job="web",target="`+fail+`"} 0`)
	rs.waitMetric(t, `connprobe_probe_success{job="web-explicit",target="`+ok+`"} 1`)
	_, body := rs.get(t, "/metrics")
	if v := metricValue(t, body, `connprobe_probe_results_total{job="web",kind="app",reason="app_error",target="`+fail+`"}`); v < 1 {
		t.Errorf("503: app_error = %v, want >= 1\n%s", v, grepLines(body, "results_total"))
	}
	if v := metricValue(t, body, `connprobe_probe_results_total{job="web",kind="app",reason="ok",target="`+ok+`"}`); v < 1 {
		t.Errorf("200: ok = %v, want >= 1", v)
	}
	if v := metricValue(t, body, `connprobe_probe_results_total{job="web",kind="app",reason="ok",target="`+fail+`"}`); v != 0 {
		t.Errorf("503 counted ok %v times", v)
	}
	if !strings.Contains(body, `connprobe_probe_handshake_seconds{job="web",target="`+ok+`"}`) {
		t.Error("no handshake time for the app target")
	}
}

// TestServeAppHTTPOptions: the app block's expect_status, expect_body,
// ca_file and insecure_skip_verify, against a self-signed https server.
func TestServeAppHTTPOptions(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			http.Redirect(w, r, "https://sso.example.test/", http.StatusFound)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ok, login := srv.URL+"/healthz", srv.URL+"/login"
	rs := startServe(t, `
probes:
  - name: trusted
    interval: 100ms
    app: {ca_file: `+ca+`, expect_body: ok}
    targets: {static: ["`+ok+`"]}
  - name: system-roots
    interval: 100ms
    targets: {static: ["`+ok+`"]}
  - name: redirect
    interval: 100ms
    app: {insecure_skip_verify: true, expect_status: [2xx]}
    targets: {static: ["`+ok+`", "`+login+`"]}
  - name: redirect-ok
    interval: 100ms
    app: {ca_file: `+ca+`, expect_status: [302]}
    targets: {static: ["`+login+`"]}
`, "")
	rs.waitMetric(t, `connprobe_probe_success{job="trusted",target="`+ok+`"} 1`)
	rs.waitMetric(t, `connprobe_probe_success{job="system-roots",target="`+ok+`"} 0`)
	rs.waitMetric(t, `connprobe_probe_success{job="redirect",target="`+ok+`"} 1`)
	rs.waitMetric(t, `connprobe_probe_success{job="redirect",target="`+login+`"} 0`)
	rs.waitMetric(t, `connprobe_probe_success{job="redirect-ok",target="`+login+`"} 1`)
	_, body := rs.get(t, "/metrics")
	if v := metricValue(t, body, `connprobe_probe_results_total{job="redirect",kind="app",reason="app_error",target="`+login+`"}`); v < 1 {
		t.Errorf("302 with expect_status [2xx]: app_error = %v, want >= 1\n%s", v, grepLines(body, "results_total"))
	}
}

// holdServer accepts connections and keeps them open; conns delivers each.
func holdServer(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	conns := make(chan net.Conn, 16)
	ln := testlisten.Loopback(t, testlisten.Func(func(ctx context.Context, c net.Conn) {
		select {
		case conns <- c:
		case <-ctx.Done():
			return
		}
		<-ctx.Done() // held, never read; closed when the test ends
	}))
	return ln.Addr().String(), conns
}

// TestServeKeepaliveKind: one prober per (job, target) holds one connection
// across attempts (ok every interval on the same connection); the server's
// close is peer_closed once, then a new connection; a reload that drops the
// target closes the held connection and its series.
func TestServeKeepaliveKind(t *testing.T) {
	addr, conns := holdServer(t)
	other := listen(t).Addr().String()
	rs := startServe(t, `
probes:
  - name: ka
    kind: keepalive
    interval: 100ms
    timeout: 80ms
    keepalive: {idle: 1s, interval: 1s, count: 2, watch: 50ms}
    targets: {static: ["`+addr+`", "`+other+`"]}
`, "")
	var first net.Conn
	select {
	case first = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
	}
	rs.waitMetric(t, `connprobe_probe_success{job="ka",target="`+addr+`"} 1`)
	okSeries := `connprobe_probe_results_total{job="ka",kind="keepalive",reason="ok",target="` + addr + `"}`
	for {
		_, body := rs.get(t, "/metrics")
		if metricValue(t, body, okSeries) >= 5 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case c := <-conns:
		t.Fatalf("5 attempts opened a second connection (from %s): the prober does not hold it", c.RemoteAddr())
	default:
	}

	// The server closes: peer_closed, then the next attempt reconnects.
	first.Close()
	rs.waitMetric(t, `connprobe_probe_results_total{job="ka",kind="keepalive",reason="peer_closed",target="`+addr+`"} 1`)
	var second net.Conn
	select {
	case second = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("no new connection after peer_closed")
	}

	// Reload without the target: its connection is closed, its series go.
	if err := os.WriteFile(rs.config, []byte(`
probes:
  - name: ka
    kind: keepalive
    interval: 100ms
    timeout: 80ms
    keepalive: {idle: 1s, interval: 1s, count: 2, watch: 50ms}
    targets: {static: ["`+other+`"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := rs.reload(t); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, msg)
	}
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("held connection after the target went: read %d, %v; want EOF (closed by the prober)", n, err)
	}
	_, body := rs.get(t, "/metrics")
	if strings.Contains(body, `target="`+addr+`"`) {
		t.Errorf("series of the removed target remain:\n%s", grepAll(body, addr))
	}
}

func TestLintKindsExample(t *testing.T) {
	if got := run(t.Context(), []string{"lint", "--config", "../../configs/kinds.yaml"}); got != exitOK {
		t.Errorf("probe lint --config configs/kinds.yaml = exit %d, want %d", got, exitOK)
	}
}
