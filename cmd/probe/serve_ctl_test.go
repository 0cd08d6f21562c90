package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, config)
	argv := append([]string{"-test.run=^TestServeProcess$", "--", "serve", "--config", path,
		"--web.listen-address", "127.0.0.1:0"}, args...)
	cmd := exec.Command(os.Args[0], argv...)
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
		cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.addr = <-addr:
	case <-p.exited:
		t.Fatalf("probe serve exited: %v\n%s", p.err, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("probe serve did not start in 30s:\n%s", p.logs)
	}
	return p
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
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v\n%s", err, p.logs)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
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
