// Package syn is the raw-socket half-open SYN probe: it hand-builds a TCP SYN
// that looks like one from the Linux kernel (MSS, SACK-permitted, timestamps
// with a TSval it chooses, window scale), sends it on a raw socket from a
// fresh source port, and reads the first answer: SYN/ACK (something listens),
// RST (refused), an ICMP error quoting the SYN (unreachable) or nothing
// (syn_timeout). It never completes a handshake: the local kernel, which owns
// no socket on our source port, answers the SYN/ACK with a RST, and that RST
// is what clears the half-open entry on the target.
//
// Because the probe sends each SYN itself, on its own retransmission schedule,
// it knows which SYN was answered (the SYN/ACK echoes that SYN's TSval): a
// handshake that only works on the third SYN is syn_retransmitted with the
// delays in evidence, and the RTT is that of the answered SYN, from the
// kernel's receive timestamp (SO_TIMESTAMPNS).
//
// Because it chooses the TSval, it can test PAWS: after a
// normal SYN is answered it sends one with an older TSval to the same
// destination; a target (or a NAT box) that drops it while answering fresh
// ones gets reason paws_rejected.
//
// All probes of a process share one receive path per network namespace and
// address family: a raw TCP socket and a raw ICMP socket, each with a classic
// BPF filter that passes only replies to our source-port range, and one
// reader goroutine that dispatches replies to the waiting probe by (remote
// address and port, local port, acknowledged sequence). Every raw send draws
// from one process-wide packets-per-second budget (SetRate), so the prober
// can never become a SYN flood. Raw sockets need CAP_NET_RAW.
package syn

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Kind is the probe kind name used in results and configs.
const Kind = "syn"

// Defaults.
const (
	DefaultTimeout = 5 * time.Second
	// DefaultPAWSWait is how long the PAWS check waits for an answer to the
	// SYN with the older TSval: long enough for three SYNs on the default
	// schedule.
	DefaultPAWSWait = 3 * time.Second
	// DefaultPAWSRegress is how far below the last TSval sent to the
	// destination the PAWS check's TSval goes: 100 s at the kernel's 1 kHz
	// timestamp clock, well past any jitter, well inside the 2^31 window.
	DefaultPAWSRegress = 100_000
	DefaultMSS         = 1460
	DefaultWScale      = 7
	DefaultWindow      = 64240
)

// DefaultSchedule is when SYNs are retransmitted, as offsets from the first
// SYN. It mirrors a 6.x kernel with net.ipv4.tcp_syn_linear_timeouts=4 and a
// 1 s initial RTO: five retransmits 1 s apart, then exponential backoff
// (0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s; see LAB-FACTS "Traps"). The attempt
// timeout cuts it short: with the 5 s default, SYNs go out at 0-4 s.
var DefaultSchedule = []time.Duration{
	1 * time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second,
	7 * time.Second, 11 * time.Second, 19 * time.Second, 35 * time.Second, 67 * time.Second,
}

// defaultSchedule is the schedule of a Config without one: a copy of
// DefaultSchedule made once, shared by every prober (none writes to it), so
// 10k probers do not hold 10k copies.
var defaultSchedule = slices.Clip(slices.Clone(DefaultSchedule))

// Config configures a SYN probe.
type Config struct {
	// Timeout bounds one attempt (all SYNs of the normal check); 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// Source, when valid, is the source address of the SYNs; otherwise the
	// route to the target chooses it.
	Source netip.Addr
	// Resolver resolves a host name target (nil: the system resolver).
	Resolver *probe.Resolver
	// Schedule lists the retransmission times as offsets from the first
	// SYN, strictly increasing; nil is DefaultSchedule, empty (non-nil)
	// means a single SYN.
	Schedule []time.Duration
	// PAWS enables the PAWS check after an answered SYN.
	PAWS bool
	// PAWSWait bounds the wait for an answer to the older-TSval SYN; 0 is
	// DefaultPAWSWait.
	PAWSWait time.Duration
	// PAWSRegress is how much lower than the last TSval the check's TSval
	// is; 0 is DefaultPAWSRegress.
	PAWSRegress uint32
	// MSS and WScale are advertised in the SYN; 0 takes the defaults.
	MSS    uint16
	WScale uint8
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s must not be negative", c.Timeout))
	}
	if c.PAWSWait < 0 {
		errs = append(errs, fmt.Errorf("paws_wait %s must not be negative", c.PAWSWait))
	}
	for i, d := range c.Schedule {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("retransmit[%d] %s must be positive", i, d))
		} else if i > 0 && d <= c.Schedule[i-1] {
			errs = append(errs, fmt.Errorf("retransmit[%d] %s must come after retransmit[%d] %s", i, d, i-1, c.Schedule[i-1]))
		}
	}
	if c.WScale > 14 {
		errs = append(errs, fmt.Errorf("window scale %d is above 14 (RFC 7323)", c.WScale))
	}
	if c.PAWSRegress >= 1<<31 {
		errs = append(errs, fmt.Errorf("paws_regress %d must be below 2^31, or it wraps into the future", c.PAWSRegress))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Schedule == nil {
		c.Schedule = defaultSchedule
	}
	if c.PAWSWait == 0 {
		c.PAWSWait = DefaultPAWSWait
	}
	if c.PAWSRegress == 0 {
		c.PAWSRegress = DefaultPAWSRegress
	}
	if c.MSS == 0 {
		c.MSS = DefaultMSS
	}
	if c.WScale == 0 {
		c.WScale = DefaultWScale
	}
	return c
}

// Source ports. SYN probes take their source ports from this range, above the
// kernel's default ephemeral range (32768-60999), so the BPF filter is one
// range check and our ports rarely collide with the kernel's own. A port is
// never reused while a probe waits on it, and the allocator cycles through the
// whole range before coming back, so each probe gets a fresh 4-tuple (a tuple
// still held by a conntrack entry in CLOSE could be remapped by NAT).
const (
	PortLo = 61000
	PortHi = 65535
)
