package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is one TCP socket as sock_diag reports it (struct inet_diag_msg,
// linux/inet_diag.h).
type Socket struct {
	State         State
	Local, Remote netip.AddrPort
	Timer         uint8  // 0 none, 1 retransmit, 2 keep-alive, 3 TIME-WAIT, 4 zero-window probe
	Retrans       uint8  // retransmissions of the running timer (SYN-RECV: SYN/ACKs resent)
	Expires       uint32 // ms until the timer fires
	RecvQ, SendQ  uint32
	Inode         uint32
	Cookie        uint64 // the kernel's unique socket id
	// LastDataRecv is how long ago data last arrived, from the socket's
	// tcp_info (INET_DIAG_INFO); -1 when not reported.
	LastDataRecv time.Duration
}

// State is a TCP state (include/net/tcp_states.h).
type State uint8

// The TCP states.
const (
	Established State = 1 + iota
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
)

var stateNames = [...]string{"", "ESTABLISHED", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSE", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING", "NEW-SYN-RECV"}

// String is the state's name as ss(8) prints it.
func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE-%d", uint8(s))
}

// Label is the bounded metric label value: "close_wait".
func (s State) Label() string {
	return strings.ReplaceAll(strings.ToLower(s.String()), "-", "_")
}

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagInfo     = 2  // INET_DIAG_INFO attribute: struct tcp_info
	diagMsgLen       = 72 // sizeof(struct inet_diag_msg)
	diagReqLen       = 56 // sizeof(struct inet_diag_req_v2)
)

// diagRequest is a struct inet_diag_req_v2 asking for every TCP socket of
// family with its tcp_info.
func diagRequest(family uint8) []byte {
	b := make([]byte, diagReqLen)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	b[2] = 1 << (inetDiagInfo - 1) // idiag_ext: the extension bit is 1<<(type-1)
	binary.NativeEndian.PutUint32(b[4:], 0xffffffff)
	return b
}

// ParseDiagMsg parses one inet_diag_msg with its attributes. It never
// panics: short or odd input is an error.
func ParseDiagMsg(b []byte) (Socket, error) {
	if len(b) < diagMsgLen {
		return Socket{}, fmt.Errorf("inet_diag_msg: %d bytes, want %d", len(b), diagMsgLen)
	}
	family := b[0]
	s := Socket{State: State(b[1]), Timer: b[2], Retrans: b[3], LastDataRecv: -1}
	// struct inet_diag_sockid at 4: sport, dport (big endian), src[16], dst[16], if, cookie[2].
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	switch family {
	case unix.AF_INET:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[8:12])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[24:28])), dport)
	case unix.AF_INET6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])).Unmap(), dport)
	default:
		return Socket{}, fmt.Errorf("inet_diag_msg: family %d", family)
	}
	s.Cookie = uint64(binary.NativeEndian.Uint32(b[44:])) | uint64(binary.NativeEndian.Uint32(b[48:]))<<32
	s.Expires = binary.NativeEndian.Uint32(b[52:])
	s.RecvQ = binary.NativeEndian.Uint32(b[56:])
	s.SendQ = binary.NativeEndian.Uint32(b[60:])
	s.Inode = binary.NativeEndian.Uint32(b[68:])
	// Attributes: struct nlattr {u16 len; u16 type} + payload, 4-aligned.
	for a := b[diagMsgLen:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a))
		typ := binary.NativeEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			break
		}
		// tcp_info: tcpi_last_data_recv is the u32 at offset 52.
		if typ == inetDiagInfo && l >= 4+56 {
			s.LastDataRecv = time.Duration(binary.NativeEndian.Uint32(a[4+52:])) * time.Millisecond
		}
		next := (l + 3) &^ 3
		if next > len(a) {
			break
		}
		a = a[next:]
	}
	return s, nil
}

// Stuck groups sockets that sat too long in CLOSE-WAIT or SYN-RECV toward
// one remote endpoint. A server's sockets (their local port is one the
// namespace listens on) are grouped by the local endpoint and the peer's
// address, since each client connects from its own port; a client's
// sockets by the remote endpoint, address and port, since the local
// ephemeral port is the one that varies.
type Stuck struct {
	State State
	// Local is the server's listening endpoint for server-side sockets;
	// zero for client-side ones.
	Local netip.AddrPort
	Peer  netip.Addr // the remote address
	// Remote is the remote endpoint of client-side sockets (the server
	// they connected to); zero for server-side ones.
	Remote netip.AddrPort
	Count  int
	// Age is how long the oldest of them has been in the state, as a lower
	// bound: the time since an audit first saw it (see Auditor). AgeKnown
	// is false on the first audit, which cannot know it.
	Age      time.Duration
	AgeKnown bool
	// Idle is, for CLOSE-WAIT, the longest time since one of them last
	// received data, from tcp_info: an upper bound of the time in
	// CLOSE-WAIT, known at once; for SYN-RECV, the least age its SYN/ACK
	// retransmissions imply.
	Idle time.Duration
}

