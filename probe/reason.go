package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reason classifies the outcome of an attempt. The set is closed: every value
// is in Reasons, documented in the README, and pre-created as a metric series.
type Reason string

// The reasons. Extend only with a reason a user can act on.
const (
	ReasonOK               Reason = "ok"
	ReasonSynRetransmitted Reason = "syn_retransmitted"
	ReasonSynTimeout       Reason = "syn_timeout"
	ReasonPAWSRejected     Reason = "paws_rejected"
	ReasonRefused          Reason = "refused"
	ReasonUnreachable      Reason = "unreachable"
	ReasonDNSError         Reason = "dns_error"
	ReasonLocalError       Reason = "local_error"
	ReasonPermission       Reason = "permission"
	ReasonNetNSGone        Reason = "netns_gone"
	ReasonReset            Reason = "reset"
	ReasonPeerClosed       Reason = "peer_closed"
	ReasonReplyTimeout     Reason = "reply_timeout"
	ReasonAppTimeout       Reason = "app_timeout"
	ReasonAppError         Reason = "app_error"
	ReasonStaleSession     Reason = "stale_session"
	ReasonKeepaliveTimeout Reason = "keepalive_timeout"
	ReasonCanceled         Reason = "canceled"
	ReasonOther            Reason = "other"
	ReasonProberStalled    Reason = "prober_stalled"
	ReasonProberBudget     Reason = "prober_budget"
)

// Class says who an outcome is about: the target and its path (ok, degraded,
// failure) or the prober itself. A prober fault is never a target failure:
// it is counted on its own (connprobe_prober_faults_total), never in the
// results, failures or success series an SLI is built on, and never counts
// as "blocked as expected".
type Class string

// The classes, in the order a status page orders them.
const (
	ClassOK       Class = "ok"       // the target did what was asked
	ClassDegraded Class = "degraded" // it did, the slow way (SYN retransmitted)
	ClassFailure  Class = "failure"  // the target or the path failed
	ClassProber   Class = "prober"   // the prober could not make the attempt properly
)

// ReasonDoc says what a reason means and what to check next.
type ReasonDoc struct {
	Reason  Reason
	Class   Class
	Meaning string // what happened (the README's reasons table is rendered from these: ReasonTable)
	Check   string // what to look at next
}

