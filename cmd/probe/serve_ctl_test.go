package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/configs"
	promexp "github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// TestServeProcess is not a test: it is `probe` with main's signal handling
// (SIGTERM and SIGINT end it gracefully) when startServeProcess re-executes
// this test binary.
func TestServeProcess(t *testing.T) {
	if os.Getenv("CONNPROBE_TEST_MAIN") != "serve" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, args))
}

// serveProc is `probe serve` running as its own process.
type serveProc struct {
	cmd    *exec.Cmd
	addr   string
	config string
	logs   *syncBuffer
	exited chan struct{} // closed when the process has exited; then err is set
	err    error
}

// startServeProcess writes config and runs `probe serve --config FILE
// --web.listen-address 127.0.0.1:0 args...` until the test ends.
func startServeProcess(t *testing.T, config string, args ...string) *serveProc {
	t.Helper()
	return startServeProcessIn(t, config, nil, args...)
}

// startServeProcessIn is startServeProcess behind the argv prefix wrap
// (setpriv …, a shell that moves itself into a cgroup and execs "$0" "$@";
// nil: none), so the process can be stopped, throttled or stripped of a
// capability without touching the test. At the end of the test it is
// continued (if stopped) and sent SIGTERM, and must exit within 15 s.
func startServeProcessIn(t *testing.T, config string, wrap []string, args ...string) *serveProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, config)
	argv := append(append([]string{}, wrap...), os.Args[0], "-test.run=^TestServeProcess$", "--", "serve", "--config", path,
		"--web.listen-address", "127.0.0.1:0")
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Env = append(os.Environ(), "CONNPROBE_TEST_MAIN=serve")
	stderr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, config: path, logs: &syncBuffer{mu: make(chan struct{}, 1)}, exited: make(chan struct{})}
	addr := make(chan string, 1)
	re := regexp.MustCompile(`msg=serving address=(\S+)`)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logs.Write([]byte(sc.Text() + "\n"))
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-p.exited
			t.Error("probe serve did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("probe serve logs:\n%s", p.logs.String())
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.exited:
		t.Fatalf("probe serve exited: %v\n%s", p.err, p.logs)
	case <-time.After(2 * time.Minute):
		t.Fatalf("probe serve did not start in 2m:\n%s", p.logs)
	}
	return p
}

