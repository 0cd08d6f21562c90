package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a fault.
type FaultKind string

// The faults. Packet faults apply to TCP flows the pod opens through the
// node (to the VIP, a backend or the db), optionally only those to Fault.Dst;
// each is one nftables rule in the node namespace's "fault" table.
const (
	// SYNDrop drops every SYN from the pod (raw prerouting, before
	// conntrack): SYNs are retransmitted, nothing comes back.
	SYNDrop FaultKind = "syn-drop"
	// FirstSYNDrop drops only the first SYN of each connection: a dynamic
	// set keyed by source address and port remembers it, so the
	// retransmitted SYN (same port) passes. The set forgets a port after 2
	// minutes: a new connection that reuses the port sooner is not dropped.
	FirstSYNDrop FaultKind = "first-syn-drop"
	// SYNACKDrop drops the server's SYN/ACK on its way back to the pod.
	SYNACKDrop FaultKind = "synack-drop"
	// Reset answers the pod's SYN with a RST (nft reject with tcp reset).
	Reset FaultKind = "reset"
	// HostUnreachable, AdminProhibited, NetUnreachable, PortUnreachable
	// answer the pod's SYN with that ICMP destination-unreachable message.
	HostUnreachable FaultKind = "host-unreachable"
	AdminProhibited FaultKind = "admin-prohibited"
	NetUnreachable  FaultKind = "net-unreachable"
	PortUnreachable FaultKind = "port-unreachable"
	// ResetEstablished answers every pod→server packet after the first
	// Packets (default 2: the SYN and the handshake's ACK) with a RST: the
	// pod's first data segment resets the established connection; the
	// server never learns.
	ResetEstablished FaultKind = "reset-established"
	// DropAfter drops every pod→server packet after the first Packets
	// (default 2) of each flow: the handshake completes, the request never
	// arrives.
	DropAfter FaultKind = "drop-after"
	// Loss drops Percent % of the flow's packets, both directions, at random.
	Loss FaultKind = "loss"
	// ConntrackDelete deletes the node's conntrack entries of pod flows (to
	// Dst when set) once: the next packet of such a flow is treated as new
	// (stale NAT).
	ConntrackDelete FaultKind = "conntrack-delete"
	// ConntrackTimeout sets the node's established-TCP conntrack timeout to
	// Timeout. The kernel applies it when an entry next sees a packet.
	ConntrackTimeout FaultKind = "conntrack-timeout"
	// FirstSYNACKDrop drops only the first SYN/ACK of each connection on
	// its way back to the pod (a set keyed by the pod's address and port,
	// like FirstSYNDrop): the client retransmits its SYN, the server
	// answers again and that SYN/ACK passes.
	FirstSYNACKDrop FaultKind = "first-synack-drop"
	// PAWS makes the server at Dst (default: the db) drop SYNs whose TCP
	// timestamp went backwards per source address, as tcp_tw_recycle did:
	// an NFQUEUE rule in the server's namespace hands its SYNs to a PAWS
	// emulator (package paws), which the caller runs (`probe lab fault
	// paws` starts one). Without a running emulator the rule lets
	// everything through.
	PAWS FaultKind = "paws"
)

// FaultKinds lists every fault with a one-line description, for `probe lab`.
var FaultKinds = []struct {
	Kind FaultKind
	Doc  string
}{
	{SYNDrop, "drop every SYN from the pod (blackhole)"},
	{FirstSYNDrop, "drop only the first SYN of each connection"},
	{SYNACKDrop, "drop the SYN/ACK on its way back to the pod"},
	{Reset, "answer the SYN with a TCP RST"},
	{HostUnreachable, "answer the SYN with ICMP host-unreachable"},
	{AdminProhibited, "answer the SYN with ICMP admin-prohibited"},
	{NetUnreachable, "answer the SYN with ICMP net-unreachable"},
	{PortUnreachable, "answer the SYN with ICMP port-unreachable"},
	{ResetEstablished, "RST the pod's packets after the first --packets (default 2) of a flow"},
	{DropAfter, "drop the pod's packets after the first --packets (default 2) of a flow"},
	{Loss, "drop --percent of the packets at random"},
	{ConntrackDelete, "delete the node's conntrack entries of pod flows (once)"},
	{ConntrackTimeout, "set the node's established conntrack timeout to --timeout"},
	{FirstSYNACKDrop, "drop only the first SYN/ACK of each connection on its way back"},
	{PAWS, "the server at --dst (default the db) drops SYNs whose TCP timestamp went backwards (per-host PAWS, as tcp_tw_recycle did)"},
}

