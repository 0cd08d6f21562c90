package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/connprobe/connprobe/internal/nstest"
)

func TestLintNodeFlagsAndQuietOnDefaults(t *testing.T) {
	p := nstest.NewPair(t)
	var out bytes.Buffer
	f := lintNodeFlags{netns: p.Client, nodePorts: "30000-32767"}
	if err := lintNode(&out, f); err != nil {
		t.Fatalf("lint on a fresh namespace = %v:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "0 finding(s)") {
		t.Errorf("output:\n%s", out.String())
	}

	nstest.Sysctl(t, p.Client, "net.ipv4.ip_local_port_range=1024 65535")
	nstest.Sysctl(t, p.Client, "net.ipv4.tcp_syn_linear_timeouts=0")
	out.Reset()
	err := lintNode(&out, f)
	if !errors.Is(err, errFailed) {
		t.Fatalf("lint = %v, want errFailed", err)
	}
	t.Logf("\n%s", out.String())
	for _, want := range []string{"2 finding(s)", "overlap the NodePort range 30000-32767", "2m7s", "fix: sysctl -w net.ipv4.ip_local_port_range"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := lintNode(&out, lintNodeFlags{nodePorts: "x"}); err == nil {
		t.Error("bad --nodeport-range accepted")
	}
}