// get GETs path and returns the status and body.
func (p *serveProc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + p.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, p.logs)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitForMetric polls /metrics until cond holds, for at most d.
func (p *serveProc) waitForMetric(t *testing.T, what string, d time.Duration, cond func(body string) bool) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		body := p.metrics(t)
		if cond(body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; /metrics:\n%s", what, d, grepLines(body, "connprobe_prob"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *serveProc) post(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post("http://"+p.addr+path, "", nil)
	if err != nil {
		t.Fatalf("POST %s: %v\n%s", path, err, p.logs)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *serveProc) metrics(t *testing.T) string {
	t.Helper()
	_, body := p.get(t, "/metrics")
	return body
}

// waitMetric polls /metrics until it contains line.
func (p *serveProc) waitMetric(t *testing.T, line string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		body := p.metrics(t)
		if strings.Contains(body, line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q; last:\n%s\nlogs:\n%s", line, grepLines(body, "connprobe_"), p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and wants a clean exit within d.
func (p *serveProc) stop(t *testing.T, d time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("probe serve exited with %v after SIGTERM, want 0\n%s", p.err, p.logs)
		}
	case <-time.After(d):
		t.Fatalf("probe serve still running %s after SIGTERM\n%s", d, p.logs)
	}
}

// writeAtomic replaces path's content in one rename, as a ConfigMap update
// does, so a concurrent reload never reads half a file.
func writeAtomic(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// TestServeReloadSurvivesAbortedRequests: hundreds of POST /-/reload whose
// clients hang up at once or mid-reload, while the config keeps changing,
// leave nothing blocked: a reload over HTTP and by SIGHUP still work
// afterwards, no goroutine is left behind, and SIGTERM ends the process.
// (Before the fix, one aborted POST could leave the scheduler's Run loop
// blocked forever handing its result to the gone requester.)
func TestServeReloadSurvivesAbortedRequests(t *testing.T) {
	up := listen(t).Addr().String()
	// 300 more targets (loopback ports, mostly closed) make each reload
	// and job restart take a while, so hang-ups land mid-reload.
	var many []string
	for port := 20000; port < 20300; port++ {
		many = append(many, fmt.Sprintf("%q", fmt.Sprint("127.0.0.1:", port)))
	}
	cfg := func(jobs ...string) string {
		s := "probes:\n"
		for _, j := range jobs {
			s += "  - name: " + j + "\n    interval: 200ms\n    targets: {static: [\"" + up + "\"]}\n"
		}
		return s + "  - name: many-" + jobs[len(jobs)-1] + "\n    interval: 10s\n    targets: {static: [" + strings.Join(many, ", ") + "]}\n"
	}
	p := startServeProcess(t, cfg("a", "b"), "--web.enable-lifecycle")
	p.waitMetric(t, `connprobe_probe_success{job="b",target="`+up+`"} 1`)
	goroutines := func() float64 { return metricValue(t, p.metrics(t), "go_goroutines") }
	before := goroutines()

	// Flip the config while the aborted reloads run, so each changes jobs.
	stopFlip := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stopFlip:
				return
			case <-time.After(2 * time.Millisecond):
			}
			writeAtomic(t, p.config, cfg("a", fmt.Sprint("b", i%3)))
		}
	}()
	const aborts = 400
	var wg sync.WaitGroup
	sem := make(chan struct{}, 25)
	for i := range aborts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /-/reload HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", p.addr)
			// Hang up at once, or a moment into the reload.
			time.Sleep(time.Duration(i%8) * 25 * time.Millisecond)
		})
	}
	wg.Wait()
	close(stopFlip)
	<-flipped

	writeAtomic(t, p.config, cfg("final"))
	if code, body := p.post(t, "/-/reload"); code != http.StatusOK || body != "config reloaded\n" {
		t.Fatalf("POST /-/reload after %d aborted ones = %d %q, want 200 config reloaded\n%s", aborts, code, body, p.logs)
	}
	p.waitMetric(t, `connprobe_probe_success{job="final",target="`+up+`"} 1`)
	p.waitMetric(t, "connprobe_config_last_reload_successful 1")

	writeAtomic(t, p.config, cfg("hup"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitMetric(t, `connprobe_probe_success{job="hup",target="`+up+`"} 1`)

	// Every aborted request's goroutine has ended.
	deadline := time.Now().Add(15 * time.Second)
	for after := goroutines(); after > before+10; after = goroutines() {
		if time.Now().After(deadline) {
			t.Errorf("go_goroutines %v after the aborted reloads, %v before: leaked", after, before)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d aborted POSTs; %d reloads in all", aborts, strings.Count(p.logs.String(), `msg="config reloaded"`))
	p.stop(t, 15*time.Second)
}

// openFDsOf counts the open file descriptors of process pid.
func openFDsOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// do sends method path with headers h to rs and returns status and body.
func (rs *runningServe) do(t *testing.T, method, path string, h map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+rs.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeReloadOverHTTPIsOptIn: without --web.enable-lifecycle POST
// /-/reload is refused with a message saying how to enable it, and SIGHUP
// still reloads.
func TestServeReloadOverHTTPIsOptIn(t *testing.T) {
	up := listen(t).Addr().String()
	rs := startServeWith(t, "probes:\n  - name: a\n    interval: 100ms\n    targets: {static: [\""+up+"\"]}\n", func(*serveFlags) {})
	rs.waitMetric(t, `connprobe_probe_success{job="a",target="`+up+`"} 1`)
	writeFile(t, rs.config, "probes:\n  - name: b\n    interval: 100ms\n    targets: {static: [\""+up+"\"]}\n")
	for _, m := range []string{"POST", "PUT", "GET"} {
		code, body := rs.do(t, m, "/-/reload", nil)
		if code != http.StatusForbidden || !strings.Contains(body, "--web.enable-lifecycle") || !strings.Contains(body, "SIGHUP") {
			t.Errorf("%s /-/reload without --web.enable-lifecycle = %d %q, want 403 naming the flag and SIGHUP", m, code, body)
		}
	}
	_, body := rs.get(t, "/metrics")
	if strings.Contains(body, `job="b"`) {
		t.Fatal("a refused POST reloaded the config")
	}
	rs.hup <- syscall.SIGHUP
	rs.waitMetric(t, `connprobe_probe_success{job="b",target="`+up+`"} 1`)
}

// TestServeReloadRefusesCrossSite: with the lifecycle API on, only POST is
// accepted, and what a web page can make a browser send (a cross-site
// fetch or form) is refused without reloading; curl and same-origin
// requests reload.
func TestServeReloadRefusesCrossSite(t *testing.T) {
	up := listen(t).Addr().String()
	rs := startServe(t, "probes:\n  - name: a\n    interval: 100ms\n    targets: {static: [\""+up+"\"]}\n", "")
	rs.waitMetric(t, `connprobe_probe_success{job="a",target="`+up+`"} 1`)
	writeFile(t, rs.config, "probes:\n  - name: b\n    interval: 100ms\n    targets: {static: [\""+up+"\"]}\n")
	for _, tt := range []struct {
		method string
		h      map[string]string
		want   int
	}{
		{"GET", nil, http.StatusMethodNotAllowed},
		{"PUT", nil, http.StatusMethodNotAllowed},
		{"POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"POST", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"POST", map[string]string{"Origin": "http://attacker.example"}, http.StatusForbidden},
		{"POST", map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"POST", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"POST", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, http.StatusUnsupportedMediaType},
		{"POST", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, http.StatusUnsupportedMediaType},
		{"POST", map[string]string{"Content-Type": "Text/Plain"}, http.StatusUnsupportedMediaType},
	} {
		code, body := rs.do(t, tt.method, "/-/reload", tt.h)
		if code != tt.want {
			t.Errorf("%s /-/reload %v = %d %q, want %d", tt.method, tt.h, code, body, tt.want)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if _, body := rs.get(t, "/metrics"); strings.Contains(body, `job="b"`) {
		t.Fatal("a refused request reloaded the config")
	}
	for i, h := range []map[string]string{
		nil, // curl -X POST
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"}, // typed in the address bar, a bookmark
		{"Origin": "http://" + rs.addr},
		{"Content-Type": "application/json"}, // a browser would have to preflight it
	} {
		job := fmt.Sprint("c", i)
		writeFile(t, rs.config, "probes:\n  - name: "+job+"\n    interval: 100ms\n    targets: {static: [\""+up+"\"]}\n")
		if code, body := rs.do(t, "POST", "/-/reload", h); code != http.StatusOK || body != "config reloaded\n" {
			t.Errorf("POST /-/reload %v = %d %q, want 200", h, code, body)
		}
		rs.waitMetric(t, `connprobe_job_info{expect="success",job="`+job+`",kind="connect"} 1`)
	}
}

// TestServeHTTPIdleConnectionsClosedAndCapped: keep-alive clients that go
// quiet after a request are closed after --web.idle-timeout, and no more
// than --web.max-connections are ever open in the process (its fd count).
func TestServeHTTPIdleConnectionsClosedAndCapped(t *testing.T) {
	up := listen(t).Addr().String()
	const maxConns, clients = 20, 20
	idle := time.Second
	p := startServeProcess(t, "probes:\n  - name: a\n    interval: 1s\n    targets: {static: [\""+up+"\"]}\n",
		"--web.max-connections", strconv.Itoa(maxConns), "--web.idle-timeout", idle.String())
	p.waitMetric(t, `connprobe_probe_success{job="a",target="`+up+`"} 1`)
	time.Sleep(1500 * time.Millisecond) // the metrics client's connection idles out
	base := openFDsOf(t, p.cmd.Process.Pid)

	type outcome struct {
		err            error
		served, closed time.Time
	}
	out := make(chan outcome, clients)
	for range clients {
		go func() {
			var o outcome
			defer func() { out <- o }()
			c, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
			if err != nil {
				o.err = err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", p.addr)
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				o.err = fmt.Errorf("read response: %w", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			o.served = time.Now()
			if resp.StatusCode != 200 || resp.Close {
				o.err = fmt.Errorf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
				return
			}
			// Stay quiet: the server must close the connection.
			if _, err := r.ReadByte(); err != io.EOF {
				o.err = fmt.Errorf("waiting for the server to close an idle connection: %v", err)
				return
			}
			o.closed = time.Now()
		}()
	}
	peak := 0
	var results []outcome
	for len(results) < clients {
		select {
		case o := <-out:
			results = append(results, o)
		case <-time.After(20 * time.Millisecond):
			peak = max(peak, openFDsOf(t, p.cmd.Process.Pid)-base)
		}
	}
	var idles []time.Duration
	for _, o := range results {
		if o.err != nil {
			t.Errorf("client: %v", o.err)
			continue
		}
		idles = append(idles, o.closed.Sub(o.served))
	}
	slices.Sort(idles)
	if len(idles) > 0 && (idles[0] < idle*8/10 || idles[len(idles)-1] > 5*idle) {
		t.Errorf("idle connections closed after %s to %s, want about the %s idle timeout", idles[0], idles[len(idles)-1], idle)
	}
	// The cap bounds accepted connections; allow a few fds of slack for
	// the probes the job runs meanwhile.
	if peak > maxConns+4 {
		t.Errorf("peak %d more fds than at rest with %d clients, want at most the %d-connection cap (+4)", peak, clients, maxConns)
	}
	if peak < maxConns/2 {
		t.Errorf("peak only %d more fds with %d clients: the test did not load the listener", peak, clients)
	}
	if len(idles) > 0 {
		t.Logf("%d clients, cap %d: peak +%d fds; idle connections closed after %s–%s", clients, maxConns, peak, idles[0], idles[len(idles)-1])
	}
	if code, _ := p.post(t, "/-/reload"); code != http.StatusForbidden {
		t.Errorf("POST /-/reload without --web.enable-lifecycle = %d, want 403", code)
	}
	p.stop(t, 15*time.Second)
}

// TestServeSilentClientsCannotLockOutScrapes: five times the connection cap
// of clients that connect and never send a request, reconnecting as soon as
// they are closed, neither raise the open fds over the cap nor keep a
// scrape out: TCP_DEFER_ACCEPT keeps them in the kernel until they speak,
// and one that is accepted takes a slot only until a newer connection needs
// it (the one that waited longest without a request is closed).
func TestServeSilentClientsCannotLockOutScrapes(t *testing.T) {
	up := listen(t).Addr().String()
	const maxConns, silent = 20, 100
	p := startServeProcess(t, "probes:\n  - name: a\n    interval: 1s\n    targets: {static: [\""+up+"\"]}\n",
		"--web.max-connections", strconv.Itoa(maxConns))
	p.waitMetric(t, `connprobe_probe_success{job="a",target="`+up+`"} 1`)
	base := openFDsOf(t, p.cmd.Process.Pid)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var opened atomic.Int64
	for range silent {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
				if err != nil {
					return
				}
				opened.Add(1)
				stop := context.AfterFunc(ctx, func() { c.Close() })
				_, _ = c.Read(make([]byte, 1)) // until the server closes it
				stop()
				c.Close()
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	for opened.Load() < silent { // every silent client is connected
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	peak := 0
	for i := range 5 {
		t0 := time.Now()
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + p.addr + "/metrics")
		if err != nil {
			t.Fatalf("scrape %d with %d silent clients on a %d-connection cap: %v", i, silent, maxConns, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "connprobe_probe_success") {
			t.Fatalf("scrape %d: %d, %d bytes", i, resp.StatusCode, len(body))
		}
		t.Logf("scrape %d answered in %s", i, time.Since(t0).Round(time.Millisecond))
		peak = max(peak, openFDsOf(t, p.cmd.Process.Pid)-base)
	}
	if peak > maxConns+4 {
		t.Errorf("%d more fds than at rest, want at most the %d-connection cap (+4)", peak, maxConns)
	}
	t.Logf("%d silent clients reconnected %d times; peak +%d fds", silent, opened.Load(), peak)
}

// TestListenAddressIsUsageError: a listen address whose host is not an IP
// literal is a usage error (exit 2) found before anything listens or
// resolves: no lookup through the system resolver.
func TestListenAddressIsUsageError(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, cfg, "probes:\n  - name: a\n    targets: {static: [\"127.0.0.1:1\"]}\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", cfg, "--web.listen-address", "999.1.1.1:99"}, `--web.listen-address "999.1.1.1:99": host "999.1.1.1" is not an IP address (names are not resolved`},
		{[]string{"serve", "--config", cfg, "--web.listen-address", "metrics.invalid:9716"}, `host "metrics.invalid" is not an IP address`},
		{[]string{"serve", "--config", cfg, "--web.listen-address", "9716"}, `--web.listen-address "9716": want [ip]:port`},
		{[]string{"serve", "--config", cfg, "--web.listen-address", ":http"}, `port "http" is not a number`},
		{[]string{"serve", "--config", cfg, "--web.listen-address", "127.0.0.1:70000"}, `port "70000" is not a number from 0 to 65535`},
		{[]string{"serve", "--config", cfg, "--web.max-connections", "0"}, `--web.max-connections 0: want at least 1`},
		{[]string{"responder", "--listen", "999.1.1.1:7700"}, `--listen "999.1.1.1:7700": host "999.1.1.1" is not an IP address`},
		{[]string{"responder", "--listen", "127.0.0.1:0", "--metrics-listen", "node-1:9107"}, `--metrics-listen "node-1:9107": host "node-1" is not an IP address`},
		{[]string{"responder", "--first-request-timeout", "-1s"}, `first_request_timeout -1s must not be negative`},
	} {
		_, stderr, code := probeCmd(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("probe %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

func TestCheckListenAddrAccepts(t *testing.T) {
	for _, a := range []string{":9716", ":0", "0.0.0.0:9716", "127.0.0.1:0", "[::]:9716", "[::1]:0", "[fe80::1%lo]:0"} {
		if err := checkListenAddr("--web.listen-address", a); err != nil {
			t.Errorf("%q: %v", a, err)
		}
	}
}

// stuckProber's attempts ignore their ctx until release is closed: a
// misbehaving probe kind.
type stuckProber struct{ release chan struct{} }

func (p stuckProber) Probe(context.Context) probe.Result {
	<-p.release
	return probe.Result{Reason: probe.ReasonOK}
}
func (stuckProber) Close() error { return nil }

// TestHealthzReportsStuckScheduler: /healthz answers 200 while the
// scheduler makes progress and 503 naming the stuck job once no attempt
// has returned for timeout + the stall bound; it recovers when the probes do.
func TestHealthzReportsStuckScheduler(t *testing.T) {
	logs := &syncBuffer{mu: make(chan struct{}, 1)}
	log := slog.New(slog.NewTextHandler(logs, nil))
	s := &server{log: log, exp: promexp.New(promexp.Options{Version: version})}
	s.healthy.Store(true)
	s.sched = scheduler.New(s.exp, log)
	s.sched.MinStall = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- s.sched.Run(ctx) }()
	hs := httptest.NewServer(s.routes())
	defer hs.Close()
	health := func() (int, string) {
		resp, err := http.Get(hs.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	up := listen(t).Addr().String()
	release := make(chan struct{})
	newJob := func(name string, stuck bool) *scheduler.Job {
		tg, err := probe.ParseTarget(up)
		if err != nil {
			t.Fatal(err)
		}
		newProber, _, err := jobKind(&configs.Job{Kind: "connect"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if stuck {
			newProber = func(probe.Target) (probe.Prober, error) { return stuckProber{release}, nil }
		}
		return &scheduler.Job{Name: name, Kind: "connect", Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond,
			Concurrency: 1, Source: targets.Static{tg}, New: newProber, Fingerprint: name}
	}
	if err := s.sched.Update(ctx, []*scheduler.Job{newJob("fine", false)}); err != nil {
		t.Fatal(err)
	}
	for range 10 { // 1s of probing: healthy throughout
		if code, body := health(); code != 200 || body != "ok\n" {
			t.Fatalf("/healthz while probing = %d %q, want 200 ok", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.sched.Update(ctx, []*scheduler.Job{newJob("fine", false), newJob("stuck", true)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := health()
		if code == http.StatusServiceUnavailable {
			if !strings.HasPrefix(body, `unhealthy: job "stuck": no attempt returned for `) || strings.Contains(body, `"fine"`) {
				t.Errorf("/healthz = %q, want only the stuck job named", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d %q 20s after a job got stuck", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(release)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := health(); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz did not recover once the probes returned")
		}
	}
	if l := logs.String(); !strings.Contains(l, "unhealthy: the scheduler is not making progress") || !strings.Contains(l, "healthy again") {
		t.Errorf("health changes not logged:\n%s", l)
	}
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	if code, body := health(); code != http.StatusServiceUnavailable || !strings.Contains(body, "scheduler: stopped") {
		t.Errorf("/healthz after the scheduler stopped = %d %q, want 503 stopped", code, body)
	}
}
