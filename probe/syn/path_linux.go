package syn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mdlayher/socket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/netns"
)

// A path is the shared raw send and receive machinery of one network
// namespace and address family: every prober of the process that probes from
// that namespace over that family uses it. A raw socket lives in the
// namespace it was created in, so there is one path per namespace, not one
// per process.
type path struct {
	key  pathKey
	tcp  *socket.Conn // raw IPPROTO_TCP: receives SYN/ACK and RST
	icmp *socket.Conn // raw ICMP/ICMPv6: receives errors quoting our SYNs

	// tx is the raw IPPROTO_TCP socket the SYNs are sent on, kept out of
	// the runtime poller and with a filter that drops every packet: it
	// only sends and reads its error queue, where the kernel puts each
	// SYN's send timestamp (see send). A socket of its own, because a
	// timestamp queued on the receiving socket would wake its reader
	// once per SYN for nothing.
	txMu sync.Mutex
	tx   int // -1 when closed or not opened
	// The rest, under txMu: the error queue's read scratch, the
	// timestamps read and not yet taken, and the SYNs sent since the
	// last read.
	errq       *mmsgRing // the error queue's timestamps, errBatch per read
	stamps     *stampTable
	sinceDrain int
	txStamps   bool // the kernel queues send timestamps on tx
	sb         sendBuf

	routeMu sync.Mutex
	route   *socket.Conn // UDP socket, connect()ed only to ask the route for a source

	mu      sync.Mutex
	waiters map[waitKey]*waiter
	// byPort holds the same waiters by local port alone, to recognise a
	// reply to our SYN from another address than the one probed (it acks
	// our ISN): the un-NATed answer of a stale NAT/IPVS session. Slices
	// keep their capacity, so the hot path does not allocate.
	byPort [PortHi - PortLo + 1][]*waiter
	refs   int // guarded by registry.mu

	wg sync.WaitGroup // the two readers

	// Counters, for tests and evidence.
	received atomic.Uint64 // packets past the BPF filter
	foreign  atomic.Uint64 // of those, not a reply to any waiting SYN
	// SYNs of answered exchanges (settle) timed by the kernel's send
	// timestamp, and timed by the clock before sendmsg (no timestamp).
	stamped, unstamped atomic.Uint64
}

type pathKey struct {
	ns string
	v6 bool
}

// waitKey identifies a SYN in flight: where it went and from which port. A
// port is held by one probe at a time, so the key is unique; the sequence
// number is checked on top.
type waitKey struct {
	remote netip.AddrPort
	port   uint16
}

type waiter struct {
	seq uint32
	// span is how many consecutive sequence numbers from seq are this
	// waiter's: 1 for a probe's SYN, more for a Flow, whose SYNs share the
	// port and differ only in their sequence number.
	span   uint32
	flow   bool // a Flow: replies from another address go to ch, marked foreign
	remote netip.AddrPort
	port   uint16
	ch     chan arrival
	// Packets that named this SYN but did not answer it, kept as
	// evidence; written under the path's mu, read after unregister.
	// strays is allocated at the first stray (rare: a reply that names
	// this SYN without answering it), so a prober does not carry room for
	// maxStrays of them (about 560 bytes) per target.
	strays  *[maxStrays]stray
	nstrays int
}

// stray is a packet that named one of our SYNs but does not answer it: from
// another address than the one probed while acking our ISN (the reply was
// not reverse-NATed), or from the probed address acking another sequence
// number.
type stray struct {
	Reply
	at       time.Time
	wrongAck bool   // from the probed address, acking another sequence number
	expect   uint32 // the ack an answer carries: our ISN+1
	n        int    // how many such packets came
}

// maxStrays bounds the distinct strays kept per SYN exchange; more of the
// same kind only count.
const maxStrays = 4

// note records a stray. Called with the path's mu held.
func (w *waiter) note(r Reply, at time.Time, wrongAck bool) {
	for i := range w.nstrays {
		s := &w.strays[i]
		if s.Kind == r.Kind && s.Remote == r.Remote && s.From == r.From && s.wrongAck == wrongAck && s.Ack == r.Ack {
			s.n++
			return
		}
	}
	if w.nstrays < maxStrays {
		if w.strays == nil {
			w.strays = new([maxStrays]stray)
		}
		w.strays[w.nstrays] = stray{Reply: r, at: at, wrongAck: wrongAck, expect: w.seq + 1, n: 1}
		w.nstrays++
	}
}

