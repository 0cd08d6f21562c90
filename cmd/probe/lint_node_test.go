package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
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
	// Reserving the NodePort range, as the finding suggests, clears it.
	nstest.Sysctl(t, p.Client, "net.ipv4.ip_local_reserved_ports=30000-32767")
	out.Reset()
	_ = lintNode(&out, f)
	if strings.Contains(out.String(), "ip_local_port_range") || !strings.Contains(out.String(), "1 finding(s)") {
		t.Errorf("the overlap is still reported with the NodePort range reserved:\n%s", out.String())
	}
	if !strings.Contains(out.String(), ", invalid ") {
		t.Errorf("the conntrack summary hides the invalid count:\n%s", out.String())
	}
	if err := lintNode(&out, lintNodeFlags{nodePorts: "x"}); err == nil {
		t.Error("bad --nodeport-range accepted")
	}
}

func TestExplainerFindsThePeerNamespace(t *testing.T) {
	p := nstest.NewPair(t)
	// An address no other namespace on the machine has (other tests run
	// pairs and labs at the same time, some with the same IPv4 addresses).
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	uniq := netip.MustParseAddr(fmt.Sprintf("fd%02x:%02x%02x:%02x%02x::2", b[0], b[1], b[2], b[3], b[4])).String()
	addAddr := func(ns string) {
		if out, err := exec.Command("ip", "-n", ns, "addr", "add", uniq+"/64", "dev", "eth0", "nodad").CombinedOutput(); err != nil {
			t.Fatalf("ip addr add: %v: %s", err, out)
		}
	}
	addAddr(p.Server)
	target := "[" + uniq + "]:9000"
	f := runFlags{netns: p.Client, explainF: explainFlags{on: true}}
	ex, err := newExplainer(t.Context(), f, []string{target, "192.0.2.1:80", "127.0.0.1:9000", "[::1]:9000"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ex.ends[0]); got != 2 || ex.ends[0][1].Name != p.Server || ex.ends[0][0].NetNS != nstest.Path(p.Client) || ex.why[0] != "" {
		t.Errorf("ends of the pair's server = %+v (%q), want local %s and peer %s", ex.ends[0], ex.why[0], p.Client, p.Server)
	}
	if got := len(ex.ends[1]); got != 1 || !strings.Contains(ex.why[1], "not on this machine") {
		t.Errorf("ends of an address on no local namespace = %+v (%q), want local only", ex.ends[1], ex.why[1])
	}
	// The peer of a loopback target is the probing namespace itself, never
	// the host (whose 127.0.0.1 FindPeer would otherwise find first).
	for i := 2; i <= 3; i++ {
		if len(ex.ends[i]) != 1 || !strings.Contains(ex.why[i], "loopback target's far end is this same namespace") {
			t.Errorf("ends of a loopback target = %+v (%q), want local only, said so", ex.ends[i], ex.why[i])
		}
	}
	// Two namespaces with the target's address: no guess, both named.
	q := nstest.NewPair(t)
	addAddr(q.Server)
	ex, err = newExplainer(t.Context(), f, []string{target})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.ends[0]) != 1 || !strings.Contains(ex.why[0], "2 namespaces on this machine have "+uniq) ||
		!strings.Contains(ex.why[0], p.Server) || !strings.Contains(ex.why[0], q.Server) {
		t.Errorf("ambiguous peer: ends %+v, why %q; want local only and both namespaces named", ex.ends[0], ex.why[0])
	}
	off, err := newExplainer(t.Context(), runFlags{}, []string{"x:1"})
	if err != nil || off != nil || off.take(0) != nil {
		t.Errorf("explain off: %v %v", off, err)
	}
}
