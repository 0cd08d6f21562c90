package main

import (
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe/syn"
)

func TestIdleFlagsChecked(t *testing.T) {
	base := func() runFlags {
		return runFlags{kind: "idle", synRate: syn.DefaultRate, count: 1, interval: time.Second, timeout: time.Second, output: "text",
			idleF: idleFlags{idle: 30 * time.Second, mode: "client-first", replyTimeout: 2 * time.Second, maxIdle: 20 * time.Minute, minIdle: time.Second}}
	}
	for _, tc := range []struct {
		name   string
		change func(*runFlags)
		given  []string
		want   string
	}{
		{"find needs kind idle", func(f *runFlags) { f.kind = "connect"; f.idleF.find = true }, []string{"find-idle-timeout"}, "--find-idle-timeout needs --kind idle"},
		{"idle needs kind idle", func(f *runFlags) { f.kind = "connect" }, []string{"idle"}, "--idle needs --kind idle"},
		{"idle positive", func(f *runFlags) { f.idleF.idle = 0 }, nil, "--idle must be positive"},
		{"max above min", func(f *runFlags) {
			f.idleF.find = true
			f.idleF.maxIdle = time.Second
			f.idleF.minIdle = 2 * time.Second
		}, nil, "--max-idle 1s must be longer than --min-idle 2s"},
		{"bad mode", func(f *runFlags) { f.idleF.mode = "sideways" }, nil, `mode "sideways"`},
		{"plain needs send", func(f *runFlags) { f.idleF.mode = "plain" }, nil, "mode plain needs a payload"},
		{"no user timeout", func(f *runFlags) { f.userTimeout = time.Second }, nil, "--user-timeout is not supported by kind idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.change(&f)
			f.changed = func(n string) bool { return slices.Contains(tc.given, n) }
			_, err := planRun(f, []string{"127.0.0.1:1"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	f := base()
	if _, err := planRun(f, []string{"127.0.0.1:1"}); err != nil {
		t.Fatalf("good idle flags: %v", err)
	}
}

// TestKindFlagsRefused (issue 21 item 12): a kind-specific flag given with a
// kind that ignores it is a usage error (exit 2) naming the flag and the
// kinds that take it, as --idle always was.
func TestKindFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ka-idle", "3s"}, "--ka-idle needs --kind keepalive, not connect"},
		{[]string{"--kind", "idle", "--ka-count", "2"}, "--ka-count needs --kind keepalive, not idle"},
		{[]string{"--kind", "keepalive", "--idle", "3s"}, "--idle needs --kind idle, not keepalive"},
		{[]string{"--kind", "syn", "--user-timeout", "3s"}, "--user-timeout needs --kind connect, app or keepalive, not syn"},
		{[]string{"--syn-rate", "10"}, "--syn-rate needs --kind syn, not connect"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append(append([]string{"run"}, tc.args...), "127.0.0.1:1")
			old := os.Stderr
			r, w, _ := os.Pipe()
			os.Stderr = w
			code := run(t.Context(), args)
			w.Close()
			os.Stderr = old
			msg, _ := io.ReadAll(r)
			if code != exitUsage || !strings.Contains(string(msg), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, msg, tc.want)
			}
		})
	}
	// Flags with the kind that takes them pass the check.
	for _, tc := range []struct{ kind, flag string }{{"keepalive", "ka-idle"}, {"connect", "user-timeout"}, {"idle", "find-repeats"}, {"syn", "syn-rate"}} {
		if errs := checkKindFlags(tc.kind, func(n string) bool { return n == tc.flag }); len(errs) > 0 {
			t.Errorf("--%s with kind %s: %v", tc.flag, tc.kind, errs)
		}
	}
}
