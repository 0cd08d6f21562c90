package syn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// synHeaderLen is the length of the TCP header AppendSYN writes: 20 bytes of
// fixed header and 20 of options, the layout Linux uses for its own SYNs
// (tcp_options_write): MSS, SACK-permitted+timestamps, NOP, window scale.
const synHeaderLen = 40

// SYN describes one hand-built SYN segment.
type SYN struct {
	Src, Dst netip.AddrPort // addresses go into the checksum's pseudo-header
	Seq      uint32         // initial sequence number; the answer acks Seq+1
	TSval    uint32         // timestamp option value: what PAWS compares
	MSS      uint16
	WScale   uint8
	Window   uint16
}

// AppendSYN appends the TCP header (no IP header: the raw socket's kernel
// adds it) of s to b, checksummed over the IPv4 or IPv6 pseudo-header.
// Src and Dst must be of the same family.
func AppendSYN(b []byte, s SYN) ([]byte, error) {
	src, dst := s.Src.Addr().Unmap(), s.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return b, fmt.Errorf("syn: build: source %s and destination %s are not of one address family", s.Src, s.Dst)
	}
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, s.Src.Port())
	b = binary.BigEndian.AppendUint16(b, s.Dst.Port())
	b = binary.BigEndian.AppendUint32(b, s.Seq)
	b = binary.BigEndian.AppendUint32(b, 0)                       // ack
	b = append(b, byte(synHeaderLen/4)<<4, flagSYN)               // data offset, flags
	b = binary.BigEndian.AppendUint16(b, s.Window)                // window
	b = append(b, 0, 0, 0, 0)                                     // checksum, urgent
	b = append(b, 2, 4)                                           // MSS
	b = binary.BigEndian.AppendUint16(b, s.MSS)                   //
	b = append(b, 4, 2)                                           // SACK permitted
	b = append(b, 8, 10)                                          // timestamps
	b = binary.BigEndian.AppendUint32(b, s.TSval)                 //
	b = binary.BigEndian.AppendUint32(b, 0)                       // TSecr
	b = append(b, 1, 3, 3, s.WScale)                              // NOP, window scale
	sum := checksum(b[start:], pseudoSum(src, dst, len(b)-start)) //
	binary.BigEndian.PutUint16(b[start+16:], sum)
	return b, nil
}

// pseudoSum is the one's-complement sum of the TCP pseudo-header.
func pseudoSum(src, dst netip.Addr, tcpLen int) uint32 {
	var s uint32
	add := func(a netip.Addr) {
		b := a.AsSlice()
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src)
	add(dst)
	s += 6 // protocol TCP
	s += uint32(tcpLen)
	return s
}

// checksum folds the Internet checksum of b onto the initial sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ReplyKind is what came back for a SYN.
type ReplyKind uint8

// The replies a SYN can get.
const (
	ReplyNone   ReplyKind = iota
	ReplySynAck           // SYN/ACK: something listens
	ReplyRST              // RST(/ACK): nothing listens, or a reject rule
	ReplyICMP             // ICMP(v6) error quoting our SYN
)

func (k ReplyKind) String() string {
	switch k {
	case ReplySynAck:
		return "SYN/ACK"
	case ReplyRST:
		return "RST"
	case ReplyICMP:
		return "ICMP"
	}
	return "none"
}

// Reply is a parsed packet that may answer one of our SYNs. Match decides
// whether it does.
type Reply struct {
	Kind ReplyKind
	// Remote is the address and port our SYN went to: the sender of a
	// SYN/ACK or RST, the quoted destination of an ICMP error.
	Remote netip.AddrPort
	// LocalPort is our SYN's source port.
	LocalPort uint16
	// Ack is the acknowledged sequence number (TCP) or, for ICMP, the
	// quoted sequence number plus one, so both compare against Seq+1.
	Ack uint32
	// HasTS, TSval and TSecr are the TCP timestamp option of a SYN/ACK;
	// TSecr echoes the TSval of the SYN being answered.
	HasTS        bool
	TSval, TSecr uint32
	// ICMPType, ICMPCode and From describe an ICMP error and its sender.
	ICMPType, ICMPCode uint8
	From               netip.Addr
	V6                 bool
}

