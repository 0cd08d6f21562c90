// Package responder is the server end of connprobe's idle-then-send probes
// (`probe responder`, protocol in package probe/idle): deployed behind the
// Service being tested, it echoes at once or replies after a requested delay,
// and records what happened to its own replies — a delayed reply answered by
// an RST is the server-side trace of a stale session (a stale NAT/IPVS session:
// the reply left un-NATed and the client's kernel reset it).
//
// It never enables TCP keep-alive on accepted sockets: keep-alive probes
// would refresh the NAT entry under test and hide the fault. Every resource a
// client can make it hold is capped (Config): delay, total connections,
// connections per source address, line length and how long a connection may
// sit without a request.
package responder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe/idle"
)

// Config are the responder's limits and options.
type Config struct {
	// MaxDelay caps DELAY requests (default 1h); a longer one is refused
	// with ERR delay_too_long.
	MaxDelay time.Duration
	// MaxConns caps open connections (default 1024); one more is answered
	// with ERR busy and closed.
	MaxConns int
	// MaxPerSource caps open connections per client address (default 64);
	// one more is answered with ERR source_busy and closed.
	MaxPerSource int
	// FirstRequest is how long a new connection has to send its first
	// complete request line (default 10s) before the responder closes it
	// with ERR idle. connprobe's idle probe sends its ECHO as soon as it
	// connects; without this bound, connections that never send anything
	// would hold their slots for MaxIdle and lock real probes out (ERR busy).
	FirstRequest time.Duration
	// MaxIdle is how long a connection may stay without a request before the
	// responder closes it with ERR idle (default 2h). It bounds slow and
	// half-written requests; it must exceed the idle time of the probes.
	MaxIdle time.Duration
	// CloseIdle, when positive, closes a connection (FIN, no ERR line) after
	// it has been idle that long: it emulates a server idle timeout
	// (wait_timeout) so probes can be tested against one.
	CloseIdle time.Duration
}

// Defaults.
const (
	DefaultMaxDelay     = time.Hour
	DefaultMaxConns     = 1024
	DefaultMaxPerSource = 64
	DefaultMaxIdle      = 2 * time.Hour
	DefaultFirstRequest = 10 * time.Second
)

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxDelay < 0 {
		errs = append(errs, fmt.Errorf("max_delay %s must not be negative", c.MaxDelay))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max_conns %d must not be negative", c.MaxConns))
	}
	if c.MaxPerSource < 0 {
		errs = append(errs, fmt.Errorf("max_per_source %d must not be negative", c.MaxPerSource))
	}
	if c.FirstRequest < 0 {
		errs = append(errs, fmt.Errorf("first_request_timeout %s must not be negative", c.FirstRequest))
	}
	if c.MaxIdle < 0 {
		errs = append(errs, fmt.Errorf("max_idle %s must not be negative", c.MaxIdle))
	}
	if c.CloseIdle < 0 {
		errs = append(errs, fmt.Errorf("close_idle %s must not be negative", c.CloseIdle))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxPerSource == 0 {
		c.MaxPerSource = DefaultMaxPerSource
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.FirstRequest == 0 {
		c.FirstRequest = DefaultFirstRequest
	}
	return c
}

// Listen opens a TCP listener on addr with keep-alive off on every accepted
// connection (Go's default turns on 15 s keep-alive probes, which would keep
// a NAT entry alive and hide exactly the fault being probed).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("responder: listen: %w", err)
	}
	return ln, nil
}

// Server answers probe connections.
type Server struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu        sync.Mutex
	open      int
	perSource map[netip.Addr]int
}

// New returns a Server whose metrics are registered on reg (nil: not
// registered) and which logs to log (nil: slog.Default()).
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("responder: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	m := newMetrics()
	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, fmt.Errorf("responder: metrics: %w", err)
		}
	}
	return &Server{cfg: cfg.withDefaults(), log: log, m: m, perSource: map[netip.Addr]int{}}, nil
}

// Serve accepts connections on ln until ctx is done, then closes ln and
// every connection and waits for their handlers.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
	})
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				// Out of descriptors: back off instead of spinning (as net/http does).
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.log.Warn("responder: accept", "err", err, "retry_in", tempDelay)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(tempDelay):
				}
				continue
			}
			return fmt.Errorf("responder: accept: %w", err)
		}
		tempDelay = 0
		src := addrOf(c.RemoteAddr())
		if code := s.admit(src.Addr()); code != "" {
			s.m.conns.WithLabelValues(string(code)).Inc()
			s.refuse(c, code)
			continue
		}
		s.m.conns.WithLabelValues("accepted").Inc()
		s.m.open.Inc()
		wg.Go(func() {
			defer s.release(src.Addr())
			defer s.m.open.Dec()
			s.handle(ctx, c)
		})
	}
}

