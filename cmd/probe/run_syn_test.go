package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/testlisten"
)

func TestPlanRunSYNFlags(t *testing.T) {
	base := runFlags{kind: "connect", count: 1, interval: time.Second, timeout: time.Second, output: "text", synRate: 1000}
	tests := []struct {
		name    string
		f       func(runFlags) runFlags
		wantErr string
	}{
		{"paws with an explicit connect kind", func(f runFlags) runFlags { f.paws, f.kindSet = true, true; return f }, `--paws needs --kind syn, not "connect"`},
		{"zero syn rate", func(f runFlags) runFlags { f.kind, f.kindSet, f.synRate = "syn", true, 0; return f }, "--syn-rate"},
		{"syn with --send", func(f runFlags) runFlags { f.kind, f.kindSet, f.send = "syn", true, "x"; return f }, "kind syn sends only a SYN"},
	}
	for _, tt := range tests {
		_, err := planRun(tt.f(base), []string{"127.0.0.1:1"})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	plan, err := planRun(func(f runFlags) runFlags { f.kind, f.kindSet, f.paws = "syn", true, true; return f }(base), []string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.probers {
		p.Close()
	}
}

// probeCmdNoNetRaw runs `probe args...` like probeCmd, but in a process
// without CAP_NET_RAW: setpriv (util-linux, essential on Debian) drops it from
// the bounding set before exec, and a root process's permitted set after
// exec(2) is the bounding set (capabilities(7), "Capabilities and execution
// of programs by root"), so the probe is root in every other respect but
// cannot open a raw socket.
func probeCmdNoNetRaw(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop CAP_NET_RAW: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	argv := append([]string{"--bounding-set=-net_raw", "--inh-caps=-net_raw", "--", os.Args[0], "-test.run=^TestProbeProcess$", "--"}, args...)
	cmd := exec.CommandContext(ctx, setpriv, argv...)
	cmd.Env = append(os.Environ(), "CONNPROBE_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("setpriv probe %v: %v", args, err)
	return "", "", -1
}

// TestRunSynWithoutNetRaw: without CAP_NET_RAW, `probe run --paws` (SYN
// probe asked for implicitly) falls back to the connect probe with a one-line
// notice, while `--kind syn` reports reason permission naming CAP_NET_RAW and
// exits 1. With the capability the same --kind syn run succeeds, so what the
// test sees comes from the dropped capability, not from the target.
func TestRunSynWithoutNetRaw(t *testing.T) {
	lab.RequirePriv(t)
	target := testlisten.Loopback(t, testlisten.Close).Addr().String()
	type result struct {
		Kind, Reason string
		Evidence     []string
	}
	parse := func(t *testing.T, stdout string) result {
		t.Helper()
		var r result
		if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &r); err != nil {
			t.Fatalf("stdout is not one JSON result: %v\n%s", err, stdout)
		}
		return r
	}

	t.Run("control: with CAP_NET_RAW --kind syn works", func(t *testing.T) {
		stdout, stderr, status := probeCmd(t, "run", "-o", "json", "--kind", "syn", target)
		if r := parse(t, stdout); status != exitOK || r.Kind != "syn" || r.Reason != "ok" {
			t.Fatalf("exit %d, result %+v, stderr %q; want exit 0, kind syn, ok", status, r, stderr)
		}
	})
	t.Run("--paws falls back to connect with a notice", func(t *testing.T) {
		stdout, stderr, status := probeCmdNoNetRaw(t, "run", "-o", "json", "--paws", target)
		r := parse(t, stdout)
		if status != exitOK || r.Kind != "connect" || r.Reason != "ok" {
			t.Errorf("exit %d, result %+v; want exit 0, kind connect, ok", status, r)
		}
		want := "probe: raw sockets not allowed (needs CAP_NET_RAW): falling back to --kind connect, no PAWS check\n"
		if stderr != want {
			t.Errorf("stderr %q, want the one line %q", stderr, want)
		}
	})
	t.Run("--kind syn reports permission", func(t *testing.T) {
		stdout, stderr, status := probeCmdNoNetRaw(t, "run", "-o", "json", "--kind", "syn", target)
		r := parse(t, stdout)
		if status != exitFailed || r.Kind != "syn" || r.Reason != "permission" {
			t.Errorf("exit %d, result %+v, stderr %q; want exit 1, kind syn, permission", status, r, stderr)
		}
		if !strings.Contains(strings.Join(r.Evidence, "\n"), "CAP_NET_RAW") {
			t.Errorf("evidence %q does not name CAP_NET_RAW", r.Evidence)
		}
		if strings.Contains(stderr, "falling back") {
			t.Errorf("explicit --kind syn fell back: stderr %q", stderr)
		}
	})
}
