package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/crypto/bcrypt"

	"github.com/connprobe/connprobe/internal/lab"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "rewrite docs/status.png from TestServeStatusPageInChromium")

// waitStatus polls /api/v1/targets until cond holds for its decoded data.
func (rs *runningServe) waitStatus(t *testing.T, what string, d time.Duration, cond func(targets []map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	var body string
	for {
		_, body = rs.get(t, "/api/v1/targets")
		var m struct {
			Data struct {
				Targets []map[string]any `json:"targets"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &m); err == nil && cond(m.Data.Targets) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last:\n%s", d, what, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func verdicts(ts []map[string]any) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[t["target"].(string)] = t["verdict"].(string)
	}
	return m
}

// TestServeStatusPageAPIAndFailureLog: serve keeps the why: / shows the
// healthy and the refused target with the refusal's evidence, the API
// answers per target, and the failure log has one line for the streak, not
// one per attempt.
func TestServeStatusPageAPIAndFailureLog(t *testing.T) {
	up := listen(t).Addr().String()
	down := closedPort(t)
	rs := startServe(t, fmt.Sprintf(`
probes:
  - name: web
    interval: 100ms
    timeout: 80ms
    targets: {static: ["%s", "%s"]}
`, up, down), "")
	rs.waitStatus(t, "both verdicts", 10*time.Second, func(ts []map[string]any) bool {
		v := verdicts(ts)
		return v[up] == "ok" && v[down] == "failing" && ts[0]["streak_attempts"].(float64) >= 5
	})
	code, body := rs.get(t, "/")
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	for _, want := range []string{up, down, `class="v v-ok"`, `class="v v-failing"`, "ECONNREFUSED", "<svg"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	code, body = rs.get(t, "/api/v1/targets/web/"+url.PathEscape(down)+"/attempts")
	if code != 200 || !strings.Contains(body, `"reason":"refused"`) || !strings.Contains(body, "ECONNREFUSED") {
		t.Errorf("attempts API = %d %s", code, body)
	}
	logs := rs.logs.String()
	if n := strings.Count(logs, `msg="target failing"`); n != 1 {
		t.Errorf("%d 'target failing' lines for one streak, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "target="+down) || !strings.Contains(logs, "reason=refused") || !strings.Contains(logs, "ECONNREFUSED") {
		t.Errorf("failure line lacks target, reason or evidence:\n%s", logs)
	}
}

func TestServeStatusBehindBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(web, []byte("basic_auth_users:\n  oncall: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := startServe(t, "probes:\n  - name: web\n    targets: {static: [\""+listen(t).Addr().String()+"\"]}\n", web)
	for _, p := range []string{"/", "/target?job=web&target=x", "/api/v1/targets", "/api/v1/targets/web/x/attempts"} {
		if code, _ := rs.get(t, p); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials = %d, want 401", p, code)
		}
		req, _ := http.NewRequest("GET", "http://"+rs.addr+p, nil)
		req.SetBasicAuth("oncall", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			t.Errorf("%s with credentials = 401", p)
		}
	}
}

func TestServeStatusFlagsAreChecked(t *testing.T) {
	f := serveFlags{config: "x", listen: "127.0.0.1:0", status: statusFlags{attempts: -1, failures: 0, summaryEvery: time.Millisecond}}
	err := serve(t.Context(), f, slog.New(slog.DiscardHandler), nil, nil)
	if _, ok := err.(usageError); !ok {
		t.Fatalf("bad status flags: %v, want a usage error", err)
	}
	for _, want := range []string{"--status.attempts -1", "--status.failures 0", "--log.failure-summary 1ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestServeLogFormatJSONCoversLibraries: with --log.format json, what the
// standard library's log package prints (net/http's server errors) is JSON
// too.
func TestServeLogFormatJSONCoversLibraries(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	prev := slog.Default()
	t.Cleanup(func() {
		slog.SetDefault(prev)
		stdlog.SetOutput(os.Stderr)
		_ = mysql.SetLogger(stdlog.New(os.Stderr, "[mysql] ", stdlog.Ldate|stdlog.Ltime|stdlog.Lshortfile))
	})
	routeLibraryLogs(log)
	stdlog.Print("http: TLS handshake error from 10.0.0.1:1234: EOF")
	stdlog.Printf("http: panic serving %s: %q", "10.0.0.1:1", "x\ny")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil {
			t.Errorf("not a JSON log line: %q (%v)", l, err)
		}
	}
}

// chromium returns the browser binary (Debian's chromium, in .ci/packages.txt).
func chromium(t *testing.T) string {
	t.Helper()
	for _, b := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found (Debian package chromium, listed in .ci/packages.txt)")
	return ""
}

// headless runs chromium headless on a 127.0.0.1 URL with args added and
// returns its stdout. Every other host name resolves to nothing, and the
// browser's own background traffic is off.
func headless(t *testing.T, u string, args ...string) string {
	t.Helper()
	if pu, err := url.Parse(u); err != nil || pu.Hostname() != "127.0.0.1" {
		t.Fatalf("headless chromium only ever loads 127.0.0.1, not %q", u)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--no-default-browser-check", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--user-data-dir=" + t.TempDir(), "--window-size=1500,900", "--hide-scrollbars"}
	cmd := exec.CommandContext(ctx, chromium(t), append(append(base, args...), u)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// TestServeStatusPageInChromium: a real browser loads the status page of a
// serve running in the lab, one target healthy (the Service VIP) and one
// faulted (the node drops every SYN to the database): the rendered DOM has
// both verdicts and the failing target's evidence, and a screenshot of it is
// taken (docs/status.png with -update-screenshot; see the README).
func TestServeStatusPageInChromium(t *testing.T) {
	l := lab.New(t)
	chromium(t)
	for _, ns := range []string{l.Backend1, l.Backend2, l.DB} {
		addr := ":8080"
		if ns == l.DB {
			addr = ":5432"
		}
		ln, err := l.Listen(ns, addr)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { lab.Serve(ln, lab.Echo) })
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}
	vip := netip.AddrPortFrom(l.VIP, 8080).String()
	db := netip.AddrPortFrom(l.DBIP, 5432)
	rs := startServe(t, fmt.Sprintf(`
probes:
  - name: vip
    interval: 250ms
    timeout: 200ms
    netns: %s
    targets: {static: ["%s"]}
  - name: db
    interval: 250ms
    timeout: 200ms
    netns: %s
    targets: {static: ["%s"]}
`, l.Path(l.Pod), vip, l.Path(l.Pod), db), "")
	rs.waitStatus(t, "both healthy", 20*time.Second, func(ts []map[string]any) bool {
		v := verdicts(ts)
		return v[vip] == "ok" && v[db.String()] == "ok" && ts[0]["attempts"].(float64) >= 16
	})
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop, Dst: db}); err != nil {
		t.Fatal(err)
	}
	rs.waitStatus(t, "healthy VIP and failing db", 20*time.Second, func(ts []map[string]any) bool {
		v := verdicts(ts)
		return v[vip] == "ok" && v[db.String()] == "failing" && ts[0]["streak_attempts"].(float64) >= 16
	})

	// The screenshot first, while the strip still shows the healthy past.
	shot := filepath.Join(t.TempDir(), "status.png")
	headless(t, "http://"+rs.addr+"/", "--screenshot="+shot, "--window-size=1300,380")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if *updateScreenshot {
		if err := os.WriteFile("../../docs/status.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	dom := headless(t, "http://"+rs.addr+"/", "--dump-dom")
	for _, want := range []string{
		vip, db.String(),
		`class="v v-ok">ok</span>`, `class="v v-failing">failing</span>`,
		"syn_timeout",
		"no SYN/ACK", // the failing target's evidence, in its row and in its cells' titles
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
	dom = headless(t, "http://"+rs.addr+"/target?"+url.Values{"job": {"db"}, "target": {db.String()}}.Encode(), "--dump-dom")
	if !strings.Contains(dom, "Last failures") || !strings.Contains(dom, "syn_timeout") || !strings.Contains(dom, "no SYN/ACK") {
		t.Errorf("target page lacks the failures' evidence:\n%s", dom)
	}

}