// admit reserves a connection slot for src, or says which limit it hits.
func (s *Server) admit(src netip.Addr) idle.ErrCode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open >= s.cfg.MaxConns {
		return idle.ErrBusy
	}
	if s.perSource[src] >= s.cfg.MaxPerSource {
		return idle.ErrSourceBusy
	}
	s.open++
	s.perSource[src]++
	return ""
}

func (s *Server) release(src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.perSource[src]--; s.perSource[src] <= 0 {
		delete(s.perSource, src)
	}
}

// refuse answers a connection over the limits inline in the accept loop: a
// bounded write (the line fits any socket buffer) and close, so a flood of
// connections costs no goroutine.
func (s *Server) refuse(c net.Conn, code idle.ErrCode) {
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	text := "connection limit reached"
	if code == idle.ErrSourceBusy {
		text = "per-source connection limit reached"
	}
	_, _ = io.WriteString(c, idle.Reply{Verb: idle.VerbErr, Code: code, Text: text}.String())
	c.Close()
}

// conn is one accepted connection.
type conn struct {
	c          net.Conn
	r          *bufio.Reader
	local      netip.AddrPort
	peer       netip.AddrPort
	lastActive time.Time
}

func (s *Server) handle(ctx context.Context, nc net.Conn) {
	// Belt and braces: whatever listener we were given, no keep-alive.
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetKeepAlive(false)
	}
	c := &conn{c: nc, r: bufio.NewReaderSize(nc, idle.MaxLine), local: addrOf(nc.LocalAddr()), peer: addrOf(nc.RemoteAddr())}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	defer nc.Close()
	for first := true; ; first = false {
		var line string
		var err error
		if first {
			line, err = s.readFirstLine(c)
		} else {
			line, err = s.readLine(c)
		}
		if err != nil {
			return
		}
		req, err := idle.ParseRequest(line)
		if err != nil {
			s.bad(c, idle.ErrMalformed, err.Error())
			return
		}
		s.m.requests.WithLabelValues(string(req.Verb)).Inc()
		switch req.Verb {
		case idle.VerbEcho:
			if err := s.write(c, s.ok(c, req)); err != nil {
				return
			}
		case idle.VerbDelay:
			if req.Delay > s.cfg.MaxDelay {
				s.bad(c, idle.ErrDelayTooLong, fmt.Sprintf("delay %s above the cap %s", req.Delay, s.cfg.MaxDelay))
				return
			}
			if !s.delay(ctx, c, req) {
				return
			}
		}
	}
}

// readFirstLine reads a connection's first request line, which must be
// complete within FirstRequest (or the idle limit, if shorter): a connection
// that sends nothing, or trickles, cannot keep its slot.
func (s *Server) readFirstLine(c *conn) (string, error) {
	limit := s.idleLimit()
	if s.cfg.FirstRequest >= limit {
		return s.readLine(c)
	}
	start := time.Now()
	_ = c.c.SetReadDeadline(start.Add(s.cfg.FirstRequest))
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.m.firstTimeouts.Inc()
		s.bad(c, idle.ErrIdle, fmt.Sprintf("no complete first request in %s", s.cfg.FirstRequest))
		return "", err
	}
	return s.lineResult(c, line, err, limit, start)
}

// readLine reads one request line, bounded by MaxLine and by the idle limits.
// It returns an error (after recording why) when the connection should end.
func (s *Server) readLine(c *conn) (string, error) {
	limit := s.idleLimit()
	start := time.Now()
	_ = c.c.SetReadDeadline(start.Add(limit))
	line, err := c.r.ReadSlice('\n')
	return s.lineResult(c, line, err, limit, start)
}

// lineResult records why a read of a request line ended, if it failed.
func (s *Server) lineResult(c *conn, line []byte, err error, limit time.Duration, start time.Time) (string, error) {
	switch {
	case err == nil:
		return string(line), nil
	case errors.Is(err, bufio.ErrBufferFull):
		s.bad(c, idle.ErrTooLong, fmt.Sprintf("line longer than %d bytes", idle.MaxLine))
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.idleTimeout(c, limit)
	case isReset(err):
		s.m.resets.WithLabelValues("idle").Inc()
		s.log.Info("responder: connection reset while idle", "peer", c.peer, "idle", time.Since(start).Round(time.Millisecond))
	}
	return "", err
}

