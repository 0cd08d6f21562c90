package trace

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/internal/inet"
	"github.com/connprobe/connprobe/probe/syn"
)

// flow is what a trace needs of syn.Flow.
type flow interface {
	Local() netip.AddrPort
	Send(ctx context.Context, until time.Time, ttl int) (int, time.Time, error)
	Wait(ctx context.Context, until time.Time) (syn.FlowReply, bool)
	Close() error
}

// Run traces the path to dst (name is the target's name for the output)
// with cfg. A trace that could not run (no CAP_NET_RAW, a bad config) ends
// with EndError and Err set; ctx bounds it.
func Run(ctx context.Context, name string, dst netip.AddrPort, cfg Config) *Trace {
	t := &Trace{Target: name, Remote: dst, Start: time.Now()}
	if name == "" {
		t.Target = dst.String()
	}
	defer func() {
		t.Duration = time.Since(t.Start)
		t.Verdict = t.verdict()
	}()
	if err := cfg.Validate(); err != nil {
		t.End, t.Err = EndError, fmt.Errorf("trace: %w", err)
		return t
	}
	cfg = cfg.withDefaults()
	f, err := syn.OpenFlow(cfg.NetNS, dst, cfg.Source, cfg.MaxHops*cfg.Queries)
	if err != nil {
		t.End, t.Err = EndError, err
		return t
	}
	defer f.Close()
	run(ctx, t, f, cfg)
	f.Close()
	t.Evidence = append(t.Evidence, f.Strays()...)
	return t
}

// sent is one SYN of the trace.
type sent struct {
	hop      int
	at       time.Time
	answered bool
}

// run sends the hops' SYNs on f and fills t's hops and end.
func run(ctx context.Context, t *Trace, f flow, cfg Config) {
	t.Local = f.Local()
	var syns []sent
	silent := 0
	for ttl := 1; ttl <= cfg.MaxHops; ttl++ {
		t.Hops = append(t.Hops, Hop{Hop: ttl})
		for range cfg.Queries {
			if ctx.Err() != nil {
				t.End = EndSilence
				if errors.Is(context.Cause(ctx), context.Canceled) {
					t.End, t.Err = EndError, fmt.Errorf("trace: %w", ctx.Err())
				}
				return
			}
			// A SYN waits for the budget at most one hop timeout: a trace
			// under a starved budget ends as cut short, not as silence.
			i, at, err := f.Send(ctx, time.Now().Add(cfg.HopTimeout), ttl)
			if err != nil {
				t.End, t.Err = EndError, err
				if errors.Is(err, syn.ErrBudget) {
					t.End = EndBudget
					t.Evidence = append(t.Evidence, err.Error())
					if h := &t.Hops[len(t.Hops)-1]; h.Sent == 0 {
						t.Hops = t.Hops[:len(t.Hops)-1]
					}
				}
				return
			}
			syns = append(syns, sent{hop: ttl, at: at})
			t.Hops[ttl-1].Sent++
			deadline := at.Add(cfg.HopTimeout)
			for {
				r, ok := f.Wait(ctx, deadline)
				if !ok {
					break
				}
				if r.Index < 0 || r.Index >= len(syns) {
					continue // cannot be: the path matched it to our SYNs
				}
				syns[r.Index].answered = true
				s := syns[r.Index]
				if r.Kind == syn.ReplyRST && !r.Foreign && earlierSilent(t, syns, r.Index) {
					t.confirmRST(ctx, f, cfg, r, s)
					return
				}
				if done := t.record(r, s); done {
					return
				}
				if r.Index == i {
					break // this query is answered; a late answer to an earlier one was recorded too
				}
			}
		}
		if t.Hops[ttl-1].Answered == 0 {
			silent++
		} else {
			silent = 0
		}
		if silent >= cfg.Gap {
			break
		}
	}
	// A last look for answers that came after their SYN's timeout (a
	// slow neighbour resolution, a loaded router): they still count.
	grace := time.Now().Add(cfg.HopTimeout)
	for {
		r, ok := f.Wait(ctx, grace)
		if !ok {
			break
		}
		if r.Index < 0 || r.Index >= len(syns) || syns[r.Index].answered {
			continue
		}
		syns[r.Index].answered = true
		if t.record(r, syns[r.Index]) {
			return
		}
	}
	t.End = EndSilence
	if h := t.lastAnswered(); h != nil {
		t.EndHop = h.Hop
	}
}