// errNotOurs marks a packet that is well formed but cannot answer a SYN.
var errNotOurs = errors.New("not a reply to a SYN")

// ParseTCP4 parses an IPv4 packet as a raw IPPROTO_TCP socket delivers it
// (IP header included).
func ParseTCP4(pkt []byte) (Reply, error) {
	src, _, payload, err := ipv4(pkt, 6)
	if err != nil {
		return Reply{}, err
	}
	return parseTCP(src, payload)
}

// ParseTCP6 parses a TCP segment as a raw IPv6 IPPROTO_TCP socket delivers it
// (no IPv6 header: the sender's address comes from recvmsg).
func ParseTCP6(src netip.Addr, seg []byte) (Reply, error) {
	if !src.Is6() || src.Is4In6() {
		return Reply{}, fmt.Errorf("syn: parse: source %s is not IPv6", src)
	}
	r, err := parseTCP(src, seg)
	r.V6 = true
	return r, err
}

func parseTCP(src netip.Addr, seg []byte) (Reply, error) {
	if len(seg) < 20 {
		return Reply{}, fmt.Errorf("syn: parse: tcp header truncated (%d bytes)", len(seg))
	}
	off := int(seg[12]>>4) * 4
	if off < 20 || off > len(seg) {
		return Reply{}, fmt.Errorf("syn: parse: tcp data offset %d outside %d bytes", off, len(seg))
	}
	flags := seg[13]
	r := Reply{
		Remote:    netip.AddrPortFrom(src, binary.BigEndian.Uint16(seg[0:2])),
		LocalPort: binary.BigEndian.Uint16(seg[2:4]),
		Ack:       binary.BigEndian.Uint32(seg[8:12]),
	}
	switch {
	case flags&flagACK == 0:
		// An answer to a SYN always acknowledges it (RFC 9293 3.10.7.3: the
		// RST to a SYN carries ACK seq+1); anything else cannot be matched.
		return Reply{}, errNotOurs
	case flags&flagRST != 0:
		r.Kind = ReplyRST
	case flags&flagSYN != 0 && flags&flagFIN == 0:
		r.Kind = ReplySynAck
		r.HasTS, r.TSval, r.TSecr = timestamps(seg[20:off])
	default:
		return Reply{}, errNotOurs
	}
	return r, nil
}

// timestamps finds the timestamp option in TCP options.
func timestamps(opts []byte) (ok bool, tsval, tsecr uint32) {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of options
			return false, 0, 0
		case 1: // NOP
			i++
			continue
		}
		if i+1 >= len(opts) {
			return false, 0, 0
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return false, 0, 0
		}
		if opts[i] == 8 && l == 10 {
			return true, binary.BigEndian.Uint32(opts[i+2:]), binary.BigEndian.Uint32(opts[i+6:])
		}
		i += l
	}
	return false, 0, 0
}

// ipv4 checks an IPv4 header and returns the source, destination and payload
// of an unfragmented (or first-fragment) packet of protocol proto.
func ipv4(pkt []byte, proto uint8) (src, dst netip.Addr, payload []byte, err error) {
	if len(pkt) < 20 {
		return src, dst, nil, fmt.Errorf("syn: parse: ipv4 header truncated (%d bytes)", len(pkt))
	}
	if pkt[0]>>4 != 4 {
		return src, dst, nil, fmt.Errorf("syn: parse: ip version %d, want 4", pkt[0]>>4)
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || ihl > len(pkt) {
		return src, dst, nil, fmt.Errorf("syn: parse: ipv4 header length %d outside %d bytes", ihl, len(pkt))
	}
	if pkt[9] != proto {
		return src, dst, nil, fmt.Errorf("syn: parse: ip protocol %d, want %d", pkt[9], proto)
	}
	if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return src, dst, nil, fmt.Errorf("syn: parse: non-first fragment")
	}
	end := len(pkt)
	if tl := int(binary.BigEndian.Uint16(pkt[2:4])); tl >= ihl && tl < end {
		end = tl
	}
	return netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), pkt[ihl:end], nil
}

