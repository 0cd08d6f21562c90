// Package nstest is the namespace fixture of tests that need one or two
// network namespaces and nothing else: a namespace with only lo up (New,
// Named), a veth pair with addresses between two of them (Veth), a client
// and a server namespace joined that way (NewPair), and what a test does
// inside one: run a function (Do), a command (Exec, Sysctl), a listener
// (Listen) or a connection (Dial). Everything it makes is removed on
// t.Cleanup; nothing is ever added to the root namespace and no namespace
// gets a route out.
//
// internal/lab is the other fixture: the full Kubernetes-like topology
// (pod, node router with the Service VIP's DNAT, backends, db) with its
// fault injection. Use nstest when the test needs none of that: a
// loopback-only namespace, a vantage namespace, a client and a server for
// the kernel's own evidence, a small path of the test's own (the trace
// test's IPv6 client—router—server). The servers in these namespaces come
// from internal/testlisten.
package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe/netns"
)

// RequirePriv is lab.RequirePriv: skip when not root, fail instead under
// CONNPROBE_REQUIRE_PRIV=1 (CI must run every privileged test).
func RequirePriv(t testing.TB) {
	t.Helper()
	lab.RequirePriv(t)
}

// Pair is a client and a server namespace joined by one veth pair.
type Pair struct {
	Prefix             string
	Client, Server     string // ip netns names
	ClientIP, ServerIP netip.Addr
}

// NewPair creates the pair: eth0 in each, a /24 inside 10.250.0.0/16
// chosen at random, no route out. Both are deleted on t.Cleanup.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequirePriv(t)
	prefix, n := uniqueName()
	p := &Pair{Prefix: prefix, Client: Named(t, prefix+"c"), Server: Named(t, prefix+"s")}
	// Only ever configured inside these two namespaces.
	p.ClientIP = netip.AddrFrom4([4]byte{10, 250, n, 1})
	p.ServerIP = netip.AddrFrom4([4]byte{10, 250, n, 2})
	Veth(t,
		End{NS: p.Client, Dev: "eth0", Addr: netip.PrefixFrom(p.ClientIP, 24)},
		End{NS: p.Server, Dev: "eth0", Addr: netip.PrefixFrom(p.ServerIP, 24)})
	return p
}

// New creates a namespace of a name of its own ("nst" and 6 hex digits)
// with only lo, up, and returns its name. It is deleted on t.Cleanup.
func New(t testing.TB) string {
	t.Helper()
	name, _ := uniqueName()
	return Named(t, name)
}

// Named creates the namespace name (the test picks it, say for a name
// pattern the code under test matches) with only lo, up, and deletes it on
// t.Cleanup. The name must be unique on the machine: other tests and labs
// run in parallel.
func Named(t testing.TB, name string) string {
	t.Helper()
	RequirePriv(t)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// End is one end of a veth pair.
type End struct {
	NS   string       // ip netns name
	Dev  string       // the device's name in NS
	Addr netip.Prefix // assigned when valid; IPv6 without duplicate address detection
}

// Veth joins a and b with a veth pair created straight into both
// namespaces (it never appears in the root namespace), assigns the
// addresses and sets both ends up. It goes away with its namespaces.
func Veth(t testing.TB, a, b End) {
	t.Helper()
	Run(t, "ip", "-n", a.NS, "link", "add", a.Dev, "type", "veth", "peer", "name", b.Dev, "netns", b.NS)
	for _, e := range []End{a, b} {
		if e.Addr.IsValid() {
			argv := []string{"ip", "-n", e.NS, "addr", "add", e.Addr.String(), "dev", e.Dev}
			if e.Addr.Addr().Is6() {
				// DAD would hold the address tentative for ~1 s, and
				// the first connect would fail with EADDRNOTAVAIL.
				argv = append(argv, "nodad")
			}
			Run(t, argv...)
		}
		Run(t, "ip", "-n", e.NS, "link", "set", e.Dev, "up")
	}
}

// Do runs fn inside namespace ns on a locked OS thread (probe/netns.Do)
// and fails t if entering the namespace or fn fails. Sockets fn creates
// stay in ns after Do returns.
func Do(t testing.TB, ns string, fn func() error) {
	t.Helper()
	if err := netns.Do(Path(ns), fn); err != nil {
		t.Fatalf("in %s: %v", ns, err)
	}
}

// uniqueName is "nst" and 6 random hex digits, and the first random byte.
func uniqueName() (string, byte) {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "nst" + hex.EncodeToString(b), b[0]
}

// Path is the namespace file of an ip netns name.
func Path(name string) string { return "/run/netns/" + name }

// Run runs argv and fails t on error.
func Run(t testing.TB, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Exec runs argv inside namespace ns and fails t on error.
func Exec(t testing.TB, ns string, argv ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

// Listen opens a TCP listener inside ns with Go's keep-alive off, so the
// server never refreshes an idle connection by itself. Closed on t.Cleanup.
func Listen(t testing.TB, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := netns.Do(Path(ns), func() error {
		var err error
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects to addr from inside ns with Go's keep-alive off, within 2 s.
// Closed on t.Cleanup.
func Dial(t testing.TB, ns, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := netns.Do(Path(ns), func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: -1}).Dial("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// FDs counts the open file descriptors of this process.
func FDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count fds: %v", err)
	}
	return len(es)
}

// Sysctl sets key=value inside ns.
func Sysctl(t testing.TB, ns, kv string) {
	t.Helper()
	Exec(t, ns, "sysctl", "-qw", kv)
}

// Addr joins the server address with port.
func (p *Pair) Addr(port uint16) netip.AddrPort { return netip.AddrPortFrom(p.ServerIP, port) }

// String names the pair for logs.
func (p *Pair) String() string {
	return fmt.Sprintf("%s(%s)-%s(%s)", p.Client, p.ClientIP, p.Server, p.ServerIP)
}
