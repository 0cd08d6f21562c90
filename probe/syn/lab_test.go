//go:build linux

package syn_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/lab/paws"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/probe/syn"
)

// fast is a schedule that keeps lab tests short: SYNs at 0, 200, 400 ms.
var fast = syn.Config{Timeout: time.Second, Schedule: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}}

// listen opens listeners (never accepting: a SYN probe never completes the
// handshake) and closes them when the test ends.
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

func target(t *testing.T, l *lab.Lab, ap netip.AddrPort) probe.Target {
	t.Helper()
	tg, err := probe.ParseTarget(ap.String())
	if err != nil {
		t.Fatal(err)
	}
	tg.NetNS = l.Path(l.Pod)
	return tg
}

func probeOnce(t *testing.T, tg probe.Target, cfg syn.Config) probe.Result {
	t.Helper()
	p, err := syn.New(tg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := p.Probe(t.Context())
	t.Logf("%s: %s phase=%s retx=%d syn_rtt=%s evidence=%q err=%v", tg.Name, r.Reason, r.Phase, r.Retransmits, r.Timings.SynRTT, r.Evidence, r.Err)
	return r
}

func hasEvidence(r probe.Result, sub string) bool {
	for _, e := range r.Evidence {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}

// TestLabReasons probes from the lab's pod namespace through the node to the
// db namespace, with each fault injected on the node, and checks that every
// reason comes from its real cause.
func TestLabReasons(t *testing.T) {
	l := lab.New(t)
	open := netip.AddrPortFrom(l.DBIP, 3306)
	closed := netip.AddrPortFrom(l.DBIP, 3307)
	listen(t, l, l.DB, open)
	listen(t, l, l.Backend1, netip.AddrPortFrom(l.Backend1IP, 8080))
	listen(t, l, l.Backend2, netip.AddrPortFrom(l.Backend2IP, 8080))

	tests := []struct {
		name     string
		dst      netip.AddrPort
		fault    lab.FaultKind
		want     probe.Reason
		retx     int    // expected retransmits, -1: do not check
		evidence string // a line of evidence must contain this
		rtt      bool   // syn_rtt must be measured
	}{
		{"open port", open, "", probe.ReasonOK, 0, "SYN/ACK from 10.244.2.20:3306", true},
		{"open port behind the service VIP", netip.AddrPortFrom(l.VIP, 8080), "", probe.ReasonOK, 0, "SYN/ACK from 10.96.0.10:8080", true},
		{"closed port", closed, "", probe.ReasonRefused, 0, "RST from 10.244.2.20:3307", true},
		{"reject with tcp reset", open, lab.Reset, probe.ReasonRefused, 0, "RST from", true},
		{"blackhole", open, lab.SYNDrop, probe.ReasonSynTimeout, 2, "3 SYN(s) sent at 0s,2", false},
		{"SYN/ACK dropped on the way back", open, lab.SYNACKDrop, probe.ReasonSynTimeout, 2, "no SYN/ACK, no RST, no ICMP", false},
		{"ICMP admin-prohibited", open, lab.AdminProhibited, probe.ReasonUnreachable, 0, "ICMP admin-prohibited (type 3 code 13) from 10.244.1.1", false},
		{"ICMP host-unreachable", open, lab.HostUnreachable, probe.ReasonUnreachable, 0, "ICMP host-unreachable (type 3 code 1)", false},
		{"ICMP port-unreachable", open, lab.PortUnreachable, probe.ReasonRefused, 0, "ICMP port-unreachable", false},
		{"first SYN dropped", open, lab.FirstSYNDrop, probe.ReasonSynRetransmitted, 1, "SYN/ACK answered SYN #2 of 2 (matched by TSecr)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if err := l.ClearFaults(ctx); err != nil {
				t.Fatal(err)
			}
			if tt.fault != "" {
				if err := l.Fault(ctx, lab.Fault{Kind: tt.fault, Dst: tt.dst}); err != nil {
					t.Fatal(err)
				}
			}
			r := probeOnce(t, target(t, l, tt.dst), fast)
			if r.Reason != tt.want {
				t.Errorf("reason: got %s, want %s", r.Reason, tt.want)
			}
			if r.Success != tt.want.Success() {
				t.Errorf("success: got %v, want %v", r.Success, tt.want.Success())
			}
			if tt.retx >= 0 && r.Retransmits != tt.retx {
				t.Errorf("retransmits: got %d, want %d", r.Retransmits, tt.retx)
			}
			if !hasEvidence(r, tt.evidence) {
				t.Errorf("evidence %q: no line contains %q", r.Evidence, tt.evidence)
			}
			if tt.rtt && (r.Timings.SynRTT <= 0 || r.Timings.SynRTT > 100*time.Millisecond) {
				t.Errorf("syn_rtt %s: want a measured round trip", r.Timings.SynRTT)
			}
			if !tt.rtt && r.Timings.SynRTT != 0 {
				t.Errorf("syn_rtt %s: want none without a TCP answer", r.Timings.SynRTT)
			}
			if r.Local.Port() < syn.PortLo {
				t.Errorf("local %s: source port outside the probe's range", r.Local)
			}
		})
	}
}