// ParseFaultKind checks a fault name.
func ParseFaultKind(s string) (FaultKind, error) {
	for _, k := range FaultKinds {
		if string(k.Kind) == s {
			return k.Kind, nil
		}
	}
	names := make([]string, len(FaultKinds))
	for i, k := range FaultKinds {
		names[i] = string(k.Kind)
	}
	return "", fmt.Errorf("lab: unknown fault %q (want one of %s)", s, strings.Join(names, ", "))
}

// Fault is one fault to inject.
type Fault struct {
	Kind FaultKind
	// Dst, when its address is valid, limits the fault to flows whose
	// original destination (before DNAT: the VIP itself) is this address,
	// and to this port when the port is not 0.
	Dst netip.AddrPort
	// Packets is N for ResetEstablished and DropAfter (0: 2).
	Packets int
	// Percent is the loss rate for Loss, 1-100.
	Percent int
	// Timeout is the established conntrack timeout for ConntrackTimeout
	// (whole seconds, at least 1s).
	Timeout time.Duration
}

func (f Fault) String() string {
	s := string(f.Kind)
	if f.Dst.Addr().IsValid() {
		if f.Dst.Port() != 0 {
			s += " to " + f.Dst.String()
		} else {
			s += " to " + f.Dst.Addr().String()
		}
	}
	switch f.Kind {
	case ResetEstablished, DropAfter:
		s += fmt.Sprintf(" after %d packets", f.packets())
	case Loss:
		s += fmt.Sprintf(" %d%%", f.Percent)
	case ConntrackTimeout:
		s += " " + f.Timeout.String()
	}
	return s
}

// Validate checks the fault's parameters.
func (f Fault) Validate() error {
	if _, err := ParseFaultKind(string(f.Kind)); err != nil {
		return err
	}
	var errs []error
	if a := f.Dst.Addr(); a.IsValid() && a.Is4In6() {
		errs = append(errs, fmt.Errorf("fault %s: dst %s: give the IPv4 address itself, not IPv4-mapped", f.Kind, f.Dst))
	}
	if f.Packets < 0 {
		errs = append(errs, fmt.Errorf("fault %s: packets %d must not be negative", f.Kind, f.Packets))
	}
	if f.Kind == Loss && (f.Percent < 1 || f.Percent > 100) {
		errs = append(errs, fmt.Errorf("fault %s: percent %d must be 1-100", f.Kind, f.Percent))
	}
	if f.Kind == ConntrackTimeout && f.Timeout < time.Second {
		errs = append(errs, fmt.Errorf("fault %s: timeout %s must be at least 1s", f.Kind, f.Timeout))
	}
	return errors.Join(errs...)
}

func (f Fault) packets() int {
	if f.Packets == 0 {
		return 2
	}
	return f.Packets
}

// faultTable is the empty fault table: a raw prerouting chain (before
// conntrack and DNAT: sees the VIP as destination, creates no conntrack
// entry for what it drops) and a forward chain (after DNAT: matches flows by
// their conntrack original tuple, both directions). Re-declaring it first
// and deleting it makes the script work whether or not the table exists, in
// one atomic transaction. faultTable6 is its IPv6 twin.
var (
	faultTable  = faultTableFor("ip", "fault", "ipv4_addr")
	faultTable6 = faultTableFor("ip6", "fault6", "ipv6_addr")
)

func faultTableFor(family, name, addrType string) string {
	return fmt.Sprintf(`table %[1]s %[2]s {}
delete table %[1]s %[2]s
table %[1]s %[2]s {
	set first_syn {
		type %[3]s . inet_service
		flags dynamic,timeout
		timeout 2m
	}
	set first_synack {
		type %[3]s . inet_service
		flags dynamic,timeout
		timeout 2m
	}
	chain raw_prerouting {
		type filter hook prerouting priority raw; policy accept;
	}
	chain filter_forward {
		type filter hook forward priority filter; policy accept;
	}
}
`, family, name, addrType)
}

