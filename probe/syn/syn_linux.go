package syn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"

	"github.com/connprobe/connprobe/probe/internal/inet"
)

// Prober runs SYN probes against one target. Probe must not be called
// concurrently on one Prober (one instance per (job, target)).
type Prober struct {
	target   probe.Target
	cfg      Config
	resolver *net.Resolver

	mu     sync.Mutex
	paths  map[bool]*path        // by v6, acquired on first use, released by Close
	lastTS map[netip.Addr]uint32 // last TSval sent to each destination
	src    srcCache
	closed bool

	// Scratch reused by every Probe (they never overlap), so the hot path
	// does not allocate a channel, timer, packet or slice per SYN.
	w         waiter
	sb        *sendBuf
	timer     *time.Timer
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
		target:   t,
		cfg:      cfg.withDefaults(),
		resolver: net.DefaultResolver,
		paths:    map[bool]*path{},
		lastTS:   map[netip.Addr]uint32{},
		w:        waiter{ch: make(chan arrival, 1)},
		sb:       newSendBuf(),
	}, nil
}

// Close releases the prober's share of the receive paths.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pa := range p.paths {
		pa.release()
	}
	p.paths = map[bool]*path{}
	p.closed = true
	return nil
}

func (p *Prober) path(v6 bool) (*path, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("syn: prober closed")
	}
	if pa, ok := p.paths[v6]; ok {
		return pa, nil
	}
	pa, err := acquire(p.target.NetNS, v6)
	if err != nil {
		return nil, err
	}
	p.paths[v6] = pa
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
	if last, ok := p.lastTS[dst]; ok && int32(ts-last) <= 0 {
		ts = last + 1
	}
	p.lastTS[dst] = ts
	return ts
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
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && !r.Success {
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
	addr, ok := p.target.Addr()
	if !ok {
		t0 := time.Now()
		rctx, cancel := context.WithDeadline(ctx, deadline)
		ips, err := p.resolver.LookupNetIP(rctx, "ip", p.target.Host)
		cancel()
		r.Timings.Resolve = time.Since(t0)
		if err == nil && len(ips) == 0 {
			err = &net.DNSError{Err: "no addresses", Name: p.target.Host, IsNotFound: true}
		}
		if err != nil {
			r.Fail(probe.PhaseResolve, err)
			return
		}
		addr = netip.AddrPortFrom(pick(ips, p.cfg.Source), p.target.Port)
		r.Evidencef("resolved %s to %s in %s", p.target.Host, addr.Addr(), probe.Round(r.Timings.Resolve))
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

// srcCache remembers the route's source address for a second, so a prober
// probing at a high rate does not ask the routing table every time.
type srcCache struct {
	dst, src netip.Addr
	at       time.Time
}

const srcCacheTTL = time.Second

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
	answered int    // index into sent of the SYN the reply answers
	by       string // how answered was worked out
	err      error  // a local failure (send, budget, ports)
	timedOut bool
}

// exchange sends a SYN from a fresh source port and retransmits it on
// schedule until a reply matches, the deadline passes or ctx is done. Each
// SYN gets a fresh TSval for dst (nextTS) or, for the PAWS check (paws),
// old+attempt. sent is reused as the outcome's list of SYNs.
func (p *Prober) exchange(ctx context.Context, deadline time.Time, pa *path, src netip.Addr, dst netip.AddrPort, sent []sentSYN, paws bool, old uint32) outcome {
	o := outcome{sent: sent}
	schedule := p.cfg.Schedule
	seq := rand.Uint32()
	w := &p.w
	port, err := pa.register(dst, seq, w)
	if err != nil {
		o.err = err
		return o
	}
	defer pa.unregister(dst, port)
	o.local = netip.AddrPortFrom(src, port)
	if p.timer == nil {
		p.timer = time.NewTimer(time.Hour)
	}
	defer p.timer.Stop()

	var first time.Time
	for i := 0; ; i++ {
		if err := currentBudget().waitUntil(ctx, deadline); err != nil {
			if i == 0 {
				o.err = err
			} else {
				o.timedOut = true
			}
			return o
		}
		ts := old + uint32(i)
		if !paws {
			ts = p.nextTS(dst.Addr())
		}
		p.sb.seg, err = AppendSYN(p.sb.seg[:0], SYN{
			Src: o.local, Dst: dst, Seq: seq, TSval: ts,
			MSS: p.cfg.MSS, WScale: p.cfg.WScale, Window: DefaultWindow,
		})
		if err != nil {
			o.err = err
			return o
		}
		at, err := pa.send(p.sb, src, dst.Addr())
		if err != nil {
			o.err = err
			return o
		}
		if i == 0 {
			first = at
		}
		o.sent = append(o.sent, sentSYN{at: at, tsval: ts})

		wake := deadline
		if i < len(schedule) {
			if t := first.Add(schedule[i]); t.Before(wake) {
				wake = t
			}
		}
		p.timer.Reset(time.Until(wake))
		select {
		case a := <-w.ch:
			o.reply = &a
			o.answered, o.by = attribute(o.sent, a)
			return o
		case <-ctx.Done():
			return o.late(w)
		case <-p.timer.C:
			if !time.Now().Before(deadline) {
				return o.late(w)
			}
		}
	}
}

// late takes a reply that raced the deadline or the cancellation.
func (o outcome) late(w *waiter) outcome {
	select {
	case a := <-w.ch:
		o.reply = &a
		o.answered, o.by = attribute(o.sent, a)
	default:
		o.timedOut = true
	}
	return o
}

// attribute works out which SYN a reply answers: the one whose TSval the
// SYN/ACK echoes (TSecr), or, without timestamps (RST, ICMP, a target with
// tcp_timestamps=0), the last one sent before the reply arrived.
func attribute(sent []sentSYN, a arrival) (int, string) {
	if a.Kind == ReplySynAck && a.HasTS {
		for i, s := range sent {
			if s.tsval == a.TSecr {
				return i, "TSecr"
			}
		}
	}
	for i := len(sent) - 1; i > 0; i-- {
		if !sent[i].at.After(a.at) {
			return i, "timing"
		}
	}
	return 0, "timing"
}

// classify sets the result of the normal exchange and reports whether it
// was answered with a SYN/ACK (so the PAWS check may follow).
func (p *Prober) classify(r *probe.Result, o outcome) bool {
	switch {
	case errors.Is(o.err, ErrBudget):
		r.Phase, r.Err, r.Reason = probe.PhaseSetup, o.err, probe.ReasonLocalError
		r.Evidencef("no SYN sent: the process-wide packet budget (%d packets/s, syn.SetRate) had no room before the timeout", currentBudget().Rate())
		return false
	case o.err != nil:
		r.Fail(probe.PhaseHandshake, o.err)
		return false
	case o.reply == nil:
		r.Phase, r.Reason = probe.PhaseHandshake, probe.ReasonSynTimeout
		r.Err = fmt.Errorf("syn: no answer: %w", context.DeadlineExceeded)
		r.Evidencef("%d SYN(s) sent at %s: no SYN/ACK, no RST, no ICMP", len(o.sent), offsets(o.sent))
		return false
	}
	a := o.reply
	answered := o.sent[o.answered]
	rtt := a.at.Sub(answered.at)
	r.Timings.Handshake = a.at.Sub(o.sent[0].at)
	r.Phase = probe.PhaseHandshake
	switch a.Kind {
	case ReplySynAck:
		r.Timings.SynRTT = rtt
		r.Success = true
		if o.answered == 0 {
			r.Reason = probe.ReasonOK
			r.Evidencef("SYN/ACK from %s in %s (TSval %d)", a.Remote, probe.Round(rtt), answered.tsval)
		} else {
			r.Reason = probe.ReasonSynRetransmitted
			r.Evidencef("SYN/ACK answered SYN #%d of %d (matched by %s), %s after the first; SYNs at %s", o.answered+1, len(o.sent), o.by, probe.Round(r.Timings.Handshake), offsets(o.sent))
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
		r.Err = fmt.Errorf("syn: RST from %s", a.Remote)
		r.Evidencef("RST from %s in answer to SYN #%d after %s", a.Remote, o.answered+1, probe.Round(rtt))
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

// pawsCheck sends a SYN whose TSval is lower than the last one sent to the
// destination, from a fresh port. A host doing per-peer PAWS on SYNs (the
// old tcp_tw_recycle, or a box behind which several clients share one SNAT
// address) silently drops it while it answers fresh ones.
func (p *Prober) pawsCheck(ctx context.Context, deadline time.Time, pa *path, src netip.Addr, dst netip.AddrPort, normal outcome, r *probe.Result) {
	p.mu.Lock()
	fresh := p.lastTS[dst.Addr()]
	p.mu.Unlock()
	old := fresh - p.cfg.PAWSRegress
	o := p.exchange(ctx, deadline, pa, src, dst, p.sentCheck[:0], true, old)
	defer func() { p.sentCheck = o.sent[:0] }()
	answeredTS := normal.sent[normal.answered].tsval
	switch {
	case o.err != nil:
		r.Evidencef("PAWS check not made: %v", o.err)
		r.Phase = probe.PhaseDone
	case o.reply == nil:
		r.Success = false
		r.Reason = probe.ReasonPAWSRejected
		r.Err = errors.New("syn: SYN with an older TSval unanswered")
		r.Evidencef("PAWS: SYN with TSval %d answered; %d SYN(s) with older TSval %d (-%d) from %s got no answer in %s", answeredTS, len(o.sent), old, p.cfg.PAWSRegress, o.local, probe.Round(time.Since(o.sent[0].at)))
	case o.reply.Kind == ReplySynAck:
		r.Evidencef("PAWS: SYN with older TSval %d (last %d) also answered after %s: no per-host timestamp check", old, fresh, probe.Round(o.reply.at.Sub(o.sent[o.answered].at)))
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

// pick chooses the address to probe: the first of the source's family when a
// source is set, else the first returned.
func pick(ips []netip.Addr, source netip.Addr) netip.Addr {
	if source.IsValid() {
		for _, ip := range ips {
			if ip.Unmap().Is4() == source.Unmap().Is4() {
				return ip.Unmap()
			}
		}
	}
	return ips[0].Unmap()
}
