package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/connprobe/connprobe/probe/netns"
)

// TB is the part of testing.TB the lab uses; *testing.T, *testing.B and
// testing.TB satisfy it. (An interface of our own keeps package testing out
// of the probe binary, which links this package for `probe lab`.)
type TB interface {
	Helper()
	Cleanup(func())
	Context() context.Context
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Failed() bool
}

// RequirePrivEnv, when "1", turns RequirePriv's skip into a failure: CI and
// `make test` set it so a privileged test can never silently not run.
const RequirePrivEnv = "CONNPROBE_REQUIRE_PRIV"

// RequirePriv skips the test when not running as root, or fails it when
// CONNPROBE_REQUIRE_PRIV=1. It also fails (never skips) when root lacks a
// tool the lab needs, naming the package to install.
func RequirePriv(t TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv(RequirePrivEnv) == "1" {
			t.Fatalf("needs root (network namespaces, nftables) and %s=1 forbids skipping", RequirePrivEnv)
		}
		t.Skip("needs root: network namespaces and nftables")
	}
	if err := CheckTools(); err != nil {
		t.Fatalf("%v", err)
	}
}

// New brings a lab up for a test and tears it down on t.Cleanup, also when
// the test fails. It calls RequirePriv first. On a failed test it logs the
// node's ruleset, which usually explains the failure.
func New(t TB, opts ...Option) *Lab {
	t.Helper()
	RequirePriv(t)
	Sweep(t.Context())
	var o Options
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if rs, err := l.Ruleset(ctx); err == nil {
				t.Logf("lab %s: node ruleset at failure:\n%s", l.Prefix, rs)
			}
			// The node's conntrack view (the pod's TCP entries with
			// their seconds left) and its established timeout: what an
			// idle or VIP verdict at failure was judged against.
			if est, err := l.Exec(ctx, l.Router, "cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"); err == nil {
				t.Logf("lab %s: node nf_conntrack_tcp_timeout_established at failure: %s", l.Prefix, strings.TrimSpace(est))
			}
			if lines, err := l.Conntrack(ctx); err == nil {
				if len(lines) > 40 {
					lines = append(lines[:40], fmt.Sprintf("… and %d more", len(lines)-40))
				}
				t.Logf("lab %s: node conntrack (pod's TCP) at failure:\n%s", l.Prefix, strings.Join(lines, "\n"))
			}
		}
		if err := l.Down(); err != nil {
			t.Logf("lab %s down: %v", l.Prefix, err)
		}
	})
	return l
}

// Sweep removes labs made by New whose process is gone (a test binary that
// was killed before its cleanup ran). Labs of live processes, and namespaces
// that are not test labs, are left alone.
func Sweep(ctx context.Context) {
	ents, err := os.ReadDir(netns.NamedDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, ok := testLabPID(e.Name())
		if !ok || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = run(c, nil, "ip", "netns", "delete", e.Name())
		cancel()
	}
}

// testLabPID parses "cpt<pid>-<hex>-<role>".
func testLabPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, TestPrefix)
	if !ok {
		return 0, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// String describes the lab in one line.
func (l *Lab) String() string {
	return fmt.Sprintf("lab %s: pod %s (%s) → VIP %s → %s (%s), %s (%s); db %s (%s)",
		l.Prefix, l.Pod, l.PodIP, l.VIP, l.Backend1, l.Backend1IP, l.Backend2, l.Backend2IP, l.DB, l.DBIP)
}
