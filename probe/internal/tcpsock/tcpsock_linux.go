// Package tcpsock is the one TCP client socket of the kernel-facing probes
// (connect, app, idle, keepalive): created in the target's network
// namespace, non-blocking in Go's runtime poller, connected with a deadline,
// and able to tell what the kernel knows about it (TCP_INFO, the ICMP error
// queue of IP_RECVERR).
//
// A Conn is driven through raw system calls on its fd rather than through
// net.Conn or mdlayher/socket: at thousands of probes per second the system
// calls and allocations of a generic socket (F_SETFL/SO_TYPE probing of a
// socket just made non-blocking, getpeername after connect, one goroutine
// per blocking call watching a ctx) are most of the prober's own CPU. The
// socket joins Go's runtime poller (an *os.File) only when a call has to
// wait: a connect over loopback or a veth to a pod of this node has ended
// by the time connect(2) returns, and such a probe never pays the poller's
// fcntl, two epoll_ctl, file and deadline timer. A call that waits is
// bounded by a deadline on the socket itself (a runtime poller timer, no
// system call), and one context.AfterFunc per Watch moves that deadline
// into the past when the ctx is canceled, so shutdown stays prompt.
//
// Errors are os.SyscallErrors named by the operation ("connect: connection
// refused", "read: connection reset by peer"); a call cut short by the
// watched ctx or deadline returns the ctx's error under the operation's
// name ("connect: context deadline exceeded"), so callers classify by errno
// and phase (probe.Classify), never by text.
package tcpsock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/netns"
)

// Options are the socket options Open sets before connecting.
type Options struct {
	// Source, when valid, is the local address to bind to (the port is
	// chosen at connect time).
	Source netip.Addr
	// UserTimeout, when > 0, sets TCP_USER_TIMEOUT: how long sent data (or
	// keep-alive probes) may stay unacknowledged before the kernel drops
	// the connection with ETIMEDOUT.
	UserTimeout time.Duration
	// KeepAlive, when its Idle is > 0, turns on SO_KEEPALIVE with these
	// timers.
	KeepAlive KeepAlive
}

// KeepAlive are the kernel keep-alive timers (tcp(7): TCP_KEEPIDLE and
// TCP_KEEPINTVL take whole seconds, TCP_KEEPCNT a count).
type KeepAlive struct {
	Idle, Interval time.Duration
	Count          int
}

// Conn is one TCP client socket. Its calls, Close included, are not safe for
// concurrent use (a probe drives its socket from one goroutine); only the
// cancellation Watch arms runs beside them.
type Conn struct {
	fd int // -1 once closed
	// f and rc are the socket in the runtime poller, nil until a call
	// had to wait (see poll); then f owns fd. Written under mu.
	f  *os.File
	rc syscall.RawConn

	// The watched span: ctx for cancellation and the error a cut-short
	// call reports, deadline (zero: none).
	ctx      context.Context
	deadline int64 // unix nanoseconds, 0: none (not a time.Time: the Conn fits a smaller size class)
	// mu orders a span's start against a cancellation of an earlier span
	// that is still on its way (its AfterFunc runs in a goroutine of its
	// own, possibly after stop returned): gen tells it that its span is
	// over, so it does not cut the next one short.
	mu  sync.Mutex
	gen uint32
	// armed stops the span's cancellation, armed when the socket is in
	// the poller (before, no call can be blocked: nothing to wake).
	armed  func() bool
	stopFn func() bool // stopWatch, bound once

	// The raw calls of the hot path (setsockopt, connect, TCP_INFO,
	// getsockname) run in two callbacks bound once in Open, with their
	// arguments and results here, so a probe's calls allocate nothing.
	controlFn func(fd uintptr)
	connectFn func(fd uintptr) bool
	op        rawOp
	level     int
	opt       int
	val       int
	sa        unix.Sockaddr // connect's remote
	started   bool          // connect(2) was called
	ok        bool          // connect: the handshake ended (see connectStep)
	errno     error
	info      unix.TCPInfo
	infoLen   uint32
	rsa       unix.RawSockaddrAny
	rsaLen    uint32
	sa4       unix.SockaddrInet4
	sa6       unix.SockaddrInet6
}

