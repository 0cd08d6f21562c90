package syn

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A prober reuses one waiter for all its SYNs: an answer to its previous
// SYN, whether it arrived before or after that SYN was unregistered, must
// never be taken for the answer to the next one.
func TestWaiterReuseNoStaleReply(t *testing.T) {
	p := &path{waiters: map[waitKey]*waiter{}}
	w := &waiter{ch: make(chan arrival, 1)}
	remote := netip.MustParseAddrPort("192.0.2.1:80")

	port1, err := p.register(remote, 100, w)
	if err != nil {
		t.Fatal(err)
	}
	first := Reply{Kind: ReplySynAck, Remote: remote, LocalPort: port1, Ack: 101}
	if !p.dispatch(first, time.Now()) {
		t.Fatal("reply to the registered SYN was not dispatched")
	}
	// A retransmitted SYN/ACK for the same SYN: matched, not queued twice.
	if !p.dispatch(first, time.Now()) {
		t.Fatal("duplicate reply not recognised as ours")
	}
	p.unregister(remote, port1) // the probe returned without reading it
	if p.dispatch(first, time.Now()) {
		t.Error("reply dispatched after unregister")
	}

	port2, err := p.register(remote, 200, w)
	if err != nil {
		t.Fatal(err)
	}
	if port2 == port1 {
		t.Errorf("port %d reused at once", port2)
	}
	select {
	case a := <-w.ch:
		t.Fatalf("stale reply %+v delivered to the next SYN", a.Reply)
	default:
	}
	// The old sequence is not an answer to the new SYN: only a stray
	// (evidence: "SYN/ACK with ack 101, expected 201").
	p.dispatch(Reply{Kind: ReplySynAck, Remote: remote, LocalPort: port2, Ack: 101}, time.Now())
	select {
	case a := <-w.ch:
		t.Fatalf("reply with the old sequence matched the new SYN: %+v", a.Reply)
	default:
	}
	if w.nstrays != 1 || !w.strays[0].wrongAck || w.strays[0].Ack != 101 || w.strays[0].expect != 201 {
		t.Errorf("strays %+v: want the SYN/ACK acking 101, expected 201", w.strays[:w.nstrays])
	}
	if !p.dispatch(Reply{Kind: ReplyRST, Remote: remote, LocalPort: port2, Ack: 201}, time.Now()) {
		t.Error("reply to the new SYN not dispatched")
	}
	if a := <-w.ch; a.Kind != ReplyRST || a.Ack != 201 {
		t.Errorf("got %+v, want the RST acking 201", a.Reply)
	}
}

// A reply from another address than the one probed that acks our ISN+1 is
// ours, not reverse-NATed: a stray of that SYN, never its answer, and never
// matched by a mere port. Strays stay bounded.
func TestStrayFromOtherAddress(t *testing.T) {
	p := &path{waiters: map[waitKey]*waiter{}}
	w := &waiter{ch: make(chan arrival, 1)}
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	backend := netip.MustParseAddrPort("10.244.2.11:8080")
	port, err := p.register(vip, 41, w)
	if err != nil {
		t.Fatal(err)
	}
	if !p.dispatch(Reply{Kind: ReplySynAck, Remote: backend, LocalPort: port, Ack: 42}, time.Now()) {
		t.Error("un-NATed SYN/ACK acking our ISN not recognised")
	}
	if p.dispatch(Reply{Kind: ReplySynAck, Remote: backend, LocalPort: port, Ack: 7}, time.Now()) {
		t.Error("a SYN/ACK from elsewhere acking something else taken as ours")
	}
	for i := range 100 { // many distinct strays: bounded
		p.dispatch(Reply{Kind: ReplyRST, Remote: vip, LocalPort: port, Ack: uint32(1000 + i)}, time.Now())
	}
	p.dispatch(Reply{Kind: ReplySynAck, Remote: backend, LocalPort: port, Ack: 42}, time.Now())
	select {
	case a := <-w.ch:
		t.Fatalf("a stray was delivered as the answer: %+v", a.Reply)
	default:
	}
	p.unregister(vip, port)
	got := w.takeStrays(nil)
	if len(got) != maxStrays || got[0].wrongAck || got[0].Remote != backend || got[0].n != 2 {
		t.Errorf("strays %+v: want %d, the first the un-NATed SYN/ACK seen twice", got, maxStrays)
	}
	if n := len(p.byPort[port-PortLo]); n != 0 {
		t.Errorf("%d waiters left on port %d after unregister", n, port)
	}
}

func TestRawAddr(t *testing.T) {
	var sa unix.RawSockaddrInet6
	sa.Family = unix.AF_INET6
	sa.Addr = netip.MustParseAddr("2001:db8::1").As16()
	if got := rawAddr(&sa); got != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("v6: got %s", got)
	}
	var sa4 unix.RawSockaddrInet6
	sa4.Family = unix.AF_INET
	copy((*[16]byte)(unsafePointer(&sa4))[4:8], []byte{192, 0, 2, 7})
	if got := rawAddr(&sa4); got != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("v4: got %s", got)
	}
	if got := rawAddr(&unix.RawSockaddrInet6{}); got.IsValid() {
		t.Errorf("no family: got %s", got)
	}
}

func unsafePointer(sa *unix.RawSockaddrInet6) unsafe.Pointer { return unsafe.Pointer(sa) }
