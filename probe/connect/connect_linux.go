package connect

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/netns"
)

// Kind is the probe kind name used in results and configs.
const Kind = "connect"

// Prober runs connect probes against one target.
type Prober struct {
	target   probe.Target
	cfg      Config
	resolver *net.Resolver
}

// New returns a Prober for t. It validates cfg and the source address family.
func New(t probe.Target, cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if t.Port == 0 || t.Host == "" {
		return nil, fmt.Errorf("connect: target %q has no host or port", t.Name)
	}
	if a, ok := t.Addr(); ok && cfg.Source.IsValid() && a.Addr().Is4() != cfg.Source.Unmap().Is4() {
		return nil, fmt.Errorf("connect: source %s and target %s are of different address families", cfg.Source, t.Name)
	}
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	return &Prober{target: t, cfg: cfg, resolver: r}, nil
}

// Close implements probe.Prober; a connect prober holds nothing between attempts.
func (p *Prober) Close() error { return nil }

// Probe makes one attempt.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	r := probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now()}
	deadline := r.Start.Add(p.cfg.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	p.probe(newAttempt(ctx, deadline), &r)
	r.Duration = time.Since(r.Start)
	if !r.Success && errors.Is(context.Cause(ctx), context.Canceled) {
		// The caller gave up (shutdown): not a network failure.
		r.Reason = probe.ReasonCanceled
	}
	return r
}

// attempt bounds the socket calls of one attempt by a deadline on the
// socket itself rather than by a goroutine watching ctx (mdlayher/socket
// starts one per blocking call whose ctx can be canceled; at thousands of
// probes per second those goroutines and their stacks cost more CPU than
// the probe's own code). The socket gets the attempt's deadline (a runtime
// poller timer, no syscall), and one context.AfterFunc per attempt moves
// the deadline into the past when ctx is canceled (shutdown), so
// cancellation stays prompt. Errors come back exactly as mdlayher reports a
// ctx that expired or was canceled ("connect: context deadline exceeded").
type attempt struct {
	ctx      context.Context // the caller's: values, cancellation, resolver
	deadline time.Time       // zero: none
}

func newAttempt(ctx context.Context, deadline time.Time) *attempt {
	return &attempt{ctx: ctx, deadline: deadline}
}

// watch arms c with the attempt's deadline and cancellation; the returned
// func disarms the cancellation (call it before the attempt ends).
func (a *attempt) watch(c interface{ SetDeadline(time.Time) error }) (stop func() bool) {
	if !a.deadline.IsZero() {
		_ = c.SetDeadline(a.deadline)
	}
	return context.AfterFunc(a.ctx, func() {
		// Wakes every blocked call on c with os.ErrDeadlineExceeded;
		// harmless once c is closed.
		_ = c.SetDeadline(time.Unix(0, 1))
	})
}

// err translates a socket call's error: an expired or cancelled attempt
// reads as mdlayher reports a done ctx, os.NewSyscallError(op, ctx error),
// wrapped once more by the calls that wrap their result (read).
func (a *attempt) err(op string, wraps int, err error) error {
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	cause := a.ctx.Err()
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	err = os.NewSyscallError(op, cause)
	for range wraps {
		err = os.NewSyscallError(op, err)
	}
	return err
}

// early reports, as mdlayher would, that ctx was done before a call.
func (a *attempt) early(op string) error {
	if err := a.ctx.Err(); err != nil {
		return os.NewSyscallError(op, err)
	}
	if !a.deadline.IsZero() && !time.Now().Before(a.deadline) {
		return os.NewSyscallError(op, context.DeadlineExceeded)
	}
	return nil
}

func (p *Prober) probe(a *attempt, r *probe.Result) {
	c, stop := p.establish(a, r)
	if c == nil {
		return
	}
	defer c.Close()
	defer stop()
	if len(p.cfg.Send) == 0 && len(p.cfg.Expect) == 0 {
		r.Phase = probe.PhaseDone
		return
	}
	if !p.exchange(a, c, r) {
		// The handshake's degraded success does not survive a failed exchange.
		return
	}
	r.Phase = probe.PhaseDone
}