// takeStrays appends the strays to dst[:0]; only after unregister.
func (w *waiter) takeStrays(dst []stray) []stray {
	if w.nstrays == 0 {
		return dst[:0]
	}
	return append(dst[:0], w.strays[:w.nstrays]...)
}

// arrival is a matched reply and the kernel's receive timestamp.
type arrival struct {
	Reply
	at      time.Time
	foreign bool // (Flow only) from, or quoting, another address than the one probed
}

// portCursor walks the source-port range for the whole process, from a
// random start, so even paths that are closed and reopened (or several
// namespaces) do not start over at the same port.
var portCursor = func() *atomic.Uint32 {
	var c atomic.Uint32
	c.Store(rand.Uint32())
	return &c
}()

var registry = struct {
	mu    sync.Mutex
	paths map[pathKey]*path
}{paths: map[pathKey]*path{}}

// acquire returns the shared path for (nsPath, v6), opening it on first use.
func acquire(nsPath string, v6 bool) (*path, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	k := pathKey{nsPath, v6}
	if p, ok := registry.paths[k]; ok {
		p.refs++
		return p, nil
	}
	p, err := openPath(k)
	if err != nil {
		return nil, err
	}
	p.refs = 1
	registry.paths[k] = p
	return p, nil
}

// release drops one reference; the last one closes the sockets and waits for
// the readers.
func (p *path) release() {
	registry.mu.Lock()
	p.refs--
	last := p.refs == 0
	if last {
		delete(registry.paths, p.key)
	}
	registry.mu.Unlock()
	if last {
		p.close()
	}
}

func (p *path) close() {
	for _, c := range []*socket.Conn{p.tcp, p.icmp, p.route} {
		if c != nil {
			c.Close()
		}
	}
	p.wg.Wait()
	p.txMu.Lock()
	if p.tx >= 0 {
		unix.Close(p.tx)
		p.tx = -1
	}
	p.txMu.Unlock()
}

// rawSocket creates a raw socket in the namespace. socket(2) with SOCK_RAW
// needs CAP_NET_RAW in the namespace's owning user namespace; EPERM becomes a
// PermissionError naming it.
func rawSocket(nsPath string, family, proto int) (*socket.Conn, error) {
	var c *socket.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		c, err = socket.Socket(family, unix.SOCK_RAW, proto, "syn-raw", nil)
		return err
	})
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		var perm *probe.PermissionError
		if errors.As(err, &perm) {
			return nil, err // setns itself was refused: CAP_SYS_ADMIN
		}
		return nil, &probe.PermissionError{Capability: "CAP_NET_RAW", Op: "syn: raw socket", Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("syn: raw socket: %w", err)
	}
	return c, nil
}

// Check reports whether raw SYN probes can run from the namespace nsPath
// (empty: here): it opens and closes a raw TCP socket. A missing CAP_NET_RAW
// is a *probe.PermissionError.
func Check(nsPath string) error {
	c, err := rawSocket(nsPath, unix.AF_INET, unix.IPPROTO_TCP)
	if err != nil {
		return err
	}
	return c.Close()
}

