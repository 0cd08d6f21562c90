package syn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// A Flow is one TCP flow identifier — source address and port, destination
// address and port — held for a series of SYNs that differ only in their
// sequence number and TTL: what a Paris-style traceroute sends. Routers that
// spread flows over equal-cost paths hash the addresses and ports, never the
// sequence number, and conntrack files every SYN of the series under the
// same tuple, so each TTL-limited SYN takes the path the real flow would.
// The sequence number tells the answers apart: SYN #i carries ISN+i, an
// ICMP time-exceeded quotes it, a SYN/ACK or RST acknowledges it plus one.
//
// A Flow shares the namespace's receive path with the SYN probers and draws
// every SYN from the same process-wide packet budget.
type Flow struct {
	pa     *path
	w      waiter
	seg    [synHeaderLen]byte // the SYN being sent
	ticket *ticket
	timer  *time.Timer
	dst    netip.AddrPort
	local  netip.AddrPort
	seq    uint32
	span   int
	sent   int
	closed bool
}

// FlowReply is a packet that answers one of a Flow's SYNs.
type FlowReply struct {
	Reply
	// Index is the SYN it answers: 0 for the first Send.
	Index int
	// At is the kernel's receive timestamp.
	At time.Time
	// Foreign: a SYN/ACK or RST from another address than the flow's
	// destination (acking our ISN: a reply that was not reverse-NATed), or
	// an ICMP error quoting another destination (a NAT rewrote the SYN and
	// the error was not translated back).
	Foreign bool
}

// OpenFlow takes a fresh source port in the namespace at nsPath (empty: this
// one) for up to span SYNs to dst. src, when valid, is the source address;
// otherwise the route chooses it. Close releases the port.
func OpenFlow(nsPath string, dst netip.AddrPort, src netip.Addr, span int) (*Flow, error) {
	if span < 1 || span > 1<<16 {
		return nil, fmt.Errorf("syn: flow of %d SYNs: want 1-65536", span)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !dst.Addr().IsValid() || dst.Port() == 0 {
		return nil, fmt.Errorf("syn: flow: destination %s has no address or port", dst)
	}
	v6 := !dst.Addr().Is4()
	if src = src.Unmap(); src.IsValid() && src.Is4() == v6 {
		return nil, fmt.Errorf("syn: flow: source %s and destination %s are of different address families", src, dst)
	}
	pa, err := acquire(nsPath, v6)
	if err != nil {
		return nil, err
	}
	if !src.IsValid() {
		if src, err = pa.source(dst.Addr()); err != nil {
			pa.release()
			return nil, err
		}
	}
	f := &Flow{
		pa:     pa,
		w:      waiter{ch: make(chan arrival, 64), span: uint32(span), flow: true},
		ticket: newTicket(),
		dst:    dst,
		seq:    rand.Uint32(),
		span:   span,
	}
	port, err := pa.registerSpan(dst, f.seq, &f.w)
	if err != nil {
		pa.release()
		return nil, err
	}
	f.local = netip.AddrPortFrom(src, port)
	f.timer = time.NewTimer(time.Hour)
	f.timer.Stop()
	return f, nil
}

// Local is the flow's source address and port.
func (f *Flow) Local() netip.AddrPort { return f.local }

// Remote is the flow's destination.
func (f *Flow) Remote() netip.AddrPort { return f.dst }

// Send sends the flow's next SYN with the given TTL (IPv6: hop limit) and
// returns its index and when it left: the kernel's send timestamp (see
// path.settle), or the time taken just before sendmsg(2) without one. The SYN
// waits for a packet from the process-wide budget until until: the first
// SYN of the flow queues like any prober's first SYN, the later ones as an
// exchange under way. No packet by then is ErrBudget (nothing was sent).
func (f *Flow) Send(ctx context.Context, until time.Time, ttl int) (int, time.Time, error) {
	if f.closed {
		return 0, time.Time{}, errors.New("syn: flow closed")
	}
	if f.sent >= f.span {
		return 0, time.Time{}, fmt.Errorf("syn: flow: all %d SYNs sent", f.span)
	}
	if ttl < 1 || ttl > 255 {
		return 0, time.Time{}, fmt.Errorf("syn: flow: ttl %d outside 1-255", ttl)
	}
	if err := f.packet(ctx, until); err != nil {
		return 0, time.Time{}, err
	}
	i := f.sent
	ts := tsNow()
	seg, err := AppendSYN(f.seg[:0], SYN{
		Src: f.local, Dst: f.dst, Seq: f.seq + uint32(i), TSval: ts,
		MSS: DefaultMSS, WScale: DefaultWScale, Window: DefaultWindow,
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	at, err := f.pa.send(seg, f.local.Addr(), f.dst.Addr(), ttl)
	if err != nil {
		return 0, time.Time{}, err
	}
	f.sent++
	// The kernel's send time, at once: a trace sends one SYN at a time.
	sent := [1]sentSYN{{at: at, tsval: ts}}
	f.pa.settle(binary.BigEndian.Uint64(seg), sent[:])
	return i, sent[0].at, nil
}

// packet waits for one packet from the budget until until.
func (f *Flow) packet(ctx context.Context, until time.Time) error {
	b := currentBudget()
	t := f.ticket
	t.urgent = f.sent > 0
	if b.enqueue(t) {
		return nil
	}
	t0 := time.Now()
	f.timer.Reset(until.Sub(t0))
	defer f.timer.Stop()
	select {
	case <-t.ch:
		b.take(t)
		return nil
	case <-ctx.Done():
		b.cancel(t)
		if errors.Is(context.Cause(ctx), context.Canceled) {
			return ctx.Err()
		}
	case <-f.timer.C:
		b.cancel(t)
	}
	return fmt.Errorf("syn: %w (%d packets/s): no packet in %s", ErrBudget, b.Rate(), probe.Round(time.Since(t0)))
}

// Wait returns the next reply to any of the flow's SYNs, or ok false when
// none came by until (or ctx ended).
func (f *Flow) Wait(ctx context.Context, until time.Time) (FlowReply, bool) {
	select { // one already queued: no timer
	case a := <-f.w.ch:
		return f.reply(a), true
	default:
	}
	d := time.Until(until)
	if d <= 0 {
		return FlowReply{}, false
	}
	f.timer.Reset(d)
	defer f.timer.Stop()
	select {
	case a := <-f.w.ch:
		return f.reply(a), true
	case <-ctx.Done():
	case <-f.timer.C:
	}
	return FlowReply{}, false
}

func (f *Flow) reply(a arrival) FlowReply {
	return FlowReply{Reply: a.Reply, Index: int(a.Ack - (f.seq + 1)), At: a.at, Foreign: a.foreign}
}

// Strays describes packets that named the flow's port and address but acked
// none of its SYNs (at most 4 distinct, repeats counted). Call after Close.
func (f *Flow) Strays() []string {
	var out []string
	for _, s := range f.w.takeStrays(nil) {
		out = append(out, fmt.Sprintf("%s from %s with ack %d, outside this flow's SYNs (%d times)", s.Kind, s.Remote, s.Ack, s.n))
	}
	return out
}

// Close releases the port and the flow's share of the receive path.
func (f *Flow) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.pa.unregister(f.dst, f.local.Port())
	f.pa.release()
	return nil
}
