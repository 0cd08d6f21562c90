//go:build linux

package tcpsock_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe/internal/tcpsock"
)

// loopback returns a connected Conn and the server's end.
func loopback(t *testing.T, opts tcpsock.Options) (*tcpsock.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := netip.MustParseAddrPort(ln.Addr().String())
	c, err := tcpsock.Open("", addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.ConnectContext(ctx, addr); err != nil {
		t.Fatalf("connect: %v", err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}

// TestEndedSpanDoesNotCutTheNext: the cancellation of a span that ended
// (its AfterFunc still on its way in a goroutine of its own) must not cut
// the next span short — the idle probe watches one socket with a new ctx
// per call, and a stale wake-up read as "no reply in time".
func TestEndedSpanDoesNotCutTheNext(t *testing.T) {
	const n = 2000
	c, s := loopback(t, tcpsock.Options{})
	if _, err := s.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	b := make([]byte, 1)
	for i := range n {
		if _, err := c.ReadContext(done, b); !errors.Is(err, context.Canceled) {
			t.Fatalf("read %d with a canceled ctx: %v, want context.Canceled", i, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		got, err := c.ReadContext(ctx, b)
		cancel()
		if got != 1 || err != nil {
			t.Fatalf("read %d after a canceled span: %d, %v; want the byte waiting", i, got, err)
		}
	}
}

// TestErrorsByErrnoAndCause: what callers classify on — the errno, EOF, or
// the ctx's error for a call cut short — under the operation's name.
func TestErrorsByErrnoAndCause(t *testing.T) {
	c, s := loopback(t, tcpsock.Options{UserTimeout: time.Second, KeepAlive: tcpsock.KeepAlive{Idle: 2 * time.Second, Interval: time.Second, Count: 3}})
	b := make([]byte, 16)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	_, err := c.ReadContext(ctx, b)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "read: context deadline exceeded" {
		t.Errorf("read past the deadline: %v, want read: context deadline exceeded", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = c.ReadContext(ctx, b)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read canceled: %v, want context.Canceled", err)
	}

	info, err := c.TCPInfo()
	if err != nil || info.State != 1 { // ESTABLISHED
		t.Errorf("TCP_INFO: %v, state %v", err, info)
	}
	if la := c.LocalAddr(); !la.IsValid() || la.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("local address %s", la)
	}

	s.(*net.TCPConn).CloseWrite()
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.ReadContext(ctx, b); !errors.Is(err, io.EOF) {
		t.Errorf("read after FIN: %v, want io.EOF", err)
	}
	s.(*net.TCPConn).SetLinger(0)
	s.Close() // RST
	time.Sleep(20 * time.Millisecond)
	err = c.WriteContext(ctx, []byte("x"))
	if err == nil {
		err = c.WriteContext(ctx, []byte("x"))
	}
	var se *os.SyscallError
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) || !errors.As(err, &se) || se.Syscall != "write" {
		t.Errorf("write after RST: %v, want write: ECONNRESET or EPIPE", err)
	}
}

// TestConnectRefused: the errno, under "connect".
func TestConnectRefused(t *testing.T) {
	addr := netip.MustParseAddrPort(testlisten.ClosedAddr(t))
	c, err := tcpsock.Open("", addr, tcpsock.Options{Source: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = c.ConnectContext(ctx, addr)
	if !errors.Is(err, syscall.ECONNREFUSED) || err.Error() != "connect: connection refused" {
		t.Errorf("connect to a closed port: %v, want connect: connection refused", err)
	}
}
