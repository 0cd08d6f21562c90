package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
)

// runCmd runs `probe run args...` and returns its error, stdout and stderr.
func runCmd(ctx context.Context, args ...string) (error, string, string) {
	var out, errb bytes.Buffer
	cmd := newRunCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true // as under the root command
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(ctx)
	return err, out.String(), errb.String()
}

// setBeat makes heartbeats and idle notices fast for a test.
func setBeat(t *testing.T, every, notice time.Duration) {
	oe, on := heartbeatEvery, idleNotice
	heartbeatEvery, idleNotice = every, notice
	t.Cleanup(func() { heartbeatEvery, idleNotice = oe, on })
}

// TestRunFindIdleTimeoutStreams (issue 21 item 11): --find-idle-timeout
// prints each round as it starts and ends, before the verdict, heartbeats
// on stderr while a round runs, and exits 1 when a loss was found.
func TestRunFindIdleTimeoutStreams(t *testing.T) {
	setBeat(t, 300*time.Millisecond, 0)
	l := lab.New(t)
	startLabResponders(t, l, 7700)
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.ConntrackTimeout, Timeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(l.VIP, 7700).String()
	err, out, errOut := runCmd(t.Context(), "--netns", l.Pod, "--kind", "idle", "--find-idle-timeout", "--min-idle", "1s", "--max-idle", "4s", "--reply-timeout", "1s", vip)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if !errors.Is(err, errFailed) {
		t.Errorf("error %v, want errFailed (exit 1: a loss was found)", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], vip+": round 1: trying 1s 2s 4s") || !strings.HasPrefix(lines[1], vip+": round 1: tried") {
		t.Fatalf("stdout does not start with the rounds as they ran:\n%s", out)
	}
	if !strings.Contains(lines[len(lines)-2], vip+": idle connections are lost after") {
		t.Errorf("verdict missing or not after the rounds:\n%s", out)
	}
	if !strings.Contains(errOut, vip+": idle-timeout search still running: round 1") {
		t.Errorf("no heartbeat on stderr:\n%s", errOut)
	}
}

// TestRunIdleHeartbeat (issue 21 item 11): a long --idle says when the idle
// starts and heartbeats while it lasts, on stderr, so -o json stays JSON.
func TestRunIdleHeartbeat(t *testing.T) {
	setBeat(t, 300*time.Millisecond, time.Second)
	l := lab.New(t)
	startLabResponders(t, l, 7700)
	vip := netip.AddrPortFrom(l.VIP, 7700).String()
	err, out, errOut := runCmd(t.Context(), "--netns", l.Pod, "--kind", "idle", "--idle", "1500ms", "-o", "json", vip)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, out)
		}
	}
	if !strings.Contains(errOut, vip+": connection 10.244.1.2:") || !strings.Contains(errOut, "idle for 1.5s, until ") {
		t.Errorf("no line when the idle started:\n%s", errOut)
	}
	if n := strings.Count(errOut, " of 1.5s"); n < 2 {
		t.Errorf("%d heartbeat(s) during 1.5s idle, want >= 2:\n%s", n, errOut)
	}
	// Below the notice threshold: silent.
	err, _, errOut = runCmd(t.Context(), "--netns", l.Pod, "--kind", "idle", "--idle", "500ms", vip)
	if err != nil || errOut != "" {
		t.Errorf("short idle: err %v, stderr %q, want quiet", err, errOut)
	}
}
