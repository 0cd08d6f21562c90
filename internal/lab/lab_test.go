package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe/netns"
)

func TestFaultRule(t *testing.T) {
	l := newLab("x")
	vip80 := netip.MustParseAddrPort("10.96.0.10:80")
	for _, tc := range []struct {
		name string
		f    Fault
		want string // substring of the rule
	}{
		{"syn drop all", Fault{Kind: SYNDrop}, `raw_prerouting iifname "veth-pod" meta l4proto tcp tcp flags & (syn|ack) == syn counter drop`},
		{"syn drop to VIP port", Fault{Kind: SYNDrop, Dst: vip80}, "ip daddr 10.96.0.10 tcp dport 80 tcp flags"},
		{"first syn", Fault{Kind: FirstSYNDrop}, "!= @first_syn add @first_syn"},
		{"synack", Fault{Kind: SYNACKDrop, Dst: vip80}, "ct original ip daddr 10.96.0.10 ct original proto-dst 80 ct direction reply tcp flags & (syn|ack) == syn|ack"},
		{"icmp kind", Fault{Kind: AdminProhibited}, "reject with icmp type admin-prohibited"},
		{"reset est default", Fault{Kind: ResetEstablished}, "ct original packets > 2 counter reject with tcp reset"},
		{"drop after 5", Fault{Kind: DropAfter, Packets: 5}, "ct original packets > 5 counter drop"},
		{"loss", Fault{Kind: Loss, Percent: 30}, "numgen random mod 100 <= 29 counter drop"},
		{"no dst: both families", Fault{Kind: SYNDrop}, `add rule ip6 fault6 raw_prerouting iifname "veth-pod" meta l4proto tcp tcp flags`},
		{"v6 dst", Fault{Kind: Reset, Dst: netip.MustParseAddrPort("[fd00:10:96::10]:80")}, "add rule ip6 fault6 filter_forward ct original ip6 saddr fd00:10:244:1::2 meta l4proto tcp ct original ip6 daddr fd00:10:96::10 ct original proto-dst 80"},
		{"v6 icmp twin", Fault{Kind: HostUnreachable, Dst: netip.MustParseAddrPort("[fd00:10:96::10]:80")}, "reject with icmpv6 type addr-unreachable"},
		{"v6 first syn", Fault{Kind: FirstSYNDrop, Dst: netip.MustParseAddrPort("[fd00:10:96::10]:80")}, "ip6 saddr . tcp sport != @first_syn"},
		{"first synack", Fault{Kind: FirstSYNACKDrop}, "ip daddr . tcp dport != @first_synack add @first_synack"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.f.Rule(l)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("rule %q\nwant it to contain %q", got, tc.want)
			}
		})
	}
}

// TestFaultRuleFamilies: a v4 destination gets only the ip rule, a v6 one
// only the ip6 rule, none both (what v4 tests see is unchanged).
func TestFaultRuleFamilies(t *testing.T) {
	l := newLab("x")
	for _, tc := range []struct {
		dst     string
		ip, ip6 bool
	}{{"", true, true}, {"10.96.0.10:80", true, false}, {"[fd00:10:96::10]:80", false, true}} {
		f := Fault{Kind: SYNDrop}
		if tc.dst != "" {
			f.Dst = netip.MustParseAddrPort(tc.dst)
		}
		got, err := f.Rule(l)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, "add rule ip fault ") != tc.ip || strings.Contains(got, "add rule ip6 fault6 ") != tc.ip6 {
			t.Errorf("dst %q: rule %q, want ip %v ip6 %v", tc.dst, got, tc.ip, tc.ip6)
		}
	}
}

