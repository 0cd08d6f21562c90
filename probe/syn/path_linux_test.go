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
	if p.dispatch(Reply{Kind: ReplySynAck, Remote: remote, LocalPort: port2, Ack: 101}, time.Now()) {
		t.Error("reply with the old sequence matched the new SYN")
	}
	if !p.dispatch(Reply{Kind: ReplyRST, Remote: remote, LocalPort: port2, Ack: 201}, time.Now()) {
		t.Error("reply to the new SYN not dispatched")
	}
	if a := <-w.ch; a.Kind != ReplyRST || a.Ack != 201 {
		t.Errorf("got %+v, want the RST acking 201", a.Reply)
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