// sockaddr is inet.Sockaddr(ap) in the Conn's own storage.
func (c *Conn) sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		c.sa4 = unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
		return &c.sa4
	}
	c.sa6 = unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	return &c.sa6
}

// rawOp is what Conn.control does on the fd.
type rawOp uint8

const (
	opSetsockopt rawOp = iota
	opTCPInfo
	opGetsockname
)

// Open creates a TCP socket for remote's address family in the network
// namespace nsPath (empty: the prober's own) and sets opts. It does not
// connect.
//
// Only socket creation happens inside the namespace: a socket keeps the
// namespace it was created in for life, so connect and I/O run on ordinary
// goroutines (probe/netns).
func Open(nsPath string, remote netip.AddrPort, opts Options) (*Conn, error) {
	family := unix.AF_INET
	if !remote.Addr().Unmap().Is4() {
		family = unix.AF_INET6
	}
	fd, err := -1, error(nil)
	if nsPath == "" {
		fd, err = newSocket(family) // no closure to allocate
	} else {
		err = netns.Do(nsPath, func() error {
			var err error
			fd, err = newSocket(family)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("connect: socket: %w", err)
	}
	c := &Conn{fd: fd, ctx: context.Background()}
	c.controlFn, c.connectFn, c.stopFn = c.control, c.connectStep, c.stopWatch
	if err := c.setup(family, opts); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// newSocket is socket(2) of a non-blocking TCP socket, retried on EINTR.
func newSocket(family int) (int, error) {
	for {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != unix.EINTR {
			return fd, os.NewSyscallError("socket", err)
		}
	}
}

// setup sets the options Open promises; errors read "connect: IP_RECVERR:
// setsockopt: ...".
func (c *Conn) setup(family int, o Options) error {
	// IP_RECVERR queues the ICMP error that fails a SYN_SENT socket, so its
	// type, code and sender can be reported (tcp_v4_err calls ip_icmp_error
	// in SYN_SENT); connect() alone says EHOSTUNREACH for both
	// host-unreachable and admin-prohibited.
	if family == unix.AF_INET {
		if err := c.setsockopt(unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
			return fmt.Errorf("connect: IP_RECVERR: %w", err)
		}
	} else if err := c.setsockopt(unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1); err != nil {
		return fmt.Errorf("connect: IPV6_RECVERR: %w", err)
	}
	if o.UserTimeout > 0 {
		if err := c.setsockopt(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(o.UserTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("connect: TCP_USER_TIMEOUT: %w", err)
		}
	}
	if k := o.KeepAlive; k.Idle > 0 {
		for _, opt := range []struct {
			name       string
			level, opt int
			v          int
		}{
			{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(k.Idle / time.Second)},
			{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(k.Interval / time.Second)},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, k.Count},
		} {
			if err := c.setsockopt(opt.level, opt.opt, opt.v); err != nil {
				return fmt.Errorf("keepalive: %s: %w", opt.name, err)
			}
		}
	}
	if o.Source.IsValid() {
		// Defer the port choice to connect() so the 4-tuple, not the local
		// port alone, must be unique: binding with port 0 would reserve a
		// port per probe and exhaust the range at high probe rates.
		_ = c.setsockopt(unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		var err error
		if cerr := c.raw(func(fd uintptr) { err = unix.Bind(int(fd), inet.Sockaddr(netip.AddrPortFrom(o.Source, 0))) }); cerr != nil {
			err = cerr
		}
		if err := os.NewSyscallError("bind", err); err != nil {
			return fmt.Errorf("connect: bind %s: %w", o.Source, err)
		}
	}
	return nil
}

func (c *Conn) setsockopt(level, opt, v int) error {
	c.op, c.level, c.opt, c.val = opSetsockopt, level, opt, v
	if err := c.raw(c.controlFn); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", c.errno)
}

// raw runs fn, a call that does not wait, on the fd: directly, or through
// the poller's RawConn once the socket is in it.
func (c *Conn) raw(fn func(fd uintptr)) error {
	if c.f != nil {
		return c.rc.Control(fn)
	}
	if c.fd < 0 {
		return os.ErrClosed
	}
	fn(uintptr(c.fd))
	return nil
}

// poll puts the socket in the runtime poller, for a call that must wait,
// and gives it the watched span's deadline and cancellation (a deadline in
// the past if its ctx is already done).
func (c *Conn) poll() error {
	if c.f != nil {
		return nil
	}
	if c.fd < 0 {
		return os.ErrClosed
	}
	// A non-blocking fd: os.NewFile registers it with the runtime poller.
	f := os.NewFile(uintptr(c.fd), "tcp")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		c.fd = -1
		return err
	}
	c.mu.Lock()
	c.f, c.rc = f, rc
	if c.deadline != 0 {
		_ = f.SetDeadline(time.Unix(0, c.deadline))
	}
	// A ctx done by now fires the cancellation at once.
	c.arm()
	c.mu.Unlock()
	return nil
}

// arm sets the span's cancellation: when its ctx is done, the socket's
// deadline moves into the past, which wakes every blocked call. Called
// with mu held, once the socket is in the poller.
func (c *Conn) arm() {
	gen := c.gen
	c.armed = context.AfterFunc(c.ctx, func() {
		c.mu.Lock()
		if c.gen == gen {
			// Wakes every blocked call with os.ErrDeadlineExceeded;
			// harmless once the socket is closed.
			_ = c.f.SetDeadline(time.Unix(0, 1))
		}
		c.mu.Unlock()
	})
}

// stopWatch is the stop Watch returns: it disarms the span's
// cancellation, and reports whether it had not run.
func (c *Conn) stopWatch() bool {
	c.mu.Lock()
	stop := c.armed
	c.armed = nil
	c.mu.Unlock()
	if stop == nil {
		return true
	}
	return stop()
}

// control runs c.op on fd, leaving its error in c.errno.
func (c *Conn) control(fd uintptr) {
	var e unix.Errno
	switch c.op {
	case opSetsockopt:
		c.errno = unix.SetsockoptInt(int(fd), c.level, c.opt, c.val)
		return
	case opTCPInfo:
		c.infoLen = uint32(unsafe.Sizeof(c.info))
		_, _, e = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
			uintptr(unsafe.Pointer(&c.info)), uintptr(unsafe.Pointer(&c.infoLen)), 0)
	case opGetsockname:
		c.rsaLen = unix.SizeofSockaddrAny
		_, _, e = unix.RawSyscall(unix.SYS_GETSOCKNAME, fd, uintptr(unsafe.Pointer(&c.rsa)), uintptr(unsafe.Pointer(&c.rsaLen)))
	}
	c.errno = nil
	if e != 0 {
		c.errno = e
	}
}

// Close closes the socket.
func (c *Conn) Close() error {
	if c.f != nil {
		return c.f.Close()
	}
	if c.fd < 0 {
		return os.ErrClosed
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return os.NewSyscallError("close", err)
}

// Watch bounds the calls that follow (Connect, Read, Write) by deadline
// (zero: none) and by ctx's cancellation, until stop is called: the
// socket's deadline is set, and one context.AfterFunc moves it into the
// past when ctx is done, which wakes a blocked call. Both are set when the
// socket is in the poller, or joins it: a call that never waits needs
// neither (early checks the span before each call). Call stop before the
// span ends.
func (c *Conn) Watch(ctx context.Context, deadline time.Time) (stop func() bool) {
	c.mu.Lock()
	c.gen++
	c.ctx, c.deadline = ctx, 0
	if !deadline.IsZero() {
		c.deadline = deadline.UnixNano()
	}
	c.armed = nil
	if c.f != nil {
		_ = c.f.SetDeadline(deadline)
		c.arm()
	}
	c.mu.Unlock()
	return c.stopFn
}

// watchCall is Watch for one call, bounded by ctx's own deadline.
func (c *Conn) watchCall(ctx context.Context) (stop func() bool) {
	d, _ := ctx.Deadline()
	return c.Watch(ctx, d)
}

// early reports that the watched span is over before a call starts.
func (c *Conn) early(op string) error {
	if err := c.ctx.Err(); err != nil {
		return os.NewSyscallError(op, err)
	}
	if c.deadline != 0 && time.Now().UnixNano() >= c.deadline {
		return os.NewSyscallError(op, context.DeadlineExceeded)
	}
	return nil
}

// cut translates a call cut short by the watch into the ctx's error (a
// deadline that fired just before ctx's own timer is a deadline too).
func (c *Conn) cut(op string, err error) error {
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	cause := c.ctx.Err()
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	return os.NewSyscallError(op, cause)
}

// Connect runs the non-blocking connect(2) and waits in the poller for the
// handshake to end, within the watch. On success it returns the TCP_INFO it
// read to confirm the connection (nil when that read failed).
func (c *Conn) Connect(remote netip.AddrPort) (*unix.TCPInfo, error) {
	if err := c.early("connect"); err != nil {
		return nil, err
	}
	info, err := c.connect(c.sockaddr(remote))
	return info, c.cut("connect", err)
}

// ConnectContext is Connect bounded by ctx alone.
func (c *Conn) ConnectContext(ctx context.Context, remote netip.AddrPort) (*unix.TCPInfo, error) {
	defer c.watchCall(ctx)()
	return c.Connect(remote)
}

func (c *Conn) connect(sa unix.Sockaddr) (*unix.TCPInfo, error) {
	c.sa, c.started, c.ok, c.errno = sa, false, false, nil
	var perr error
	if c.f != nil || c.fd < 0 {
		perr = c.pollWrite(c.connectFn)
	} else if !c.connectFn(uintptr(c.fd)) {
		// Under way: wait in the poller for the handshake to end.
		perr = c.pollWrite(c.connectFn)
	}
	c.sa = nil
	if perr != nil {
		return nil, perr
	}
	err := c.errno
	if err == unix.EISCONN {
		err = nil
	}
	if err != nil {
		return nil, os.NewSyscallError("connect", err)
	}
	if !c.ok {
		return nil, nil // connected, TCP_INFO unread
	}
	return &c.info, nil
}

// connectStep is connect's poller callback: connect(2) on the first call,
// then, each time the socket is writable, whether the handshake ended and
// how. TCP_INFO is read first: a socket that left SYN-SENT for an open
// state is connected, and SO_ERROR is read only when it did not, so a
// successful connect costs one getsockopt. The poller may wake us
// spuriously (internal/poll notes it): a socket still in SYN-SENT, or
// closed, without an error waits on.
func (c *Conn) connectStep(fd uintptr) bool {
	first := !c.started
	if first {
		c.started = true
		c.errno = unix.Connect(int(fd), c.sa)
		if c.errno != unix.EINPROGRESS {
			return !waiting(c.errno)
		}
		// The SYN is out. Over loopback, or a veth to a pod of this node,
		// the handshake has often ended by the time connect(2) returns
		// (the peer's kernel ran in this call's softirq): look before
		// parking in the poller, whose sleep and wake-up cost more than
		// the handshake.
	}
	c.infoLen = uint32(unsafe.Sizeof(c.info))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&c.info)), uintptr(unsafe.Pointer(&c.infoLen)), 0)
	if e == 0 && c.info.State != unix.BPF_TCP_SYN_SENT && c.info.State != unix.BPF_TCP_CLOSE {
		c.ok, c.errno = true, nil
		return true
	}
	if first && e == 0 && c.info.State == unix.BPF_TCP_SYN_SENT {
		return false // under way: wait until writable
	}
	// Still in SYN-SENT, closed, or TCP_INFO unreadable: SO_ERROR says
	// whether it failed (in SYN-SENT it holds the soft error of an ICMP
	// that came while the socket was busy: the kernel retransmits, but the
	// path said no).
	var errno int
	errno, c.errno = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	if c.errno == nil && errno != 0 {
		c.errno = unix.Errno(errno)
	}
	if c.errno != nil {
		return !waiting(c.errno)
	}
	if e != 0 {
		return true // connected, TCP_INFO unreadable
	}
	return false // SYN-SENT or CLOSE without an error: wait, as a getpeername check would
}