// Establish runs the TCP phase of an attempt exactly as Probe does (resolve,
// socket in the target's netns, handshake, classification, TCP_INFO evidence)
// and records it in r. On success it returns the established connection as a
// net.Conn for an application protocol to speak over; r then has Phase
// handshake and Reason ok or syn_retransmitted. On failure it returns nil and
// r holds the classified failure. Send and Expect are not used. ctx bounds
// the attempt; the caller owns (and closes) the connection.
func (p *Prober) Establish(ctx context.Context, r *probe.Result) net.Conn {
	deadline, _ := ctx.Deadline()
	c, stop := p.establish(newAttempt(ctx, deadline), r)
	if c == nil {
		return nil
	}
	stop()
	defer c.Close()
	// Hand over a duplicate in Go's own poller: the socket keeps the
	// namespace it was created in, so the copy needs no netns either.
	nc, err := net.FileConn(c.f)
	if err == nil {
		return nc
	}
	r.Fail(probe.PhaseSetup, fmt.Errorf("connect: hand over connection: %w", err))
	return nil
}

// establish resolves, creates the socket and completes the handshake,
// classifying into r; it returns the connected socket, armed with the
// attempt's deadline and cancellation until stop is called, or nil.
func (p *Prober) establish(a *attempt, r *probe.Result) (c *sock, stop func() bool) {
	// Resolve.
	addr, ok := p.target.Addr()
	if !ok {
		t0 := time.Now()
		ctx, cancel := a.ctx, context.CancelFunc(func() {})
		if !a.deadline.IsZero() {
			ctx, cancel = context.WithDeadline(ctx, a.deadline)
		}
		ips, err := p.resolver.LookupNetIP(ctx, "ip", p.target.Host)
		cancel()
		r.Timings.Resolve = time.Since(t0)
		if err == nil && len(ips) == 0 {
			err = &net.DNSError{Err: "no addresses", Name: p.target.Host, IsNotFound: true}
		}
		if err != nil {
			r.Fail(probe.PhaseResolve, err)
			return nil, nil
		}
		addr = netip.AddrPortFrom(pick(ips, p.cfg.Source), p.target.Port)
		r.Evidencef("resolved %s to %s in %s", p.target.Host, addr.Addr(), probe.Round(r.Timings.Resolve))
	}
	r.Remote = addr

	c, err := dial(p.target.NetNS, addr, p.cfg.Source, p.cfg.UserTimeout)
	if err != nil {
		r.Fail(probe.PhaseSetup, err)
		return nil, nil
	}
	stop = a.watch(c.f)

	// Handshake.
	t0 := time.Now()
	var info *unix.TCPInfo
	err = a.early("connect")
	if err == nil {
		info, err = c.connect(inet.Sockaddr(addr))
		err = a.err("connect", 0, err)
	}
	r.Timings.Handshake = time.Since(t0)
	var ierr error
	if info == nil {
		info, ierr = tcpInfo(c.rc)
	}
	if ierr == nil {
		r.Retransmits = int(info.Total_retrans)
		if info.Total_retrans == 0 && info.Retransmits > 0 {
			r.Retransmits = int(info.Retransmits)
		}
	}
	if err != nil {
		p.handshakeFailed(c, r, err)
		stop()
		c.Close()
		return nil, nil
	}
	r.Local = inet.LocalAddr(c.rc)
	if ierr == nil && r.Retransmits == 0 {
		// After a retransmitted SYN, Karn's rule leaves the kernel only a
		// TCP-timestamp sample, whose clock ticks in milliseconds: tcpi_rtt
		// then says 1 ms for a 60 µs path. Only a clean handshake's
		// figure is the path's RTT.
		r.Timings.RTT = time.Duration(info.Rtt) * time.Microsecond
	}
	r.Phase = probe.PhaseHandshake
	r.Reason = probe.ReasonOK
	r.Success = true
	if r.Retransmits > 0 {
		r.Reason = probe.ReasonSynRetransmitted
		r.Evidencef("handshake needed %d SYN retransmit(s): established after %s", r.Retransmits, probe.Round(r.Timings.Handshake))
	} else {
		r.Evidencef("established %s -> %s in %s", r.Local, addr, probe.Round(r.Timings.Handshake))
	}
	return c, stop
}