// Reasons is the closed list, in the order of the README's table.
var Reasons = []ReasonDoc{
	{ReasonOK, ClassOK, "Everything asked happened (handshake; reply when configured), no SYN retransmission.", "Nothing."},
	{ReasonSynRetransmitted, ClassDegraded, "The handshake completed only after ≥1 SYN retransmission: a connect that took 1 s, 3 s or 85 s.", "Loss or drops on the SYN or SYN/ACK path, a full accept queue (ListenDrops), PAWS, conntrack insert failures."},
	{ReasonSynTimeout, ClassFailure, "SYNs sent, nothing came back: no SYN/ACK, no RST, no ICMP.", "A silently dropping firewall, SYN/ACK lost on the way back, a dead backend behind a VIP, PAWS drops on the server (`netstat -s`: SYNs to LISTEN sockets dropped)."},
	{ReasonPAWSRejected, ClassFailure, "(SYN probe, `--paws`) a SYN with a fresh TCP timestamp was answered, one with an older timestamp from the same source was not: per-host PAWS, as with `tcp_tw_recycle` behind NAT.", "The server's `tcp_tw_recycle`/timestamps settings and `PAWS*` counters; SNAT in front of many clients."},
	{ReasonRefused, ClassFailure, "RST in answer to the SYN (nothing listens, or a reject rule); ICMP port-unreachable too.", "Is the service listening on that address and port? A reject rule in the path?"},
	{ReasonUnreachable, ClassFailure, "An ICMP error (host, net or admin-prohibited unreachable) or a missing route; evidence names the errno, ICMP type/code and sender.", "Routing tables, reject rules, NetworkPolicy."},
	{ReasonDNSError, ClassFailure, "The name did not resolve; the evidence names the DNS server that was asked.", "That server (`--resolver` / `resolver:`, else `/etc/resolv.conf`), the name."},
	{ReasonLocalError, ClassProber, "The local side could not try: source address not available, ephemeral ports exhausted, out of fds or buffers. Counted as `connprobe_prober_faults_total{cause=\"local_resource\"}`, never as the target's failure.", "`--source`, `ip_local_port_range`, `ulimit -n`, conntrack table full."},
	{ReasonPermission, ClassProber, "The prober lacks a capability; evidence names it. Counted as `connprobe_prober_faults_total{cause=\"permission\"}`; `probe serve` warns at start and `/-/ready` is 503.", "Run as root or grant it (deploy/ grants NET_RAW, NET_ADMIN, SYS_ADMIN)."},
	{ReasonNetNSGone, ClassFailure, "The namespace to probe from does not exist (any more): the pod went away.", "Nothing if on purpose; the target is dropped."},
	{ReasonReset, ClassFailure, "An RST in answer to something we sent (a request, a keep-alive probe) on an established connection, or a write hit a torn-down connection (broken pipe).", "Server restarts, a stale NAT entry re-balanced to another backend, middlebox timeouts."},
	{ReasonPeerClosed, ClassFailure, "The peer ended the connection on its own where it should have stayed open: a FIN, or an RST that answers nothing we sent (an abortive close, as MariaDB's `wait_timeout`); for idle and keep-alive probes, at which idle time. Same rule for both kinds.", "The server's idle timeout (`wait_timeout`, keep-alive settings), proxies closing idle connections."},
	{ReasonKeepaliveTimeout, ClassFailure, "(keep-alive probes) The kernel's keep-alive probes went unanswered and it gave up (ETIMEDOUT).", "A dead path or peer (host gone, live migration, blackholing middlebox); compare with conntrack/LB idle timeouts."},
	{ReasonReplyTimeout, ClassFailure, "Connected and sent, but the expected reply did not come in time.", "A hung server, a stale session eating the reply, `--expect` not matching."},
	{ReasonAppTimeout, ClassFailure, "(app probes) Connected, but no greeting or answer.", "A hung or overloaded server, a proxy with no backend, the wrong service on the port."},
	{ReasonAppError, ClassFailure, "(app probes) The server answered with an error; its words are in the evidence (`Too many connections`, `password authentication failed`, HTTP 503).", "The server's message: connection limits, credentials, health."},
	{ReasonStaleSession, ClassFailure, "(idle probes) A connection held idle broke while a fresh connection over the same path, opened at once, worked: a conntrack/IPVS/NAT session expired.", "Keep-alive or traffic more often than the path's session timeout, or raise the timeout (IPVS default 900 s)."},
	{ReasonCanceled, ClassProber, "Cut short by the prober itself (shutdown, Ctrl-C); not a network failure, not exported as a failure.", "Nothing."},
	{ReasonOther, ClassFailure, "No other reason fits; the evidence holds the error.", "Read the evidence; report it so it can get its own reason."},
	{ReasonProberStalled, ClassProber, "The prober itself was not running for part of the attempt (CPU throttling, a stopped process, a long pause); the attempt is discarded, not blamed on the target.", "The agent's CPU limit and throttling, node load; see [When the prober itself is the problem](#when-the-prober-itself-is-the-problem)."},
	{ReasonProberBudget, ClassProber, "The attempt was skipped: the global SYN packet budget had no packet for it in time; counted as `cause=\"budget\"`.", "Raise `--syn-rate` / `global.syn_rate`, or probe fewer SYN targets or less often."},
}

// Success reports whether an attempt with this reason counts as a success:
// its class is ok or degraded.
func (r Reason) Success() bool {
	c := r.Class()
	return c == ClassOK || c == ClassDegraded
}

// Class returns the reason's class; an unknown reason is a failure.
func (r Reason) Class() Class {
	if c, ok := reasonClasses[r]; ok {
		return c
	}
	return ClassFailure
}

// reasonClasses is Reasons by reason: every result's verdict asks.
var reasonClasses = func() map[Reason]Class {
	m := make(map[Reason]Class, len(Reasons))
	for _, d := range Reasons {
		m[d.Reason] = d.Class
	}
	return m
}()

// ProberFault reports whether r is about the prober, not the target.
func (r Reason) ProberFault() bool { return r.Class() == ClassProber }

// ProberCause is the bounded cause label of a prober-fault reason
// (connprobe_prober_faults_total{cause}); "" for other reasons and for
// canceled, which is counted nowhere.
func (r Reason) ProberCause() string {
	switch r {
	case ReasonProberStalled:
		return "stalled"
	case ReasonProberBudget:
		return "budget"
	case ReasonPermission:
		return "permission"
	case ReasonLocalError:
		return "local_resource"
	}
	return ""
}

// Known reports whether r is in the closed list.
func (r Reason) Known() bool {
	for _, d := range Reasons {
		if d.Reason == r {
			return true
		}
	}
	return false
}

// ErrNetNSGone is returned (wrapped) when a network namespace to probe from
// does not exist or vanished.
var ErrNetNSGone = errors.New("network namespace gone")

// PermissionError is a missing capability, named.
type PermissionError struct {
	Capability string // e.g. "CAP_NET_RAW"
	Op         string // what needed it
	Err        error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s: permission denied (needs %s): %v", e.Op, e.Capability, e.Err)
}

func (e *PermissionError) Unwrap() error { return e.Err }

// PhaseError records in which phase an error happened; Classify uses it to
// tell a handshake timeout (syn_timeout) from a reply timeout.
type PhaseError struct {
	Phase Phase
	Err   error
}

func (e *PhaseError) Error() string { return string(e.Phase) + ": " + e.Err.Error() }
func (e *PhaseError) Unwrap() error { return e.Err }

