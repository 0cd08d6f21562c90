package trace

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe/syn"
)

// script is a flow whose answers are a function of (index, ttl): what a
// path with routers at known hops does. No sockets, no privileges.
type script struct {
	local   netip.AddrPort
	dst     netip.AddrPort
	now     time.Time
	sent    []int // ttl per index
	pending []syn.FlowReply
	answer  func(i, ttl int, s *script) (syn.FlowReply, bool)
	budget  int // SYNs the budget allows; <0: unlimited
}

func (s *script) Local() netip.AddrPort { return s.local }
func (s *script) Close() error          { return nil }
func (s *script) Send(_ context.Context, _ time.Time, ttl int) (int, time.Time, error) {
	if s.budget == 0 {
		return 0, time.Time{}, fmt.Errorf("syn: %w (1 packets/s): no packet in 1s", syn.ErrBudget)
	}
	s.budget--
	i := len(s.sent)
	s.sent = append(s.sent, ttl)
	s.now = s.now.Add(time.Millisecond)
	if r, ok := s.answer(i, ttl, s); ok {
		r.Index, r.At = i, s.now.Add(100*time.Microsecond)
		s.pending = append(s.pending, r)
	}
	return i, s.now, nil
}
func (s *script) Wait(_ context.Context, _ time.Time) (syn.FlowReply, bool) {
	if len(s.pending) == 0 {
		return syn.FlowReply{}, false
	}
	r := s.pending[0]
	s.pending = s.pending[1:]
	return r, true
}

var (
	dst    = netip.MustParseAddrPort("10.244.2.20:3306")
	router = netip.MustParseAddr("10.244.1.1")
)

func te(from netip.Addr) syn.FlowReply {
	return syn.FlowReply{Reply: syn.Reply{Kind: syn.ReplyICMP, ICMPType: 11, From: from, Remote: dst}}
}

func fromTarget(k syn.ReplyKind) syn.FlowReply {
	return syn.FlowReply{Reply: syn.Reply{Kind: k, Remote: dst}}
}

// path: a router at hop 1 answering time-exceeded, the target at hop 2
// answering with what target says (nil: silence).
func path(target func(i int, s *script) (syn.FlowReply, bool)) func(int, int, *script) (syn.FlowReply, bool) {
	return func(i, ttl int, s *script) (syn.FlowReply, bool) {
		if ttl == 1 {
			return te(router), true
		}
		if target == nil {
			return syn.FlowReply{}, false
		}
		return target(i, s)
	}
}

func TestRunVerdicts(t *testing.T) {
	cfg := Config{Queries: 2, Gap: 2, MaxHops: 8}.withDefaults()
	// A target whose SYN/ACKs are lost: it holds the flow half-open after
	// the first SYN that reaches it and RSTs a SYN with another ISN
	// (dropping the half-open entry); the next SYN opens it again.
	halfOpen := func() func(int, *script) (syn.FlowReply, bool) {
		open := false
		return func(int, *script) (syn.FlowReply, bool) {
			if open {
				open = false
				return fromTarget(syn.ReplyRST), true
			}
			open = true
			return syn.FlowReply{}, false
		}
	}
	tests := []struct {
		name    string
		answer  func(int, int, *script) (syn.FlowReply, bool)
		budget  int
		end     End
		endHop  int
		verdict string
		sent    int
	}{
		{"SYN/ACK at hop 2", path(func(int, *script) (syn.FlowReply, bool) { return fromTarget(syn.ReplySynAck), true }), -1,
			EndSynAck, 2, "SYN/ACK from 10.244.2.20:3306 at hop 2, via 10.244.1.1 (hop 1)", 3},
		{"refused: RST to the first SYN at the target", path(func(int, *script) (syn.FlowReply, bool) { return fromTarget(syn.ReplyRST), true }), -1,
			EndRST, 2, "RST from 10.244.2.20:3306 at hop 2, via 10.244.1.1 (hop 1): refused", 3},
		{"silence after hop 1", path(nil), -1,
			EndSilence, 1, "SYNs reach 10.244.1.1 (hop 1) and die after it: nothing from hop 2 to 3; the target never answered", 6},
		{"nothing at all", func(int, int, *script) (syn.FlowReply, bool) { return syn.FlowReply{}, false }, -1,
			EndSilence, 0, "nothing from hop 1 to 2: the SYNs die before the first hop", 4},
		{"SYN/ACKs lost: RST to a later ISN, confirmed by silence", path(halfOpen()), -1,
			EndLostReply, 2, "the target 10.244.2.20:3306 answers at hop 2 (it RSTs a later SYN of the flow it holds half-open) but no SYN/ACK comes back", 5},
		{"silent router at hop 2, target refuses at hop 3: the confirming SYN gets a RST too", func(i, ttl int, s *script) (syn.FlowReply, bool) {
			switch ttl {
			case 1:
				return te(router), true
			case 2:
				return syn.FlowReply{}, false
			}
			return fromTarget(syn.ReplyRST), true
		}, -1, EndRST, 3, "RST from 10.244.2.20:3306 at hop 3, via 10.244.1.1 (hop 1), * (hop 2): refused", 6},
		{"ICMP admin-prohibited from the router", func(i, ttl int, s *script) (syn.FlowReply, bool) {
			r := te(router)
			r.ICMPType, r.ICMPCode = 3, 13
			return r, true
		}, -1, EndUnreachable, 1, "ICMP admin-prohibited from 10.244.1.1 at hop 1: the SYN is rejected there", 1},
		{"budget runs out at hop 2", path(nil), 2,
			EndBudget, 0, "trace cut short at hop 1: the SYN budget had no packet for it (a prober limit, not the network's); SYNs reach 10.244.1.1 (hop 1)", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &script{local: netip.MustParseAddrPort("10.244.1.2:61000"), dst: dst, now: time.Unix(0, 0), answer: tt.answer, budget: tt.budget}
			tr := &Trace{Target: dst.String(), Remote: dst}
			run(t.Context(), tr, f, cfg)
			tr.Verdict = tr.verdict()
			if tr.End != tt.end || tr.EndHop != tt.endHop {
				t.Errorf("end: got %s at hop %d, want %s at hop %d", tr.End, tr.EndHop, tt.end, tt.endHop)
			}
			if !strings.Contains(tr.Verdict, tt.verdict) {
				t.Errorf("verdict:\n got %q\nwant %q", tr.Verdict, tt.verdict)
			}
			if len(f.sent) != tt.sent {
				t.Errorf("sent %d SYNs (ttl %v), want %d", len(f.sent), f.sent, tt.sent)
			}
			total := 0
			for _, h := range tr.Hops {
				total += h.Sent
				if h.Answered > h.Sent {
					t.Errorf("hop %d: %d answered of %d sent", h.Hop, h.Answered, h.Sent)
				}
			}
			if total != len(f.sent) {
				t.Errorf("hops count %d SYNs, the flow sent %d", total, len(f.sent))
			}
		})
	}
}

