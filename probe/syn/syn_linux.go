package syn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"

	"github.com/connprobe/connprobe/probe/internal/inet"
)

// Prober runs SYN probes against one target. Probe must not be called
// concurrently on one Prober (one instance per (job, target)).
type Prober struct {
	target probe.Target
	cfg    Config

	mu     sync.Mutex
	paths  [2]*path // [0] IPv4, [1] IPv6: acquired on first use, released by Close
	lastTS []sentTS // last TSval sent to each recent destination (lastTSKept at most)
	// forgot is the highest TSval of the destinations lastTS let go: a
	// destination not in lastTS gets a TSval above it, so one that was
	// forgotten never sees its TSvals go back.
	forgot uint32
	src    srcCache
	closed bool

	// Scratch reused by every Probe (they never overlap), so the hot path
	// does not allocate a channel, timer, packet or slice per SYN.
	w         waiter
	seg       [synHeaderLen]byte // the SYN being sent
	timer     *time.Timer
	ticket    *ticket   // this prober's place in the packet budget's queue
	sentSYNs  []sentSYN // the normal exchange
	sentCheck []sentSYN // the PAWS check
}

// New returns a Prober for t. It validates cfg; it opens no socket (the
// first Probe does, and reports a missing CAP_NET_RAW as reason permission).
func New(t probe.Target, cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("syn: %w", err)
	}
	if t.Port == 0 || t.Host == "" {
		return nil, fmt.Errorf("syn: target %q has no host or port", t.Name)
	}
	if a, ok := t.Addr(); ok && cfg.Source.IsValid() && a.Addr().Is4() != cfg.Source.Unmap().Is4() {
		return nil, fmt.Errorf("syn: source %s and target %s are of different address families", cfg.Source, t.Name)
	}
	return &Prober{
		target: t,
		cfg:    cfg.withDefaults(),
		w:      waiter{ch: make(chan arrival, 1)},
		ticket: newTicket(),
	}, nil
}

// Close releases the prober's share of the receive paths.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pa := range p.paths {
		if pa != nil {
			pa.release()
			p.paths[i] = nil
		}
	}
	p.closed = true
	return nil
}

func (p *Prober) path(v6 bool) (*path, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("syn: prober closed")
	}
	i := 0
	if v6 {
		i = 1
	}
	if pa := p.paths[i]; pa != nil {
		return pa, nil
	}
	pa, err := acquire(p.target.NetNS, v6)
	if err != nil {
		return nil, err
	}
	p.paths[i] = pa
	return pa, nil
}

// The TSval clock: milliseconds (the kernel's TCP timestamp rate since 4.13)
// since process start, from a random origin like the kernel's per-connection
// ts_offset. Every TSval a prober sends to a destination is higher than the
// last one, except the PAWS check's deliberate step back.
var (
	tsEpoch  = time.Now()
	tsOrigin = rand.Uint32()
)

func tsNow() uint32 {
	return tsOrigin + uint32(time.Since(tsEpoch)/time.Millisecond)
}

// nextTS returns a fresh TSval for dst, above the last one sent.
func (p *Prober) nextTS(dst netip.Addr) uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := tsNow()
	i := slices.IndexFunc(p.lastTS, func(s sentTS) bool { return s.dst == dst })
	switch {
	case i >= 0:
		if int32(ts-p.lastTS[i].ts) <= 0 {
			ts = p.lastTS[i].ts + 1
		}
		p.lastTS[i].ts = ts
	case len(p.lastTS) < lastTSKept:
		ts = p.aboveForgotten(ts)
		p.lastTS = append(p.lastTS, sentTS{dst, ts})
	default:
		// Forget the destination least recently sent to.
		old := 0
		for k, s := range p.lastTS {
			if int32(s.ts-p.lastTS[old].ts) < 0 {
				old = k
			}
		}
		if p.forgot == 0 || int32(p.lastTS[old].ts-p.forgot) > 0 {
			p.forgot = p.lastTS[old].ts
		}
		ts = p.aboveForgotten(ts)
		p.lastTS[old] = sentTS{dst, ts}
	}
	return ts
}

// aboveForgotten raises ts above every TSval of a forgotten destination.
func (p *Prober) aboveForgotten(ts uint32) uint32 {
	if p.forgot != 0 && int32(ts-p.forgot) <= 0 {
		return p.forgot + 1
	}
	return ts
}

// sentTS is the last TSval a prober sent to a destination.
type sentTS struct {
	dst netip.Addr
	ts  uint32
}

