// Package testlisten is the one TCP test server of the tests: a listener
// with a plain behaviour per accepted connection (close at once, hold,
// read and never answer, echo, or a function of the test's own), closed on
// t.Cleanup with every connection it accepted and every goroutine it
// started ended before the cleanup returns, so tests that count goroutines
// or file descriptors see nothing of it once the test is over.
//
// Loopback serves on 127.0.0.1; Serve serves any listener, such as one
// internal/nstest.Listen opened inside a test namespace. Servers that speak
// a protocol of the test's own keep their own code or pass a Func.
package testlisten

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

// Behaviour is what the server does with each accepted connection.
type Behaviour struct {
	name string
	// serve runs on a goroutine of its own per connection; the connection
	// is closed when it returns. ctx ends when the test cleans up. nil
	// closes the connection at once in the accept loop (no goroutine).
	serve func(ctx context.Context, c net.Conn)
}

// String names the behaviour.
func (b Behaviour) String() string { return b.name }

var (
	// Close accepts and closes at once: a healthy TCP target for connect
	// probes, whose backlog never fills.
	Close = Behaviour{name: "close"}

	// Hold accepts and keeps the connection open until the test ends,
	// never reading or writing: what the client sends stays in the
	// server's receive queue, and a client's FIN leaves the server's end
	// in CLOSE-WAIT.
	Hold = Behaviour{name: "hold", serve: func(ctx context.Context, _ net.Conn) { <-ctx.Done() }}

	// Silent reads and discards what the client sends and never answers;
	// it closes its end when the client closes, or when the test ends:
	// the server of an application-phase timeout.
	Silent = Behaviour{name: "silent", serve: func(_ context.Context, c net.Conn) { _, _ = io.Copy(io.Discard, c) }}

	// Echo writes back every byte it reads until the client closes or the
	// test ends.
	Echo = Behaviour{name: "echo", serve: func(_ context.Context, c net.Conn) { _, _ = io.Copy(c, c) }}
)

// Func serves each connection with fn on a goroutine of its own. The
// connection is closed when fn returns, and at the end of the test if fn
// has not returned by then; ctx ends when the test cleans up, before
// that close. fn must return once ctx is done or the connection closed.
func Func(fn func(ctx context.Context, c net.Conn)) Behaviour {
	return Behaviour{name: "func", serve: fn}
}

// Loopback opens a listener on 127.0.0.1 on a free port and serves it
// with b until the test ends.
func Loopback(t testing.TB, b Behaviour) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testlisten: listen: %v", err)
	}
	Serve(t, ln, b)
	return ln
}

// Serve accepts on ln with b until the test ends. It takes ln over: on
// t.Cleanup it closes ln and every connection still open, and waits for
// its goroutines.
func Serve(t testing.TB, ln net.Listener, b Behaviour) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() { s.accept(ctx, ln, b) })
	t.Cleanup(func() {
		cancel()
		ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// ClosedAddr returns a loopback address ("127.0.0.1:port") on which
// nothing listens: a connect there is refused at once. The port was free a
// moment ago; another test could take it, which on loopback in one test
// binary is rare enough not to matter.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testlisten: listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type server struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool // set by the cleanup: later accepts are closed at once
	conns  map[net.Conn]struct{}
}

func (s *server) accept(ctx context.Context, ln net.Listener, b Behaviour) {
	for {
		c, err := ln.Accept()
		if err != nil {
			// Closed by the cleanup, or broken: either way no more
			// connections; the cleanup still closes ln.
			return
		}
		if b.serve == nil {
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			b.serve(ctx, c)
		})
	}
}
