// Package trace finds where a TCP SYN or its SYN/ACK dies: a Paris-style TCP
// traceroute on the SYN probe's raw path. It sends SYNs with TTL (IPv6: hop
// limit) 1, 2, 3… on one flow identifier — the same source address and
// port, the same destination — so routers that hash flows over equal-cost
// paths, and conntrack with its NAT choice, treat every hop's SYN like the
// real connection. Routers answer an expired SYN with ICMP time-exceeded,
// which quotes the SYN: the quoted sequence number says which SYN (and so
// which hop) it answers. The trace ends with the target's SYN/ACK or RST, an
// ICMP unreachable, or silence after the last hop that answered.
//
// Hops are probed one after the other, each query waiting for its answer
// (or its timeout) before the next SYN goes out: once the target answers,
// the local kernel RSTs the SYN/ACK and the conntrack entry of the flow
// closes, and a later SYN on the same tuple would reopen it and could be
// NATed to another backend. So the trace stops at the first answer from the
// target.
//
// Every SYN draws from the SYN probe's process-wide packet budget.
package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultMaxHops    = 16
	DefaultQueries    = 3
	DefaultHopTimeout = time.Second
	DefaultGap        = 3
)

// Config configures a trace.
type Config struct {
	// NetNS is the namespace to trace from (empty: this one).
	NetNS string
	// Source, when valid, is the source address; else the route's.
	Source netip.Addr
	// MaxHops is the highest TTL tried (0: DefaultMaxHops).
	MaxHops int
	// Queries is the number of SYNs per hop (0: DefaultQueries).
	Queries int
	// HopTimeout is how long each SYN waits for its answer (0:
	// DefaultHopTimeout).
	HopTimeout time.Duration
	// Gap ends the trace after that many hops in a row answered nothing
	// (0: DefaultGap): "silence after hop N".
	Gap int
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxHops < 0 || c.MaxHops > 64 {
		errs = append(errs, fmt.Errorf("max hops %d: want 1-64", c.MaxHops))
	}
	if c.Queries < 0 || c.Queries > 10 {
		errs = append(errs, fmt.Errorf("queries %d per hop: want 1-10", c.Queries))
	}
	if c.HopTimeout < 0 {
		errs = append(errs, fmt.Errorf("hop timeout %s must not be negative", c.HopTimeout))
	}
	if c.Gap < 0 {
		errs = append(errs, fmt.Errorf("gap %d must not be negative", c.Gap))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.MaxHops == 0 {
		c.MaxHops = DefaultMaxHops
	}
	if c.Queries == 0 {
		c.Queries = DefaultQueries
	}
	if c.HopTimeout == 0 {
		c.HopTimeout = DefaultHopTimeout
	}
	if c.Gap == 0 {
		c.Gap = DefaultGap
	}
	return c
}

// MaxDuration bounds how long a trace with c can take (every SYN of every
// hop unanswered).
func (c Config) MaxDuration() time.Duration {
	c = c.withDefaults()
	return time.Duration(c.MaxHops*c.Queries) * c.HopTimeout
}

// End is how a trace ended.
type End string

// The ends of a trace.
const (
	EndSynAck      End = "syn_ack"     // the target answered: something listens
	EndRST         End = "rst"         // the target (or a box for it) refused
	EndUnreachable End = "unreachable" // an ICMP destination-unreachable quoting our SYN
	EndSilence     End = "silence"     // nothing from the target; hops after the last responder silent
	EndLostReply   End = "lost_reply"  // the target answers (a RST to a later SYN proves it holds the flow half-open) but its SYN/ACKs never arrive
	EndBudget      End = "budget"      // the packet budget had no packet for a SYN: cut short (prober fault)
	EndError       End = "error"       // a local error (permission, send)
)

// Hop is what one TTL drew.
type Hop struct {
	Hop int
	// Address is the responder (ICMP sender, or the target's address for
	// its SYN/ACK or RST); invalid when nothing answered.
	Address netip.Addr
	// Others lists further responders at this TTL (a path that changed,
	// or load balancing the flow identifier did not pin).
	Others []netip.Addr
	// RTTs of the answered queries.
	RTTs     []time.Duration
	Sent     int
	Answered int
	// Reply is what answered: "time-exceeded", "SYN/ACK", "RST" or an ICMP
	// unreachable's name.
	Reply string
	// Foreign counts answers from (or quoting) another address than the
	// target: a reply that was not reverse-NATed.
	Foreign int
}

// RTT is the hop's median answered RTT (0 when none).
func (h Hop) RTT() time.Duration {
	if len(h.RTTs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), h.RTTs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// Loss is the share of the hop's SYNs that drew no answer, 0-1.
func (h Hop) Loss() float64 {
	if h.Sent == 0 {
		return 0
	}
	return float64(h.Sent-h.Answered) / float64(h.Sent)
}

// NAT is the conntrack entry of the traced flow found in a namespace on
// this machine (with --explain): which backend the DNAT chose and how far
// the handshake got there.
type NAT struct {
	// Where is the namespace's name.
	Where string `json:"netns"`
	// Backend is the reply tuple's source: where the node sends the SYNs.
	Backend netip.AddrPort `json:"backend"`
	// State is the TCP conntrack state: SYN_SENT (no answer seen),
	// SYN_RECV (the backend's SYN/ACK reached the node), ESTABLISHED,
	// CLOSE (our kernel's RST to a SYN/ACK passed)…
	State string `json:"state"`
	// Replied: the entry saw a packet in the reply direction.
	Replied bool `json:"replied"`
}

// DNAT reports whether the entry translates the destination.
func (n NAT) DNAT(dst netip.AddrPort) bool { return n.Backend.IsValid() && n.Backend != dst }

// Trace is the result of one trace.
type Trace struct {
	Target   string
	Remote   netip.AddrPort
	Local    netip.AddrPort
	Start    time.Time
	Duration time.Duration
	Hops     []Hop
	End      End
	// EndHop is the TTL whose SYN drew the end (SYN/ACK, RST, unreachable);
	// for silence, the last hop that answered (0: none).
	EndHop int
	// EndFrom is who sent the end: the target for SYN/ACK or RST, the
	// router for an ICMP unreachable.
	EndFrom netip.Addr
	// EndDetail names the ICMP unreachable ("admin-prohibited").
	EndDetail string
	// NAT is the flow's conntrack entry on this machine, with --explain.
	NAT *NAT
	// NATNote says why no entry is shown, with --explain.
	NATNote  string
	Verdict  string
	Evidence []string
	Err      error
}

// Path returns the responders hop by hop ("" for a silent hop), for
// path-change detection.
func (t *Trace) Path() []string {
	out := make([]string, len(t.Hops))
	for i, h := range t.Hops {
		if h.Address.IsValid() {
			out[i] = h.Address.String()
		}
	}
	return out
}

// Reached is the number of hops to the last responder: the target's hop
// when it answered.
func (t *Trace) Reached() int {
	n := 0
	for _, h := range t.Hops {
		if h.Answered > 0 {
			n = h.Hop
		}
	}
	return n
}

// lastTimeExceeded returns the last hop that answered time-exceeded, or nil.
func (t *Trace) lastTimeExceeded() *Hop {
	for i := len(t.Hops) - 1; i >= 0; i-- {
		if t.Hops[i].Reply == "time-exceeded" {
			return &t.Hops[i]
		}
	}
	return nil
}

// lastAnswered returns the last hop that answered, or nil.
func (t *Trace) lastAnswered() *Hop {
	for i := len(t.Hops) - 1; i >= 0; i-- {
		if t.Hops[i].Answered > 0 {
			return &t.Hops[i]
		}
	}
	return nil
}

// verdict writes t.Verdict from the hops, the end and the NAT entry. It
// reads like the evidence lines: where the SYNs reach, where they die,
// what the target did.
func (t *Trace) verdict() string {
	last := t.lastAnswered()
	var b strings.Builder
	reach := func(h *Hop) {
		fmt.Fprintf(&b, "SYNs reach %s (hop %d", h.Address, h.Hop)
		switch {
		case h.Address == t.Remote.Addr() && h.Reply == "time-exceeded" && t.NAT != nil && t.NAT.DNAT(t.Remote):
			fmt.Fprintf(&b, ": %s, whose ICMP errors carry the address it NATs", t.NAT.Where)
		case h.Address == t.Remote.Addr() && h.Reply == "time-exceeded":
			b.WriteString(": a NAT before the target, answering with the target's address")
		}
		b.WriteString(")")
	}
	nat := t.NAT
	switch t.End {
	case EndSynAck, EndRST:
		what := "SYN/ACK"
		if t.End == EndRST {
			what = "RST"
		}
		fmt.Fprintf(&b, "%s from %s at hop %d", what, t.Remote, t.EndHop)
		if via := t.routers(t.EndHop); via != "" {
			b.WriteString(", via " + via)
		}
		if nat != nil && nat.DNAT(t.Remote) {
			fmt.Fprintf(&b, "; %s DNATs it to %s (conntrack %s)", nat.Where, nat.Backend, nat.State)
		}
		if t.End == EndRST {
			b.WriteString(": refused")
		}
	case EndUnreachable:
		fmt.Fprintf(&b, "ICMP %s from %s at hop %d: the SYN is rejected there", t.EndDetail, t.EndFrom, t.EndHop)
		if via := t.routers(t.EndHop); via != "" {
			b.WriteString(", after " + via)
		}
	case EndSilence:
		tried := len(t.Hops)
		switch {
		case nat != nil && nat.Replied:
			// The node saw the backend's answer: the SYN got there, the
			// SYN/ACK died on its way back from the node to us.
			if last != nil {
				reach(last)
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "backend %s answers (conntrack %s at %s: its SYN/ACK reached the node) but nothing comes back: the reply is lost between %s and us", nat.Backend, nat.State, nat.Where, nat.Where)
		case nat != nil && nat.DNAT(t.Remote):
			if last != nil {
				reach(last)
				b.WriteString(" and die after it; ")
			}
			fmt.Fprintf(&b, "%s DNATs them to %s (conntrack %s: no answer seen) and the backend never answers: they die between the node and the backend", nat.Where, nat.Backend, nat.State)
		case last == nil:
			fmt.Fprintf(&b, "nothing from hop 1 to %d: the SYNs die before the first hop (or it sends no ICMP time-exceeded); the target never answered", tried)
			if t.NATNote != "" {
				b.WriteString("; " + t.NATNote)
			}
		default:
			reach(last)
			fmt.Fprintf(&b, " and die after it: nothing from hop %d", last.Hop+1)
			if tried > last.Hop+1 {
				fmt.Fprintf(&b, " to %d", tried)
			}
			b.WriteString("; the target never answered")
		}
	case EndLostReply:
		who := fmt.Sprintf("the target %s", t.Remote)
		if nat != nil && nat.DNAT(t.Remote) {
			who = fmt.Sprintf("backend %s (behind %s, DNAT at %s)", nat.Backend, t.Remote, nat.Where)
		}
		if last := t.lastTimeExceeded(); last != nil {
			reach(last)
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s answers at hop %d (it RSTs a later SYN of the flow it holds half-open) but no SYN/ACK comes back: the reply is lost on the way back", who, t.EndHop)
		if nat != nil && nat.Replied {
			fmt.Fprintf(&b, "; %s saw the backend's answer (conntrack %s), so it is lost between %s and us", nat.Where, nat.State, nat.Where)
		}
	case EndBudget:
		fmt.Fprintf(&b, "trace cut short at hop %d: the SYN budget had no packet for it (a prober limit, not the network's)", len(t.Hops))
		if last != nil {
			b.WriteString("; ")
			reach(last)
		}
	case EndError:
		fmt.Fprintf(&b, "trace failed: %v", t.Err)
	}
	return b.String()
}

// routers lists the hops before hop n that answered time-exceeded, "10.0.0.1
// (hop 1), 10.0.0.2 (hop 2)"; silent hops as "* (hop 2)".
func (t *Trace) routers(n int) string {
	var parts []string
	for _, h := range t.Hops {
		if h.Hop >= n {
			break
		}
		switch {
		case h.Address == t.Remote.Addr() && t.NAT != nil && t.NAT.DNAT(t.Remote):
			parts = append(parts, fmt.Sprintf("%s (hop %d: %s, whose ICMP errors carry the address it NATs)", h.Address, h.Hop, t.NAT.Where))
		case h.Address == t.Remote.Addr():
			parts = append(parts, fmt.Sprintf("%s (hop %d: a NAT before the target, answering with the target's address)", h.Address, h.Hop))
		case h.Address.IsValid():
			parts = append(parts, fmt.Sprintf("%s (hop %d)", h.Address, h.Hop))
		default:
			parts = append(parts, fmt.Sprintf("* (hop %d)", h.Hop))
		}
	}
	return strings.Join(parts, ", ")
}

// Lines renders the trace as text: one line per hop, then the verdict.
func (t *Trace) Lines() []string {
	out := []string{fmt.Sprintf("trace to %s from %s, flow %s → %s:", t.Target, t.Local.Addr(), t.Local, t.Remote)}
	for _, h := range t.Hops {
		addr := "*"
		if h.Address.IsValid() {
			addr = h.Address.String()
		}
		for _, o := range h.Others {
			addr += "," + o.String()
		}
		rtt := "-"
		if h.Answered > 0 {
			rtt = fmtRTT(h.RTT())
		}
		reply := h.Reply
		if reply == "" {
			reply = "no answer"
		}
		out = append(out, fmt.Sprintf("%3d  %-18s %9s  %d/%d answered  %s", h.Hop, addr, rtt, h.Answered, h.Sent, reply))
	}
	out = append(out, "verdict: "+t.Verdict)
	for _, e := range t.Evidence {
		out = append(out, "  "+e)
	}
	return out
}

func fmtRTT(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// JSON is the machine-readable trace (`probe trace -o json`).
type JSON struct {
	Target          string    `json:"target"`
	Remote          string    `json:"remote"`
	Local           string    `json:"local,omitempty"`
	Start           string    `json:"start"`
	DurationSeconds float64   `json:"duration_seconds"`
	Hops            []HopJSON `json:"hops"`
	End             End       `json:"end"`
	EndHop          int       `json:"end_hop"`
	EndFrom         string    `json:"end_from,omitempty"`
	EndDetail       string    `json:"end_detail,omitempty"`
	NAT             *NAT      `json:"nat,omitempty"`
	Verdict         string    `json:"verdict"`
	Evidence        []string  `json:"evidence,omitempty"`
	Error           string    `json:"error,omitempty"`
}

// HopJSON is one hop in JSON.
type HopJSON struct {
	Hop        int      `json:"hop"`
	Address    *string  `json:"address"`
	Others     []string `json:"others,omitempty"`
	RTTSeconds *float64 `json:"rtt_seconds"`
	Sent       int      `json:"sent"`
	Answered   int      `json:"answered"`
	Reply      string   `json:"reply,omitempty"`
}

// JSON returns t for encoding.
func (t *Trace) JSON() JSON {
	j := JSON{
		Target: t.Target, Remote: t.Remote.String(), Start: t.Start.UTC().Format(time.RFC3339Nano),
		DurationSeconds: t.Duration.Seconds(), Hops: []HopJSON{}, End: t.End, EndHop: t.EndHop,
		EndDetail: t.EndDetail, NAT: t.NAT, Verdict: t.Verdict, Evidence: t.Evidence,
	}
	if t.Local.IsValid() {
		j.Local = t.Local.String()
	}
	if t.EndFrom.IsValid() {
		j.EndFrom = t.EndFrom.String()
	}
	if t.Err != nil {
		j.Error = t.Err.Error()
	}
	for _, h := range t.Hops {
		hj := HopJSON{Hop: h.Hop, Sent: h.Sent, Answered: h.Answered, Reply: h.Reply}
		if h.Address.IsValid() {
			a := h.Address.String()
			hj.Address = &a
		}
		for _, o := range h.Others {
			hj.Others = append(hj.Others, o.String())
		}
		if h.Answered > 0 {
			s := h.RTT().Seconds()
			hj.RTTSeconds = &s
		}
		j.Hops = append(j.Hops, hj)
	}
	return j
}

// Explain looks up the traced flow's conntrack entry in places (the
// namespaces on this machine) and rewrites the verdict with it: which
// backend a Service VIP's DNAT chose, and whether the node saw the backend
// answer.
func (t *Trace) Explain(places []Place) {
	if !t.Local.IsValid() || t.End == EndError {
		return
	}
	t.NAT, t.NATNote = FindNAT(places, t.Local, t.Remote)
	t.Verdict = t.verdict()
}