// TestLabPAWS runs the PAWS emulator (an NFQUEUE consumer) in the db
// namespace: with it, the SYN with the older TSval is dropped while the fresh
// one is answered; without it (the rule's --queue-bypass lets SYNs through)
// both are answered.
func TestLabPAWS(t *testing.T) {
	l := lab.New(t)
	dst := netip.AddrPortFrom(l.DBIP, 3306)
	listen(t, l, l.DB, dst)
	const queue = 7
	if out, err := l.Exec(t.Context(), l.DB, paws.Rule(queue, dst.Port())...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cfg := fast
	cfg.PAWS = true
	cfg.PAWSWait = 700 * time.Millisecond
	p, err := syn.New(target(t, l, dst), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	t.Run("emulator on", func(t *testing.T) {
		e := paws.New()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- e.Run(ctx, l.Path(l.DB), queue) }()
		defer func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("emulator: %v", err)
			}
		}()
		time.Sleep(50 * time.Millisecond) // let it bind before the first SYN
		for i := range 2 {
			r := p.Probe(t.Context())
			t.Logf("attempt %d: %s evidence=%q", i, r.Reason, r.Evidence)
			if r.Reason != probe.ReasonPAWSRejected || r.Success {
				t.Errorf("attempt %d: got %s (success %v), want %s", i, r.Reason, r.Success, probe.ReasonPAWSRejected)
			}
			if !hasEvidence(r, "older TSval") || !hasEvidence(r, "got no answer") {
				t.Errorf("attempt %d: evidence %q lacks both TSvals", i, r.Evidence)
			}
		}
		acc, drop := e.Counts()
		if acc < 2 || drop < 2 {
			t.Errorf("emulator accepted %d, dropped %d SYNs: want both ≥ 2", acc, drop)
		}
	})
	t.Run("emulator off", func(t *testing.T) {
		r := p.Probe(t.Context())
		t.Logf("%s evidence=%q", r.Reason, r.Evidence)
		if r.Reason != probe.ReasonOK {
			t.Errorf("got %s, want ok", r.Reason)
		}
		if !hasEvidence(r, "also answered") {
			t.Errorf("evidence %q: want the older TSval answered", r.Evidence)
		}
	})
}