// Rule renders the nftables commands that inject f into lab l, one line per
// family it applies to (a Dst picks its family; none: both), or "" for
// faults that are not node rules (conntrack actions, PAWS).
func (f Fault) Rule(l *Lab) (string, error) {
	if err := f.Validate(); err != nil {
		return "", err
	}
	var lines []string
	for _, v6 := range []bool{false, true} {
		if a := f.Dst.Addr(); a.IsValid() && a.Is6() != v6 {
			continue
		}
		r := f.rule(l, v6)
		if r == "" {
			return "", nil
		}
		lines = append(lines, r)
	}
	return strings.Join(lines, "\n"), nil
}

func (f Fault) rule(l *Lab, v6 bool) string {
	fam, table, ip, pod, icmp := "ip", "fault", "ip", l.PodIP, "icmp"
	if v6 {
		fam, table, ip, pod, icmp = "ip6", "fault6", "ip6", l.PodIP6, "icmpv6"
	}
	// raw: pod → anywhere, before DNAT.
	raw := fmt.Sprintf("add rule %s %s raw_prerouting iifname %q meta l4proto tcp", fam, table, podLinkName)
	// forward: flows the pod opened, either direction, after DNAT.
	fwd := fmt.Sprintf("add rule %s %s filter_forward ct original %s saddr %s meta l4proto tcp", fam, table, ip, pod)
	if a := f.Dst.Addr(); a.IsValid() {
		raw += " " + ip + " daddr " + a.String()
		fwd += " ct original " + ip + " daddr " + a.String()
		if p := f.Dst.Port(); p != 0 {
			raw += " tcp dport " + strconv.Itoa(int(p))
			fwd += " ct original proto-dst " + strconv.Itoa(int(p))
		}
	}
	const syn = " tcp flags & (syn|ack) == syn"
	const fromPod = " ct direction original"
	switch f.Kind {
	case SYNDrop:
		return raw + syn + " counter drop"
	case FirstSYNDrop:
		return raw + syn + " " + ip + " saddr . tcp sport != @first_syn add @first_syn { " + ip + " saddr . tcp sport } counter drop"
	case SYNACKDrop:
		return fwd + " ct direction reply tcp flags & (syn|ack) == syn|ack counter drop"
	case FirstSYNACKDrop:
		return fwd + " ct direction reply tcp flags & (syn|ack) == syn|ack " + ip + " daddr . tcp dport != @first_synack add @first_synack { " + ip + " daddr . tcp dport } counter drop"
	case Reset:
		return fwd + fromPod + syn + " counter reject with tcp reset"
	case HostUnreachable, AdminProhibited, NetUnreachable, PortUnreachable:
		return fwd + fromPod + syn + " counter reject with " + icmp + " type " + icmpType(f.Kind, v6)
	case ResetEstablished:
		return fwd + fromPod + fmt.Sprintf(" ct original packets > %d counter reject with tcp reset", f.packets())
	case DropAfter:
		return fwd + fromPod + fmt.Sprintf(" ct original packets > %d counter drop", f.packets())
	case Loss:
		// numgen yields 0-99; "< 100" would not parse, "<= 99" does.
		return fwd + fmt.Sprintf(" numgen random mod 100 <= %d counter drop", f.Percent-1)
	}
	return ""
}

// icmpType is the ICMP (or ICMPv6) destination-unreachable type nft's
// reject sends for k. The ICMPv6 twins are those the kernel maps to the same
// errno as the IPv4 message (RFC 4443: address unreachable is
// EHOSTUNREACH, no route ENETUNREACH, port unreachable ECONNREFUSED);
// administratively prohibited keeps its name.
func icmpType(k FaultKind, v6 bool) string {
	if !v6 {
		return string(k)
	}
	switch k {
	case HostUnreachable:
		return "addr-unreachable"
	case NetUnreachable:
		return "no-route"
	}
	return string(k)
}