func TestFaultValidate(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Kind: "nope"}, `unknown fault "nope"`},
		{Fault{Kind: Loss}, "percent 0 must be 1-100"},
		{Fault{Kind: Loss, Percent: 101}, "percent 101 must be 1-100"},
		{Fault{Kind: ConntrackTimeout, Timeout: time.Millisecond}, "must be at least 1s"},
		{Fault{Kind: DropAfter, Packets: -1}, "must not be negative"},
		{Fault{Kind: SYNDrop, Dst: netip.MustParseAddrPort("[::ffff:10.96.0.10]:80")}, "not IPv4-mapped"},
	} {
		err := tc.f.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want error containing %q", tc.f, err, tc.want)
		}
	}
}

func TestDeletedCount(t *testing.T) {
	for in, want := range map[string]int{
		"conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n": 3,
		"conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.":   0,
		"conntrack: command not found":                                            -1,
		"":                                                                        -1,
	} {
		if got := deletedCount(in); got != want {
			t.Errorf("deletedCount(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestTestLabPID(t *testing.T) {
	for name, want := range map[string]int{"cpt123-ab12-pod": 123, "cpt1-0000-node": 1, "cpl-demo-pod": 0, "cptx-ab-pod": 0, "cpt12-pod": 0, "other": 0} {
		got, ok := testLabPID(name)
		if ok != (want != 0) || got != want {
			t.Errorf("testLabPID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

func TestValidPrefix(t *testing.T) {
	for p, ok := range map[string]bool{"demo": true, "cpl-demo": true, "": false, "Demo": false, "a/b": false, strings.Repeat("a", 21): false} {
		if err := ValidPrefix(p); (err == nil) != ok {
			t.Errorf("ValidPrefix(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

// serve accepts on ln and answers every line with "pong <who>\n" until ln
// closes.
func serve(t *testing.T, ln net.Listener, who string) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := io.WriteString(c, "pong "+who+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// dialFromPod connects from the pod namespace, the way a pod would.
func dialFromPod(t *testing.T, l *Lab, addr string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := netns.Do(l.Path(l.Pod), func() error {
		d := net.Dialer{Timeout: timeout, KeepAlive: -1}
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}

func TestLabUpDown(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, ns := range l.Namespaces() {
		if err := netns.Check(l.Path(ns)); err != nil {
			t.Fatalf("namespace %s: %v", ns, err)
		}
	}
	// Nothing routes out: the node has no default route, so an outside
	// address is unreachable from the pod (ICMP net-unreachable from the
	// node), never sent anywhere.
	out, err := l.Exec(t.Context(), l.Router, "ip", "route", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "default") {
		t.Errorf("node has a default route:\n%s", out)
	}
	// Both backends are reached through the VIP.
	for _, b := range []struct{ ns, who string }{{l.Backend1, "b1"}, {l.Backend2, "b2"}} {
		ln, err := l.Listen(b.ns, ":8080")
		if err != nil {
			t.Fatal(err)
		}
		serve(t, ln, b.who)
	}
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		c, err := dialFromPod(t, l, l.VIP.String()+":8080", 2*time.Second)
		if err != nil {
			t.Fatalf("dial VIP: %v", err)
		}
		io.WriteString(c, "ping\n")
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		c.Close()
		if err != nil {
			t.Fatalf("read from VIP: %v", err)
		}
		seen[strings.TrimSpace(string(buf[:n]))] = true
	}
	if !seen["pong b1"] || !seen["pong b2"] {
		t.Errorf("VIP balanced to %v, want both backends", seen)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range l.Namespaces() {
		if _, err := os.Stat(l.Path(ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Down, %s: %v; want it gone", ns, err)
		}
	}
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestUpRefusesExistingPrefix(t *testing.T) {
	t.Parallel()
	l := New(t)
	_, err := Up(t.Context(), Options{Prefix: l.Prefix})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Up with a taken prefix: %v, want already exists", err)
	}
	// The failed Up must not have removed the running lab.
	if err := netns.Check(l.Path(l.Pod)); err != nil {
		t.Fatalf("running lab damaged: %v", err)
	}
}

func TestSysctl(t *testing.T) {
	t.Parallel()
	l := New(t, WithSysctl("pod", "net.ipv4.tcp_syn_retries", "2"))
	got, err := l.ReadSysctl(l.Pod, "net.ipv4.tcp_syn_retries")
	if err != nil || got != "2" {
		t.Fatalf("pod tcp_syn_retries = %q, %v; want 2", got, err)
	}
	// Per namespace: the db namespace keeps the default.
	if got, _ := l.ReadSysctl(l.DB, "net.ipv4.tcp_syn_retries"); got == "2" {
		t.Errorf("db tcp_syn_retries = 2: sysctl leaked out of the pod namespace")
	}
	if err := l.Sysctl(l.Pod, "kernel.hostname", "x"); err == nil {
		t.Error("non-net sysctl accepted")
	}
}

// TestFaultsSeenFromPod checks each packet fault by what a pod's plain
// net.Dial sees (the connect probe's own acceptance tests classify them).
func TestFaultsSeenFromPod(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, ":80")
		if err != nil {
			t.Fatal(err)
		}
		serve(t, ln, ns)
	}
	vip := netip.AddrPortFrom(l.VIP, 80)
	for _, tc := range []struct {
		f       Fault
		wantErr error // nil: connects
	}{
		{Fault{Kind: Reset, Dst: vip}, syscall.ECONNREFUSED},
		{Fault{Kind: HostUnreachable, Dst: vip}, syscall.EHOSTUNREACH},
		{Fault{Kind: AdminProhibited}, syscall.EHOSTUNREACH},
		{Fault{Kind: NetUnreachable}, syscall.ENETUNREACH},
		{Fault{Kind: PortUnreachable}, syscall.ECONNREFUSED},
		{Fault{Kind: SYNDrop, Dst: vip}, os.ErrDeadlineExceeded},
		{Fault{Kind: SYNACKDrop}, os.ErrDeadlineExceeded},
		// A fault to another destination leaves the VIP alone.
		{Fault{Kind: SYNDrop, Dst: netip.AddrPortFrom(l.DBIP, 80)}, nil},
		{Fault{Kind: Reset, Dst: netip.AddrPortFrom(l.VIP, 81)}, nil},
	} {
		t.Run(tc.f.String(), func(t *testing.T) {
			if err := l.ClearFaults(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := l.Fault(t.Context(), tc.f); err != nil {
				t.Fatal(err)
			}
			c, err := dialFromPod(t, l, vip.String(), 1500*time.Millisecond)
			if c != nil {
				c.Close()
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("dial: %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) && !(tc.wantErr == os.ErrDeadlineExceeded && isTimeout(err)) {
				t.Fatalf("dial: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestFaultAfterPackets(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, ":80")
		if err != nil {
			t.Fatal(err)
		}
		serve(t, ln, ns)
	}
	vip := l.VIP.String() + ":80"
	exchange := func() error {
		c, err := dialFromPod(t, l, vip, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 64))
		return err
	}
	if err := exchange(); err != nil {
		t.Fatalf("healthy exchange: %v", err)
	}
	if err := l.Fault(t.Context(), Fault{Kind: ResetEstablished}); err != nil {
		t.Fatal(err)
	}
	if err := exchange(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset-established: %v, want ECONNRESET", err)
	}
	if err := l.ClearFaults(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Fault(t.Context(), Fault{Kind: DropAfter}); err != nil {
		t.Fatal(err)
	}
	if err := exchange(); !isTimeout(err) {
		t.Fatalf("drop-after: %v, want a read timeout", err)
	}
	if err := l.ClearFaults(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := exchange(); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
}

func TestFirstSYNDrop(t *testing.T) {
	t.Parallel()
	l := New(t)
	ln, err := l.Listen(l.DB, ":3306")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, "db")
	if err := l.Fault(t.Context(), Fault{Kind: FirstSYNDrop}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := dialFromPod(t, l, l.DBIP.String()+":3306", 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	// Kernel 6.x retransmits the first SYN after ~1 s.
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("connect took %s, want about 1s (one SYN retransmit)", d)
	}
}

func TestLossAll(t *testing.T) {
	t.Parallel()
	l := New(t)
	ln, err := l.Listen(l.DB, ":3306")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, "db")
	if err := l.Fault(t.Context(), Fault{Kind: Loss, Percent: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := dialFromPod(t, l, l.DBIP.String()+":3306", 500*time.Millisecond); !isTimeout(err) {
		t.Fatalf("100%% loss: %v, want a timeout", err)
	}
}

func TestConntrackFaults(t *testing.T) {
	t.Parallel()
	l := New(t)
	if _, err := l.Exec(t.Context(), l.Router, "conntrack", "--version"); err != nil {
		t.Fatalf("conntrack tool missing (Debian package conntrack): %v", err)
	}
	ln, err := l.Listen(l.Backend1, ":80")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, "b1")
	c, err := dialFromPod(t, l, l.Backend1IP.String()+":80", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	entries, err := l.Conntrack(t.Context())
	if err != nil || len(entries) != 1 || !strings.Contains(entries[0], "ESTABLISHED") {
		t.Fatalf("conntrack entries %q, %v; want one ESTABLISHED", entries, err)
	}
	if err := l.Fault(t.Context(), Fault{Kind: ConntrackTimeout, Timeout: 7 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.ReadSysctl(l.Router, "net.netfilter.nf_conntrack_tcp_timeout_established"); got != "7" {
		t.Errorf("established timeout %q, want 7", got)
	}
	n, err := l.ConntrackDelete(t.Context(), netip.AddrPortFrom(l.Backend1IP, 80))
	if err != nil || n != 1 {
		t.Fatalf("ConntrackDelete = %d, %v; want 1", n, err)
	}
	if entries, _ := l.Conntrack(t.Context()); len(entries) != 0 {
		t.Errorf("after delete: %q", entries)
	}
	if n, err := l.ConntrackDelete(t.Context(), netip.AddrPort{}); err != nil || n != 0 {
		t.Errorf("delete with nothing left = %d, %v; want 0, nil", n, err)
	}
	if err := l.ClearFaults(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.ReadSysctl(l.Router, "net.netfilter.nf_conntrack_tcp_timeout_established"); got != "432000" {
		t.Errorf("after ClearFaults established timeout %q, want 432000", got)
	}
}

func TestDNS(t *testing.T) {
	d, err := NewDNS(map[string][]netip.Addr{"db.lab.invalid": {DBIP}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := d.Resolver().LookupNetIP(ctx, "ip4", "db.lab.invalid")
	if err != nil || len(got) != 1 || got[0] != DBIP {
		t.Fatalf("lookup db.lab.invalid = %v, %v; want %s", got, err, DBIP)
	}
	_, err = d.Resolver().LookupNetIP(ctx, "ip", "nope.lab.invalid")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("lookup nope.lab.invalid: %v, want not found", err)
	}
	// A malformed query is dropped, not fatal.
	c, err := net.Dial("udp", d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{1, 2, 3})
	c.Close()
	if _, err := d.Resolver().LookupNetIP(ctx, "ip4", "db.lab.invalid"); err != nil {
		t.Fatalf("after garbage: %v", err)
	}
}

// TestHelperFailingLab is not a test on its own: TestCleanupOnFailure runs
// it in a child process, where it brings a lab up, prints its prefix and
// fails.
func TestHelperFailingLab(t *testing.T) {
	if os.Getenv("CONNPROBE_LAB_HELPER") != "1" {
		return
	}
	l := New(t)
	fmt.Printf("prefix=%s\n", l.Prefix)
	t.Fatal("failing on purpose")
}

// TestCleanupOnFailure: a test that fails still tears its lab down.
func TestCleanupOnFailure(t *testing.T) {
	t.Parallel()
	RequirePriv(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperFailingLab$", "-test.v")
	cmd.Env = append(os.Environ(), "CONNPROBE_LAB_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("helper passed, want it to fail:\n%s", out)
	}
	_, rest, ok := strings.Cut(string(out), "prefix=")
	if !ok {
		t.Fatalf("helper printed no prefix:\n%s", out)
	}
	prefix, _, _ := strings.Cut(rest, "\n")
	for _, want := range []string{"node ruleset at failure", "node nf_conntrack_tcp_timeout_established at failure: ", "node conntrack (pod's TCP) at failure"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("failed test did not log %q:\n%s", want, out)
		}
	}
	left, _ := filepath.Glob(filepath.Join(netns.NamedDir, prefix+"-*"))
	if len(left) > 0 {
		t.Fatalf("namespaces left after a failed test: %v", left)
	}
}

// TestSweep: a test lab whose process died is removed; one of a live
// process is not.
func TestSweep(t *testing.T) {
	t.Parallel()
	RequirePriv(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := fmt.Sprintf("%s%d-dead-pod", TestPrefix, dead.Process.Pid)
	live := fmt.Sprintf("%s%d-live-pod", TestPrefix, os.Getppid())
	for _, ns := range []string{orphan, live} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	}
	Sweep(t.Context())
	if _, err := os.Stat(filepath.Join(netns.NamedDir, orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan %s not swept: %v", orphan, err)
	}
	if err := netns.Check(filepath.Join(netns.NamedDir, live)); err != nil {
		t.Errorf("live lab %s swept: %v", live, err)
	}
}

// TestDualStack: every lab address has an IPv6 twin; the v6 VIP balances to
// both backends; each connect-level fault applies to the v6 path with the
// errno of its v4 counterpart, and a v4-only fault leaves v6 alone.
func TestDualStack(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, b := range []struct{ ns, who string }{{l.Backend1, "b1"}, {l.Backend2, "b2"}} {
		ln, err := l.Listen(b.ns, ":80")
		if err != nil {
			t.Fatal(err)
		}
		serve(t, ln, b.who)
	}
	vip6 := netip.AddrPortFrom(l.VIP6, 80)
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		c, err := dialFromPod(t, l, vip6.String(), 2*time.Second)
		if err != nil {
			t.Fatalf("dial v6 VIP: %v", err)
		}
		if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != l.PodIP6 {
			t.Errorf("local %s, want the pod's %s", got, l.PodIP6)
		}
		io.WriteString(c, "ping\n")
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		c.Close()
		if err != nil {
			t.Fatalf("read from v6 VIP: %v", err)
		}
		seen[strings.TrimSpace(string(buf[:n]))] = true
	}
	if !seen["pong b1"] || !seen["pong b2"] {
		t.Errorf("v6 VIP balanced to %v, want both backends", seen)
	}
	for _, a := range []netip.Addr{l.Backend1IP6, l.DBIP6} {
		if l.Owner(a) == "" {
			t.Errorf("Owner(%s) empty", a)
		}
	}
	for _, tc := range []struct {
		f       Fault
		wantErr error
	}{
		{Fault{Kind: Reset, Dst: vip6}, syscall.ECONNREFUSED},
		{Fault{Kind: HostUnreachable, Dst: vip6}, syscall.EHOSTUNREACH},
		{Fault{Kind: NetUnreachable}, syscall.ENETUNREACH},
		{Fault{Kind: PortUnreachable}, syscall.ECONNREFUSED},
		// ICMPv6 admin-prohibited is EACCES in Linux (RFC 4443 code 1).
		{Fault{Kind: AdminProhibited}, syscall.EACCES},
		{Fault{Kind: SYNDrop, Dst: vip6}, os.ErrDeadlineExceeded},
		{Fault{Kind: SYNACKDrop}, os.ErrDeadlineExceeded},
		{Fault{Kind: FirstSYNACKDrop, Dst: vip6}, nil},
		// A v4 fault leaves the v6 path alone.
		{Fault{Kind: SYNDrop, Dst: netip.AddrPortFrom(l.VIP, 80)}, nil},
	} {
		t.Run(tc.f.String(), func(t *testing.T) {
			if err := l.ClearFaults(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := l.Fault(t.Context(), tc.f); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			c, err := dialFromPod(t, l, vip6.String(), 1500*time.Millisecond)
			if c != nil {
				c.Close()
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("dial: %v, want success", err)
				}
				if tc.f.Kind == FirstSYNACKDrop && time.Since(t0) < 500*time.Millisecond {
					t.Errorf("connected in %s: the first SYN/ACK was not dropped", time.Since(t0))
				}
				return
			}
			if !errors.Is(err, tc.wantErr) && !(tc.wantErr == os.ErrDeadlineExceeded && isTimeout(err)) {
				t.Fatalf("dial: %v, want %v", err, tc.wantErr)
			}
		})
	}
	// conntrack faults reach the v6 flows too.
	if err := l.ClearFaults(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := dialFromPod(t, l, vip6.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ct, err := l.Conntrack(t.Context())
	if err != nil || !strings.Contains(strings.Join(ct, "\n"), "dst=fd00:10:96::10") {
		t.Fatalf("conntrack %q %v: want the v6 flow", ct, err)
	}
	if n, err := l.ConntrackDelete(t.Context(), vip6); err != nil || n < 1 {
		t.Errorf("conntrack delete v6: %d, %v", n, err)
	}
}

// TestPAWSRule: the PAWS fault queues the server's SYNs in the families
// asked for and ClearFaults removes the rules.
func TestPAWSRule(t *testing.T) {
	t.Parallel()
	l := New(t)
	ctx := t.Context()
	if err := l.Fault(ctx, Fault{Kind: PAWS, Dst: netip.AddrPortFrom(l.DBIP, 3306)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Fault(ctx, Fault{Kind: PAWS, Dst: netip.AddrPortFrom(l.VIP6, 80)}); err != nil {
		t.Fatal(err)
	}
	if got := l.PAWSNamespaces(); len(got) != 3 {
		t.Errorf("PAWS namespaces %v, want the db and both backends", got)
	}
	out, _ := l.Exec(ctx, l.DB, "iptables", "-S", "INPUT")
	if !strings.Contains(out, "--dport 3306") || !strings.Contains(out, "-j NFQUEUE --queue-num 7 --queue-bypass") {
		t.Errorf("db iptables:\n%s", out)
	}
	out, _ = l.Exec(ctx, l.Backend1, "ip6tables", "-S", "INPUT")
	if !strings.Contains(out, "--dport 80") || !strings.Contains(out, "-j NFQUEUE") {
		t.Errorf("b1 ip6tables:\n%s", out)
	}
	if err := l.Fault(ctx, Fault{Kind: PAWS, Dst: netip.AddrPortFrom(l.PodIP, 80)}); err == nil {
		t.Error("PAWS on the pod: want an error")
	}
	if err := l.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ = l.Exec(ctx, l.DB, "iptables", "-S", "INPUT")
	if strings.Contains(out, "NFQUEUE") || len(l.PAWS) != 0 {
		t.Errorf("after clear: %q %v", out, l.PAWS)
	}
}

// TestUpCanceledRemovesWhatItBuilt: an Up canceled midway (Ctrl-C) returns
// an error and leaves no namespace (it used to panic in its cleanup).
func TestUpCanceledRemovesWhatItBuilt(t *testing.T) {
	t.Parallel()
	RequirePriv(t)
	for _, after := range []time.Duration{5 * time.Millisecond, 30 * time.Millisecond, 80 * time.Millisecond} {
		p := uniquePrefix()
		ctx, cancel := context.WithTimeout(t.Context(), after)
		l, err := Up(ctx, Options{Prefix: p})
		cancel()
		if err == nil {
			l.Down()
			continue // the machine was faster than the cancel
		}
		if l != nil {
			t.Errorf("Up failed (%v) but returned a lab", err)
		}
		if left, _ := filepath.Glob("/run/netns/" + p + "-*"); len(left) > 0 {
			t.Errorf("canceled after %s: %v left", after, left)
			Remove(p)
		}
	}
}
