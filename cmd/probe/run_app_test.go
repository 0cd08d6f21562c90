package main

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
)

func TestRunAppTargets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	// A listener that accepts and never speaks: a mysql:// target times out
	// in the app phase.
	silent := testlisten.Loopback(t, testlisten.Silent).Addr().String()

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"http target picks the app probe", []string{"run", srv.URL + "/"}, exitOK},
		{"http 503 fails", []string{"run", srv.URL + "/down"}, exitFailed},
		{"explicit kind app", []string{"run", "--kind", "app", srv.URL + "/"}, exitOK},
		{"silent mysql fails", []string{"run", "--timeout", "300ms", "mysql://" + silent}, exitFailed},
		{"send with an app target", []string{"run", "--send", "x", "mysql://" + silent}, exitUsage},
		{"kind app on a tcp target", []string{"run", "--kind", "app", silent}, exitUsage},
		{"bad postgres sslmode", []string{"run", "postgres://u:p@" + silent + "/db?sslmode=prefer"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(context.Background(), tt.args); got != tt.want {
				t.Errorf("probe %v: exit %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}

func TestRunHTTPExpectations(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			w.Header().Set("Location", "https://sso.example.test/")
			w.WriteHeader(http.StatusFound)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(h) // self-signed for 127.0.0.1
	defer tlsSrv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	_ = os.WriteFile(notPEM, []byte("nope"), 0o600)

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"a redirect is an answer by default", []string{"run", srv.URL + "/login"}, exitOK},
		{"2xx refuses a redirect", []string{"run", "--expect-status", "2xx", srv.URL + "/login"}, exitFailed},
		{"302 accepts it", []string{"run", "--expect-status", "302", srv.URL + "/login"}, exitOK},
		{"a list, repeated or comma-separated", []string{"run", "--expect-status", "200", "--expect-status", "5xx,3xx", srv.URL + "/down"}, exitOK},
		{"body contains", []string{"run", "--expect-body", `"status":"ok"`, srv.URL + "/"}, exitOK},
		{"body does not contain", []string{"run", "--expect-body", "healthy", srv.URL + "/"}, exitFailed},
		{"self-signed refused", []string{"run", tlsSrv.URL + "/"}, exitFailed},
		{"self-signed with its CA file", []string{"run", "--ca-file", ca, tlsSrv.URL + "/"}, exitOK},
		{"self-signed with --insecure", []string{"run", "--insecure", "--expect-status", "2xx", tlsSrv.URL + "/"}, exitOK},
		{"--kind app given", []string{"run", "--kind", "app", "--insecure", tlsSrv.URL + "/"}, exitOK},
		{"missing CA file", []string{"run", "--ca-file", filepath.Join(dir, "none.pem"), tlsSrv.URL + "/"}, exitUsage},
		{"CA file without a certificate", []string{"run", "--ca-file", notPEM, tlsSrv.URL + "/"}, exitUsage},
		{"bad status", []string{"run", "--expect-status", "6xx", srv.URL + "/"}, exitUsage},
		{"ca-file and insecure", []string{"run", "--ca-file", ca, "--insecure", tlsSrv.URL + "/"}, exitUsage},
		{"expect-status with kind syn", []string{"run", "--kind", "syn", "--expect-status", "2xx", srv.URL + "/"}, exitUsage},
		{"expect-body with a tcp target", []string{"run", "--expect-body", "ok", "127.0.0.1:1"}, exitUsage},
		{"expect-status with a redis target", []string{"run", "--expect-status", "2xx", "redis://127.0.0.1:1"}, exitUsage},
		{"ca-file with http://", []string{"run", "--ca-file", ca, srv.URL + "/"}, exitUsage},
		{"insecure with redis", []string{"run", "--insecure", "redis://127.0.0.1:1"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(context.Background(), tt.args); got != tt.want {
				t.Errorf("probe %v: exit %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}

func TestRunAppFlagErrors(t *testing.T) {
	base := runFlags{kind: "connect", count: 1, interval: time.Second, timeout: time.Second, output: "text", synRate: 1000}
	for _, tc := range []struct {
		name   string
		f      func(*runFlags)
		target string
		want   string
	}{
		{"kind syn", func(f *runFlags) { f.kind, f.kindSet, f.appF.expectStatus = "syn", true, []string{"2xx"} }, "http://127.0.0.1:1/",
			`target "http://127.0.0.1:1/": --expect-status needs kind app (an http(s):// target), not kind syn`},
		{"tcp target", func(f *runFlags) { f.appF.expectBody, f.appF.insecure = "ok", true }, "127.0.0.1:1",
			`target "127.0.0.1:1": --expect-body, --insecure needs kind app (an http(s):// target), not kind connect`},
		{"redis", func(f *runFlags) { f.appF.expectStatus = []string{"2xx"} }, "redis://127.0.0.1:1",
			`target "redis://127.0.0.1:1": --expect-status: for http(s):// targets, not redis://`},
		{"http and a CA", func(f *runFlags) { f.appF.caFile = "/ca.pem" }, "http://127.0.0.1:1/",
			`target "http://127.0.0.1:1/": --ca-file: for https:// targets, not http://`},
		{"bad status and long body", func(f *runFlags) {
			f.appF.expectStatus, f.appF.expectBody = []string{"2xx", "20"}, strings.Repeat("x", 5000)
		}, "http://127.0.0.1:1/",
			"--expect-status: status \"20\": want a code 100-599 (302) or a class 1xx-5xx (2xx)\n--expect-body of 5000 bytes is longer than the 4096 bytes of body the probe reads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.f(&f)
			_, err := planRun(f, []string{tc.target})
			if err == nil || err.Error() != tc.want {
				t.Errorf("planRun: %v\nwant: %s", err, tc.want)
			}
		})
	}
}
