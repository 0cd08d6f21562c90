//go:build linux

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// httpLimits bound what HTTP clients can make one of our listeners hold:
// every listener the binary opens for HTTP (serve's web listener, the
// responder's metrics listener) is built from one.
type httpLimits struct {
	// MaxConns caps open connections. A connection over the cap is not
	// left waiting in the kernel's accept queue (then a few thousand silent
	// clients would lock the scraper out): it takes the slot of the
	// connection that has waited longest without a request in progress (a
	// new one that sent nothing yet, or an idle keep-alive one), which is
	// closed; only when every slot serves a request is the new one closed.
	MaxConns int
	// ReadHeader bounds reading a request's headers; Read the whole request
	// (our endpoints take no body).
	ReadHeader, Read time.Duration
	// Write bounds writing a response, from the end of the request headers:
	// it must cover the largest /metrics scrape at the slowest reader we
	// serve (docs/serve.md, Limits).
	Write time.Duration
	// Idle closes a keep-alive connection that sends no next request.
	Idle time.Duration
}

// Defaults of serve's web listener (flags --web.*).
const (
	defaultWebMaxConns     = 128
	defaultWebReadHeader   = 10 * time.Second
	defaultWebRead         = 30 * time.Second
	defaultWebWriteTimeout = 2 * time.Minute
	defaultWebIdleTimeout  = 2 * time.Minute
	webMaxHeaderBytes      = 16 << 10
)

// responderMetricsLimits are the responder's metrics listener's: its
// /metrics is a few KiB.
var responderMetricsLimits = httpLimits{MaxConns: 32, ReadHeader: defaultWebReadHeader, Read: defaultWebRead,
	Write: 30 * time.Second, Idle: defaultWebIdleTimeout}

func (l httpLimits) validate() error {
	var errs []error
	if l.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("--web.max-connections %d: want at least 1", l.MaxConns))
	}
	if l.Write <= 0 {
		errs = append(errs, fmt.Errorf("--web.write-timeout %s: want a positive duration", l.Write))
	}
	if l.Idle <= 0 {
		errs = append(errs, fmt.Errorf("--web.idle-timeout %s: want a positive duration", l.Idle))
	}
	return errors.Join(errs...)
}

// listen opens an HTTP listener on addr with TCP_DEFER_ACCEPT (tcp(7)): the
// kernel hands a connection to accept only once its first bytes (the
// request, a TLS ClientHello) have arrived, or after the header timeout.
// Clients that connect and say nothing then wait in the kernel, not in
// one of our connection slots, and cannot crowd a scrape out of them.
func (l httpLimits) listen(ctx context.Context, addr string) (net.Listener, error) {
	secs := max(int(l.ReadHeader/time.Second), 1)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs)
		}); err != nil {
			return err
		}
		return os.NewSyscallError("setsockopt TCP_DEFER_ACCEPT", serr)
	}}
	return lc.Listen(ctx, "tcp", addr)
}

// serve returns ln capped at l.MaxConns and an http.Server serving h on it
// under l's timeouts; the server's ConnState tells the cap which
// connections are serving a request.
func (l httpLimits) serve(ln net.Listener, h http.Handler) (net.Listener, *http.Server) {
	c := &connCap{Listener: ln, max: l.MaxConns, conns: map[net.Conn]*capped{}}
	return c, &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    webMaxHeaderBytes,
		ConnState:         c.state,
	}
}

// connCap is a listener that holds at most max connections open, making
// room for a new one by closing the one that has waited longest without a
// request in progress (see httpLimits.MaxConns).
type connCap struct {
	net.Listener
	max   int
	mu    sync.Mutex
	conns map[net.Conn]*capped
	seq   uint64
}

type capped struct {
	busy bool   // a request is being read or served (StateActive)
	seq  uint64 // when it last became not busy: accepted or idle again
}

func (c *connCap) Accept() (net.Conn, error) {
	for {
		conn, err := c.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if len(c.conns) >= c.max && !c.makeRoom() {
			c.mu.Unlock()
			conn.Close() // every slot serves a request, or has one waiting
			continue
		}
		c.seq++
		c.conns[conn] = &capped{seq: c.seq}
		c.mu.Unlock()
		return conn, nil
	}
}

// makeRoom closes the connection that has waited longest without a request
// (c.mu held). A candidate whose request bytes have arrived but not been
// read yet (the server's goroutine has not run) is not closed: peeking at
// its socket tells a client that just spoke from one that never will.
func (c *connCap) makeRoom() bool {
	var waiting []net.Conn
	for vc, st := range c.conns {
		if !st.busy {
			waiting = append(waiting, vc)
		}
	}
	slices.SortFunc(waiting, func(a, b net.Conn) int { return cmp.Compare(c.conns[a].seq, c.conns[b].seq) })
	for _, vc := range waiting {
		if pending(vc) {
			continue
		}
		delete(c.conns, vc)
		vc.Close() // the server sees it closed and forgets it
		return true
	}
	return false
}

// pending reports whether bytes wait unread on conn's socket: a request
// the server has not begun to read (MSG_PEEK, non-blocking; recv(2)).
func pending(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var b [1]byte
	// Control, not Read: the server's goroutine may be blocked reading this
	// connection, holding its read lock; a non-blocking peek needs no lock.
	_ = rc.Control(func(fd uintptr) {
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n > 0
}

// state is the http.Server's ConnState hook.
func (c *connCap) state(conn net.Conn, s http.ConnState) {
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tc.NetConn() // TLS (--web.config.file) wraps what Accept gave
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.conns[conn]
	if !ok {
		return // closed to make room, or never ours
	}
	switch s {
	case http.StateActive:
		st.busy = true
	case http.StateIdle:
		c.seq++
		st.busy, st.seq = false, c.seq
	case http.StateClosed, http.StateHijacked:
		delete(c.conns, conn)
	}
}

// checkListenAddr checks a listen flag without resolving anything: the
// host must be empty (every address) or an IP literal, the port a number.
// A name would go through the system resolver at startup, and a typo like
// 999.1.1.1 would read as a name: both are usage errors.
func checkListenAddr(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("%s %q: want [ip]:port, e.g. :9716 or 127.0.0.1:9716 or [::1]:9716", flag, addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return usagef("%s %q: host %q is not an IP address (names are not resolved; leave the host empty to listen on every address)", flag, addr, host)
		}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return usagef("%s %q: port %q is not a number from 0 to 65535", flag, addr, port)
	}
	return nil
}

// crossOrigin guards the state-changing endpoints against requests a web
// page makes a browser send (CSRF): Go's CrossOriginProtection rejects a
// request whose Sec-Fetch-Site is cross-site or same-site, or whose Origin
// names another host; and the content types an HTML form or a no-CORS fetch
// can send without a preflight are refused outright, since no reload needs
// a body. A request with none of these headers (curl, a sidecar) passes.
var crossOrigin = http.NewCrossOriginProtection()

// formContentTypes are the CORS-safelisted request content types: the ones
// a cross-site page can send without a preflight.
var formContentTypes = map[string]bool{
	"application/x-www-form-urlencoded": true,
	"multipart/form-data":               true,
	"text/plain":                        true,
}

// checkSameSite says why r must be refused (with its status), or "" and 0.
func checkSameSite(r *http.Request) (int, string) {
	if err := crossOrigin.Check(r); err != nil {
		return http.StatusForbidden, "cross-origin request refused: " + err.Error()
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || formContentTypes[mt] {
			return http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q refused: send the POST without a body (curl -X POST URL)", ct)
		}
	}
	return 0, ""
}
