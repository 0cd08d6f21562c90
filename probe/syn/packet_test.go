package syn

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// The probe every fuzzed packet is matched against.
var (
	fuzzRemote4 = netip.MustParseAddrPort("10.244.2.20:3306")
	fuzzRemote6 = netip.MustParseAddrPort("[fd00::20]:3306")
	fuzzPort    = uint16(61234)
	fuzzSeq     = uint32(0x5eed1234)
)

// ipv4Header prepends a 20-byte IPv4 header to payload.
func ipv4Header(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[6] = 0x40 // DF
	h[8] = 64
	h[9] = proto
	copy(h[12:16], src.AsSlice())
	copy(h[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:], checksum(h, 0))
	return append(h, payload...)
}

// synAck builds the TCP segment a Linux listener answers our SYN with.
func synAck(from netip.AddrPort, toPort uint16, ack, tsecr uint32, flags byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, from.Port())
	b = binary.BigEndian.AppendUint16(b, toPort)
	b = binary.BigEndian.AppendUint32(b, 0xabcdef01)
	b = binary.BigEndian.AppendUint32(b, ack)
	b = append(b, 10<<4, flags, 0xfa, 0xf0, 0, 0, 0, 0)
	b = append(b, 2, 4, 5, 0xb4, 4, 2, 8, 10)
	b = binary.BigEndian.AppendUint32(b, 777)
	b = binary.BigEndian.AppendUint32(b, tsecr)
	return append(b, 1, 3, 3, 7)
}

// icmpQuoting builds an ICMP error (type, code) whose payload quotes our SYN.
func icmpQuoting(v6 bool, typ, code uint8, syn []byte) []byte {
	b := []byte{typ, code, 0, 0, 0, 0, 0, 0}
	if v6 {
		q := make([]byte, 40)
		q[0] = 0x60
		binary.BigEndian.PutUint16(q[4:], uint16(len(syn)))
		q[6], q[7] = 6, 64
		copy(q[8:24], netip.MustParseAddr("fd00::2").AsSlice())
		copy(q[24:40], fuzzRemote6.Addr().AsSlice())
		return append(append(b, q...), syn...)
	}
	return append(b, ipv4Header(netip.MustParseAddr("10.244.1.2"), fuzzRemote4.Addr(), 6, syn)...)
}

func ourSYN(t testing.TB, v6 bool) []byte {
	src, dst := netip.MustParseAddrPort("10.244.1.2:61234"), fuzzRemote4
	if v6 {
		src, dst = netip.MustParseAddrPort("[fd00::2]:61234"), fuzzRemote6
	}
	b, err := AppendSYN(nil, SYN{Src: src, Dst: dst, Seq: fuzzSeq, TSval: 4242, MSS: 1460, WScale: 7, Window: 64240})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendSYN(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		b := ourSYN(t, v6)
		if len(b) != synHeaderLen {
			t.Fatalf("v6=%v: length %d, want %d", v6, len(b), synHeaderLen)
		}
		src, dst := netip.MustParseAddr("10.244.1.2"), fuzzRemote4.Addr()
		if v6 {
			src, dst = netip.MustParseAddr("fd00::2"), fuzzRemote6.Addr()
		}
		// A correct checksum sums, with the pseudo-header, to all ones.
		if got := checksum(b, pseudoSum(src, dst, len(b))); got != 0 {
			t.Errorf("v6=%v: checksum does not verify (residue %#04x)", v6, got)
		}
		if b[13] != flagSYN || b[12]>>4 != 10 {
			t.Errorf("v6=%v: flags %#x data offset %d, want SYN and 10 words", v6, b[13], b[12]>>4)
		}
		// Kernel layout: MSS, SACK-permitted, timestamps, NOP, window scale.
		wantOpts := []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0x10, 0x92, 0, 0, 0, 0, 1, 3, 3, 7}
		if !bytes.Equal(b[20:], wantOpts) {
			t.Errorf("v6=%v: options % x, want % x", v6, b[20:], wantOpts)
		}
		if ok, tsval, _ := timestamps(b[20:]); !ok || tsval != 4242 {
			t.Errorf("v6=%v: timestamps %v %d, want 4242", v6, ok, tsval)
		}
	}
	if _, err := AppendSYN(nil, SYN{Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: fuzzRemote6}); err == nil {
		t.Error("mixed families: want an error")
	}
}