// exchange writes Send and waits for Expect. It reports whether it succeeded.
func (p *Prober) exchange(a *attempt, c *sock, r *probe.Result) bool {
	if len(p.cfg.Send) > 0 {
		t0 := time.Now()
		err := a.early("write")
		if err == nil {
			err = a.err("write", 0, c.write(p.cfg.Send))
		}
		r.Timings.Send = time.Since(t0)
		if err != nil {
			r.Fail(probe.PhaseSend, err)
			return false
		}
	}
	t0 := time.Now()
	buf := make([]byte, 0, 512)
	chunk := make([]byte, 4096)
	for {
		n, err := 0, a.early("read")
		if err == nil {
			n, err = c.read(chunk)
			err = a.err("read", 1, err)
		}
		if n > 0 {
			if len(buf)+n > 64<<10 {
				// Keep the tail: enough to find Expect across reads.
				keep := max(len(p.cfg.Expect), 1)
				buf = append(buf[:0], buf[len(buf)-min(keep, len(buf)):]...)
			}
			buf = append(buf, chunk[:n]...)
		}
		if len(p.cfg.Expect) == 0 && (n > 0 || err == nil) {
			// Anything back is a reply.
			break
		}
		if len(p.cfg.Expect) > 0 && bytes.Contains(buf, p.cfg.Expect) {
			break
		}
		if n == 0 && err == nil {
			err = errEOF
		}
		if err != nil {
			r.Timings.Reply = time.Since(t0)
			if isEOF(err) {
				err = errEOF
			}
			r.Fail(probe.PhaseReply, err)
			if len(buf) > 0 {
				r.Evidencef("got %d byte(s) without the expected %q: %q", len(buf), p.cfg.Expect, inet.Snippet(buf))
			}
			if ti, ierr := tcpInfo(c.rc); ierr == nil && r.Reason == probe.ReasonReplyTimeout {
				r.Evidencef("socket %s, %d unacked, %d retransmit(s) while waiting", inet.TCPState(ti.State), ti.Unacked, ti.Total_retrans-uint32(r.Retransmits))
			}
			return false
		}
	}
	r.Timings.Reply = time.Since(t0)
	r.Evidencef("reply in %s: %q", probe.Round(r.Timings.Reply), inet.Snippet(buf))
	return true
}

// sock is the connect probe's own socket: a non-blocking TCP socket in Go's
// poller (os.NewFile), driven through its RawConn. It does what Dial plus
// mdlayher/socket's Connect, Read and Write do, with fewer system calls and
// allocations per probe (at thousands of probes per second they are most
// of the prober's own CPU): no F_SETFL/SO_TYPE probing of a socket we just
// made non-blocking, no getpeername after connect (TCP_INFO, read anyway,
// says whether the handshake completed), no generic closures. Its errors
// read exactly as mdlayher's ("connect: connection refused", "read: read:
// connection reset by peer").
type sock struct {
	f  *os.File
	rc syscall.RawConn
}

// dial creates the socket as Dial does.
func dial(nsPath string, addr netip.AddrPort, source netip.Addr, userTimeout time.Duration) (*sock, error) {
	family := unix.AF_INET
	if !addr.Addr().Unmap().Is4() {
		family = unix.AF_INET6
	}
	fd := -1
	err := netns.Do(nsPath, func() error {
		for {
			var err error
			fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			if err != unix.EINTR {
				return os.NewSyscallError("socket", err)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("connect: socket: %w", err)
	}
	// A non-blocking fd: os.NewFile registers it with the runtime poller.
	c := &sock{f: os.NewFile(uintptr(fd), "tcp")}
	c.rc, err = c.f.SyscallConn()
	if err == nil {
		err = setup(c.rc, family, source, userTimeout)
	}
	if err != nil {
		c.f.Close()
		return nil, err
	}
	return c, nil
}

func (c *sock) Close() error { return c.f.Close() }

// connect runs the non-blocking connect(2) and waits for the handshake in
// the poller (bounded by the write deadline). On success it returns the
// TCP_INFO it read to confirm the connection.
func (c *sock) connect(sa unix.Sockaddr) (*unix.TCPInfo, error) {
	var (
		started bool
		info    *unix.TCPInfo
		err     error
	)
	perr := c.rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			err = unix.Connect(int(fd), sa)
			// EINPROGRESS: the SYN is out; wait until writable.
			return !waiting(err)
		}
		// Writable: the handshake ended. SO_ERROR says how.
		var errno int
		errno, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = unix.Errno(errno)
		}
		if err != nil {
			return !waiting(err)
		}
		// The poller may wake us spuriously with SO_ERROR 0 (internal/poll
		// notes it): connected only once the socket left SYN-SENT. A socket
		// already closed again (CLOSE) is left to wait, as mdlayher's
		// getpeername check does.
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			info, err = nil, nil
			return true
		}
		if s := info.State; s == unix.BPF_TCP_SYN_SENT || s == unix.BPF_TCP_CLOSE {
			info = nil
			return false
		}
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if err == unix.EISCONN {
		return info, nil
	}
	return info, os.NewSyscallError("connect", err)
}

