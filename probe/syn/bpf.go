package syn

import "golang.org/x/net/bpf"

// The classic BPF filters attached to the shared raw sockets. A raw
// IPPROTO_TCP socket gets a copy of every TCP segment the namespace receives
// (raw_local_deliver runs before TCP's own demux), and a raw ICMP socket a
// copy of every ICMP message; without a filter each probe's reader would wake
// for all of the host's traffic. The filters keep only what can answer a SYN
// of ours: TCP segments to a port in our source-port range with SYN or RST
// set, and ICMP errors quoting a TCP segment from a port in that range. The
// parser checks everything again: the filter is an optimisation, not a trust
// boundary.

// snapLen is how much of a packet the filter keeps: IP + TCP headers with
// options, or an ICMP error with the quoted headers.
const snapLen = 256

func portRange(lo, hi uint16, drop int) []bpf.Instruction {
	// A holds the port; fall through on match, jump `drop` instructions ahead
	// (counted from after these two) otherwise.
	return []bpf.Instruction{
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(lo), SkipFalse: uint8(drop + 1)},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: uint8(drop)},
	}
}

// filterTCP4 runs on IPv4 packets, IP header included.
func filterTCP4(lo, hi uint16) []bpf.Instruction {
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 6, Size: 2}, // flags + fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 7},
		bpf.LoadMemShift{Off: 0},          // X = IP header length
		bpf.LoadIndirect{Off: 2, Size: 2}, // TCP destination port
	}
	p = append(p, portRange(lo, hi, 3)...)
	p = append(p,
		bpf.LoadIndirect{Off: 13, Size: 1}, // TCP flags
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: flagSYN | flagRST, SkipFalse: 1},
		bpf.RetConstant{Val: snapLen},
		bpf.RetConstant{Val: 0},
	)
	return p
}

// filterTCP6 runs on TCP segments of a raw IPv6 socket: the IPv6 header has
// already been pulled, data starts at the TCP header.
func filterTCP6(lo, hi uint16) []bpf.Instruction {
	p := []bpf.Instruction{bpf.LoadAbsolute{Off: 2, Size: 2}}
	p = append(p, portRange(lo, hi, 3)...)
	p = append(p,
		bpf.LoadAbsolute{Off: 13, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: flagSYN | flagRST, SkipFalse: 1},
		bpf.RetConstant{Val: snapLen},
		bpf.RetConstant{Val: 0},
	)
	return p
}

// filterICMP4 runs on IPv4 ICMP packets, IP header included: destination
// unreachable (3) or time exceeded (11), quoting TCP from one of our ports.
func filterICMP4(lo, hi uint16) []bpf.Instruction {
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 6, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 15},
		bpf.LoadMemShift{Off: 0},          // X = outer IP header length
		bpf.LoadIndirect{Off: 0, Size: 1}, // ICMP type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 11, SkipFalse: 11},
		bpf.LoadIndirect{Off: 8 + 9, Size: 1}, // quoted protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 9},
		bpf.LoadIndirect{Off: 8, Size: 1}, // quoted version/IHL
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd}, // A = outer + quoted header lengths
		bpf.TAX{},
		bpf.LoadIndirect{Off: 8, Size: 2}, // quoted TCP source port
	}
	p = append(p, portRange(lo, hi, 1)...)
	p = append(p,
		bpf.RetConstant{Val: snapLen},
		bpf.RetConstant{Val: 0},
	)
	return p
}

// filterICMP6 runs on ICMPv6 messages (no IPv6 header): destination
// unreachable (1) or time exceeded (3), quoting a TCP segment (next header 6,
// no extension headers) from one of our ports.
func filterICMP6(lo, hi uint16) []bpf.Instruction {
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipFalse: 6},
		bpf.LoadAbsolute{Off: 8 + 6, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 4},
		bpf.LoadAbsolute{Off: 8 + 40, Size: 2},
	}
	p = append(p, portRange(lo, hi, 1)...)
	p = append(p,
		bpf.RetConstant{Val: snapLen},
		bpf.RetConstant{Val: 0},
	)
	return p
}