func openPath(k pathKey) (_ *path, err error) {
	p := &path{key: k, waiters: map[waitKey]*waiter{}, tx: -1}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	family, icmpProto := unix.AF_INET, unix.IPPROTO_ICMP
	tcpFilter, icmpFilter := filterTCP4(PortLo, PortHi), filterICMP4(PortLo, PortHi)
	if k.v6 {
		family, icmpProto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		tcpFilter, icmpFilter = filterTCP6(PortLo, PortHi), filterICMP6(PortLo, PortHi)
	}
	if p.tcp, err = rawSocket(k.ns, family, unix.IPPROTO_TCP); err != nil {
		return nil, err
	}
	if p.icmp, err = rawSocket(k.ns, family, icmpProto); err != nil {
		return nil, err
	}
	if err := netns.Do(k.ns, func() error {
		var err error
		p.route, err = socket.Socket(family, unix.SOCK_DGRAM, unix.IPPROTO_UDP, "syn-route", nil)
		return err
	}); err != nil {
		return nil, fmt.Errorf("syn: route socket: %w", err)
	}
	for _, s := range []struct {
		c      *socket.Conn
		filter []bpf.Instruction
	}{{p.tcp, tcpFilter}, {p.icmp, icmpFilter}} {
		raw, err := bpf.Assemble(s.filter)
		if err != nil {
			return nil, fmt.Errorf("syn: assemble filter: %w", err)
		}
		if err := s.c.SetBPF(raw); err != nil {
			return nil, fmt.Errorf("syn: attach filter: %w", err)
		}
		// Receive timestamps taken by the kernel when the packet came in
		// (netif_receive_skb), so the RTT does not include our scheduling.
		if err := s.c.SetsockoptInt(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return nil, fmt.Errorf("syn: SO_TIMESTAMPNS: %w", err)
		}
		_ = s.c.SetReadBuffer(1 << 20)
	}
	if p.tx, p.txStamps, err = txSocket(k.ns, family); err != nil {
		return nil, err
	}
	if p.txStamps {
		// A SYN packet is at most 94 bytes from its link header (IPv6).
		p.errq, p.stamps = newMmsgRing(errBatch, 128, 128, false), newStampTable()
	}
	if k.v6 {
		// Let the kernel drop every ICMPv6 type but the two errors before
		// the BPF filter runs.
		var f unix.ICMPv6Filter
		for i := range f.Data {
			f.Data[i] = ^uint32(0)
		}
		for _, t := range []uint8{1, 3} {
			f.Data[t>>5] &^= 1 << (t & 31)
		}
		if err := p.icmp.SetsockoptICMPv6Filter(unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
			return nil, fmt.Errorf("syn: ICMPV6_FILTER: %w", err)
		}
	}
	parseTCP, parseICMP := func(_ netip.Addr, b []byte) (Reply, error) { return ParseTCP4(b) }, func(_ netip.Addr, b []byte) (Reply, error) { return ParseICMP4(b) }
	if k.v6 {
		parseTCP, parseICMP = ParseTCP6, ParseICMP6
	}
	p.wg.Add(2)
	go p.read(p.tcp, parseTCP)
	go p.read(p.icmp, parseICMP)
	return p, nil
}

// rxBatch is how many packets one recvmmsg(2) may return. Under load the
// socket holds several replies by the time the reader runs (on veth the
// target's answer is queued before our sendmsg even returns); taking them in
// one call saves a syscall and a poller round trip per reply.
const rxBatch = 32

// mmsgRing holds the headers and buffers of one recvmmsg(2) call,
// allocated once and filled in place, so a receive loop does not allocate:
// the receive sockets' readers (with the senders' addresses) and the
// send-timestamp read of the error queue share it.
type mmsgRing struct {
	hdrs           []unix.Mmsghdr
	iovs           []unix.Iovec
	names          []unix.RawSockaddrInet6 // nil: senders not asked for; else large enough for either family
	bufs, oobs     []byte                  // one slot of bufLen and oobLen bytes per header
	bufLen, oobLen int
}

func newMmsgRing(n, bufLen, oobLen int, names bool) *mmsgRing {
	r := &mmsgRing{
		hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		bufs: make([]byte, n*bufLen), oobs: make([]byte, n*oobLen),
		bufLen: bufLen, oobLen: oobLen,
	}
	if names {
		r.names = make([]unix.RawSockaddrInet6, n)
	}
	for i := range r.iovs {
		r.iovs[i].Base = &r.bufs[i*bufLen]
		r.iovs[i].SetLen(bufLen)
	}
	r.reset(n)
	return r
}

// reset restores the lengths the kernel overwrote in the first n headers.
func (r *mmsgRing) reset(n int) {
	for i := range n {
		h := &r.hdrs[i].Hdr
		if r.names != nil {
			h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		}
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oobs[i*r.oobLen]
		h.SetControllen(r.oobLen)
		h.Flags = 0
		r.hdrs[i].Len = 0
	}
}