// write writes all of b, as mdlayher's WriteContext does.
func (c *sock) write(b []byte) error {
	nn := 0
	var err error
	perr := c.rc.Write(func(fd uintptr) bool {
		var n int
		n, err = unix.Write(int(fd), b[nn:])
		if n > 0 {
			nn += n
		}
		if nn == len(b) {
			return true
		}
		if n == 0 && err == nil {
			err = io.ErrUnexpectedEOF
			return true
		}
		if err == nil {
			return false // short write: wait for room
		}
		return !waiting(err)
	})
	if perr != nil {
		return perr
	}
	return os.NewSyscallError("write", err)
}

// read reads once, as mdlayher's ReadContext does (0 bytes: io.EOF).
func (c *sock) read(b []byte) (int, error) {
	var n int
	var err error
	perr := c.rc.Read(func(fd uintptr) bool {
		n, err = unix.Read(int(fd), b)
		return !waiting(err)
	})
	if n < 0 {
		n = 0
	}
	if perr != nil {
		return 0, os.NewSyscallError("read", perr)
	}
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, os.NewSyscallError("read", os.NewSyscallError("read", err))
}

// waiting reports whether a non-blocking call must wait for the poller.
func waiting(err error) bool {
	return err == unix.EAGAIN || err == unix.EINPROGRESS || err == unix.EINTR
}

// Dial creates a TCP socket for addr in the network namespace nsPath (empty:
// here), bound to source when valid, with IP_RECVERR on so ICMP errors can be
// read back, and TCP_USER_TIMEOUT when userTimeout > 0. It does not connect.
//
// Only socket creation happens inside the namespace: the socket keeps its
// namespace for life, so connect and I/O run on ordinary goroutines.
func Dial(nsPath string, addr netip.AddrPort, source netip.Addr, userTimeout time.Duration) (*socket.Conn, error) {
	family := unix.AF_INET
	if !addr.Addr().Unmap().Is4() {
		family = unix.AF_INET6
	}
	var c *socket.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		c, err = socket.Socket(family, unix.SOCK_STREAM, unix.IPPROTO_TCP, "tcp", nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect: socket: %w", err)
	}
	rc, err := c.SyscallConn()
	if err == nil {
		err = setup(rc, family, source, userTimeout)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// setup sets the socket options Dial promises; errors read as mdlayher's
// ("connect: IP_RECVERR: setsockopt: ...").
func setup(rc syscall.RawConn, family int, source netip.Addr, userTimeout time.Duration) error {
	setsockopt := func(level, opt, v int) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, v) }); cerr != nil {
			return cerr
		}
		return os.NewSyscallError("setsockopt", err)
	}
	// IP_RECVERR queues the ICMP error that fails a SYN_SENT socket, so we can
	// report its type, code and sender (tcp_v4_err calls ip_icmp_error in
	// SYN_SENT); connect() alone only says EHOSTUNREACH for both
	// host-unreachable and admin-prohibited.
	if family == unix.AF_INET {
		if err := setsockopt(unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
			return fmt.Errorf("connect: IP_RECVERR: %w", err)
		}
	} else if err := setsockopt(unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1); err != nil {
		return fmt.Errorf("connect: IPV6_RECVERR: %w", err)
	}
	if userTimeout > 0 {
		if err := setsockopt(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("connect: TCP_USER_TIMEOUT: %w", err)
		}
	}
	if source.IsValid() {
		// Defer the port choice to connect() so the 4-tuple, not the local
		// port alone, must be unique: binding with port 0 would reserve a
		// port per probe and exhaust the range at high probe rates.
		_ = setsockopt(unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.Bind(int(fd), inet.Sockaddr(netip.AddrPortFrom(source, 0))) }); cerr != nil {
			err = cerr
		}
		if err := os.NewSyscallError("bind", err); err != nil {
			return fmt.Errorf("connect: bind %s: %w", source, err)
		}
	}
	return nil
}

