package connect_test

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

// behaviour is what a lab backend does with an accepted connection.
type behaviour int

const (
	echo    behaviour = iota // answer every line with "pong\n"
	finFast                  // send FIN at once, then drain what the client sends
)

// startBackends runs the same servers on both backends of l: one per port.
func startBackends(t *testing.T, l *lab.Lab, ports map[uint16]behaviour) {
	t.Helper()
	var wg sync.WaitGroup
	var lns []net.Listener
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for _, ns := range []string{l.Backend1, l.Backend2} {
		for port, b := range ports {
			ln, err := l.Listen(ns, netip.AddrPortFrom(netip.IPv4Unspecified(), port).String())
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
			wg.Go(func() { acceptLoop(&wg, ln, b) })
		}
	}
}

func acceptLoop(wg *sync.WaitGroup, ln net.Listener, b behaviour) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			switch b {
			case echo:
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := io.WriteString(c, "pong\n"); err != nil {
						return
					}
				}
			case finFast:
				// The server's side is closed (FIN) before the client sends
				// anything: what a server's idle timeout does. Draining what
				// arrives afterwards keeps the kernel from answering it with
				// a RST, so the client sees exactly the FIN.
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}
		})
	}
}

// podProber builds a connect prober that opens its sockets in the lab's pod
// namespace.
func podProber(t *testing.T, l *lab.Lab, target string, cfg connect.Config) *connect.Prober {
	t.Helper()
	tg, err := probe.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	tg.NetNS = l.Path(l.Pod)
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	p, err := connect.New(tg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestLabScenarios is issue 2's acceptance list: each reason from its real
// cause, injected in the lab, probed from inside the pod namespace. Each
// scenario has its own VIP port and its fault is limited to that port, so
// the scenarios run in parallel in one lab.
func TestLabScenarios(t *testing.T) {
	t.Parallel()
	lab.RequirePriv(t)
	l := lab.New(t)
	ports := map[uint16]behaviour{}
	for p := uint16(80); p <= 92; p++ {
		if p != 84 { // 84: nothing listens
			ports[p] = echo
		}
	}
	ports[90] = finFast
	startBackends(t, l, ports)

	// The ICMP errors come from the node, but conntrack translates a
	// related ICMP like any reply: it reaches the pod from the VIP.
	ping := connect.Config{Send: []byte("ping\n"), Expect: []byte("pong")}
	for _, tc := range []struct {
		name     string
		port     uint16
		fault    lab.FaultKind // "" none
		cfg      connect.Config
		want     probe.Reason
		success  bool
		retx     int // -1: do not check
		phase    probe.Phase
		evidence []string // substrings that must appear in the evidence
	}{
		{name: "healthy VIP", port: 80, want: probe.ReasonOK, success: true, phase: probe.PhaseDone,
			evidence: []string{"established 10.244.1.2:"}},
		{name: "healthy VIP with exchange", port: 80, cfg: ping, want: probe.ReasonOK, success: true, phase: probe.PhaseDone,
			evidence: []string{`reply in`, `"pong\n"`}},
		{name: "first SYN dropped", port: 81, fault: lab.FirstSYNDrop, want: probe.ReasonSynRetransmitted, success: true, retx: 1, phase: probe.PhaseDone,
			evidence: []string{"needed 1 SYN retransmit"}},
		{name: "all SYNs dropped", port: 82, fault: lab.SYNDrop, want: probe.ReasonSynTimeout, retx: -1, phase: probe.PhaseHandshake,
			evidence: []string{"no SYN/ACK, no RST, no ICMP"}},
		{name: "SYN/ACK dropped on return", port: 83, fault: lab.SYNACKDrop, want: probe.ReasonSynTimeout, retx: -1, phase: probe.PhaseHandshake,
			evidence: []string{"no SYN/ACK, no RST, no ICMP"}},
		{name: "no listener", port: 84, want: probe.ReasonRefused, phase: probe.PhaseHandshake,
			evidence: []string{"ECONNREFUSED", "RST in answer to the SYN"}},
		{name: "reject with tcp reset", port: 85, fault: lab.Reset, want: probe.ReasonRefused, phase: probe.PhaseHandshake,
			evidence: []string{"ECONNREFUSED", "RST in answer to the SYN"}},
		{name: "ICMP host-unreachable", port: 86, fault: lab.HostUnreachable, want: probe.ReasonUnreachable, phase: probe.PhaseHandshake,
			evidence: []string{"EHOSTUNREACH", "ICMP host-unreachable (type 3 code 1) from 10.96.0.10"}},
		{name: "ICMP admin-prohibited", port: 87, fault: lab.AdminProhibited, want: probe.ReasonUnreachable, phase: probe.PhaseHandshake,
			evidence: []string{"EHOSTUNREACH", "ICMP admin-prohibited (type 3 code 13) from 10.96.0.10"}},
		{name: "ICMP net-unreachable", port: 88, fault: lab.NetUnreachable, want: probe.ReasonUnreachable, phase: probe.PhaseHandshake,
			evidence: []string{"ENETUNREACH", "ICMP net-unreachable (type 3 code 0) from 10.96.0.10"}},
		{name: "ICMP port-unreachable", port: 89, fault: lab.PortUnreachable, want: probe.ReasonRefused, phase: probe.PhaseHandshake,
			evidence: []string{"ECONNREFUSED", "ICMP port-unreachable (type 3 code 3) from 10.96.0.10"}},
		{name: "server closed before our send", port: 90, cfg: ping, want: probe.ReasonPeerClosed, phase: probe.PhaseReply,
			evidence: []string{"EOF: the peer sent FIN"}},
		{name: "server closed, waiting for a greeting", port: 90, cfg: connect.Config{Expect: []byte("hello")}, want: probe.ReasonPeerClosed, phase: probe.PhaseReply,
			evidence: []string{"EOF: the peer sent FIN"}},
		{name: "RST on the established connection", port: 91, fault: lab.ResetEstablished, cfg: ping, want: probe.ReasonReset, phase: probe.PhaseReply,
			evidence: []string{"ECONNRESET"}},
		{name: "request dropped after handshake", port: 92, fault: lab.DropAfter, cfg: ping, want: probe.ReasonReplyTimeout, phase: probe.PhaseReply,
			evidence: []string{"deadline exceeded", "ESTABLISHED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vip := netip.AddrPortFrom(l.VIP, tc.port)
			if tc.fault != "" {
				if err := l.Fault(t.Context(), lab.Fault{Kind: tc.fault, Dst: vip}); err != nil {
					t.Fatal(err)
				}
			}
			cfg := tc.cfg
			cfg.Timeout = 2 * time.Second
			r := podProber(t, l, vip.String(), cfg).Probe(t.Context())
			ev := strings.Join(r.Evidence, " | ")
			if r.Reason != tc.want || r.Success() != tc.success || r.Phase != tc.phase {
				t.Fatalf("got reason %s success %v phase %s, want %s %v %s\nevidence: %s\nerr: %v",
					r.Reason, r.Success(), r.Phase, tc.want, tc.success, tc.phase, ev, r.Err)
			}
			if tc.retx >= 0 && r.Retransmits != tc.retx {
				t.Errorf("retransmits %d, want %d", r.Retransmits, tc.retx)
			}
			for _, want := range tc.evidence {
				if !strings.Contains(ev, want) {
					t.Errorf("evidence %q\nwant it to contain %q", ev, want)
				}
			}
			if r.Remote != vip {
				t.Errorf("remote %s, want %s", r.Remote, vip)
			}
			if r.Retransmits > 0 && r.Timings.RTT != 0 {
				// Karn's rule: no clean sample, only a 1 ms-granular timestamp one.
				t.Errorf("rtt %s reported after %d SYN retransmit(s): not the path's RTT", r.Timings.RTT, r.Retransmits)
			}
			t.Logf("%s: %s retx=%d rtt=%s %s", tc.name, r.Reason, r.Retransmits, r.Timings.RTT, ev)
		})
	}
}

// TestLabSynTimeoutCountsRetransmits pins the SYN schedule (linear timeouts
// off: 0, 1, 3 s) and checks that a blackholed handshake reports the SYNs it
// really sent.
func TestLabSynTimeoutCountsRetransmits(t *testing.T) {
	t.Parallel()
	lab.RequirePriv(t)
	l := lab.New(t, lab.WithSysctl("pod", "net.ipv4.tcp_syn_linear_timeouts", "0"))
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop}); err != nil {
		t.Fatal(err)
	}
	r := podProber(t, l, l.DBIP.String()+":3306", connect.Config{Timeout: 3500 * time.Millisecond}).Probe(t.Context())
	if r.Reason != probe.ReasonSynTimeout {
		t.Fatalf("reason %s, want syn_timeout; evidence %q", r.Reason, r.Evidence)
	}
	// SYNs at 0, 1 and 3 s: two retransmits before the 3.5 s deadline.
	if r.Retransmits != 2 {
		t.Errorf("retransmits %d, want 2 (SYNs at 0, 1, 3 s); evidence %q", r.Retransmits, r.Evidence)
	}
	if ev := strings.Join(r.Evidence, " | "); !strings.Contains(ev, "3 SYN(s) sent") {
		t.Errorf("evidence %q, want 3 SYN(s) sent", ev)
	}
}