// recv is one recvmmsg(2) on fd with flags (MSG_DONTWAIT among them): how
// many messages it filled, or its errno.
func (r *mmsgRing) recv(fd uintptr, flags int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// buf is message i's data, as far as its slot holds it.
func (r *mmsgRing) buf(i int) []byte {
	return r.bufs[i*r.bufLen : i*r.bufLen+min(int(r.hdrs[i].Len), r.bufLen)]
}

// oob is message i's control messages.
func (r *mmsgRing) oob(i int) []byte {
	return r.oobs[i*r.oobLen : i*r.oobLen+min(int(r.hdrs[i].Hdr.Controllen), r.oobLen)]
}

// read is the path's receive loop for one socket. It uses the raw
// syscall.RawConn: one blocking wait in the runtime poller when the socket is
// empty, then recvmmsg(2) takes every queued packet (up to rxBatch) in one
// call; no per-read goroutine, deadline or allocation. Closing the socket
// ends it.
func (p *path) read(c *socket.Conn, parse func(netip.Addr, []byte) (Reply, error)) {
	defer p.wg.Done()
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	ring := newMmsgRing(rxBatch, 2048, 128, true)
	var n int
	var rerr error
	recv := func(fd uintptr) bool {
		n, rerr = ring.recv(fd, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	}
	for {
		if err := rc.Read(recv); err != nil {
			return // closed
		}
		if rerr != nil {
			continue // ENOBUFS and friends: the next packet may do
		}
		for i := range n {
			p.received.Add(1)
			at, ok := rxTimestamp(ring.oob(i))
			if !ok {
				at = time.Now()
			}
			r, err := parse(rawAddr(&ring.names[i]), ring.buf(i))
			if err != nil || !p.dispatch(r, at) {
				p.foreign.Add(1)
			}
		}
		ring.reset(n)
	}
}

// rawAddr reads the sender address recvmmsg stored, without the allocation
// of unix.Sockaddr.
func rawAddr(sa *unix.RawSockaddrInet6) netip.Addr {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(sa4.Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(sa.Addr)
	}
	return netip.Addr{}
}

// dispatch hands r to the probe waiting for it and reports whether one was.
// The hand-over happens under p.mu, so once unregister returns no reply can
// reach the waiter any more (a prober reuses its waiter for the next SYN).
//
// A packet to a waiting SYN's port that does not answer it is kept as that
// SYN's evidence (a stray), never as its answer: from the probed address but
// acking another sequence number, or from another address but acking our
// ISN+1 (32 random bits: no accident), which is a reply that was not
// reverse-NATed.
func (p *path) dispatch(r Reply, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Kind == ReplyNone {
		return false
	}
	if w, ok := p.waiters[waitKey{r.Remote, r.LocalPort}]; ok {
		if r.Ack-(w.seq+1) < w.span {
			select {
			case w.ch <- arrival{Reply: r, at: at}:
			default: // the probe already has its answer; a retransmitted SYN/ACK
			}
			return true
		}
		if r.Kind != ReplyICMP { // an ICMP error quoting another SYN of that port is old news
			w.note(r, at, true)
			return true
		}
	}
	if r.LocalPort < PortLo || r.LocalPort > PortHi {
		return false
	}
	for _, w := range p.byPort[r.LocalPort-PortLo] {
		if r.Ack-(w.seq+1) < w.span {
			if w.flow {
				select {
				case w.ch <- arrival{Reply: r, at: at, foreign: true}:
				default:
				}
				return true
			}
			w.note(r, at, false)
			return true
		}
	}
	return false
}

// register takes a free source port for a SYN to remote with sequence seq
// and files w (the prober's own, reused) as its waiter, emptied of any
// answer left from the prober's previous SYN.
func (p *path) register(remote netip.AddrPort, seq uint32, w *waiter) (uint16, error) {
	w.span = 1
	return p.registerSpan(remote, seq, w)
}

// registerSpan is register for a waiter whose span is set.
func (p *path) registerSpan(remote netip.AddrPort, seq uint32, w *waiter) (uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	const n = PortHi - PortLo + 1
	for range n {
		port := uint16(PortLo + portCursor.Add(1)%n)
		k := waitKey{remote, port}
		if _, busy := p.waiters[k]; busy {
			continue
		}
		select {
		case <-w.ch:
		default:
		}
		w.seq, w.remote, w.port, w.nstrays = seq, remote, port, 0
		p.waiters[k] = w
		p.byPort[port-PortLo] = append(p.byPort[port-PortLo], w)
		return port, nil
	}
	return 0, fmt.Errorf("syn: all %d source ports %d-%d busy towards %s: %w", n, PortLo, PortHi, remote, unix.EADDRNOTAVAIL)
}

func (p *path) unregister(remote netip.AddrPort, port uint16) {
	p.mu.Lock()
	k := waitKey{remote, port}
	if w, ok := p.waiters[k]; ok {
		delete(p.waiters, k)
		ws := p.byPort[port-PortLo]
		for i, x := range ws {
			if x == w {
				ws[i] = ws[len(ws)-1]
				ws[len(ws)-1] = nil
				p.byPort[port-PortLo] = ws[:len(ws)-1]
				break
			}
		}
	}
	p.mu.Unlock()
}

// source asks the routing table which source address the kernel would use
// towards dst: connect(2) on a UDP socket does the route lookup and sends
// nothing. The TCP checksum covers the source address, so we must know it
// before building the SYN.
func (p *path) source(dst netip.Addr) (netip.Addr, error) {
	p.routeMu.Lock()
	defer p.routeMu.Unlock()
	rc, err := p.route.SyscallConn()
	if err != nil {
		return netip.Addr{}, err
	}
	var src netip.Addr
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.Connect(int(fd), inet.Sockaddr(netip.AddrPortFrom(dst, 9))); serr != nil {
			serr = os.NewSyscallError("connect", serr)
			return
		}
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr != nil {
			serr = os.NewSyscallError("getsockname", serr)
			return
		}
		src = sockaddrAddr(sa)
	}); err != nil {
		return netip.Addr{}, err
	}
	if serr != nil {
		return netip.Addr{}, fmt.Errorf("syn: route to %s: %w", dst, serr)
	}
	return src, nil
}