// InPhase wraps err with the phase it happened in. A nil err stays nil.
func InPhase(p Phase, err error) error {
	if err == nil {
		return nil
	}
	return &PhaseError{Phase: p, Err: err}
}

// Classify maps an error to its reason. It knows errno-level causes and the
// phase the error was wrapped with (InPhase); a probe that saw more (an RST to
// its own SYN, a fresh control connection that worked) sets Reason itself.
func Classify(err error) Reason {
	if err == nil {
		return ReasonOK
	}
	var phase Phase
	var pe *PhaseError
	if errors.As(err, &pe) {
		phase = pe.Phase
	}
	var perm *PermissionError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, ErrNetNSGone):
		return ReasonNetNSGone
	case errors.As(err, &perm):
		return ReasonPermission
	case errors.As(err, &dnsErr):
		return ReasonDNSError
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN),
		errors.Is(err, syscall.ENONET):
		return ReasonUnreachable
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED):
		return ReasonReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonPeerClosed
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		if phase == PhaseSetup {
			return ReasonPermission
		}
		// connect() gets EPERM when a local netfilter rule drops the SYN.
		return ReasonUnreachable
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE),
		errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM),
		errors.Is(err, syscall.EAFNOSUPPORT), errors.Is(err, syscall.EINVAL):
		return ReasonLocalError
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT):
		switch phase {
		case PhaseHandshake:
			return ReasonSynTimeout
		case PhaseSend, PhaseReply, PhaseIdle:
			return ReasonReplyTimeout
		case PhaseApp:
			return ReasonAppTimeout
		case PhaseKeepalive:
			return ReasonKeepaliveTimeout
		}
	}
	return ReasonOther
}

// Describe renders err as one short line of evidence, naming the errno and
// what it means on the wire.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var perm *PermissionError
	if errors.As(err, &perm) {
		return fmt.Sprintf("%s needs %s (%v)", perm.Op, perm.Capability, perm.Err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "dns: " + dnsErr.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if hint, ok := errnoHints[errno]; ok {
			return fmt.Sprintf("%s (%s): %s", errnoName(errno), errno.Error(), hint)
		}
		return fmt.Sprintf("%s (%s)", errnoName(errno), errno.Error())
	}
	switch {
	case errors.Is(err, io.EOF):
		return "EOF: the peer sent FIN"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded: no answer in time"
	case errors.Is(err, context.Canceled):
		return "canceled by the prober"
	}
	return err.Error()
}

var errnoHints = map[syscall.Errno]string{
	syscall.EHOSTUNREACH: "ICMP host-unreachable or admin-prohibited, or no neighbour",
	syscall.ENETUNREACH:  "ICMP net-unreachable or no route",
	syscall.EHOSTDOWN:    "ICMP host-unknown",
	syscall.ECONNRESET:   "RST on the established connection",
	syscall.EPIPE:        "broken pipe: wrote to a connection the peer had torn down",
	syscall.ETIMEDOUT:    "kernel gave up: retransmissions unanswered",
	syscall.EADDRNOTAVAIL: "source address not configured here, or no free " +
		"ephemeral port",
	syscall.EPERM: "operation not permitted (a local firewall drop, or a missing capability)",
}

var errnoNames = map[syscall.Errno]string{
	syscall.ECONNREFUSED:  "ECONNREFUSED",
	syscall.EHOSTUNREACH:  "EHOSTUNREACH",
	syscall.ENETUNREACH:   "ENETUNREACH",
	syscall.EHOSTDOWN:     "EHOSTDOWN",
	syscall.ENETDOWN:      "ENETDOWN",
	syscall.ECONNRESET:    "ECONNRESET",
	syscall.ECONNABORTED:  "ECONNABORTED",
	syscall.EPIPE:         "EPIPE",
	syscall.ETIMEDOUT:     "ETIMEDOUT",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL",
	syscall.EADDRINUSE:    "EADDRINUSE",
	syscall.EPERM:         "EPERM",
	syscall.EACCES:        "EACCES",
	syscall.EMFILE:        "EMFILE",
	syscall.ENFILE:        "ENFILE",
	syscall.ENOBUFS:       "ENOBUFS",
	syscall.ENOENT:        "ENOENT",
	syscall.EINVAL:        "EINVAL",
}

func errnoName(e syscall.Errno) string {
	if n, ok := errnoNames[e]; ok {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

// ReasonTable renders Reasons as the README's Markdown table (a test keeps
// the README equal to it).
func ReasonTable() string {
	var b strings.Builder
	b.WriteString("| reason | success | what happened | what to check next |\n|---|---|---|---|\n")
	for _, d := range Reasons {
		success := "no"
		switch d.Class {
		case ClassOK:
			success = "yes"
		case ClassDegraded:
			success = "yes (degraded)"
		case ClassProber:
			success = "prober fault"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Reason, success, d.Meaning, d.Check)
	}
	return b.String()
}
