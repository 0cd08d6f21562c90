package main

import (
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