func TestParseAndMatch(t *testing.T) {
	src4 := netip.MustParseAddr("10.244.1.2")
	tests := []struct {
		name  string
		parse func() (Reply, error)
		kind  ReplyKind
		match bool
	}{
		{"SYN/ACK", func() (Reply, error) {
			return ParseTCP4(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, fuzzSeq+1, 4242, flagSYN|flagACK)))
		}, ReplySynAck, true},
		{"RST/ACK", func() (Reply, error) {
			return ParseTCP4(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, fuzzSeq+1, 0, flagRST|flagACK)))
		}, ReplyRST, true},
		{"SYN/ACK acking another sequence", func() (Reply, error) {
			return ParseTCP4(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, fuzzSeq+2, 0, flagSYN|flagACK)))
		}, ReplySynAck, false},
		{"SYN/ACK to another port", func() (Reply, error) {
			return ParseTCP4(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort+1, fuzzSeq+1, 0, flagSYN|flagACK)))
		}, ReplySynAck, false},
		{"SYN/ACK from another address", func() (Reply, error) {
			return ParseTCP4(ipv4Header(netip.MustParseAddr("10.244.2.21"), src4, 6, synAck(fuzzRemote4, fuzzPort, fuzzSeq+1, 0, flagSYN|flagACK)))
		}, ReplySynAck, false},
		{"SYN/ACK from the same address, another port", func() (Reply, error) {
			return ParseTCP4(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(netip.AddrPortFrom(fuzzRemote4.Addr(), 3307), fuzzPort, fuzzSeq+1, 0, flagSYN|flagACK)))
		}, ReplySynAck, false},
		{"ICMP admin-prohibited", func() (Reply, error) {
			return ParseICMP4(ipv4Header(netip.MustParseAddr("10.244.1.1"), src4, 1, icmpQuoting(false, 3, 13, ourSYN(t, false))))
		}, ReplyICMP, true},
		{"ICMPv6 admin-prohibited", func() (Reply, error) {
			return ParseICMP6(netip.MustParseAddr("fd00::1"), icmpQuoting(true, 1, 1, ourSYN(t, true)))
		}, ReplyICMP, true},
		{"IPv6 SYN/ACK", func() (Reply, error) {
			return ParseTCP6(fuzzRemote6.Addr(), synAck(fuzzRemote6, fuzzPort, fuzzSeq+1, 4242, flagSYN|flagACK))
		}, ReplySynAck, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.parse()
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != tt.kind {
				t.Errorf("kind: got %s, want %s", r.Kind, tt.kind)
			}
			remote := fuzzRemote4
			if r.V6 {
				remote = fuzzRemote6
			}
			if got := r.Match(remote, fuzzPort, fuzzSeq); got != tt.match {
				t.Errorf("match: got %v, want %v (reply %+v)", got, tt.match, r)
			}
		})
	}
	// Our own SYN (seen on loopback) and a bare ACK are never replies.
	for _, seg := range [][]byte{ourSYN(t, false), synAck(fuzzRemote4, fuzzPort, fuzzSeq+1, 0, flagACK)} {
		if _, err := ParseTCP4(ipv4Header(fuzzRemote4.Addr(), src4, 6, seg)); err == nil {
			t.Errorf("segment with flags %#x parsed as a reply", seg[13])
		}
	}
}

// runFilter runs a filter in x/net/bpf's VM: the kernel's classic BPF
// semantics, including "out-of-bounds load drops the packet".
func runFilter(t testing.TB, f []bpf.Instruction, pkt []byte) bool {
	vm, err := bpf.NewVM(f)
	if err != nil {
		t.Fatalf("filter does not load: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("filter: %v", err)
	}
	return n > 0
}

func TestFilters(t *testing.T) {
	src4 := netip.MustParseAddr("10.244.1.2")
	lo, hi := uint16(PortLo), uint16(PortHi)
	tests := []struct {
		name   string
		filter []bpf.Instruction
		pkt    []byte
		want   bool
	}{
		{"tcp4 SYN/ACK to our port", filterTCP4(lo, hi), ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, 1, 0, flagSYN|flagACK)), true},
		{"tcp4 RST to the range's ends", filterTCP4(lo, hi), ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, PortHi, 1, 0, flagRST|flagACK)), true},
		{"tcp4 SYN/ACK below the range", filterTCP4(lo, hi), ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, PortLo-1, 1, 0, flagSYN|flagACK)), false},
		{"tcp4 data segment to our port", filterTCP4(lo, hi), ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, 1, 0, flagACK)), false},
		{"tcp4 truncated", filterTCP4(lo, hi), ipv4Header(fuzzRemote4.Addr(), src4, 6, nil), false},
		{"tcp6 SYN/ACK to our port", filterTCP6(lo, hi), synAck(fuzzRemote6, fuzzPort, 1, 0, flagSYN|flagACK), true},
		{"tcp6 SYN/ACK to another port", filterTCP6(lo, hi), synAck(fuzzRemote6, 443, 1, 0, flagSYN|flagACK), false},
		{"icmp4 quoting our SYN", filterICMP4(lo, hi), ipv4Header(netip.MustParseAddr("10.244.1.1"), src4, 1, icmpQuoting(false, 3, 13, ourSYN(t, false))), true},
		{"icmp4 echo reply", filterICMP4(lo, hi), ipv4Header(netip.MustParseAddr("10.244.1.1"), src4, 1, []byte{0, 0, 0, 0, 0, 0, 0, 0}), false},
		{"icmp6 quoting our SYN", filterICMP6(lo, hi), icmpQuoting(true, 1, 1, ourSYN(t, true)), true},
		{"icmp6 echo request", filterICMP6(lo, hi), []byte{128, 0, 0, 0, 0, 0, 0, 0}, false},
	}
	for _, tt := range tests {
		if got := runFilter(t, tt.filter, tt.pkt); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fuzzCheck is the property every fuzz target checks: parsing never panics,
// and a packet that matches our probe (1) carries our ports and acknowledged
// sequence in its bytes — the parser never invents a match — and (2) passes
// the BPF filter, so the filter never hides a reply the parser would accept.
func fuzzCheck(t *testing.T, pkt []byte, r Reply, err error, remote netip.AddrPort, filter []bpf.Instruction) {
	if err != nil || !r.Match(remote, fuzzPort, fuzzSeq) {
		return
	}
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], fuzzPort)
	var seq [4]byte
	if r.Kind == ReplyICMP {
		binary.BigEndian.PutUint32(seq[:], fuzzSeq) // quoted as sent
	} else {
		binary.BigEndian.PutUint32(seq[:], fuzzSeq+1)
	}
	if !bytes.Contains(pkt, port[:]) || !bytes.Contains(pkt, seq[:]) {
		t.Fatalf("matched a packet that lacks our port or sequence: % x", pkt)
	}
	if !runFilter(t, filter, pkt) {
		t.Fatalf("parser matches a packet the BPF filter drops: % x", pkt)
	}
}