// lastTSKept bounds the destinations a prober remembers TSvals for: a
// target's addresses (a DNS name's few A/AAAA records); a slice searched
// in place costs a fraction of a map per target.
const lastTSKept = 16

// lastTSOf is the last TSval sent to dst (0: none).
func (p *Prober) lastTSOf(dst netip.Addr) uint32 {
	for _, s := range p.lastTS {
		if s.dst == dst {
			return s.ts
		}
	}
	return 0
}

// Probe makes one attempt.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	r := probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now()}
	// The attempt's deadline is kept as a time, not a derived context: the
	// exchange waits on one reused timer for min(next retransmit, deadline)
	// and on ctx for cancellation, so a probe costs no context and timer
	// allocations.
	p.probe(ctx, earliest(ctx, r.Start.Add(p.cfg.Timeout)), &r)
	r.Duration = time.Since(r.Start)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && !r.Success() {
		r.Reason = probe.ReasonCanceled
	}
	return r
}

// earliest returns the earlier of d and ctx's deadline.
func earliest(ctx context.Context, d time.Time) time.Time {
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

func (p *Prober) probe(ctx context.Context, deadline time.Time, r *probe.Result) {
	addr, ok := probe.ResolveFor(ctx, r, p.cfg.Resolver, p.target, p.cfg.Source, deadline)
	if !ok {
		return
	}
	r.Remote = addr
	v6 := !addr.Addr().Is4()

	pa, err := p.path(v6)
	if err != nil {
		r.Fail(probe.PhaseSetup, err)
		return
	}
	src := p.cfg.Source.Unmap()
	if !src.IsValid() {
		if src, err = p.source(pa, addr.Addr()); err != nil {
			r.Fail(probe.PhaseHandshake, err)
			return
		}
	}

	o := p.exchange(ctx, deadline, pa, src, addr, p.sentSYNs[:0], false, 0)
	p.sentSYNs = o.sent[:0]
	r.Local = o.local
	r.Retransmits = max(len(o.sent)-1, 0)
	if !p.classify(r, o) {
		return
	}
	if !p.cfg.PAWS {
		r.Phase = probe.PhaseDone
		return
	}
	// The PAWS check gets its own time, after the normal SYN; it is part of
	// the attempt the caller asked for, so it still ends with the parent.
	p.pawsCheck(ctx, earliest(ctx, time.Now().Add(p.cfg.PAWSWait)), pa, src, addr, o, r)
}

// srcCache remembers the route's source address for srcCacheTTL, so a
// prober does not ask the routing table (a UDP connect and getsockname) at
// every attempt: at the usual 1 s interval a one-second memory missed every
// time, and the lookup was a tenth of the SYN kind's CPU. A changed source
// (rare: an address moved on the interface) is picked up within the TTL.
type srcCache struct {
	dst, src netip.Addr
	at       time.Time
}

const srcCacheTTL = 5 * time.Second

func (p *Prober) source(pa *path, dst netip.Addr) (netip.Addr, error) {
	p.mu.Lock()
	c := p.src
	p.mu.Unlock()
	if c.dst == dst && time.Since(c.at) < srcCacheTTL {
		return c.src, nil
	}
	src, err := pa.source(dst)
	if err != nil {
		return src, err
	}
	p.mu.Lock()
	p.src = srcCache{dst: dst, src: src, at: time.Now()}
	p.mu.Unlock()
	return src, nil
}

// sentSYN is one SYN on the wire.
type sentSYN struct {
	at    time.Time
	tsval uint32
}

// outcome is what one SYN exchange (first SYN and its retransmits) produced.
type outcome struct {
	local    netip.AddrPort
	sent     []sentSYN
	reply    *arrival
	answered int    // index into sent of the SYN the reply answers, as far as can be told
	by       string // how answered was worked out
	last     int    // index into sent of the last SYN sent before the reply
	err      error  // a local failure (send, ports)
	timedOut bool
	// budget: a SYN got no packet from the budget in time (the attempt is
	// skipped); due is when that SYN was due, as an offset from the first.
	budget   bool
	due      time.Duration
	waited   time.Duration // time spent waiting for packets from the budget
	patience time.Duration // how long the first SYN might wait
	strays   []stray       // packets that named our SYN but did not answer it
}

// firstSYNShare: the first SYN of an exchange waits for a packet from the
// budget for at most 1/firstSYNShare of the time left, so an attempt that
// does get its packet still has most of its time for the answer and its
// retransmits.
const firstSYNShare = 2

// exchange sends a SYN from a fresh source port and retransmits it on
// schedule until a reply matches, the deadline passes or ctx is done. Each
// SYN gets a fresh TSval for dst (nextTS) or, for the PAWS check (paws),
// old+attempt. sent is reused as the outcome's list of SYNs.
//
// Every SYN waits for a packet from the process-wide budget. The first SYN
// waits at most 1/firstSYNShare of the time left; without a packet by then
// the attempt is skipped (no SYN sent). A retransmit (or any SYN of the PAWS
// check) is urgent, served before any first SYN, and waits up to the
// deadline while still listening for the answer to the SYNs already sent; a
// retransmit sent late moves the ones after it to their next slot, never
// into a catch-up burst. A retransmit that gets no packet at all ends the
// attempt as skipped too: the target was not given the SYNs the schedule
// promises, so its silence proves nothing.
func (p *Prober) exchange(ctx context.Context, deadline time.Time, pa *path, src netip.Addr, dst netip.AddrPort, sent []sentSYN, paws bool, old uint32) (o outcome) {
	o.sent = sent
	schedule := p.cfg.Schedule
	seq := rand.Uint32()
	w := &p.w
	port, err := pa.register(dst, seq, w)
	if err != nil {
		o.err = err
		return o
	}
	defer func() {
		pa.unregister(dst, port)
		// No dispatch reaches w after unregister: its strays are settled.
		o.strays = w.takeStrays(o.strays)
		if o.reply != nil {
			// Every reply ends here: the kernel's send times, then
			// which SYN the reply answers by them.
			pa.settle(binary.BigEndian.Uint64(p.seg[:]), o.sent)
			o.attribute()
		}
	}()
	o.local = netip.AddrPortFrom(src, port)
	if p.timer == nil {
		p.timer = time.NewTimer(time.Hour)
	}
	defer p.timer.Stop()

	now := time.Now()
	o.patience = deadline.Sub(now) / firstSYNShare
	sendBy := now.Add(o.patience)
	var first time.Time
	next := 0 // index into schedule of the next retransmit
	for i := 0; ; i++ {
		until := deadline
		if i == 0 {
			until = sendBy
		}
		a, waited, err := p.packet(ctx, until, paws || i > 0, i > 0)
		o.waited += waited
		if a != nil {
			o.reply = a // attributed on the way out
			return o
		}
		if err != nil {
			if errors.Is(err, ErrBudget) {
				o.budget = true
				if i > 0 {
					o.due = schedule[next-1]
				} else {
					o.err = err
				}
				return o
			}
			if i == 0 {
				o.err = err
				return o
			}
			return o.late(w)
		}
		ts := old + uint32(i)
		if !paws {
			ts = p.nextTS(dst.Addr())
		}
		seg, err := AppendSYN(p.seg[:0], SYN{
			Src: o.local, Dst: dst, Seq: seq, TSval: ts,
			MSS: p.cfg.MSS, WScale: p.cfg.WScale, Window: DefaultWindow,
		})
		if err != nil {
			o.err = err
			return o
		}
		at, err := pa.send(seg, src, dst.Addr(), 0)
		if err != nil {
			o.err = err
			return o
		}
		if i == 0 {
			first = at
		}
		o.sent = append(o.sent, sentSYN{at: at, tsval: ts})

		// The next retransmit is the first slot after this SYN: a SYN
		// that waited for the budget past later slots skips them.
		for next < len(schedule) && !first.Add(schedule[next]).After(at) {
			next++
		}
		wake := deadline
		if next < len(schedule) {
			if t := first.Add(schedule[next]); t.Before(wake) {
				wake = t
			}
		}
		p.timer.Reset(time.Until(wake))
		select {
		case a := <-w.ch:
			o.reply = &a // attributed on the way out
			return o
		case <-ctx.Done():
			return o.late(w)
		case <-p.timer.C:
			if !time.Now().Before(deadline) {
				return o.late(w)
			}
			next++ // the slot the coming retransmit fills
		}
	}
}

// packet waits for one packet from the process-wide budget, until until.
// urgent marks a SYN of an exchange under way (served first). With
// listen, an answer to the SYNs already sent ends the wait: it is returned
// and the place in the queue given up. A wait that ends without a packet
// (until passed, or ctx's deadline) is ErrBudget; a canceled ctx is its
// error.
func (p *Prober) packet(ctx context.Context, until time.Time, urgent, listen bool) (*arrival, time.Duration, error) {
	b := currentBudget()
	t := p.ticket
	t.urgent = urgent
	if b.enqueue(t) {
		return nil, 0, nil
	}
	t0 := time.Now()
	p.timer.Reset(until.Sub(t0))
	var replies <-chan arrival
	if listen {
		replies = p.w.ch
	}
	select {
	case <-t.ch:
		b.take(t)
		return nil, time.Since(t0), nil
	case a := <-replies:
		b.cancel(t)
		return &a, time.Since(t0), nil
	case <-ctx.Done():
		b.cancel(t)
		if errors.Is(context.Cause(ctx), context.Canceled) {
			return nil, time.Since(t0), ctx.Err()
		}
	case <-p.timer.C:
		b.cancel(t)
	}
	return nil, time.Since(t0), fmt.Errorf("syn: %w (%d packets/s): no packet in %s", ErrBudget, b.Rate(), probe.Round(time.Since(t0)))
}

// late takes a reply that raced the deadline or the cancellation
// (exchange attributes it on the way out).
func (o outcome) late(w *waiter) outcome {
	select {
	case a := <-w.ch:
		o.reply = &a
	default:
		o.timedOut = true
	}
	return o
}

// attribute works out which SYN the reply answers: the one whose TSval the
// SYN/ACK echoes (TSecr), or, without timestamps (RST, ICMP, a target with
// tcp_timestamps=0), the last one sent before the reply arrived. It also
// finds that last one: a reply that arrives after a later SYN was sent than
// the one it answers came too late to spare the retransmit.
func (o *outcome) attribute() {
	a := o.reply
	o.last = 0
	for i := len(o.sent) - 1; i > 0; i-- {
		if !o.sent[i].at.After(a.at) {
			o.last = i
			break
		}
	}
	o.answered, o.by = o.last, "timing"
	if a.Kind == ReplySynAck && a.HasTS {
		for i, s := range o.sent {
			if s.tsval == a.TSecr {
				o.answered, o.by = i, "TSecr"
				return
			}
		}
	}
}

// budgetKnob names the setting a user changes to give the budget more room.
const budgetKnob = "--syn-rate / global.syn_rate"

// classify sets the result of the normal exchange and reports whether it
// was answered with a SYN/ACK (so the PAWS check may follow).
func (p *Prober) classify(r *probe.Result, o outcome) bool {
	defer func() {
		if o.waited >= time.Millisecond && r.Reason != probe.ReasonProberBudget {
			r.Evidencef("waited %s for packets from the SYN budget (%d packets/s, %s)", probe.Round(o.waited), currentBudget().Rate(), budgetKnob)
		}
	}()
	switch {
	case o.budget && len(o.sent) == 0:
		r.Phase, r.Err, r.Reason = probe.PhaseSetup, o.err, probe.ReasonProberBudget
		waiting := ""
		if n := currentBudget().Waiting(); n > 0 {
			waiting = fmt.Sprintf("; %d more SYN(s) waiting", n)
		}
		r.Evidencef("attempt skipped, no SYN sent: the SYN packet budget (%d packets/s for every raw SYN of this prober, %s) had no packet for it within %s (1/%d of its time)%s", currentBudget().Rate(), budgetKnob, o.patience.Round(time.Millisecond), firstSYNShare, waiting)
		return false
	case o.err != nil:
		r.Fail(probe.PhaseHandshake, o.err)
		return false
	case o.reply == nil && o.budget:
		r.Phase, r.Reason = probe.PhaseHandshake, probe.ReasonProberBudget
		r.Err = fmt.Errorf("syn: retransmit: %w", ErrBudget)
		r.Evidencef("attempt skipped: %d SYN(s) sent at %s, no answer yet; SYN #%d (due at %s) got no packet from the SYN budget (%d packets/s, %s) before the timeout", len(o.sent), offsets(o.sent), len(o.sent)+1, o.due, currentBudget().Rate(), budgetKnob)
		p.strayEvidence(r, o)
		return false
	case o.reply == nil:
		r.Phase, r.Reason = probe.PhaseHandshake, probe.ReasonSynTimeout
		r.Err = fmt.Errorf("syn: no answer: %w", context.DeadlineExceeded)
		if len(o.strays) == 0 {
			r.Evidencef("%d SYN(s) sent at %s: no SYN/ACK, no RST, no ICMP", len(o.sent), offsets(o.sent))
		} else {
			r.Evidencef("%d SYN(s) sent at %s: no answer from %s itself", len(o.sent), offsets(o.sent), r.Remote)
		}
		p.strayEvidence(r, o)
		return false
	}
	defer p.strayEvidence(r, o)
	a := o.reply
	// The RTT is that of the last SYN sent before the answer: when the
	// answer echoes an earlier SYN but came after a later one, the later
	// SYN is what drew it (a listener in SYN-RECV re-sends its SYN/ACK on
	// a retransmitted SYN).
	rtt := a.at.Sub(o.sent[o.last].at)
	r.Timings.Handshake = a.at.Sub(o.sent[0].at)
	r.Phase = probe.PhaseHandshake
	switch a.Kind {
	case ReplySynAck:
		r.Timings.SynRTT = rtt
		switch {
		case o.last == 0:
			r.Reason = probe.ReasonOK
			// The line of every healthy probe, built without fmt.
			b := make([]byte, 0, 64)
			b = append(b, "SYN/ACK from "...)
			b = a.Remote.AppendTo(b)
			b = append(b, " in "...)
			b = append(b, probe.Round(rtt).String()...)
			b = append(b, " (TSval "...)
			b = strconv.AppendUint(b, uint64(o.sent[0].tsval), 10)
			b = append(b, ')')
			r.Evidence = append(r.Evidence, string(b))
		case o.by == "TSecr" && o.answered < o.last:
			// Linux keeps the first SYN's TSval in its request sock and
			// echoes it in every SYN/ACK it re-sends (tcp_check_req does
			// not update ts_recent for a retransmitted SYN).
			r.Reason = probe.ReasonSynRetransmitted
			r.Evidencef("SYN/ACK echoes SYN #%d (TSecr) but came %s after SYN #%d of %d, %s after the first; SYNs at %s: the first SYN/ACK was probably lost on the return path (a listener re-sends it, echoing the first SYN, when the retransmit arrives)",
				o.answered+1, probe.Round(rtt), o.last+1, len(o.sent), probe.Round(r.Timings.Handshake), offsets(o.sent))
		case o.by == "TSecr":
			r.Reason = probe.ReasonSynRetransmitted
			r.Evidencef("SYN/ACK answered SYN #%d of %d (matched by TSecr), %s after the first; SYNs at %s: the earlier SYN(s) were probably lost on the way there",
				o.answered+1, len(o.sent), probe.Round(r.Timings.Handshake), offsets(o.sent))
		default:
			r.Reason = probe.ReasonSynRetransmitted
			r.Evidencef("SYN/ACK answered SYN #%d of %d (matched by timing: no timestamps, so the SYN/ACK of an earlier SYN may have been lost instead of the SYN), %s after the first; SYNs at %s",
				o.answered+1, len(o.sent), probe.Round(r.Timings.Handshake), offsets(o.sent))
		}
		// No socket owns our source port, so the local kernel answers this
		// SYN/ACK with a RST (tcp_v4_send_reset from tcp_v4_rcv's no-socket
		// path) about 10 µs later. That RST is what frees the target's
		// SYN-RECV entry at once instead of after its SYN/ACK retransmits:
		// do not filter it, or every probe leaves a half-open connection
		// behind (and enough of them look like a SYN flood).
		return true
	case ReplyRST:
		r.Timings.SynRTT = rtt
		r.Reason = probe.ReasonRefused
		// A closed port, which policy jobs (expect: fail) probe by the
		// thousand: built without fmt, the error as the evidence's prefix.
		b := make([]byte, 0, 80)
		b = append(b, "syn: RST from "...)
		b = a.Remote.AppendTo(b)
		n := len(b)
		b = append(b, " in answer to SYN #"...)
		b = strconv.AppendInt(b, int64(o.answered+1), 10)
		b = append(b, " after "...)
		b = append(b, probe.Round(rtt).String()...)
		line := string(b)
		r.Err = errors.New(line[:n])
		r.Evidence = append(r.Evidence, line[len("syn: "):])
	case ReplyICMP:
		name := inet.ICMPName(a.V6, a.ICMPType, a.ICMPCode)
		r.Reason = probe.ReasonUnreachable
		if a.portUnreachable() {
			r.Reason = probe.ReasonRefused
		}
		r.Err = fmt.Errorf("syn: ICMP %s from %s", name, a.From)
		r.Evidencef("ICMP %s (type %d code %d) from %s quoting SYN #%d, after %s", name, a.ICMPType, a.ICMPCode, a.From, o.answered+1, probe.Round(rtt))
	}
	return false
}

// strayEvidence describes the packets that named the exchange's SYN but did
// not answer it: a reply from another address than the one probed (acking
// our ISN, so it is ours: the reply was not reverse-NATed, the signature of
// a stale NAT/IPVS session), or from the right address acking another
// sequence number.
func (p *Prober) strayEvidence(r *probe.Result, o outcome) {
	for _, s := range o.strays {
		after := ""
		if len(o.sent) > 0 {
			after = fmt.Sprintf(", %s after the first SYN", probe.Round(s.at.Sub(o.sent[0].at)))
		}
		times := ""
		if s.n > 1 {
			times = fmt.Sprintf(" (%d times)", s.n)
		}
		what := s.Kind.String()
		from := s.Remote.String()
		if s.Kind == ReplyICMP {
			what = "ICMP " + inet.ICMPName(s.V6, s.ICMPType, s.ICMPCode)
			from = s.From.String() + " quoting our SYN to " + s.Remote.String()
		}
		switch {
		case s.wrongAck:
			r.Evidencef("%s from %s with ack %d, expected %d%s%s: it does not answer this SYN (a half-open session of another connection on the target, or a box rewriting sequence numbers?)", what, from, s.Ack, s.expect, times, after)
		case s.Kind == ReplyICMP:
			r.Evidencef("%s from %s instead of %s%s%s: the error was not reverse-NATed (stale NAT/IPVS entry?)", what, from, r.Remote, times, after)
		default:
			r.Evidencef("%s from %s instead of %s%s%s: the reply was not reverse-NATed (stale NAT/IPVS entry?)", what, from, r.Remote, times, after)
		}
	}
}

// pawsCheck sends a SYN whose TSval is lower than the last one sent to the
// destination, from a fresh port. A host doing per-peer PAWS on SYNs (the
// old tcp_tw_recycle, or a box behind which several clients share one SNAT
// address) silently drops it while it answers fresh ones.
func (p *Prober) pawsCheck(ctx context.Context, deadline time.Time, pa *path, src netip.Addr, dst netip.AddrPort, normal outcome, r *probe.Result) {
	p.mu.Lock()
	fresh := p.lastTSOf(dst.Addr())
	p.mu.Unlock()
	old := fresh - p.cfg.PAWSRegress
	o := p.exchange(ctx, deadline, pa, src, dst, p.sentCheck[:0], true, old)
	defer func() { p.sentCheck = o.sent[:0] }()
	answeredTS := normal.sent[normal.answered].tsval
	switch {
	case o.budget && len(o.sent) == 0:
		r.Evidencef("PAWS check not made: no packet from the SYN budget (%d packets/s, %s) within %s", currentBudget().Rate(), budgetKnob, o.patience.Round(time.Millisecond))
		r.Phase = probe.PhaseDone
	case o.err != nil:
		r.Evidencef("PAWS check not made: %v", o.err)
		r.Phase = probe.PhaseDone
	case o.reply == nil && o.budget:
		r.Evidencef("PAWS check inconclusive: %d SYN(s) with older TSval %d got no answer, and SYN #%d of the check got no packet from the SYN budget (%d packets/s, %s)", len(o.sent), old, len(o.sent)+1, currentBudget().Rate(), budgetKnob)
		r.Phase = probe.PhaseDone
	case o.reply == nil:
		r.Reason = probe.ReasonPAWSRejected
		r.Err = errors.New("syn: SYN with an older TSval unanswered")
		r.Evidencef("PAWS: SYN with TSval %d answered; %d SYN(s) with older TSval %d (-%d) from %s got no answer in %s", answeredTS, len(o.sent), old, p.cfg.PAWSRegress, o.local, probe.Round(time.Since(o.sent[0].at)))
	case o.reply.Kind == ReplySynAck:
		r.Evidencef("PAWS: SYN with older TSval %d (last %d) also answered after %s: no per-host timestamp check", old, fresh, probe.Round(o.reply.at.Sub(o.sent[o.last].at)))
		r.Phase = probe.PhaseDone
	default:
		r.Evidencef("PAWS check inconclusive: SYN with older TSval %d got %s", old, o.reply.Kind)
		r.Phase = probe.PhaseDone
	}
}

func offsets(sent []sentSYN) string {
	var b strings.Builder
	for i, s := range sent {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.at.Sub(sent[0].at).Round(time.Millisecond).String())
	}
	return b.String()
}
