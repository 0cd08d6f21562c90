package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	Success bool   // whether an attempt with this reason counts as a success
	Meaning string // what happened on the wire
	Check   string // what to look at next
}

// Reasons is the closed list, in the order the README documents it.
var Reasons = []ReasonDoc{
	{ReasonOK, ClassOK, true, "The probe did everything asked (handshake; request and expected reply when configured) with no SYN retransmission.", "Nothing."},
	{ReasonSynRetransmitted, ClassDegraded, true, "The handshake completed, but only after at least one SYN was retransmitted: a degraded success (incidents 000/002: a connect that takes 1 s, 3 s or 85 s).", "Packet loss or drops on the SYN or SYN/ACK path, a full accept backlog (ListenDrops), PAWS, conntrack insert failures."},
	{ReasonSynTimeout, ClassFailure, false, "SYNs were sent and nothing came back: no SYN/ACK, no RST, no ICMP, until the timeout.", "A firewall silently dropping, SYN/ACK lost on the way back, a dead backend behind a VIP, PAWS drops on the server (netstat -s: SYNs to LISTEN sockets dropped)."},
	{ReasonPAWSRejected, ClassFailure, false, "A SYN with a fresh TCP timestamp was answered, but a SYN with an older TSval to the same destination got no answer: the target (or a box in front of it) drops SYNs whose timestamps go backwards per source host, PAWS as tcp_tw_recycle did (incident 004); clients behind one SNAT address then fail at random.", "Per-host PAWS on the server or a middlebox (tcp_tw_recycle on old kernels; netstat -s: passive connections rejected because of time stamp, SYNs to LISTEN sockets dropped); clients behind SNAT with per-connection random timestamp offsets."},
	{ReasonRefused, ClassFailure, false, "The target answered the SYN with a RST (nothing listens, or a firewall rejects with tcp reset); ICMP port-unreachable also ends here.", "Is the service running and listening on that address and port? Is a reject rule in the path?"},
	{ReasonUnreachable, ClassFailure, false, "An ICMP error (host, net or admin-prohibited unreachable) or a missing route ended the handshake; evidence names the errno and ICMP kind.", "Routing tables and firewall reject rules along the path; NetworkPolicy."},
	{ReasonDNSError, ClassFailure, false, "The target's name did not resolve; the evidence names the DNS server that was asked.", "That DNS server (resolver: in the config or --resolver, else /etc/resolv.conf of the prober's own namespace), the name itself."},
	{ReasonLocalError, ClassProber, false, "The local side could not make the attempt: source address not available, ephemeral ports exhausted, out of file descriptors or buffers.", "--source address, net.ipv4.ip_local_port_range, ulimit -n, conntrack table full."},
	{ReasonPermission, ClassProber, false, "The prober lacks a capability it needs; evidence names it.", "Run as root or grant the capability named (deploy/ grants NET_RAW, NET_ADMIN, SYS_ADMIN)."},
	{ReasonNetNSGone, ClassFailure, false, "The network namespace to probe from does not exist (any more): the pod or namespace was deleted.", "Nothing if the pod went away on purpose; the target is dropped."},
	{ReasonReset, ClassFailure, false, "An established connection was reset by an RST in answer to something we sent (a request, a keep-alive probe), or a write hit a connection the peer had already torn down (broken pipe).", "Server crashes or restarts, a stale NAT/IPVS entry re-balancing to another backend, middleboxes timing out flows."},
	{ReasonPeerClosed, ClassFailure, false, "The peer ended the connection on its own where it should have stayed open: a FIN, or an RST that answers nothing we sent (an abortive close); idle and keep-alive probes follow the same rule.", "The server's idle timeout (wait_timeout, keep-alive settings), proxies closing idle connections."},
	{ReasonKeepaliveTimeout, ClassFailure, false, "An idle long connection died: the kernel's TCP keep-alive probes (TCP_KEEPIDLE/INTVL/CNT) went unanswered, or TCP_USER_TIMEOUT expired, and the kernel gave up (ETIMEDOUT); evidence has the probes sent and the connection's age.", "A path that silently drops the flow: a NAT/conntrack or IPVS entry that expired, a dead peer host, a firewall dropping mid-flow; compare the age with the path's idle timeouts."},
	{ReasonReplyTimeout, ClassFailure, false, "Connected and sent the request, but the expected reply did not arrive in time.", "A hung server, a stale NAT session eating the reply, --expect not matching what the server sends."},
	{ReasonAppTimeout, ClassFailure, false, "The TCP handshake completed but the application protocol did not: no greeting or answer (MySQL greeting, PostgreSQL SSLRequest reply, Redis PONG, Kafka ApiVersions, HTTP response) before the timeout; evidence says how far it got.", "A hung or overloaded server (accept queue served but no worker free), a proxy or port-forward that accepts but has no backend, the wrong service on the port."},
	{ReasonAppError, ClassFailure, false, "The server answered, with an error: MySQL \"Too many connections\" or access denied, a PostgreSQL FATAL, a Redis error reply, a Kafka error code, an HTTP 5xx, or something that is not the expected protocol; the server's message is in the evidence.", "The server's message: connection limits (max_connections, maxclients), credentials, pg_hba.conf, the broker's or application's health."},
	{ReasonStaleSession, ClassFailure, false, "A connection held idle broke (RST, no reply, or EOF after the idle time) while a fresh connection over the same path, opened at once, worked: the path forgot the idle session (incident 003: a conntrack/IPVS/NAT entry expired); evidence has what the idle connection saw, the idle time and the fresh connection's result.", "Keep-alive (or traffic) more often than the path's session timeout, or raise that timeout (IPVS tcp timeout, nf_conntrack_tcp_timeout_established, cloud NAT idle timeout); `probe run --kind idle --find-idle-timeout` measures it."},
	{ReasonCanceled, ClassProber, false, "The attempt was cut short by the prober itself (shutdown, Ctrl-C); not a network failure.", "Nothing."},
	{ReasonOther, ClassFailure, false, "An error no other reason covers; the evidence holds the error.", "Read the evidence and the error; report it so it can get its own reason."},
	{ReasonProberStalled, ClassProber, false, "The prober itself was not running for part of the attempt (CPU throttling, a stopped process, a long pause): its timings and verdict would be the prober's, not the network's, so the attempt is discarded.", "The agent's CPU limit and throttling (cpu.stat), node load, connprobe_prober_faults_total{cause=\"stalled\"}."},
	{ReasonProberBudget, ClassProber, false, "The attempt was skipped: the global SYN packet budget had no packet for it in time.", "Raise --syn-rate / global.syn_rate, or probe fewer SYN targets or less often."},
}

// Success reports whether an attempt with this reason counts as a success.
func (r Reason) Success() bool {
	for _, d := range Reasons {
		if d.Reason == r {
			return d.Success
		}
	}
	return false
}

// Class returns the reason's class; an unknown reason is a failure.
func (r Reason) Class() Class {
	for _, d := range Reasons {
		if d.Reason == r {
			return d.Class
		}
	}
	return ClassFailure
}

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