// TestLabConcurrent probes many targets at once over the one shared receive
// path of the pod namespace, including several ports of one address: each
// must get its own answer.
func TestLabConcurrent(t *testing.T) {
	l := lab.New(t)
	listen(t, l, l.DB, netip.AddrPortFrom(l.DBIP, 3306), netip.AddrPortFrom(l.DBIP, 5432))
	listen(t, l, l.Backend1, netip.AddrPortFrom(l.Backend1IP, 8080))
	blackhole := netip.AddrPortFrom(l.DBIP, 6379)
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop, Dst: blackhole}); err != nil {
		t.Fatal(err)
	}
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.AdminProhibited, Dst: netip.AddrPortFrom(l.Backend2IP, 8080)}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.AddrPort]probe.Reason{
		netip.AddrPortFrom(l.DBIP, 3306):       probe.ReasonOK,
		netip.AddrPortFrom(l.DBIP, 5432):       probe.ReasonOK,
		netip.AddrPortFrom(l.DBIP, 3307):       probe.ReasonRefused,
		blackhole:                              probe.ReasonSynTimeout,
		netip.AddrPortFrom(l.Backend1IP, 8080): probe.ReasonOK,
		netip.AddrPortFrom(l.Backend1IP, 8081): probe.ReasonRefused,
		netip.AddrPortFrom(l.Backend2IP, 8080): probe.ReasonUnreachable,
	}
	const perTarget = 8 // probers per target, all at once
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[netip.AddrPort]bool{}
	for dst, reason := range want {
		for range perTarget {
			wg.Go(func() {
				p, err := syn.New(target(t, l, dst), fast)
				if err != nil {
					t.Error(err)
					return
				}
				defer p.Close()
				for range 3 {
					r := p.Probe(t.Context())
					if r.Reason != reason || r.Remote != dst {
						t.Errorf("%s: got %s from %s (%q), want %s", dst, r.Reason, r.Remote, r.Evidence, reason)
					}
					mu.Lock()
					if seen[r.Local] {
						t.Errorf("%s: local %s used twice", dst, r.Local)
					}
					seen[r.Local] = true
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
}

// netnsLoopback makes a bare namespace with only lo up, for IPv6 (the lab is
// IPv4) and loopback probes, removed when the test ends.
func netnsLoopback(t *testing.T) string {
	t.Helper()
	lab.RequirePriv(t)
	name := fmt.Sprintf("cps%d", time.Now().UnixNano()%1e9)
	for _, argv := range [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
	} {
		if out, err := exec.CommandContext(t.Context(), argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// TestLoopbackBothFamilies probes ::1 and 127.0.0.1 in a bare namespace: open,
// closed, and an nft reject with ICMP(v6) admin-prohibited, so the IPv6
// builder, filters and parsers run against the real kernel too.
func TestLoopbackBothFamilies(t *testing.T) {
	ns := netnsLoopback(t)
	path := "/run/netns/" + ns
	rules := `table inet f {
	chain in {
		type filter hook input priority filter; policy accept;
		tcp dport 9999 tcp flags & (syn|ack) == syn reject with icmpx type admin-prohibited
	}
}`
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	for _, host := range []string{"::1", "127.0.0.1"} {
		var ln net.Listener
		lc := net.ListenConfig{}
		if err := netns.Do(path, func() (err error) {
			ln, err = lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, "0"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		open := ln.Addr().(*net.TCPAddr).AddrPort()
		a := netip.MustParseAddr(host)
		for _, tt := range []struct {
			dst      netip.AddrPort
			want     probe.Reason
			evidence string
		}{
			{netip.AddrPortFrom(a, open.Port()), probe.ReasonOK, "SYN/ACK from"},
			{netip.AddrPortFrom(a, 9), probe.ReasonRefused, "RST from"},
			{netip.AddrPortFrom(a, 9999), probe.ReasonUnreachable, "admin-prohibited"},
		} {
			tg, _ := probe.ParseTarget(tt.dst.String())
			tg.NetNS = path
			r := probeOnce(t, tg, fast)
			if r.Reason != tt.want || !hasEvidence(r, tt.evidence) {
				t.Errorf("%s: got %s %q, want %s with %q", tt.dst, r.Reason, r.Evidence, tt.want, tt.evidence)
			}
		}
	}
}