// sendBuf is the path's scratch space for sends, used under txMu, so that a
// send does not allocate: the destination sockaddr and the control message
// (PKTINFO, and the TTL of a traced SYN), rebuilt only when the source or
// TTL changes.
type sendBuf struct {
	src netip.Addr
	ttl int // the TTL oob carries; 0: none (the socket's default)
	oob []byte
	sa4 unix.SockaddrInet4
	sa6 unix.SockaddrInet6
	to  unix.Sockaddr
}

// send writes seg, a SYN from src, to dst (ttl 0: the socket's default TTL,
// else sent as IP_TTL / IPV6_HOPLIMIT) and returns the time taken just
// before sendmsg(2): a stand-in for when it left, which settle replaces by
// the kernel's own send time (see settle). IP_PKTINFO/IPV6_PKTINFO pins the
// source address the checksum was computed over.
func (p *path) send(seg []byte, src, dst netip.Addr, ttl int) (time.Time, error) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.tx < 0 {
		return time.Time{}, fmt.Errorf("syn: send: %w", net.ErrClosed)
	}
	sb := &p.sb
	if sb.src != src || sb.oob == nil || sb.ttl != ttl {
		if p.key.v6 {
			sb.oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src.As16()})
		} else {
			sb.oob = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: src.As4()})
		}
		if ttl > 0 {
			sb.oob = appendTTL(sb.oob, p.key.v6, ttl)
		}
		sb.src, sb.ttl = src, ttl
	}
	if d := dst.Unmap(); d.Is4() {
		sb.sa4.Addr, sb.to = d.As4(), &sb.sa4
	} else {
		sb.sa6.Addr, sb.to = d.As16(), &sb.sa6
	}
	at := time.Now()
	// MSG_DONTWAIT: a full send buffer is a local error, not a wait
	// outside ctx.
	if err := unix.Sendmsg(p.tx, seg, sb.oob, sb.to, unix.MSG_DONTWAIT); err != nil {
		return time.Time{}, fmt.Errorf("syn: send: %w", os.NewSyscallError("sendmsg", err))
	}
	if p.txStamps {
		// Read the error queue every drainEvery SYNs, one recvmmsg(2)
		// for all of them, so it never fills (a full one drops new
		// timestamps) even when no answer asks for one.
		if p.sinceDrain++; p.sinceDrain >= drainEvery {
			p.drain()
		}
	}
	return at, nil
}

// drainEvery is how many SYNs may be sent between two reads of the error
// queue; errBatch timestamps are read per recvmmsg(2).
const (
	drainEvery = 16
	errBatch   = 16
)