// idleLimit is how long a connection may wait for its next request.
func (s *Server) idleLimit() time.Duration {
	if s.cfg.CloseIdle > 0 && s.cfg.CloseIdle < s.cfg.MaxIdle {
		return s.cfg.CloseIdle
	}
	return s.cfg.MaxIdle
}

// idleTimeout ends a connection that waited limit for a request: silently
// with FIN when CloseIdle emulates a server idle timeout (like a database's
// wait_timeout), else with ERR idle.
func (s *Server) idleTimeout(c *conn, limit time.Duration) {
	if s.cfg.CloseIdle > 0 && limit == s.cfg.CloseIdle {
		s.m.idleCloses.Inc()
		s.log.Info("responder: closing idle connection", "peer", c.peer, "idle", limit)
		return
	}
	s.bad(c, idle.ErrIdle, fmt.Sprintf("no request in %s", limit))
}

// delay answers a DELAY request: WAIT now, OK after the delay. It watches
// the connection meanwhile (the client's FIN or RST ends the wait), then
// learns what became of the reply from the next read: data or FIN means it
// was delivered, an RST means the client's kernel rejected it — a stale
// session on the path.
func (s *Server) delay(ctx context.Context, c *conn, req idle.Request) bool {
	if err := s.write(c, idle.Reply{Verb: idle.VerbWait, Nonce: req.Nonce}.String()); err != nil {
		return false
	}
	start := time.Now()
	_ = c.c.SetReadDeadline(start.Add(req.Delay))
	var one [1]byte
	n, err := c.r.Read(one[:])
	switch {
	case n > 0:
		s.bad(c, idle.ErrEarlyData, "request sent while a delayed reply is pending")
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The delay elapsed: reply below.
	case ctx.Err() != nil:
		return false
	case isReset(err):
		s.delayed(c, req, "reset_before_reply", time.Since(start), err)
		return false
	default:
		s.delayed(c, req, "client_closed", time.Since(start), err)
		return false
	}
	sent := time.Now()
	if err := s.write(c, s.ok(c, req)); err != nil {
		s.delayed(c, req, "write_error", req.Delay, err)
		return false
	}
	// The next read tells us what became of the reply.
	limit := s.idleLimit()
	_ = c.c.SetReadDeadline(time.Now().Add(limit))
	_, err = c.r.Peek(1)
	switch {
	case err == nil, errors.Is(err, io.EOF):
		s.delayed(c, req, "delivered", req.Delay, nil)
		return err == nil
	case isReset(err):
		s.m.delayed.WithLabelValues("reset").Inc()
		s.log.Warn("responder: my delayed reply was answered with RST: stale session on the path?",
			"peer", c.peer, "local", c.local, "delay", req.Delay, "nonce", req.Nonce,
			"rst_after", time.Since(sent).Round(time.Microsecond))
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		// MaxIdle passed with no word from the client: was the reply at least ACKed?
		if unacked(c.c) > 0 {
			s.delayed(c, req, "unacked", req.Delay, err)
		} else {
			s.delayed(c, req, "delivered", req.Delay, nil)
		}
		s.idleTimeout(c, limit)
		return false
	default:
		s.delayed(c, req, "write_error", req.Delay, err)
		return false
	}
}

func (s *Server) delayed(c *conn, req idle.Request, outcome string, after time.Duration, err error) {
	s.m.delayed.WithLabelValues(outcome).Inc()
	lvl := slog.LevelInfo
	if outcome != "delivered" {
		lvl = slog.LevelWarn
	}
	attrs := []any{"peer", c.peer, "local", c.local, "delay", req.Delay, "nonce", req.Nonce, "outcome", outcome, "after", after.Round(time.Millisecond)}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	s.log.Log(context.Background(), lvl, "responder: delayed reply", attrs...)
}

func (s *Server) ok(c *conn, req idle.Request) string {
	return idle.Reply{Verb: idle.VerbOK, Nonce: req.Nonce, Server: c.local, Client: c.peer}.String()
}

// write sends one line with a bounded deadline: a client that stops reading
// cannot pin a handler.
func (s *Server) write(c *conn, line string) error {
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(c.c, line)
	return err
}

// bad answers with ERR and lets the caller close.
func (s *Server) bad(c *conn, code idle.ErrCode, text string) {
	s.m.bad.WithLabelValues(string(code)).Inc()
	s.log.Debug("responder: bad request", "peer", c.peer, "code", code, "text", text)
	_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.c, idle.Reply{Verb: idle.VerbErr, Code: code, Text: text}.String())
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// unacked reads tcpi_unacked: segments sent and not yet acknowledged.
func unacked(c net.Conn) uint32 {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint32
	_ = rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = info.Unacked
		}
	})
	return n
}

func addrOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