// ParseICMP4 parses an IPv4 ICMP packet as a raw IPPROTO_ICMP socket delivers
// it. Only destination-unreachable and time-exceeded errors that quote a TCP
// segment are replies.
func ParseICMP4(pkt []byte) (Reply, error) {
	from, _, icmp, err := ipv4(pkt, 1)
	if err != nil {
		return Reply{}, err
	}
	if len(icmp) < 8 {
		return Reply{}, fmt.Errorf("syn: parse: icmp header truncated (%d bytes)", len(icmp))
	}
	typ, code := icmp[0], icmp[1]
	if typ != 3 && typ != 11 {
		return Reply{}, errNotOurs
	}
	// The quoted datagram: our SYN's IP header and at least 8 bytes of it
	// (RFC 792), which hold the ports and the sequence number.
	_, qdst, qtcp, err := ipv4(icmp[8:], 6)
	if err != nil {
		return Reply{}, fmt.Errorf("syn: parse: quoted packet: %w", err)
	}
	return quoted(ReplyICMP, from, qdst, qtcp, typ, code, false)
}

// ParseICMP6 parses an ICMPv6 message as a raw IPPROTO_ICMPV6 socket delivers
// it (no IPv6 header: from comes from recvmsg).
func ParseICMP6(from netip.Addr, icmp []byte) (Reply, error) {
	if len(icmp) < 8 {
		return Reply{}, fmt.Errorf("syn: parse: icmpv6 header truncated (%d bytes)", len(icmp))
	}
	typ, code := icmp[0], icmp[1]
	if typ != 1 && typ != 3 { // destination unreachable, time exceeded
		return Reply{}, errNotOurs
	}
	q := icmp[8:]
	if len(q) < 40 {
		return Reply{}, fmt.Errorf("syn: parse: quoted ipv6 header truncated (%d bytes)", len(q))
	}
	if q[0]>>4 != 6 || q[6] != 6 {
		// Our SYNs carry no extension headers: next header is TCP.
		return Reply{}, errNotOurs
	}
	return quoted(ReplyICMP, from, netip.AddrFrom16([16]byte(q[24:40])), q[40:], typ, code, true)
}

func quoted(kind ReplyKind, from, qdst netip.Addr, qtcp []byte, typ, code uint8, v6 bool) (Reply, error) {
	if len(qtcp) < 8 {
		return Reply{}, fmt.Errorf("syn: parse: quoted tcp header truncated (%d bytes)", len(qtcp))
	}
	return Reply{
		Kind:      kind,
		Remote:    netip.AddrPortFrom(qdst, binary.BigEndian.Uint16(qtcp[2:4])),
		LocalPort: binary.BigEndian.Uint16(qtcp[0:2]),
		Ack:       binary.BigEndian.Uint32(qtcp[4:8]) + 1,
		ICMPType:  typ,
		ICMPCode:  code,
		From:      from,
		V6:        v6,
	}, nil
}

// Match reports whether r answers a SYN sent from localPort to remote with
// initial sequence number seq.
func (r Reply) Match(remote netip.AddrPort, localPort uint16, seq uint32) bool {
	return r.Kind != ReplyNone && r.Remote == remote && r.LocalPort == localPort && r.Ack == seq+1
}

// portUnreachable reports whether an ICMP error says the port is closed,
// which the kernel turns into ECONNREFUSED (refused, not unreachable).
func (r Reply) portUnreachable() bool {
	if r.V6 {
		return r.ICMPType == 1 && r.ICMPCode == 4
	}
	return r.ICMPType == 3 && r.ICMPCode == 3
}