// settle replaces the send times of sent, SYNs of one exchange whose TCP
// header starts with head (ports and sequence number), by the kernel's
// timestamps of the SYNs entering the device (SOF_TIMESTAMPING_TX_SCHED,
// taken in dev_queue_xmit, a moment before a capture on that interface
// sees them). The kernel queues a SYN's timestamp inside the sendmsg call
// that sent it (the packet goes down the stack in it), so by the time an
// answer is read it is there; settle reads the error queue and takes them
// by their SYNs' ports, sequence number and TSval. A SYN with none keeps
// the time before sendmsg: one the kernel held for a neighbour or dropped
// before any device, or a kernel without send timestamps. That time
// over-states the RTT by the call's way down the stack, tens of
// microseconds when the sender is preempted there.
func (p *path) settle(head uint64, sent []sentSYN) {
	if len(sent) == 0 {
		return
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if !p.txStamps || p.tx < 0 {
		p.unstamped.Add(uint64(len(sent)))
		return
	}
	drained := false
	for i := range sent {
		k := stampKey{head, sent[i].tsval}
		at, ok := p.stamps.take(k)
		if !ok && !drained {
			p.drain()
			drained = true
			at, ok = p.stamps.take(k)
		}
		if ok {
			sent[i].at = at
			p.stamped.Add(1)
		} else {
			p.unstamped.Add(1)
		}
	}
}

// drain reads every timestamp queued on tx into the stamp table. Called
// with txMu held.
func (p *path) drain() {
	p.sinceDrain = 0
	q := p.errq
	for range 64 { // a bound: at most drainEvery are queued between two reads, plus held SYNs'
		n, err := q.recv(uintptr(p.tx), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return // EAGAIN: the queue is empty
		}
		for i := range n {
			at, ok := cmsgTime(q.oob(i), unix.SCM_TIMESTAMPING)
			key, isSYN := synKey(q.buf(i))
			if ok && isSYN {
				p.stamps.put(key, at)
			}
		}
		q.reset(n)
		if n < errBatch {
			return
		}
	}
}

// txSocket opens the path's sending socket in the namespace: raw
// IPPROTO_TCP (the kernel writes the IP header), a filter that drops every
// packet it would otherwise receive (a raw socket gets a copy of each TCP
// packet of the namespace), and send timestamps on its error queue. A
// kernel that refuses the timestamps leaves txStamps false: the SYNs are
// still sent, timed in user space.
func txSocket(nsPath string, family int) (fd int, stamps bool, err error) {
	err = netns.Do(nsPath, func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		var perm *probe.PermissionError
		if errors.As(err, &perm) {
			return -1, false, err
		}
		return -1, false, &probe.PermissionError{Capability: "CAP_NET_RAW", Op: "syn: raw socket", Err: err}
	}
	if err != nil {
		return -1, false, fmt.Errorf("syn: raw socket: %w", os.NewSyscallError("socket", err))
	}
	drop := unix.SockFilter{Code: 0x06} // BPF_RET|BPF_K, k = 0: keep no byte
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop}); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("syn: attach filter: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	stamps = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING,
		unix.SOF_TIMESTAMPING_TX_SCHED|unix.SOF_TIMESTAMPING_SOFTWARE) == nil
	return fd, stamps, nil
}

// stampKey names one of our SYNs: the first 8 bytes of its TCP header
// (ports and sequence number) and its TSval, which differs between the
// retransmits of one exchange.
type stampKey struct {
	head  uint64
	tsval uint32
}

// synKey reads the key of the SYN a packet ends with (a SYN of ours is
// synHeaderLen bytes with no payload, so the packet's last bytes are its
// TCP header, whatever the link and IP headers before it); false when
// those bytes are not a SYN of AppendSYN's layout.
func synKey(pkt []byte) (stampKey, bool) {
	if len(pkt) < synHeaderLen {
		return stampKey{}, false
	}
	seg := pkt[len(pkt)-synHeaderLen:]
	if seg[12]>>4 != synHeaderLen/4 || seg[13] != flagSYN || seg[26] != 8 || seg[27] != 10 {
		return stampKey{}, false
	}
	return stampKey{binary.BigEndian.Uint64(seg), binary.BigEndian.Uint32(seg[28:])}, true
}

// The stamp table starts with minStampSlots and doubles, up to
// maxStampSlots, when timestamps not yet taken keep being overwritten: a
// path of a pod namespace with a few targets stays small, the node's own
// path at thousands of SYNs a second grows to what its load needs.
const (
	minStampSlots = 256
	maxStampSlots = 8192
	// stampLife is how long a timestamp waits to be taken: an older one
	// is of a SYN that got no answer (or one past its attempt), and may
	// be overwritten without counting as pressure.
	stampLife = 10 * time.Second
)