// handshakeFailed classifies a failed connect and adds what the kernel knows.
// An ICMP error leads: the errno connect() returns is the kernel's
// translation of it (ICMPv6 admin-prohibited becomes EACCES, which read
// first looks like a local permission problem).
func (p *Prober) handshakeFailed(c *sock, r *probe.Result, err error) {
	n := len(r.Evidence)
	r.Fail(probe.PhaseHandshake, err)
	icmp := readICMP(c.rc)
	if icmp != "" {
		errno := slices.Clone(r.Evidence[n:])
		r.Evidence = append(r.Evidence[:n], icmp)
		for _, e := range errno {
			if i := strings.Index(e, "): "); i > 0 {
				e = e[:i+1] // the errno's generic hint: the ICMP line says which
			}
			r.Evidencef("connect() failed with %s, the kernel's errno for that ICMP error", e)
		}
	}
	switch r.Reason {
	case probe.ReasonSynTimeout:
		r.Evidencef("%d SYN(s) sent over %s: no SYN/ACK, no RST, no ICMP", r.Retransmits+1, probe.Round(r.Timings.Handshake))
	case probe.ReasonRefused:
		if icmp == "" {
			r.Evidencef("RST in answer to the SYN after %s", probe.Round(r.Timings.Handshake))
		}
	}
}

// TCPInfo reads TCP_INFO from c.
func TCPInfo(c *socket.Conn) (*unix.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return tcpInfo(rc)
}

func tcpInfo(rc syscall.RawConn) (*unix.TCPInfo, error) {
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return nil, err
	}
	return info, gerr
}

// readICMP drains the socket's error queue and describes the first ICMP
// error in it: "ICMP host-unreachable (type 3 code 1) from 10.0.0.1".
func readICMP(rc syscall.RawConn) string {
	var out string
	_ = rc.Control(func(fd uintptr) {
		buf := make([]byte, 512)
		oob := make([]byte, 512)
		_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return
		}
		out = ParseRecvErr(oob[:oobn])
	})
	return out
}

// ParseRecvErr describes an IP_RECVERR / IPV6_RECVERR control message that
// carries an ICMP error. Malformed input yields "".
func ParseRecvErr(oob []byte) string {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return ""
	}
	for _, m := range msgs {
		isV4 := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		isV6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if !isV4 && !isV6 {
			continue
		}
		// struct sock_extended_err: errno u32, origin u8, type u8, code u8,
		// pad u8, info u32, data u32; then the offender's sockaddr.
		const eeLen = 16
		if len(m.Data) < eeLen {
			return ""
		}
		origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
		if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
			continue
		}
		from := offender(m.Data[eeLen:])
		desc := inet.ICMPName(origin == unix.SO_EE_ORIGIN_ICMP6, typ, code)
		s := fmt.Sprintf("ICMP %s (type %d code %d)", desc, typ, code)
		if from.IsValid() {
			s += " from " + from.String()
		}
		return s
	}
	return ""
}

func offender(b []byte) netip.Addr {
	if len(b) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrFrom16([16]byte(b[8:24]))
		}
	}
	return netip.Addr{}
}

// pick chooses the address to connect to: the first of the source's family
// when a source is set, else the first returned.
func pick(ips []netip.Addr, source netip.Addr) netip.Addr {
	if source.IsValid() {
		for _, ip := range ips {
			if ip.Unmap().Is4() == source.Unmap().Is4() {
				return ip.Unmap()
			}
		}
	}
	return ips[0].Unmap()
}

var errEOF = fmt.Errorf("read: %w", io.EOF)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
