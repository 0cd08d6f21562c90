package syn

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A Flow's waiter takes every reply whose ack falls in its span of sequence
// numbers, in order of arrival, each with its index; a normal waiter still
// takes only ISN+1; a reply quoting or from another address is marked
// foreign for a flow (a stray for a probe); ICMPv6 time-exceeded quoting
// SYN #3 is index 3.
func TestFlowSpanDispatch(t *testing.T) {
	p := &path{waiters: map[waitKey]*waiter{}}
	remote := fuzzRemote6 // icmpQuoting quotes a SYN to it
	w := &waiter{ch: make(chan arrival, 8), span: 5, flow: true}
	var seq uint32 = 0xfffffffe // the span wraps around 2^32
	port, err := p.registerSpan(remote, seq, w)
	if err != nil {
		t.Fatal(err)
	}
	msg := icmpQuoting(true, 3, 0, synFrom(t, netip.AddrPortFrom(netip.MustParseAddr("fd00:1::2"), port), remote, seq+3))
	r, err := ParseICMP6(netip.MustParseAddr("fd00:1::1"), msg)
	if err != nil {
		t.Fatal(err)
	}
	if !p.dispatch(r, time.Now()) {
		t.Fatal("time-exceeded quoting SYN #3 not dispatched")
	}
	a := <-w.ch
	if got := int(a.Ack - (seq + 1)); got != 3 || a.ICMPType != 3 || a.From != netip.MustParseAddr("fd00:1::1") || a.foreign {
		t.Errorf("got index %d %+v, want index 3, ICMPv6 type 3 from fd00:1::1, not foreign", got, a)
	}
	// Outside the span: not ours (a stray for TCP).
	p.dispatch(Reply{Kind: ReplySynAck, Remote: remote, LocalPort: port, Ack: seq + 1 + 5}, time.Now())
	select {
	case a := <-w.ch:
		t.Fatalf("ack outside the span delivered: %+v", a)
	default:
	}
	// From another address, acking SYN #1: delivered, foreign.
	other := netip.MustParseAddrPort("[fd00::11]:3306")
	if !p.dispatch(Reply{Kind: ReplySynAck, Remote: other, LocalPort: port, Ack: seq + 2}, time.Now()) {
		t.Fatal("un-NATed reply not dispatched")
	}
	if a := <-w.ch; !a.foreign || a.Ack != seq+2 {
		t.Errorf("got %+v, want foreign SYN/ACK acking seq+2", a)
	}
	// register (a probe) resets the span to 1.
	p.unregister(remote, port)
	port, _ = p.register(remote, 100, w)
	p.dispatch(Reply{Kind: ReplySynAck, Remote: remote, LocalPort: port, Ack: 102}, time.Now())
	select {
	case a := <-w.ch:
		t.Fatalf("a probe's waiter took ack 102 for ISN 100: %+v", a)
	default:
	}
}

func synFrom(t *testing.T, src, dst netip.AddrPort, seq uint32) []byte {
	t.Helper()
	b, err := AppendSYN(nil, SYN{Src: src, Dst: dst, Seq: seq, TSval: 1, MSS: 1460, WScale: 7, Window: 64240})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendTTL writes one well-formed control message: IP_TTL for IPv4,
// IPV6_HOPLIMIT for IPv6, an int, after the PKTINFO already there.
func TestAppendTTL(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		pkt := unix.PktInfo4(&unix.Inet4Pktinfo{})
		level, typ := int32(unix.IPPROTO_IP), int32(unix.IP_TTL)
		if v6 {
			pkt = unix.PktInfo6(&unix.Inet6Pktinfo{})
			level, typ = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
		}
		oob := appendTTL(pkt, v6, 3)
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil || len(msgs) != 2 {
			t.Fatalf("v6=%v: %d messages, %v", v6, len(msgs), err)
		}
		m := msgs[1]
		if m.Header.Level != level || m.Header.Type != typ || len(m.Data) != 4 || binary.NativeEndian.Uint32(m.Data) != 3 {
			t.Errorf("v6=%v: got %+v data % x, want level %d type %d ttl 3", v6, m.Header, m.Data, level, typ)
		}
	}
}