// A VIP traced with --explain: the verdict names the node and the backend.
func TestVerdictNAT(t *testing.T) {
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	hop1 := Hop{Hop: 1, Address: vip.Addr(), Sent: 2, Answered: 2, Reply: "time-exceeded"}
	tests := []struct {
		name string
		tr   Trace
		want string
	}{
		{"between node and backend", Trace{Remote: vip, Hops: []Hop{hop1, {Hop: 2, Sent: 2}, {Hop: 3, Sent: 2}}, End: EndSilence,
			NAT: &NAT{Where: "node", Backend: netip.MustParseAddrPort("10.244.2.11:80"), State: "SYN_SENT"}},
			"SYNs reach 10.96.0.10 (hop 1: node, whose ICMP errors carry the address it NATs) and die after it; node DNATs them to 10.244.2.11:80 (conntrack SYN_SENT: no answer seen) and the backend never answers: they die between the node and the backend"},
		{"reply lost at the node", Trace{Remote: vip, Hops: []Hop{hop1, {Hop: 2, Sent: 2}}, End: EndSilence,
			NAT: &NAT{Where: "node", Backend: netip.MustParseAddrPort("10.244.2.11:80"), State: "SYN_RECV", Replied: true}},
			"backend 10.244.2.11:80 answers (conntrack SYN_RECV at node: its SYN/ACK reached the node) but nothing comes back: the reply is lost between node and us"},
		{"no NAT here, nothing answers", Trace{Remote: vip, Hops: []Hop{{Hop: 1, Sent: 2}, {Hop: 2, Sent: 2}}, End: EndSilence, NATNote: "no namespace on this machine (3 looked at) has a conntrack entry"},
			"nothing from hop 1 to 2: the SYNs die before the first hop (or it sends no ICMP time-exceeded); the target never answered; no namespace on this machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tr.verdict(); !strings.Contains(got, tt.want) {
				t.Errorf("verdict:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{MaxHops: 65, Queries: 11, HopTimeout: -1, Gap: -1}.Validate()
	for _, want := range []string{"max hops 65", "queries 11", "hop timeout -1ns", "gap -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q in it", err, want)
		}
	}
	if got := (Config{}).MaxDuration(); got != 48*time.Second {
		t.Errorf("MaxDuration of the defaults: got %s, want 48s", got)
	}
}

// The JSON keeps silent hops with null address and RTT, as the schema says.
func TestJSON(t *testing.T) {
	tr := &Trace{Target: "db", Remote: dst, Local: netip.MustParseAddrPort("10.244.1.2:61000"), Start: time.Unix(0, 0),
		Hops: []Hop{{Hop: 1, Address: router, RTTs: []time.Duration{time.Millisecond}, Sent: 1, Answered: 1, Reply: "time-exceeded"}, {Hop: 2, Sent: 1}}, End: EndSilence, EndHop: 1}
	j := tr.JSON()
	if len(j.Hops) != 2 || *j.Hops[0].Address != "10.244.1.1" || *j.Hops[0].RTTSeconds != 0.001 || j.Hops[1].Address != nil || j.Hops[1].RTTSeconds != nil {
		t.Errorf("hops: got %+v", j.Hops)
	}
}
