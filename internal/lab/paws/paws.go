// Package paws emulates the per-host PAWS check that net.ipv4.tcp_tw_recycle
// used to do (removed in Linux 4.12), for lab tests of the SYN probe's PAWS
// detection. It is an NFQUEUE consumer: an iptables rule in
// the server's namespace queues incoming SYNs, and the emulator drops a SYN
// whose TCP timestamp (TSval) is lower than the last one it saw from the same
// source address within the last 60 s (TCP_PAWS_MSL), accepting all others.
// That is what made clients behind one SNAT address, each with its own
// timestamp clock, lose SYNs at random.
package paws

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/connprobe/connprobe/internal/nfqueue"
)

// pawsMSL is how long a peer's last timestamp is remembered (TCP_PAWS_MSL).
const pawsMSL = 60 * time.Second

// Emulator holds the per-source last TSval. The zero value is not usable;
// use New.
type Emulator struct {
	mu       sync.Mutex
	last     map[netip.Addr]seen
	accepted int
	dropped  int
	now      func() time.Time
}

type seen struct {
	tsval uint32
	at    time.Time
}

// New returns an emulator with no history.
func New() *Emulator {
	return &Emulator{last: map[netip.Addr]seen{}, now: time.Now}
}

// Counts returns how many SYNs were accepted and dropped.
func (e *Emulator) Counts() (accepted, dropped int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accepted, e.dropped
}

// Verdict decides about one IPv4 or IPv6 packet. Anything that is not a
// TCP SYN with a timestamp option passes.
func (e *Emulator) Verdict(pkt []byte) nfqueue.Verdict {
	src, tsval, ok := synTSval(pkt)
	if !ok {
		return nfqueue.Accept
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	if s, ok := e.last[src]; ok && now.Sub(s.at) < pawsMSL && int32(tsval-s.tsval) < 0 {
		// tcp_tw_recycle's check (tcp_peer_is_proven): the peer's clock
		// went backwards, so this SYN "must be" an old duplicate.
		e.dropped++
		return nfqueue.Drop
	}
	e.last[src] = seen{tsval, now}
	e.accepted++
	return nfqueue.Accept
}

// synTSval returns the source address and TSval of a SYN (without ACK)
// carrying the timestamp option.
func synTSval(pkt []byte) (netip.Addr, uint32, bool) {
	var src netip.Addr
	var tcp []byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0x0f) * 4
		if pkt[9] != 6 || ihl < 20 || ihl > len(pkt) || binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			return src, 0, false
		}
		src, tcp = netip.AddrFrom4([4]byte(pkt[12:16])), pkt[ihl:]
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		if pkt[6] != 6 {
			return src, 0, false
		}
		src, tcp = netip.AddrFrom16([16]byte(pkt[8:24])), pkt[40:]
	default:
		return src, 0, false
	}
	if len(tcp) < 20 || tcp[13]&0x12 != 0x02 {
		return src, 0, false
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return src, 0, false
	}
	opts := tcp[20:off]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return src, 0, false
		case 1:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return src, 0, false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return src, 0, false
		}
		if opts[i] == 8 && l == 10 {
			return src, binary.BigEndian.Uint32(opts[i+2:]), true
		}
		i += l
	}
	return src, 0, false
}

// Run binds NFQUEUE queue in the namespace at nsPath and applies e to every
// queued packet until ctx is done.
func (e *Emulator) Run(ctx context.Context, nsPath string, queue uint16) error {
	q, err := nfqueue.Open(nsPath, queue)
	if err != nil {
		return fmt.Errorf("paws: %w", err)
	}
	defer q.Close()
	return q.Run(ctx, func(p nfqueue.Packet) nfqueue.Verdict { return e.Verdict(p.Payload) })
}

// Rule is the iptables command (to run inside the server's namespace) that
// queues SYNs to port on queue. --queue-bypass lets packets through while no
// emulator is bound, so the rule alone changes nothing.
func Rule(queue uint16, port uint16) []string {
	return []string{"iptables", "-w", "-I", "INPUT", "-p", "tcp", "--syn", "--dport", strconv.Itoa(int(port)),
		"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(queue)), "--queue-bypass"}
}
