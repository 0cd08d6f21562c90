//go:build linux

package trace_test

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe/trace"
)

// fast keeps lab traces short: 2 SYNs per hop, 300 ms each, 2 silent hops
// end the trace.
func fast(l *lab.Lab) trace.Config {
	return trace.Config{NetNS: l.Path(l.Pod), Queries: 2, HopTimeout: 300 * time.Millisecond, Gap: 2, MaxHops: 8}
}

func listen(t *testing.T, l *lab.Lab, ns string, addrs ...netip.AddrPort) {
	t.Helper()
	for _, a := range addrs {
		ln, err := l.Listen(ns, a.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
}

// nft runs an nft command in the namespace ns.
func nft(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
}

func places(l *lab.Lab) []trace.Place {
	var ps []trace.Place
	for _, ns := range l.Namespaces() {
		ps = append(ps, trace.Place{Name: ns, NetNS: l.Path(ns)})
	}
	return ps
}

func logTrace(t *testing.T, tr *trace.Trace) {
	t.Helper()
	for _, line := range tr.Lines() {
		t.Log(line)
	}
	if tr.Err != nil {
		t.Logf("err: %v", tr.Err)
	}
}

// backendSYNDrop drops SYNs arriving at both backends: the node forwards
// them, the backends never answer.
func backendSYNDrop(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, ns := range []string{l.Backend1, l.Backend2} {
		nft(t, ns, "add table ip tracefault")
		nft(t, ns, "add chain ip tracefault in { type filter hook input priority 0; policy accept; }")
		nft(t, ns, "add rule ip tracefault in tcp flags & (syn|ack) == syn drop")
	}
	t.Cleanup(func() {
		for _, ns := range []string{l.Backend1, l.Backend2} {
			_ = exec.Command("ip", "netns", "exec", ns, "nft", "delete table ip tracefault").Run()
		}
	})
}

// nodeForwardSYNDrop drops the pod's SYNs in the node's forward path: after
// the TTL check, so the node still answers an expiring SYN with ICMP
// time-exceeded (ip_forward checks the TTL before the FORWARD hook), but
// nothing gets past it.
func nodeForwardSYNDrop(t *testing.T, l *lab.Lab) {
	t.Helper()
	nft(t, l.Router, "add rule ip fault filter_forward iifname veth-pod tcp flags & (syn|ack) == syn counter drop")
}

func wantVerdict(t *testing.T, tr *trace.Trace, end trace.End, subs ...string) {
	t.Helper()
	logTrace(t, tr)
	if tr.End != end {
		t.Errorf("end: got %s, want %s", tr.End, end)
	}
	for _, s := range subs {
		if !strings.Contains(tr.Verdict, s) {
			t.Errorf("verdict %q: want %q in it", tr.Verdict, s)
		}
	}
}

// TestLabTraceFaults traces through the lab with a fault at each place on
// the path and checks where the verdict puts it.
func TestLabTraceFaults(t *testing.T) {
	l := lab.New(t)
	listen(t, l, l.Backend1, netip.AddrPortFrom(l.Backend1IP, 8080))
	listen(t, l, l.Backend2, netip.AddrPortFrom(l.Backend2IP, 8080))
	listen(t, l, l.DB, netip.AddrPortFrom(l.DBIP, 3306))
	vip := netip.AddrPortFrom(l.VIP, 8080)
	db := netip.AddrPortFrom(l.DBIP, 3306)
	clear := func(t *testing.T) {
		if err := l.ClearFaults(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("db answers at hop 2", func(t *testing.T) {
		clear(t)
		tr := trace.Run(t.Context(), "", db, fast(l))
		wantVerdict(t, tr, trace.EndSynAck, "SYN/ACK from 10.244.2.20:3306 at hop 2, via 10.244.1.1 (hop 1)")
		if got := tr.Path(); strings.Join(got, " ") != "10.244.1.1 10.244.2.20" {
			t.Errorf("path: got %q", got)
		}
	})
	t.Run("VIP: SYN/ACK from the VIP, DNAT shown", func(t *testing.T) {
		clear(t)
		tr := trace.Run(t.Context(), "", vip, fast(l))
		tr.Explain(places(l))
		wantVerdict(t, tr, trace.EndSynAck, "SYN/ACK from 10.96.0.10:8080 at hop 2", l.Router+" DNATs it to 10.244.2.1", "(conntrack CLOSE)")
	})
	t.Run("closed port: RST at hop 2", func(t *testing.T) {
		clear(t)
		tr := trace.Run(t.Context(), "", netip.AddrPortFrom(l.DBIP, 3307), fast(l))
		wantVerdict(t, tr, trace.EndRST, "RST from 10.244.2.20:3307 at hop 2", ": refused")
	})
	t.Run("fault at the node: ends after hop 1", func(t *testing.T) {
		clear(t)
		nodeForwardSYNDrop(t, l)
		tr := trace.Run(t.Context(), "", db, fast(l))
		wantVerdict(t, tr, trace.EndSilence, "SYNs reach 10.244.1.1 (hop 1) and die after it: nothing from hop 2 to 3; the target never answered")
		if tr.EndHop != 1 {
			t.Errorf("end hop: got %d, want 1", tr.EndHop)
		}
	})
	t.Run("fault at the node, VIP: no conntrack entry, dies at the node", func(t *testing.T) {
		clear(t)
		nodeForwardSYNDrop(t, l)
		tr := trace.Run(t.Context(), "", vip, fast(l))
		tr.Explain(places(l))
		wantVerdict(t, tr, trace.EndSilence, "SYNs reach 10.96.0.10 (hop 1: a NAT before the target", "and die after it: nothing from hop 2")
		if tr.NAT != nil {
			t.Errorf("nat: got %+v, want none (the SYN was dropped before conntrack confirmed it)", tr.NAT)
		}
	})
	t.Run("SYNs blackholed before the node's routing", func(t *testing.T) {
		clear(t)
		if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop, Dst: db}); err != nil {
			t.Fatal(err)
		}
		tr := trace.Run(t.Context(), "", db, fast(l))
		wantVerdict(t, tr, trace.EndSilence, "nothing from hop 1 to 2: the SYNs die before the first hop")
	})
	t.Run("fault between node and backend", func(t *testing.T) {
		clear(t)
		backendSYNDrop(t, l)
		tr := trace.Run(t.Context(), "", vip, fast(l))
		wantVerdict(t, tr, trace.EndSilence, "SYNs reach 10.96.0.10 (hop 1", "and die after it: nothing from hop 2")
		tr.Explain(places(l))
		wantVerdict(t, tr, trace.EndSilence, l.Router+" DNATs them to 10.244.2.1", "(conntrack SYN_SENT: no answer seen) and the backend never answers: they die between the node and the backend")
	})
	t.Run("SYN/ACK lost on the way back", func(t *testing.T) {
		clear(t)
		if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNACKDrop, Dst: vip}); err != nil {
			t.Fatal(err)
		}
		tr := trace.Run(t.Context(), "", vip, fast(l))
		tr.Explain(places(l))
		wantVerdict(t, tr, trace.EndSilence, "backend 10.244.2.1", "answers (conntrack SYN_RECV at "+l.Router+": its SYN/ACK reached the node) but nothing comes back")
	})
	t.Run("ICMP admin-prohibited at the node", func(t *testing.T) {
		clear(t)
		if err := l.Fault(t.Context(), lab.Fault{Kind: lab.AdminProhibited, Dst: db}); err != nil {
			t.Fatal(err)
		}
		tr := trace.Run(t.Context(), "", db, fast(l))
		wantVerdict(t, tr, trace.EndUnreachable, "ICMP admin-prohibited from 10.244.1.1 at hop 2: the SYN is rejected there")
	})
}