// Fault injects f. Rules add up: several faults may be active at once.
func (l *Lab) Fault(ctx context.Context, f Fault) error {
	rule, err := f.Rule(l)
	if err != nil {
		return err
	}
	switch f.Kind {
	case ConntrackDelete:
		_, err := l.ConntrackDelete(ctx, f.Dst)
		return err
	case ConntrackTimeout:
		secs := int(f.Timeout.Round(time.Second).Seconds())
		return l.Sysctl(l.Router, "net.netfilter.nf_conntrack_tcp_timeout_established", strconv.Itoa(secs))
	case PAWS:
		return l.pawsRule(ctx, f.Dst)
	}
	if err := l.nft(ctx, rule+"\n"); err != nil {
		return fmt.Errorf("lab: fault %s: %w", f, err)
	}
	return nil
}

// ClearFaults removes every injected fault: the fault table is recreated
// empty (forgetting first-SYN state) and the conntrack timeout restored.
func (l *Lab) ClearFaults(ctx context.Context) error {
	if err := l.nft(ctx, faultTable+faultTable6); err != nil {
		return fmt.Errorf("lab: clear faults: %w", err)
	}
	if err := l.clearPAWS(ctx); err != nil {
		return err
	}
	return l.Sysctl(l.Router, "net.netfilter.nf_conntrack_tcp_timeout_established",
		strconv.Itoa(int(DefaultEstablishedTimeout.Seconds())))
}

// ConntrackDelete deletes the node's conntrack entries of TCP flows the pod
// opened, only those to dst when its address is valid (and port, when not
// 0). It returns how many it deleted. It needs the conntrack tool.
func (l *Lab) ConntrackDelete(ctx context.Context, dst netip.AddrPort) (int, error) {
	n := 0
	for _, v6 := range []bool{false, true} {
		if a := dst.Addr(); a.IsValid() && a.Is6() != v6 {
			continue
		}
		m, err := l.conntrackDelete(ctx, dst, v6)
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

func (l *Lab) conntrackDelete(ctx context.Context, dst netip.AddrPort, v6 bool) (int, error) {
	args := []string{"conntrack", "-D", "-p", "tcp", "--orig-src", l.PodIP.String()}
	if v6 {
		args = []string{"conntrack", "-D", "-f", "ipv6", "-p", "tcp", "--orig-src", l.PodIP6.String()}
	}
	if dst.Addr().IsValid() {
		args = append(args, "--orig-dst", dst.Addr().String())
		if dst.Port() != 0 {
			args = append(args, "--orig-port-dst", strconv.Itoa(int(dst.Port())))
		}
	}
	out, err := l.Exec(ctx, l.Router, args...)
	n := deletedCount(out)
	// conntrack exits 1 when nothing matched; that is not a failure here.
	if err != nil && n < 0 {
		return 0, fmt.Errorf("lab: conntrack delete (needs the conntrack package): %w", err)
	}
	return max(n, 0), nil
}

// deletedCount finds "N flow entries have been deleted." in conntrack's
// output; -1 when absent.
func deletedCount(out string) int {
	for line := range strings.SplitSeq(out, "\n") {
		if i := strings.Index(line, " flow entries have been deleted"); i > 0 {
			f := strings.Fields(line[:i])
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[len(f)-1]); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// Conntrack lists the node's conntrack entries of TCP flows the pod opened,
// IPv4 and IPv6 (conntrack -L output, one entry per line, sorted).
func (l *Lab) Conntrack(ctx context.Context) ([]string, error) {
	var lines []string
	for _, args := range [][]string{
		{"conntrack", "-L", "-p", "tcp", "--orig-src", l.PodIP.String()},
		{"conntrack", "-L", "-f", "ipv6", "-p", "tcp", "--orig-src", l.PodIP6.String()},
	} {
		out, err := l.Exec(ctx, l.Router, args...)
		if err != nil {
			return nil, fmt.Errorf("lab: conntrack list (needs the conntrack package): %w", err)
		}
		for line := range strings.SplitSeq(out, "\n") {
			if strings.HasPrefix(line, "tcp") {
				lines = append(lines, line)
			}
		}
	}
	sort.Strings(lines)
	return lines, nil
}
