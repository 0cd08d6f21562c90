package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRunStallIsAWarning: a `probe run` stopped for 3 s in the middle of an
// attempt on a healthy target (the server answers after 1.5 s) discards that
// attempt as prober_stalled with a warning line on stderr; the next attempt
// is ok and the exit status is 0: the stall is no verdict on the target.
func TestRunStallIsAWarning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 4)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 64)
				c.Read(buf)
				time.Sleep(1500 * time.Millisecond)
				c.Write([]byte("pong\n"))
				c.Read(buf)
			})
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestProbeProcess$", "--",
		"run", "-c", "2", "-i", "100ms", "--timeout", "2500ms", "--send", `ping\n`, "--expect", "pong", ln.Addr().String())
	cmd.Env = append(os.Environ(), "CONNPROBE_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
	case <-ctx.Done():
		t.Fatal("probe run never connected")
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(3 * time.Second)
	cmd.Process.Signal(syscall.SIGCONT)
	err = cmd.Wait()
	out, errOut := stdout.String(), stderr.String()
	if err != nil {
		t.Errorf("probe run: %v, want exit 0\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "probe: warning: "+ln.Addr().String()+": the prober itself stalled during the attempt") {
		t.Errorf("no stall warning on stderr:\n%s", errOut)
	}
	for _, want := range []string{"prober_stalled", "would have read", "2 sent, 1 ok, 0% failed (1 not counted: the prober's own fault)"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

// TestRunExpectFail: --expect-fail gives the verdict of an expect: fail job
// on demand, with run's exit statuses; the prober's own faults are no
// verdict.
func TestRunExpectFail(t *testing.T) {
	up := listen(t).Addr().String()
	down := closedPort(t)
	for _, tt := range []struct {
		name   string
		args   []string
		status int
		stdout string
	}{
		{"refused is blocked", []string{"--expect-fail", down}, exitOK, "blocked as expected"},
		{"listed reason", []string{"--expect-fail=refused,unreachable", down}, exitOK, "blocked as expected"},
		{"another reason than listed", []string{"--expect-fail=unreachable", down}, exitFailed, "NOT blocked as expected"},
		{"answered", []string{"--expect-fail", up}, exitFailed, "NOT blocked as expected"},
		{"local_error is no verdict", []string{"--expect-fail", "--source", "192.0.2.1", down}, exitFailed, "local_error"},
		{"not a failure reason", []string{"--expect-fail=ok", down}, exitUsage, ""},
		{"not a reason", []string{"--expect-fail=blocked", down}, exitUsage, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, status := probeCmd(t, append([]string{"run"}, tt.args...)...)
			if status != tt.status || !strings.Contains(stdout, tt.stdout) {
				t.Errorf("exit %d, want %d; stdout lacks %q?\n%s\nstderr:\n%s", status, tt.status, tt.stdout, stdout, stderr)
			}
			if tt.name == "local_error is no verdict" && !strings.Contains(stderr, "no verdict on") {
				t.Errorf("stderr does not say there was no verdict:\n%s", stderr)
			}
		})
	}
}
