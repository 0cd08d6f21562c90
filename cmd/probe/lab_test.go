package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
)

// TestProbeProcess is not a test: it is the `probe` command when this test
// binary is re-executed by probeCmd, so the CLI is exercised end to end (its
// own process, stdout and exit status).
func TestProbeProcess(t *testing.T) {
	if os.Getenv("CONNPROBE_TEST_MAIN") != "1" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	// `probe lab up` starts its servers by running itself: here, this test.
	serverArgv = func() ([]string, error) {
		return []string{os.Args[0], "-test.run=^TestProbeProcess$", "--"}, nil
	}
	// As main does: Ctrl-C and SIGTERM cancel the command's context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, args)
	stop()
	os.Exit(code)
}

// probeCmd runs `probe args...` as its own process and returns its stdout,
// stderr and exit status.
func probeCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestProbeProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "CONNPROBE_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatalf("probe %v: %v", args, err)
	return "", "", -1
}

func serveBackends(t *testing.T, l *lab.Lab, port int) {
	t.Helper()
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { lab.Serve(ln, lab.Echo); close(done) }()
		t.Cleanup(func() { ln.Close(); <-done })
	}
}

// TestRunNetNSInLab: `probe run --netns <lab pod> <VIP>` probes from inside
// the pod namespace (the pod's own address is the local end) through the
// Service VIP.
func TestRunNetNSInLab(t *testing.T) {
	lab.RequirePriv(t)
	l := lab.New(t)
	serveBackends(t, l, 80)
	vip := l.VIP.String() + ":80"

	stdout, stderr, code := probeCmd(t, "run", "--netns", l.Pod, "-c", "3", "-i", "50ms", "-o", "json", "--send", `ping\n`, "--expect", "pong", vip)
	if code != exitOK {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var n int
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var r struct {
			Target  string `json:"target"`
			Reason  string `json:"reason"`
			Success bool   `json:"success"`
			Local   string `json:"local"`
			Remote  string `json:"remote"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		n++
		if r.Reason != "ok" || !r.Success || r.Remote != vip {
			t.Errorf("attempt %d: %+v, want ok to %s", n, r, vip)
		}
		// The socket lives in the pod namespace: its local end is the pod's IP.
		if !strings.HasPrefix(r.Local, l.PodIP.String()+":") {
			t.Errorf("attempt %d: local %s, want the pod's %s", n, r.Local, l.PodIP)
		}
	}
	if n != 3 {
		t.Fatalf("%d JSON lines, want 3:\n%s", n, stdout)
	}

	// The same path with a fault: text output, exit 1, the reason named.
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.HostUnreachable}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = probeCmd(t, "run", "--netns", l.Path(l.Pod), "--timeout", "2s", vip)
	if code != exitFailed || !strings.Contains(stdout, "unreachable") || !strings.Contains(stdout, "ICMP host-unreachable") {
		t.Fatalf("with host-unreachable: exit %d, want 1 and the ICMP kind\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// A namespace that does not exist is bad usage, said in one line.
	_, stderr, code = probeCmd(t, "run", "--netns", l.Prefix+"-nope", vip)
	if code != exitUsage || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "network namespace not found") {
		t.Fatalf("unknown netns: exit %d stderr %q, want exit 2 and one line", code, stderr)
	}
}

// TestLabCLI drives probe lab up, fault, clear and down as a user would.
func TestLabCLI(t *testing.T) {
	lab.RequirePriv(t)
	name := fmt.Sprintf("t%d", os.Getpid())
	prefix := "cpl-" + name
	t.Cleanup(func() {
		lab.Remove(prefix)
		os.Remove(statePath(name))
	})
	stdout, stderr, code := probeCmd(t, "lab", "up", "--name", name)
	if code != 0 || !strings.Contains(stdout, prefix+"-pod") || !strings.Contains(stdout, "10.96.0.10") || !strings.Contains(stdout, "fd00:10:96::10") {
		t.Fatalf("lab up: exit %d\n%s%s", code, stdout, stderr)
	}
	// The "try" commands address this lab, not the default one.
	_, try, _ := strings.Cut(stdout, "try:")
	if !strings.Contains(try, "probe lab fault --name "+name+" syn-drop") || !strings.Contains(try, "probe lab down --name "+name) || !strings.Contains(try, "probe lab clear --name "+name) {
		t.Errorf("try commands do not carry --name %s:\n%s", name, try)
	}
	st, err := loadState(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServers(st) })
	if st.Lab.Pod != prefix+"-pod" || st.Lab.VIP != lab.VIP || len(st.Servers) != 2 {
		t.Fatalf("state %+v", st)
	}
	// The servers up started: echo on 80, FIN at once on 90, via the VIP.
	vip := st.Lab.VIP.String()
	if stdout, _, code := probeCmd(t, "run", "--netns", st.Lab.Pod, "-c", "4", "-i", "10ms", "--send", `ping\n`, "--expect", "pong", vip+":80"); code != 0 {
		t.Errorf("echo server through the VIP: exit %d\n%s", code, stdout)
	}
	if stdout, _, code := probeCmd(t, "run", "--netns", st.Lab.Pod, "--send", `ping\n`, vip+":90"); code != exitFailed || !strings.Contains(stdout, "peer_closed") {
		t.Errorf("fin server through the VIP: exit %d\n%s", code, stdout)
	}
	if _, _, code := probeCmd(t, "lab", "up", "--name", name); code == 0 {
		t.Error("second lab up with the same name succeeded")
	}

	l, err := lab.Attach(prefix)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := l.Listen(l.DB, ":3306")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { lab.Serve(ln, lab.Echo); close(done) }()
	defer func() { ln.Close(); <-done }()
	db := l.DBIP.String() + ":3306"

	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"lab", "fault", "--name", name, "reset", "--dst", db}, 0},
		{[]string{"lab", "fault", "--name", name, "nonsense"}, exitUsage},
		{[]string{"lab", "fault", "--name", name, "loss", "--percent", "200"}, exitUsage},
		{[]string{"lab", "fault", "--name", name, "reset", "--dst", "db"}, exitUsage},
		{[]string{"lab", "fault", "--name", name, "reset", "--dst", "[" + l.DBIP6.String() + "]:3306"}, 0},
		{[]string{"lab", "fault", "--name", "no-such-lab", "reset"}, exitFailed},
		{[]string{"lab", "up", "--name", "Bad_Name"}, exitUsage},
	} {
		if _, stderr, code := probeCmd(t, tc.args...); code != tc.want {
			t.Errorf("probe %v: exit %d, want %d (%s)", tc.args, code, tc.want, stderr)
		}
	}
	stdout, _, code = probeCmd(t, "run", "--netns", l.Pod, db)
	if code != exitFailed || !strings.Contains(stdout, "refused") {
		t.Errorf("after fault reset: exit %d\n%s", code, stdout)
	}
	db6 := "[" + l.DBIP6.String() + "]:3306"
	stdout, _, code = probeCmd(t, "run", "--netns", l.Pod, db6)
	if code != exitFailed || !strings.Contains(stdout, "refused") {
		t.Errorf("v6 after fault reset --dst v6: exit %d\n%s", code, stdout)
	}
	if _, stderr, code := probeCmd(t, "lab", "clear", "--name", name); code != 0 {
		t.Fatalf("lab clear: exit %d %s", code, stderr)
	}
	// fault paws: an emulator process in the db; --paws sees paws_rejected.
	stdout, stderr, code = probeCmd(t, "lab", "fault", "--name", name, "paws", "--dst", db)
	if code != 0 || !strings.Contains(stdout, "PAWS emulator") {
		t.Fatalf("lab fault paws: exit %d\n%s%s", code, stdout, stderr)
	}
	if st, err = loadState(name); err != nil || len(st.Emulators) != 1 {
		t.Fatalf("state after fault paws: %+v %v", st, err)
	}
	emu := st.Emulators[0].PID
	stdout, _, code = probeCmd(t, "run", "--netns", l.Pod, "--paws", "--explain", "--peer-netns", l.DB, "--timeout", "1s", db)
	if code != exitFailed || !strings.Contains(stdout, "paws_rejected") || !strings.Contains(stdout, "kernel peer") {
		t.Errorf("--paws with fault paws: exit %d\n%s", code, stdout)
	}
	if _, stderr, code := probeCmd(t, "lab", "clear", "--name", name); code != 0 {
		t.Fatalf("lab clear: exit %d %s", code, stderr)
	}
	stdout, _, code = probeCmd(t, "run", "--netns", l.Pod, db)
	if code != 0 {
		t.Errorf("after clear: exit %d\n%s", code, stdout)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(emu) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(emu) {
		t.Errorf("PAWS emulator %d still running after clear", emu)
	}
	if _, stderr, code := probeCmd(t, "lab", "down", "--name", name); code != 0 {
		t.Fatalf("lab down: exit %d %s", code, stderr)
	}
	for _, s := range st.Servers {
		// Down sent SIGTERM; the server exits (and init reaps it) promptly.
		deadline := time.Now().Add(5 * time.Second)
		for alive(s.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(s.PID) {
			t.Errorf("server %d in %s still running after down", s.PID, s.NS)
		}
	}
	if left, _ := filepath.Glob("/run/netns/" + prefix + "-*"); len(left) > 0 {
		t.Errorf("after down: %v left", left)
	}
	if _, err := os.Stat(statePath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after down: %v", err)
	}
}

// TestLabDemo runs `probe lab demo` (what `make demo` runs): every scenario
// must be classified as expected and no namespace may be left behind.
func TestLabDemo(t *testing.T) {
	lab.RequirePriv(t)
	t0 := time.Now()
	stdout, stderr, code := probeCmd(t, "lab", "demo")
	if code != 0 {
		t.Fatalf("lab demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"all 33 scenarios classified as expected", "no namespace left", "syn_retransmitted", "ICMP admin-prohibited", "netns_gone", "dns_error",
		"(IPv6)", "fd00:10:96::10", "all 5 incidents replayed and classified as expected", "in all"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "WANT") {
		t.Errorf("a scenario was misclassified:\n%s", stdout)
	}
	if left, _ := filepath.Glob("/run/netns/cpdemo*"); len(left) > 0 {
		// Another demo may run at the same time; only ours matter.
		for _, p := range left {
			if strings.Contains(p, "cpdemo"+pidOf(stdout)) {
				t.Errorf("namespace %s left behind", p)
			}
		}
	}
	took := time.Since(t0)
	t.Logf("demo took %s\n%s", took, stdout)
	if took > 2*time.Minute {
		t.Errorf("demo took %s, want under 2 minutes", took)
	}
}

// TestLabDemoInterrupted: Ctrl-C in the middle of the demo still tears
// every lab down.
func TestLabDemoInterrupted(t *testing.T) {
	lab.RequirePriv(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestProbeProcess$", "--", "lab", "demo")
	cmd.Env = append(os.Environ(), "CONNPROBE_TEST_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Wait until its labs exist, then interrupt.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left, _ := filepath.Glob(fmt.Sprintf("/run/netns/cpdemo%d-i4-*", pid)); len(left) > 0 {
			break
		}
	}
	time.Sleep(time.Second)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	t.Logf("exit %v\n%s", err, out.String())
	if left, _ := filepath.Glob(fmt.Sprintf("/run/netns/cpdemo%d*", pid)); len(left) > 0 {
		t.Errorf("namespaces left after Ctrl-C: %v", left)
		for _, p := range left {
			exec.Command("ip", "netns", "delete", filepath.Base(p)).Run()
		}
	}
}

// TestLabIncidentCLI: probe lab incident NAME prints the block and exits 0;
// an unknown name is bad usage.
func TestLabIncidentCLI(t *testing.T) {
	lab.RequirePriv(t)
	stdout, stderr, code := probeCmd(t, "lab", "incident", "syn-retransmit-30s", "--ipv6")
	if code != 0 || !strings.Contains(stdout, "connprobe says:    syn_retransmitted") || !strings.Contains(stdout, "ip_local_port_range") || !strings.Contains(stdout, "fd00:10:96::10") {
		t.Errorf("lab incident: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code := probeCmd(t, "lab", "incident", "nope"); code != exitUsage || !strings.Contains(stderr, "kafka-close-wait") {
		t.Errorf("unknown incident: exit %d %s", code, stderr)
	}
}

// pidOf extracts the pid from the demo's "lab cpdemo<pid>:" header.
func pidOf(out string) string {
	_, rest, ok := strings.Cut(out, "lab cpdemo")
	if !ok {
		return "?"
	}
	pid, _, _ := strings.Cut(rest, ":")
	return pid
}

func TestParseDst(t *testing.T) {
	for in, want := range map[string]string{"10.96.0.10:80": "10.96.0.10:80", "10.96.0.10": "10.96.0.10:0", "db": "", "10.96.0.10:x": ""} {
		got, err := parseDst(in)
		if want == "" {
			if err == nil {
				t.Errorf("parseDst(%q) = %s, want error", in, got)
			}
			continue
		}
		if err != nil || got.String() != want {
			t.Errorf("parseDst(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