// record files reply r to SYN s into its hop and reports whether it ends
// the trace (the target's answer, or an ICMP unreachable).
func (t *Trace) record(r syn.FlowReply, s sent) bool {
	h := &t.Hops[s.hop-1]
	from := r.From
	if r.Kind != syn.ReplyICMP {
		from = r.Remote.Addr()
	}
	switch {
	case !h.Address.IsValid():
		h.Address = from
	case h.Address != from && !slices.Contains(h.Others, from) && len(h.Others) < 4:
		h.Others = append(h.Others, from)
	}
	h.Answered++
	h.RTTs = append(h.RTTs, r.At.Sub(s.at))
	if r.Foreign {
		h.Foreign++
	}
	switch r.Kind {
	case syn.ReplySynAck, syn.ReplyRST:
		h.Reply = r.Kind.String()
		t.End, t.EndHop, t.EndFrom = EndSynAck, s.hop, r.Remote.Addr()
		if r.Kind == syn.ReplyRST {
			t.End = EndRST
		}
		if r.Foreign {
			t.Evidence = append(t.Evidence, fmt.Sprintf("%s from %s instead of %s at hop %d: the reply was not reverse-NATed (stale NAT/IPVS entry?)", r.Kind, r.Remote, t.Remote, s.hop))
		}
		return true
	case syn.ReplyICMP:
		if timeExceeded(r.Reply) {
			h.Reply = "time-exceeded"
			return false
		}
		name := inet.ICMPName(r.V6, r.ICMPType, r.ICMPCode)
		h.Reply = name
		t.End, t.EndHop, t.EndFrom, t.EndDetail = EndUnreachable, s.hop, r.From, name
		t.Evidence = append(t.Evidence, fmt.Sprintf("ICMP %s (type %d code %d) from %s quoting hop %d's SYN after %s", name, r.ICMPType, r.ICMPCode, r.From, s.hop, probe.Round(r.At.Sub(s.at))))
		return true
	}
	return false
}

// timeExceeded: ICMP type 11 (IPv4) or ICMPv6 type 3, code 0 (hop limit
// exceeded in transit). Code 1 (fragment reassembly) cannot quote a SYN of
// ours; it is taken as an error like any other.
func timeExceeded(r syn.Reply) bool {
	if r.V6 {
		return r.ICMPType == 3 && r.ICMPCode == 0
	}
	return r.ICMPType == 11 && r.ICMPCode == 0
}

// earlierSilent reports whether a SYN before SYN #k got no answer at a hop
// beyond the last router that answered time-exceeded: a SYN that may have
// reached the target.
func earlierSilent(t *Trace, syns []sent, k int) bool {
	lastTE := 0
	for _, h := range t.Hops {
		if h.Reply == "time-exceeded" {
			lastTE = h.Hop
		}
	}
	for _, s := range syns[:k] {
		if !s.answered && s.hop > lastTE {
			return true
		}
	}
	return false
}

// confirmRST decides what an RST means that came after an unanswered SYN
// of the same flow. Every SYN of a trace carries its own sequence number,
// and a Linux target that holds the tuple half-open (it answered an earlier
// SYN, and that SYN/ACK was lost on the way back) resets a SYN with another
// sequence number (tcp_check_req: a SYN that is not a retransmit, RFC 9293
// 3.10.7.4) and drops the half-open entry. So one more SYN at the same TTL
// tells the two readings apart: a target that refuses RSTs it again; a
// target whose SYN/ACKs are lost answers it with a SYN/ACK that again never
// arrives.
func (t *Trace) confirmRST(ctx context.Context, f flow, cfg Config, first syn.FlowReply, s sent) {
	t.record(first, s) // End RST for now, at the RST's hop
	h := &t.Hops[s.hop-1]
	i, at, err := f.Send(ctx, time.Now().Add(cfg.HopTimeout), s.hop)
	if err != nil {
		t.Evidence = append(t.Evidence, fmt.Sprintf("RST from %s at hop %d after an unanswered SYN of this flow; the confirming SYN was not sent: %v", first.Remote, s.hop, err))
		return
	}
	h.Sent++
	c := sent{hop: s.hop, at: at}
	for {
		r, ok := f.Wait(ctx, at.Add(cfg.HopTimeout))
		if !ok {
			break
		}
		if r.Index != i {
			continue
		}
		switch r.Kind {
		case syn.ReplyRST:
			h.Answered++
			h.RTTs = append(h.RTTs, r.At.Sub(c.at))
			t.Evidence = append(t.Evidence, fmt.Sprintf("RST from %s at hop %d came after an unanswered SYN of this flow; a confirming SYN got a RST too: the target refuses", first.Remote, s.hop))
			return
		case syn.ReplySynAck:
			t.record(r, c) // the SYN/ACK came through after all
			t.Evidence = append(t.Evidence, fmt.Sprintf("the first SYN(s) reaching %s got no answer, a later one a RST, the confirming SYN a SYN/ACK: the earlier SYN/ACK(s) were lost", first.Remote))
			return
		default:
			t.record(r, c)
			return
		}
	}
	t.End, t.EndHop = EndLostReply, s.hop
	t.Evidence = append(t.Evidence, fmt.Sprintf("RST from %s to SYN #%d at hop %d after earlier SYN(s) of this flow got nothing; a confirming SYN got nothing again: the target holds the flow half-open (Linux resets a new SYN on a half-open tuple and drops the entry), so it answers our SYNs and its SYN/ACKs are lost on the way back", first.Remote, first.Index+1, s.hop))
}