// stampTable holds send timestamps by SYN, in an array of two-slot buckets:
// no allocation per SYN. A SYN whose bucket holds two timestamps still
// awaited pushes out the older one (that SYN is then timed by the clock,
// counted in unstamped).
type stampTable struct {
	slots []stampSlot
	// Over a window of len(slots) puts: the puts, and those that
	// overwrote a live timestamp.
	puts, evicted int
}

type stampSlot struct {
	key stampKey
	at  int64 // unix nanoseconds; 0: empty
}

func newStampTable() *stampTable {
	return &stampTable{slots: make([]stampSlot, minStampSlots)}
}

// bucket returns the two slots k may be in (two ways: a timestamp is lost
// only when both hold live ones).
func (t *stampTable) bucket(k stampKey) *[2]stampSlot {
	// murmur3's 64-bit finalizer over the head and the TSval.
	h := k.head ^ uint64(k.tsval)*0x9E3779B97F4A7C15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	i := h & uint64(len(t.slots)-1) &^ 1
	return (*[2]stampSlot)(t.slots[i : i+2])
}

func (t *stampTable) put(k stampKey, at time.Time) {
	ns := at.UnixNano()
	if t.puts++; t.puts > len(t.slots) {
		t.puts, t.evicted = 1, 0
	}
	b := t.bucket(k)
	live := func(e *stampSlot) bool { return e.at != 0 && e.key != k && ns-e.at < int64(stampLife) }
	e := &b[0]
	switch {
	case !live(&b[0]):
	case !live(&b[1]):
		e = &b[1]
	default:
		// Both hold timestamps still waiting to be taken: over 1 in
		// 16 puts of a window doing this, the table is too small for
		// the SYNs in flight. Else the older one goes.
		if t.evicted++; t.evicted > len(t.slots)/16 && len(t.slots) < maxStampSlots {
			t.grow()
			t.put(k, at)
			return
		}
		if b[1].at < b[0].at {
			e = &b[1]
		}
	}
	e.key, e.at = k, ns
}

// grow doubles the table, keeping the timestamps in it.
func (t *stampTable) grow() {
	old := t.slots
	t.slots, t.puts, t.evicted = make([]stampSlot, 2*len(old)), 0, 0
	for _, e := range old {
		if e.at != 0 {
			t.put(e.key, time.Unix(0, e.at))
		}
	}
}

func (t *stampTable) take(k stampKey) (time.Time, bool) {
	b := t.bucket(k)
	for i := range b {
		if e := &b[i]; e.at != 0 && e.key == k {
			at := e.at
			e.at = 0
			return time.Unix(0, at), true
		}
	}
	return time.Time{}, false
}

// appendTTL appends a control message that sets the TTL (IPv4, IP_TTL) or
// hop limit (IPv6, IPV6_HOPLIMIT) of this one packet. Per packet, not a
// socket option: the raw socket is shared by every prober of the namespace,
// and a traced SYN must not change the TTL of a concurrent probe's SYN.
// raw_sendmsg (ip_cmsg_send) and rawv6_sendmsg (ip6_datagram_send_ctl) both
// take it; the value is an int.
func appendTTL(oob []byte, v6 bool, ttl int) []byte {
	level, typ := unix.IPPROTO_IP, unix.IP_TTL
	if v6 {
		level, typ = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
	}
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(ttl))
	return append(oob, b...)
}

// rxTimestamp finds the SCM_TIMESTAMPNS control message without allocating.
func rxTimestamp(oob []byte) (time.Time, bool) {
	return cmsgTime(oob, unix.SCM_TIMESTAMPNS)
}

// cmsgTime returns the first timespec of the SOL_SOCKET control message of
// type typ: the receive time of SCM_TIMESTAMPNS, the software time of
// SCM_TIMESTAMPING (whose other two are the hardware ones). A zero time is
// no time.
func cmsgTime(oob []byte, typ int32) (time.Time, bool) {
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return time.Time{}, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == typ && l >= hdr+16 {
			d := oob[hdr:]
			sec := int64(binary.NativeEndian.Uint64(d[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(d[8:16]))
			if sec == 0 && nsec == 0 {
				return time.Time{}, false
			}
			return time.Unix(sec, nsec), true
		}
		next := (l + 7) &^ 7
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}, false
}

func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr)
	}
	return netip.Addr{}
}
