package nstest

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
)

// gone fails t unless the namespace file of every name is gone.
func gone(t *testing.T, names ...string) {
	t.Helper()
	for _, ns := range names {
		if _, err := os.Stat(Path(ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the test: %v", ns, err)
		}
	}
}

// TestNewHasOnlyLoopbackUp: a namespace of its own name with lo up and no
// other link; a listener inside it is not the root namespace's; it is gone
// once the test ends.
func TestNewHasOnlyLoopbackUp(t *testing.T) {
	RequirePriv(t)
	var ns string
	t.Run("fixture", func(t *testing.T) {
		ns = New(t)
		if !strings.HasPrefix(ns, "nst") {
			t.Errorf("name %q", ns)
		}
		links := Exec(t, ns, "ip", "-o", "link", "show")
		if n := strings.Count(links, "\n"); n != 1 || !strings.Contains(links, "lo: <LOOPBACK,UP,LOWER_UP>") {
			t.Errorf("links in %s:\n%s\nwant only lo, up", ns, links)
		}
		ln := Listen(t, ns, "127.0.0.1:0")
		testlisten.Serve(t, ln, testlisten.Echo)
		c := Dial(t, ns, ln.Addr().String())
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Errorf("echo over lo in %s: %v", ns, err)
		}
		// The same address from the root namespace is another host's.
		if rc, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			rc.Close()
			t.Errorf("%s reached from the root namespace", ln.Addr())
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial from root: %v, want refused", err)
		}
	})
	gone(t, ns)
}

// TestNamed: the name is the test's; Do runs inside it.
func TestNamed(t *testing.T) {
	RequirePriv(t)
	name, _ := uniqueName()
	name += "-named"
	t.Run("fixture", func(t *testing.T) {
		if got := Named(t, name); got != name {
			t.Errorf("Named = %q, want %q", got, name)
		}
		var ino, root uint64
		st := func(p string) uint64 {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			return fi.Sys().(*syscall.Stat_t).Ino
		}
		Do(t, name, func() error { ino = st("/proc/thread-self/ns/net"); return nil })
		root = st("/proc/thread-self/ns/net")
		if want := st(Path(name)); ino != want || ino == root {
			t.Errorf("Do ran in netns inode %d, want %d (root is %d)", ino, want, root)
		}
	})
	gone(t, name)
}

// TestVeth: IPv4 and IPv6 across one veth pair, the IPv6 address usable at
// once (no DAD wait).
func TestVeth(t *testing.T) {
	RequirePriv(t)
	a, b := New(t), New(t)
	Veth(t,
		End{NS: a, Dev: "eth0", Addr: netip.MustParsePrefix("10.251.0.1/24")},
		End{NS: b, Dev: "peer0", Addr: netip.MustParsePrefix("10.251.0.2/24")})
	ln := Listen(t, b, "10.251.0.2:7")
	testlisten.Serve(t, ln, testlisten.Close)
	Dial(t, a, "10.251.0.2:7").Close()
	c := New(t)
	Veth(t, End{NS: a, Dev: "v6", Addr: netip.MustParsePrefix("fd00:79::1/64")}, End{NS: c, Dev: "v6", Addr: netip.MustParsePrefix("fd00:79::2/64")})
	ln = Listen(t, c, "[fd00:79::2]:7")
	testlisten.Serve(t, ln, testlisten.Close)
	Dial(t, a, "[fd00:79::2]:7").Close() // at once: no DAD (Dial fails t otherwise)
	if out := Exec(t, a, "ip", "-6", "addr", "show", "dev", "v6", "scope", "global"); !strings.Contains(out, "fd00:79::1/64") || strings.Contains(out, "tentative") {
		t.Errorf("want fd00:79::1/64, not tentative:\n%s", out)
	}
}

// TestPair: the client reaches the server; both are gone after the test.
func TestPair(t *testing.T) {
	var p *Pair
	t.Run("fixture", func(t *testing.T) {
		p = NewPair(t)
		ln := Listen(t, p.Server, p.Addr(9000).String())
		testlisten.Serve(t, ln, testlisten.Close)
		c := Dial(t, p.Client, p.Addr(9000).String())
		if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != p.ClientIP {
			t.Errorf("local %s, want %s", got, p.ClientIP)
		}
		if out := Exec(t, p.Client, "ip", "route", "show", "default"); out != "" {
			t.Errorf("client has a default route: %s", out)
		}
	})
	gone(t, p.Client, p.Server)
}
