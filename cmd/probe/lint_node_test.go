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

func TestExplainerFindsThePeerNamespace(t *testing.T) {
	p := nstest.NewPair(t)
	f := runFlags{netns: p.Client, explainF: explainFlags{on: true}}
	ex, err := newExplainer(t.Context(), f, []string{p.Addr(9000).String(), "192.0.2.1:80"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ex.ends[0]); got != 2 || ex.ends[0][1].Name != p.Server || ex.ends[0][0].NetNS != nstest.Path(p.Client) {
		t.Errorf("ends of the pair's server = %+v, want local %s and peer %s", ex.ends[0], p.Client, p.Server)
	}
	if got := len(ex.ends[1]); got != 1 {
		t.Errorf("ends of an address on no local namespace = %+v, want local only", ex.ends[1])
	}
	off, err := newExplainer(t.Context(), runFlags{}, []string{"x:1"})
	if err != nil || off != nil || off.take(0) != nil {
		t.Errorf("explain off: %v %v", off, err)
	}
}
