package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
