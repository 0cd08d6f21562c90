//go:build linux

package syn_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/lab/paws"
	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/probe"
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
			if r.Success() != tt.want.Success() {
				t.Errorf("success: got %v, want %v", r.Success(), tt.want.Success())
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
			if r.Reason != probe.ReasonPAWSRejected || r.Success() {
				t.Errorf("attempt %d: got %s (success %v), want %s", i, r.Reason, r.Success(), probe.ReasonPAWSRejected)
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

// TestLoopbackBothFamilies probes ::1 and 127.0.0.1 in a bare namespace: open,
// closed, and an nft reject with ICMP(v6) admin-prohibited, so the IPv6
// builder, filters and parsers run against the real kernel too.
func TestLoopbackBothFamilies(t *testing.T) {
	ns := nstest.New(t) // the lab is IPv4
	path := nstest.Path(ns)
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
		ln := nstest.Listen(t, ns, net.JoinHostPort(host, "0"))
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

// nftNode runs an nft script in the lab's node namespace: faults the lab has
// no name for. Rules in the "fault" table go with the next ClearFaults.
func nftNode(t *testing.T, l *lab.Lab, script string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.Router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\nscript:\n%s", err, out, script)
	}
}

// TestLabLateSynAck: the target answers SYN #1, that SYN/ACK is lost on the
// way back, the probe retransmits, and the listener (in SYN-RECV) re-sends
// its SYN/ACK, still echoing SYN #1's TSval. The answer came only after the
// retransmit, so the attempt is syn_retransmitted (what the connect probe
// says for the same fault), the evidence says the first SYN/ACK was probably
// lost on the return path, and the RTT is from the last SYN sent. Before:
// ok, retransmits=1 and an RTT of the whole 200 ms retransmit delay.
func TestLabLateSynAck(t *testing.T) {
	l := lab.New(t)
	dst := netip.AddrPortFrom(l.DBIP, 3306)
	listen(t, l, l.DB, dst)
	// Drop only the first SYN/ACK of each flow (keyed by the pod's port).
	nftNode(t, l, fmt.Sprintf(`add set ip fault first_synack { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 2m; }
add rule ip fault filter_forward ct original ip saddr %s ct direction reply tcp flags & (syn|ack) == syn|ack ip daddr . tcp dport != @first_synack add @first_synack { ip daddr . tcp dport } counter drop
`, l.PodIP))
	for i := range 2 {
		r := probeOnce(t, target(t, l, dst), fast)
		if r.Reason != probe.ReasonSynRetransmitted || !r.Success() {
			t.Errorf("attempt %d: got %s (success %v), want syn_retransmitted", i, r.Reason, r.Success())
		}
		if r.Retransmits != 1 {
			t.Errorf("attempt %d: retransmits %d, want 1", i, r.Retransmits)
		}
		if !hasEvidence(r, "SYN/ACK echoes SYN #1 (TSecr) but came") || !hasEvidence(r, "after SYN #2 of 2") || !hasEvidence(r, "lost on the return path") {
			t.Errorf("attempt %d: evidence %q: want the late SYN/ACK to SYN #1 after SYN #2, lost on the return path", i, r.Evidence)
		}
		// The RTT is from SYN #2 (sub-millisecond in the lab), not from
		// SYN #1 (200 ms earlier).
		if r.Timings.SynRTT <= 0 || r.Timings.SynRTT > 100*time.Millisecond {
			t.Errorf("attempt %d: syn_rtt %s, want the round trip of SYN #2", i, r.Timings.SynRTT)
		}
		if r.Timings.Handshake < 150*time.Millisecond {
			t.Errorf("attempt %d: handshake %s, want about 200ms (first SYN to answer)", i, r.Timings.Handshake)
		}
	}
}

// TestLabStrayReplies: packets that are replies to our SYN but not answers
// must be named in the evidence, not reported as "no SYN/ACK". A SYN/ACK
// from the backend's own address instead of the VIP (the node forgot to
// reverse the NAT: the signature of a stale NAT/IPVS session), and a SYN/ACK
// with a wrong ack number. Before: "no SYN/ACK, no RST, no ICMP" for both.
func TestLabStrayReplies(t *testing.T) {
	l := lab.New(t)
	listen(t, l, l.Backend1, netip.AddrPortFrom(l.Backend1IP, 8080))
	listen(t, l, l.Backend2, netip.AddrPortFrom(l.Backend2IP, 8080))
	db := netip.AddrPortFrom(l.DBIP, 3306)
	listen(t, l, l.DB, db)
	vip := netip.AddrPortFrom(l.VIP, 8080)

	t.Run("un-NATed SYN/ACK", func(t *testing.T) {
		if err := l.ClearFaults(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The backends' SYN/ACKs skip conntrack on the node: not
		// reverse-NATed, they reach the pod from the backend's address.
		nftNode(t, l, `add rule ip fault raw_prerouting iifname "br0" tcp flags & (syn|ack) == syn|ack counter notrack
`)
		r := probeOnce(t, target(t, l, vip), fast)
		if r.Reason != probe.ReasonSynTimeout {
			t.Errorf("got %s, want syn_timeout", r.Reason)
		}
		if hasEvidence(r, "no SYN/ACK") {
			t.Errorf("evidence %q says no SYN/ACK came", r.Evidence)
		}
		if !hasEvidence(r, ":8080 instead of 10.96.0.10:8080") || !hasEvidence(r, "not reverse-NATed (stale NAT/IPVS entry?)") {
			t.Errorf("evidence %q: want the SYN/ACK from a backend instead of the VIP, not reverse-NATed", r.Evidence)
		}
		if !hasEvidence(r, "SYN/ACK from 10.244.2.1") {
			t.Errorf("evidence %q: want the backend's address", r.Evidence)
		}
	})
	t.Run("wrong ack", func(t *testing.T) {
		if err := l.ClearFaults(t.Context()); err != nil {
			t.Fatal(err)
		}
		nftNode(t, l, fmt.Sprintf(`add rule ip fault filter_forward ct original ip saddr %s ct direction reply tcp flags & (syn|ack) == syn|ack counter tcp ackseq set 12345
`, l.PodIP))
		r := probeOnce(t, target(t, l, db), fast)
		if r.Reason != probe.ReasonSynTimeout {
			t.Errorf("got %s, want syn_timeout", r.Reason)
		}
		if hasEvidence(r, "no SYN/ACK") {
			t.Errorf("evidence %q says no SYN/ACK came", r.Evidence)
		}
		if !hasEvidence(r, "SYN/ACK from 10.244.2.20:3306 with ack 12345, expected ") {
			t.Errorf("evidence %q: want the SYN/ACK with the wrong ack", r.Evidence)
		}
	})
}

// budgetSoak is how long TestLabBudgetOverload runs: 20 s in `make test`;
// the 60 s acceptance run is
//
//	go test -run TestLabBudgetOverload ./probe/syn -args -syn.budget-soak=60s
var budgetSoak = flag.Duration("syn.budget-soak", 20*time.Second, "how long TestLabBudgetOverload overloads the SYN budget")

// TestLabBudgetOverload (issue 13 item 1): 200 SYN targets every second
// against a budget of 50 packets/s, 4x overload, for -syn.budget-soak. An
// nft counter on the node counts the SYNs that reach the wire, read every
// second: after the first second each second carries the budget ±10 %.
// Every target gets attempts through (the round robin), and no attempt is a
// target failure: only ok (got a packet) or prober_budget (skipped). Before:
// the bucket's debt grew with every attempt that gave up, SYNs on the wire
// fell to a few and then none, and every attempt was local_error.
func TestLabBudgetOverload(t *testing.T) {
	const (
		rate     = 50
		targets  = 4 * rate
		interval = time.Second
		timeout  = 800 * time.Millisecond
	)
	l := lab.New(t)
	if err := syn.SetRate(rate, rate); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syn.SetRate(syn.DefaultRate, syn.DefaultBurst) })
	dsts := make([]netip.AddrPort, targets)
	for i := range dsts {
		dsts[i] = netip.AddrPortFrom(l.DBIP, uint16(20000+i))
	}
	listen(t, l, l.DB, dsts...)
	// Count the SYNs that leave the pod: on the node, before anything else.
	nftNode(t, l, `table ip synwire {
	counter syns {}
	chain pre {
		type filter hook prerouting priority raw - 10; policy accept;
		iifname "veth-pod" tcp flags & (syn|ack) == syn counter name "syns"
	}
}
`)
	packetsRe := regexp.MustCompile(`packets (\d+)`)
	readCounter := func() int {
		out, err := l.Exec(t.Context(), l.Router, "nft", "list", "counter", "ip", "synwire", "syns")
		if err != nil {
			t.Fatal(err)
		}
		m := packetsRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no packet count in %q", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// Reading the counter every second takes an exec that, on a loaded
	// machine, lasts up to most of a second: too blurred for per-second
	// figures. The per-second counts come from the kernel's capture
	// timestamps of the same SYNs (tcpdump on the same interface); the nft
	// counter checks the capture's total.
	capCtx, capStop := context.WithCancel(t.Context())
	defer capStop()
	cap := exec.CommandContext(capCtx, "ip", "netns", "exec", l.Router, "tcpdump", "-i", "veth-pod", "-n", "-tt", "-l", "-Z", "root",
		"--immediate-mode", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
	capOut, err := cap.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	capErr, err := cap.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cap.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	errSc := bufio.NewScanner(capErr)
	for errSc.Scan() && !strings.Contains(errSc.Text(), "listening on") {
		t.Logf("tcpdump: %s", errSc.Text())
	}
	go func() {
		for errSc.Scan() {
		}
	}()
	var stamps []float64
	capDone := make(chan struct{})
	go func() {
		defer close(capDone)
		sc := bufio.NewScanner(capOut)
		for sc.Scan() {
			f, _, _ := strings.Cut(sc.Text(), " ")
			if ts, err := strconv.ParseFloat(f, 64); err == nil {
				stamps = append(stamps, ts)
			}
		}
	}()

	before := readCounter() // nothing sent yet
	start := time.Now()
	ctx, stop := context.WithTimeout(t.Context(), *budgetSoak)
	defer stop()
	var mu sync.Mutex
	byReason := map[probe.Reason]int{}
	okPer := make([]int, targets)
	attemptsPer := make([]int, targets)
	var bad, timeouts []string
	var wg sync.WaitGroup
	for i, dst := range dsts {
		p, err := syn.New(target(t, l, dst), syn.Config{Timeout: timeout, Schedule: []time.Duration{300 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		// As the scheduler does: a random offset, then one attempt per
		// interval, each bounded by the timeout.
		wg.Go(func() {
			next := time.Now().Add(rand.N(interval))
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				next = next.Add(interval)
				actx, cancel := context.WithTimeout(ctx, timeout)
				r := p.Probe(actx)
				cancel()
				if r.Reason == probe.ReasonCanceled || ctx.Err() != nil {
					return
				}
				mu.Lock()
				byReason[r.Reason]++
				attemptsPer[i]++
				switch r.Reason {
				case probe.ReasonOK:
					okPer[i]++
				case probe.ReasonProberBudget:
					if !hasEvidence(r, "--syn-rate / global.syn_rate") {
						bad = append(bad, fmt.Sprintf("%s: prober_budget evidence %q does not name the knob", dst, r.Evidence))
					}
				case probe.ReasonSynTimeout:
					// Judged below: on a loaded shared machine a lab SYN/ACK
					// can miss a budget-shortened wait now and then.
					timeouts = append(timeouts, fmt.Sprintf("%s: %s %q", dst, r.Reason, r.Evidence))
				default:
					bad = append(bad, fmt.Sprintf("%s: %s %q", dst, r.Reason, r.Evidence))
				}
				mu.Unlock()
			}
		})
	}

	// The wire: the nft counter over the whole run, the capture per second.
	<-ctx.Done()
	wg.Wait()
	end := time.Now()
	time.Sleep(200 * time.Millisecond) // the capture's last lines
	counted := readCounter() - before
	capStop()
	<-capDone
	cap.Wait()
	perSecond := make([]int, int(end.Sub(start)/time.Second))
	captured := len(stamps)
	for _, ts := range stamps {
		at := time.Unix(0, int64(ts*1e9))
		if s := int(at.Sub(start) / time.Second); s >= 0 && s < len(perSecond) {
			perSecond[s]++
		}
	}
	t.Logf("SYNs/s on the wire: %v; nft counted %d, the capture %d", perSecond, counted, captured)
	if d := captured - counted; d < -counted/100 || d > counted/100 {
		t.Errorf("the capture saw %d SYNs, the nft counter %d: the capture is not the wire", captured, counted)
	}
	if avg := float64(counted) / end.Sub(start).Seconds(); avg < rate*0.9 || avg > rate*1.1+float64(rate)/(*budgetSoak).Seconds() {
		t.Errorf("nft counter: %.1f SYNs/s on average, want %d ±10%% (plus the first burst)", avg, rate)
	}
	t.Logf("results: %v", byReason)
	for s, n := range perSecond {
		if s == 0 {
			continue // the first second: the burst, and the loops starting
		}
		if n >= rate*9/10 && n <= rate*11/10 {
			continue
		}
		// A send the loaded machine delayed across a second's boundary
		// moves packets from one second to the next, not the budget: such
		// a pair must be within ±10 % of two seconds' budget together.
		pairOK := func(m int) bool { return n+m >= 2*rate*9/10 && n+m <= 2*rate*11/10 }
		if (s > 1 && pairOK(perSecond[s-1])) || (s+1 < len(perSecond) && pairOK(perSecond[s+1])) {
			t.Logf("second %d: %d SYNs, a neighbour making up the difference (boundary jitter)", s+1, n)
			continue
		}
		t.Errorf("second %d: %d SYNs on the wire, want %d ±10%%", s+1, n, rate)
	}
	for _, b := range bad {
		t.Error(b)
	}
	// Zero target failures is the goal; a lost lab reply on a machine
	// other work loads is tolerated at one in 500 attempts, and logged.
	total := 0
	for _, n := range byReason {
		total += n
	}
	if len(timeouts)*500 > total {
		for _, b := range timeouts {
			t.Error(b)
		}
	} else {
		for _, b := range timeouts {
			t.Logf("tolerated (1 in 500 at most): %s", b)
		}
	}
	minOK, maxOK := okPer[0], okPer[0]
	for i, n := range okPer {
		minOK, maxOK = min(minOK, n), max(maxOK, n)
		if n == 0 {
			t.Errorf("%s: %d attempts, none got a packet: starved", dsts[i], attemptsPer[i])
		}
	}
	t.Logf("ok attempts per target: min %d, max %d", minOK, maxOK)
	if byReason[probe.ReasonProberBudget] == 0 {
		t.Error("no attempt was skipped for the budget at 4x overload")
	}
	// About one attempt in four gets a packet.
	if ok := byReason[probe.ReasonOK]; ok < total/6 || ok > total/2 {
		t.Errorf("%d of %d attempts ok: want about a quarter", ok, total)
	}
}

// TestLabBudgetSkips: with a budget of 1 packet/s, an attempt at a
// blackholed target gets its first SYN (the burst) but no packet for its
// retransmit before the timeout: it is skipped (prober_budget, the prober's
// fault), not a syn_timeout the target did not earn. The next attempt at
// once (the next packet is due 1 s after the first) gets none within half
// its timeout and sends nothing. Before:
// syn_timeout, then local_error naming an internal function.
func TestLabBudgetSkips(t *testing.T) {
	l := lab.New(t)
	dst := netip.AddrPortFrom(l.DBIP, 3306)
	if err := l.Fault(t.Context(), lab.Fault{Kind: lab.SYNDrop, Dst: dst}); err != nil {
		t.Fatal(err)
	}
	if err := syn.SetRate(1, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syn.SetRate(syn.DefaultRate, syn.DefaultBurst) })
	time.Sleep(1100 * time.Millisecond) // a full bucket: one packet
	cfg := syn.Config{Timeout: 500 * time.Millisecond, Schedule: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}}
	p, err := syn.New(target(t, l, dst), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	r := p.Probe(t.Context())
	t.Logf("retransmit: %s phase=%s retx=%d %q", r.Reason, r.Phase, r.Retransmits, r.Evidence)
	if r.Reason != probe.ReasonProberBudget || r.Success() || !r.Reason.ProberFault() {
		t.Errorf("got %s, want prober_budget", r.Reason)
	}
	if r.Retransmits != 0 || !hasEvidence(r, "1 SYN(s) sent at 0s, no answer yet; SYN #2 (due at 200ms) got no packet from the SYN budget (1 packets/s, --syn-rate / global.syn_rate)") {
		t.Errorf("retransmits %d, evidence %q: want the first SYN sent and SYN #2 skipped, naming the knob", r.Retransmits, r.Evidence)
	}

	r = p.Probe(t.Context())
	t.Logf("first SYN: %s phase=%s retx=%d %q", r.Reason, r.Phase, r.Retransmits, r.Evidence)
	if r.Reason != probe.ReasonProberBudget || r.Phase != probe.PhaseSetup {
		t.Errorf("got %s in phase %s, want prober_budget in setup", r.Reason, r.Phase)
	}
	if !hasEvidence(r, "attempt skipped, no SYN sent: the SYN packet budget (1 packets/s for every raw SYN of this prober, --syn-rate / global.syn_rate) had no packet for it within 250ms (1/2 of its time)") {
		t.Errorf("evidence %q: want the skipped first SYN, naming the knob", r.Evidence)
	}
	if r.Duration > 400*time.Millisecond {
		t.Errorf("a skipped first SYN took %s: it may wait only half the 500ms timeout", r.Duration)
	}
}