// Write writes all of b within the watch.
func (c *Conn) Write(b []byte) error {
	if err := c.early("write"); err != nil {
		return err
	}
	nn := 0
	var err error
	perr := c.pollWrite(func(fd uintptr) bool {
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
		return c.cut("write", perr)
	}
	return os.NewSyscallError("write", err)
}

// WriteContext is Write bounded by ctx alone.
func (c *Conn) WriteContext(ctx context.Context, b []byte) error {
	defer c.watchCall(ctx)()
	return c.Write(b)
}

// Read reads once within the watch; 0 bytes from the peer (FIN) is io.EOF.
// n is never negative.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.early("read"); err != nil {
		return 0, err
	}
	var n int
	var err error
	if perr := c.poll(); perr != nil {
		return 0, perr
	}
	perr := c.rc.Read(func(fd uintptr) bool {
		n, err = unix.Read(int(fd), b)
		return !waiting(err)
	})
	if n < 0 {
		n = 0
	}
	if perr != nil {
		return 0, c.cut("read", perr)
	}
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return n, os.NewSyscallError("read", err)
}

// ReadContext is Read bounded by ctx alone.
func (c *Conn) ReadContext(ctx context.Context, b []byte) (int, error) {
	defer c.watchCall(ctx)()
	return c.Read(b)
}