func (s Stuck) String() string {
	var b strings.Builder
	if s.Remote.IsValid() {
		fmt.Fprintf(&b, "%d socket(s) in %s -> %s (this side is the client)", s.Count, s.State, s.Remote)
	} else {
		fmt.Fprintf(&b, "%d socket(s) in %s %s <- %s", s.Count, s.State, s.Local, s.Peer)
	}
	if s.AgeKnown {
		fmt.Fprintf(&b, ": oldest in the state for at least %s (seen by earlier audits)", s.Age.Round(time.Second))
	} else {
		b.WriteString(": time in the state unknown (first audit)")
	}
	if s.State == CloseWait {
		fmt.Fprintf(&b, ", last data received %s ago", s.Idle.Round(time.Second))
	} else {
		fmt.Fprintf(&b, ", at least %s old by its SYN/ACK retransmissions", s.Idle.Round(time.Second))
	}
	return b.String()
}

// Audit is one socket-state audit of a namespace.
type Audit struct {
	At      time.Time
	ByState map[State]int
	Stuck   []Stuck // sorted by count, then age
}

// Auditor audits a namespace's sockets repeatedly and remembers when it
// first saw each socket (by the kernel's socket cookie, unique for the
// socket's life), because the kernel records no state-change time:
// CLOSE-WAIT runs no timer, so idiag_expires says nothing, and
// SYN-RECV's timer only says when the next SYN/ACK goes out. First-seen
// ages are lower bounds, exact to the audit interval; the one-shot view
// (first audit) uses tcp_info's last-data-received instead (Stuck.Idle).
type Auditor struct {
	// Threshold is the age (or idle time) from which a CLOSE-WAIT or
	// SYN-RECV socket counts as stuck.
	Threshold time.Duration
	seen      map[uint64]time.Time
}

// NewAuditor returns an Auditor with the given threshold.
func NewAuditor(threshold time.Duration) *Auditor {
	return &Auditor{Threshold: threshold, seen: map[uint64]time.Time{}}
}

// Observe folds one dump of sockets taken at now into an Audit. Sockets no
// longer present are forgotten, so the memory is bounded by the sockets
// that exist.
func (a *Auditor) Observe(socks []Socket, now time.Time) Audit {
	out := Audit{At: now, ByState: map[State]int{}}
	type key struct {
		state  State
		local  netip.AddrPort
		peer   netip.Addr
		remote netip.AddrPort
	}
	listening := map[uint16]bool{}
	for _, s := range socks {
		if s.State == Listen {
			listening[s.Local.Port()] = true
		}
	}
	groups := map[key]*Stuck{}
	live := make(map[uint64]time.Time, len(socks))
	for _, s := range socks {
		out.ByState[s.State]++
		first, known := a.seen[s.Cookie]
		if !known {
			first = now
		}
		live[s.Cookie] = first
		if s.State != CloseWait && s.State != SynRecv && s.State != NewSynRecv {
			continue
		}
		age := now.Sub(first)
		idle := max(s.LastDataRecv, 0)
		if s.State != CloseWait {
			idle = synRecvAge(s.Retrans)
		}
		if max(age, idle) < a.Threshold {
			continue
		}
		k := key{state: s.State, local: s.Local, peer: s.Remote.Addr()}
		if s.State == CloseWait && !listening[s.Local.Port()] {
			k = key{state: s.State, peer: s.Remote.Addr(), remote: s.Remote}
		}
		g, ok := groups[k]
		if !ok {
			g = &Stuck{State: s.State, Local: k.local, Peer: k.peer, Remote: k.remote}
			groups[k] = g
		}
		g.Count++
		if known && (!g.AgeKnown || age > g.Age) {
			g.Age, g.AgeKnown = age, true
		}
		g.Idle = max(g.Idle, idle)
	}
	a.seen = live
	for _, g := range groups {
		out.Stuck = append(out.Stuck, *g)
	}
	slices.SortFunc(out.Stuck, func(x, y Stuck) int {
		if x.Count != y.Count {
			return y.Count - x.Count
		}
		return int(y.Age - x.Age)
	})
	return out
}

// synRecvAge is the least time a request socket with n SYN/ACK
// retransmissions has existed: 1+2+…+2^(n-1) s.
func synRecvAge(n uint8) time.Duration {
	return SynAckBudget(int(n))
}

// Summary renders an audit as evidence lines.
func (a Audit) Summary() []string {
	states := make([]State, 0, len(a.ByState))
	for s := range a.ByState {
		states = append(states, s)
	}
	slices.Sort(states)
	parts := make([]string, 0, len(states))
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%s=%d", s, a.ByState[s]))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	lines := []string{"sockets by state: " + strings.Join(parts, " ")}
	for _, s := range a.Stuck {
		lines = append(lines, s.String())
	}
	return lines
}
