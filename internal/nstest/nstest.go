// Package nstest builds the small network-namespace fixtures the pod-netns
// tests need: two namespaces joined by a veth pair, with nothing in the root
// namespace and no route out. It is a stop-gap next to internal/lab for
// tests that only need a client and a server.
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

// NewPair creates the pair; it is deleted on t.Cleanup.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequirePriv(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	p := &Pair{Prefix: "nst" + hex.EncodeToString(b)}
	p.Client, p.Server = p.Prefix+"c", p.Prefix+"s"
	// A /30 inside 10.250.0.0/16 chosen from the random prefix: only ever
	// configured inside these two namespaces.
	n := int(b[0])
	p.ClientIP = netip.AddrFrom4([4]byte{10, 250, byte(n), 1})
	p.ServerIP = netip.AddrFrom4([4]byte{10, 250, byte(n), 2})
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "delete", p.Client).Run()
		_ = exec.Command("ip", "netns", "delete", p.Server).Run()
	})
	for _, argv := range [][]string{
		{"ip", "netns", "add", p.Client},
		{"ip", "netns", "add", p.Server},
		{"ip", "-n", p.Client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p.Server},
		{"ip", "-n", p.Client, "addr", "add", p.ClientIP.String() + "/24", "dev", "eth0"},
		{"ip", "-n", p.Server, "addr", "add", p.ServerIP.String() + "/24", "dev", "eth0"},
		{"ip", "-n", p.Client, "link", "set", "eth0", "up"},
		{"ip", "-n", p.Server, "link", "set", "eth0", "up"},
		{"ip", "-n", p.Client, "link", "set", "lo", "up"},
		{"ip", "-n", p.Server, "link", "set", "lo", "up"},
	} {
		Run(t, argv...)
	}
	return p
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
