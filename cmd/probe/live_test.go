package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
)

// TestLiveInTmux runs `probe run --live` in a real terminal (a detached
// tmux session of its own server), reads the screen with capture-pane until
// the table shows the verdicts, quits it with send-keys q and checks the
// final summary. The lab has a healthy VIP and a db whose SYNs the node
// drops after the TTL check (the trace ends after hop 1).
func TestLiveInTmux(t *testing.T) {
	lab.RequirePriv(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux not installed (Debian package tmux, .ci/packages.txt)")
	}
	l := lab.New(t)
	serveBackends(t, l, 80)
	if out, err := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.Router, "nft", "add rule ip fault filter_forward iifname veth-pod ip daddr 10.244.2.20 tcp flags & (syn|ack) == syn drop").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	sock := "cpt-live-" + l.Prefix
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "tmux", append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", sock, "kill-server").Run() })
	cmd := strings.Join([]string{"env", "CONNPROBE_TEST_MAIN=1", os.Args[0], "'-test.run=^TestProbeProcess$'", "--",
		"run", "--live", "--kind", "syn", "--netns", l.Pod, "-c", "0", "-i", "300ms", "--timeout", "400ms",
		"--trace", "--trace-queries", "1", "--trace-hop-timeout", "200ms", "--trace-gap", "2",
		"10.96.0.10:80", "10.244.2.20:3306"}, " ")
	tmux("new-session", "-d", "-s", "live", "-x", "150", "-y", "40", "sh -c \""+cmd+"; echo EXIT \\$?; sleep 60\"")

	screen := waitScreen(t, tmux, func(s string) bool {
		return strings.Contains(s, "trace: SYNs reach 10.244.1.1 (hop 1) and die after it") && strings.Contains(s, "10.96.0.10:80          ok")
	})
	for _, want := range []string{
		"connprobe live: syn every 300ms, until q, traced on failure",
		"TARGET", "LOSS", "MIN", "P90",
		"10.244.2.20:3306       syn_timeout        x",
		"1    10.244.1.1", "time-exceeded",
		"2    *",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "--- 10.96.0.10:80 syn statistics") {
		t.Errorf("summary printed before q:\n%s", screen)
	}
	tmux("send-keys", "-t", "live", "q")
	final := waitScreen(t, tmux, func(s string) bool { return strings.Contains(s, "EXIT ") })
	for _, want := range []string{"--- 10.96.0.10:80 syn statistics ---", "0% failed; by reason: ok=", "--- 10.244.2.20:3306 syn statistics ---", "100% failed; by reason: syn_timeout=", "EXIT 1"} {
		if !strings.Contains(final, want) {
			t.Errorf("after q, the screen lacks %q:\n%s", want, final)
		}
	}
}

func waitScreen(t *testing.T, tmux func(...string) string, ok func(string) bool) string {
	t.Helper()
	var s string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if s = tmux("capture-pane", "-p", "-t", "live"); ok(s) {
			return s
		}
	}
	t.Fatalf("screen never showed what was expected:\n%s", s)
	return ""
}

// Without a terminal on stdout, --live says so once and prints plain lines.
func TestLiveFallback(t *testing.T) {
	stdout, stderr, code := probeCmd(t, "run", "--live", "-c", "1", "--timeout", "300ms", "127.0.0.1:1")
	if code != exitFailed || !strings.Contains(stderr, "--live needs a terminal on stdout: printing plain lines") ||
		!strings.Contains(stdout, "127.0.0.1:1") || !strings.Contains(stdout, "refused") || !strings.Contains(stdout, "statistics ---") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