func FuzzParseTCP4(f *testing.F) {
	src4 := netip.MustParseAddr("10.244.1.2")
	f.Add(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, fuzzSeq+1, 4242, flagSYN|flagACK)))
	f.Add(ipv4Header(fuzzRemote4.Addr(), src4, 6, synAck(fuzzRemote4, fuzzPort, fuzzSeq+1, 0, flagRST|flagACK)))
	f.Add(ipv4Header(fuzzRemote4.Addr(), src4, 6, ourSYN(f, false)))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := ParseTCP4(pkt)
		fuzzCheck(t, pkt, r, err, fuzzRemote4, filterTCP4(PortLo, PortHi))
	})
}

func FuzzParseICMP4(f *testing.F) {
	src4 := netip.MustParseAddr("10.244.1.2")
	f.Add(ipv4Header(netip.MustParseAddr("10.244.1.1"), src4, 1, icmpQuoting(false, 3, 13, ourSYN(f, false))))
	f.Add(ipv4Header(netip.MustParseAddr("10.244.1.1"), src4, 1, icmpQuoting(false, 11, 0, ourSYN(f, false)[:8])))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := ParseICMP4(pkt)
		fuzzCheck(t, pkt, r, err, fuzzRemote4, filterICMP4(PortLo, PortHi))
	})
}

func FuzzParseTCP6(f *testing.F) {
	f.Add(synAck(fuzzRemote6, fuzzPort, fuzzSeq+1, 4242, flagSYN|flagACK))
	f.Add(synAck(fuzzRemote6, fuzzPort, fuzzSeq+1, 0, flagRST|flagACK))
	f.Fuzz(func(t *testing.T, seg []byte) {
		r, err := ParseTCP6(fuzzRemote6.Addr(), seg)
		fuzzCheck(t, seg, r, err, fuzzRemote6, filterTCP6(PortLo, PortHi))
	})
}

func FuzzParseICMP6(f *testing.F) {
	f.Add(icmpQuoting(true, 1, 1, ourSYN(f, true)))
	f.Add(icmpQuoting(true, 3, 0, ourSYN(f, true)[:8]))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := ParseICMP6(netip.MustParseAddr("fd00::1"), msg)
		fuzzCheck(t, msg, r, err, fuzzRemote6, filterICMP6(PortLo, PortHi))
	})
}

// FuzzAppendSYN: any field values build a segment whose checksum verifies
// and whose TSval reads back.
func FuzzAppendSYN(f *testing.F) {
	f.Add(uint16(61000), uint16(3306), uint32(1), uint32(2), uint16(1460), uint8(7), false)
	f.Add(uint16(65535), uint16(1), uint32(0xffffffff), uint32(0), uint16(0), uint8(14), true)
	f.Fuzz(func(t *testing.T, sport, dport uint16, seq, tsval uint32, mss uint16, ws uint8, v6 bool) {
		src, dst := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.2.20")
		if v6 {
			src, dst = netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::20")
		}
		b, err := AppendSYN(nil, SYN{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport), Seq: seq, TSval: tsval, MSS: mss, WScale: ws})
		if err != nil {
			t.Fatal(err)
		}
		if checksum(b, pseudoSum(src, dst, len(b))) != 0 {
			t.Fatal("checksum does not verify")
		}
		if ok, got, _ := timestamps(b[20:]); !ok || got != tsval {
			t.Fatalf("TSval %d reads back as %d (%v)", tsval, got, ok)
		}
	})
}