// TestLabNetNSGone probes from a pod namespace that was deleted after the
// prober was built: the pod went away.
func TestLabNetNSGone(t *testing.T) {
	t.Parallel()
	lab.RequirePriv(t)
	l := lab.New(t)
	p := podProber(t, l, l.VIP.String()+":80", connect.Config{})
	if out, err := exec.CommandContext(t.Context(), "ip", "netns", "delete", l.Pod).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete: %v: %s", err, out)
	}
	r := p.Probe(t.Context())
	if r.Reason != probe.ReasonNetNSGone || r.Phase != probe.PhaseSetup || r.Success() {
		t.Fatalf("got %s phase %s success %v, want netns_gone in setup; evidence %q, err %v", r.Reason, r.Phase, r.Success(), r.Evidence, r.Err)
	}
	if !strings.Contains(r.Err.Error(), l.Pod) {
		t.Errorf("error %q does not name the namespace %s", r.Err, l.Pod)
	}
}

// TestLabDNS resolves through a loopback fake DNS server (never a real
// one): an unknown name is dns_error, a known one reaches the VIP.
func TestLabDNS(t *testing.T) {
	t.Parallel()
	lab.RequirePriv(t)
	l := lab.New(t)
	startBackends(t, l, map[uint16]behaviour{80: echo})
	dns, err := lab.NewDNS(map[string][]netip.Addr{"web.lab.invalid": {l.VIP}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	cfg := connect.Config{Resolver: probe.NewResolver(netip.MustParseAddrPort(dns.Addr()))}

	r := podProber(t, l, "nope.lab.invalid:80", cfg).Probe(t.Context())
	if r.Reason != probe.ReasonDNSError || r.Phase != probe.PhaseResolve {
		t.Fatalf("unknown name: %s in %s, want dns_error in resolve; evidence %q", r.Reason, r.Phase, r.Evidence)
	}
	if ev := strings.Join(r.Evidence, " | "); !strings.Contains(ev, "no such host") {
		t.Errorf("evidence %q, want no such host", ev)
	}

	r = podProber(t, l, "web.lab.invalid:80", cfg).Probe(t.Context())
	if r.Reason != probe.ReasonOK || r.Remote != netip.AddrPortFrom(l.VIP, 80) {
		t.Fatalf("known name: %s to %s, want ok to the VIP; evidence %q", r.Reason, r.Remote, r.Evidence)
	}
	if r.Timings.Resolve <= 0 {
		t.Error("no resolve timing")
	}
}

// TestICMPEvidenceLeads: when an ICMP error ended the handshake, the
// evidence opens with the ICMP fact, not with the errno the kernel made of
// it: ICMPv6 admin-prohibited is EACCES (permission denied), which read
// first sends a user looking for a local permission problem. A bare
// namespace with only lo, an nft reject on input.
func TestICMPEvidenceLeads(t *testing.T) {
	name := nstest.New(t)
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet f {
	chain in {
		type filter hook input priority filter; policy accept;
		tcp dport 9999 tcp flags & (syn|ack) == syn reject with icmpx type admin-prohibited
		ip daddr 127.0.0.1 tcp dport 9998 tcp flags & (syn|ack) == syn reject with icmp type host-prohibited
	}
}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	for _, tc := range []struct{ target, first, errno string }{
		{"[::1]:9999", "ICMP admin-prohibited (type 1 code 1) from ::1", "connect() failed with EACCES (permission denied), the kernel's errno for that ICMP error"},
		{"127.0.0.1:9999", "ICMP admin-prohibited (type 3 code 13) from 127.0.0.1", "connect() failed with EHOSTUNREACH (no route to host), the kernel's errno for that ICMP error"},
		{"127.0.0.1:9998", "ICMP host-prohibited (type 3 code 10) from 127.0.0.1", "EHOSTUNREACH"},
	} {
		tg, err := probe.ParseTarget(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		tg.NetNS = nstest.Path(name)
		p, err := connect.New(tg, connect.Config{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r := p.Probe(t.Context())
		p.Close()
		t.Logf("%s: %s %q", tc.target, r.Reason, r.Evidence)
		if r.Reason != probe.ReasonUnreachable {
			t.Errorf("%s: got %s, want unreachable", tc.target, r.Reason)
		}
		if len(r.Evidence) < 2 || r.Evidence[0] != tc.first || !strings.Contains(r.Evidence[1], tc.errno) {
			t.Errorf("%s: evidence %q: want it to open with %q, then %q", tc.target, r.Evidence, tc.first, tc.errno)
		}
	}
}
