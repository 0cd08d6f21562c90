//go:build linux

package tcpsock

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/nstest"
)

// dropped returns a namespace pair whose server drops every SYN to port 9:
// a connect from the client waits.
func dropped(t *testing.T) (*nstest.Pair, netip.AddrPort) {
	t.Helper()
	p := nstest.NewPair(t)
	nstest.Exec(t, p.Server, "nft", "add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in tcp dport 9 drop")
	return p, p.Addr(9)
}

// TestPollerOnlyWhenWaiting: a connect that ends inside connect(2)
// (loopback) never puts the socket in the runtime poller; one that must
// wait does, and its watch deadline bounds the wait.
func TestPollerOnlyWhenWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := netip.MustParseAddrPort(ln.Addr().String())
	c, err := Open("", addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := c.Watch(t.Context(), time.Now().Add(5*time.Second))
	if _, err := c.Connect(addr); err != nil {
		t.Fatal(err)
	}
	if c.f != nil {
		t.Error("a loopback connect joined the poller")
	}
	if c.armed != nil {
		t.Error("a cancellation was armed for a socket that never waited")
	}
	stop()
	if !c.LocalAddr().IsValid() {
		t.Error("no local address read on the raw fd")
	}

	pair, dst := dropped(t)
	w, err := Open(nstest.Path(pair.Client), dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = w.ConnectContext(ctx, dst)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connect to a SYN-dropping port: %v, want the deadline", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("connect took %s past a 200ms deadline", d)
	}
	if w.f == nil {
		t.Error("a connect that waited did not join the poller")
	}
}

// TestDoneBeforeJoiningThePoller: a watch whose ctx is done before the
// socket joins the poller (no cancellation is armed until then) still cuts
// the wait: joining arms it, and it fires at once. (early catches a done
// ctx before a call starts; this is the ctx done while the call is past
// that check.)
func TestDoneBeforeJoiningThePoller(t *testing.T) {
	pair, dst := dropped(t)
	c, err := Open(nstest.Path(pair.Client), dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(t.Context())
	stop := c.Watch(ctx, time.Time{}) // no deadline: only the ctx ends the wait
	defer stop()
	cancel()
	t0 := time.Now()
	_, err = c.connect(c.sockaddr(dst)) // past early's check
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connect after the watch was done: %v, want the poller's deadline", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("connect waited %s after its ctx was done", d)
	}
}