// pollWrite is RawConn.Write in the poller (joining it first).
func (c *Conn) pollWrite(fn func(fd uintptr) bool) error {
	if err := c.poll(); err != nil {
		return err
	}
	return c.rc.Write(fn)
}

// waiting reports whether a non-blocking call must wait for the poller.
func waiting(err error) bool {
	return err == unix.EAGAIN || err == unix.EINPROGRESS || err == unix.EINTR
}

// TCPInfo reads TCP_INFO into a new TCPInfo.
func (c *Conn) TCPInfo() (*unix.TCPInfo, error) {
	c.op = opTCPInfo
	if err := c.raw(c.controlFn); err != nil {
		return nil, err
	}
	if c.errno != nil {
		return nil, os.NewSyscallError("getsockopt", c.errno)
	}
	info := c.info
	return &info, nil
}

// LocalAddr is the socket's local address (getsockname); invalid when it
// has none.
func (c *Conn) LocalAddr() netip.AddrPort {
	c.op = opGetsockname
	if err := c.raw(c.controlFn); err != nil || c.errno != nil {
		return netip.AddrPort{}
	}
	switch c.rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&c.rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&c.rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as the kernel stores it (network byte order).
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// NetConn returns a duplicate of the socket as a net.Conn in Go's own
// poller, for a client library to speak over; the duplicate keeps the
// namespace the socket was created in. The caller closes both.
func (c *Conn) NetConn() (net.Conn, error) {
	if err := c.poll(); err != nil {
		return nil, err
	}
	return net.FileConn(c.f)
}

// ICMP drains the socket's error queue and describes the first ICMP error
// in it: "ICMP host-unreachable (type 3 code 1) from 10.0.0.1"; "" when
// there is none.
func (c *Conn) ICMP() string {
	var out string
	_ = c.raw(func(fd uintptr) {
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
