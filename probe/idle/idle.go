// Package idle is the idle-then-send long-connection probe (stale NAT/IPVS sessions): it
// opens a connection, holds it idle for a chosen time, then uses it again,
// and when that fails it opens a fresh control connection over the same path
// at once to tell a broken session from a broken path.
//
// A path that forgets idle sessions (a conntrack, IPVS or cloud NAT entry that
// expired) does not break new connections — only old ones. So:
//
//   - the idle connection fails and the fresh one works → stale_session: the
//     path dropped the session (evidence: what the idle connection saw — an
//     RST, no reply, EOF — the idle time, and the control's result);
//   - both fail → the fresh connection's reason: the path is down;
//   - the peer closes (FIN) during the idle time → peer_closed, with the idle
//     time at which it came (a server idle timeout such as wait_timeout).
//
// Three modes say who speaks after the idle time:
//
//   - client-first: the client sends ECHO after the idle time and expects the
//     echo within the reply timeout (a stale session shows as an RST from
//     another backend, or retransmissions into a blackhole);
//   - server-after-delay: the client asks the responder to reply after the
//     idle time and waits idle + reply timeout (the incident itself: the reply
//     leaves un-NATed, the client's kernel resets it and the client sees no
//     packet at all — only a probe with a deadline notices);
//   - plain: any TCP server without a responder (a database): send a
//     configured payload after the idle time, optionally expect a reply.
//
// The first two talk to `probe responder` (protocol in proto.go). Find
// searches the idle time a path survives by running connections with
// different idle times in parallel.
package idle

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Kind is the probe kind name used in results and configs.
const Kind = "idle"

// Mode says who speaks first after the idle time.
type Mode string

// The modes.
const (
	ModeClientFirst      Mode = "client-first"
	ModeServerAfterDelay Mode = "server-after-delay"
	ModePlain            Mode = "plain"
)

// Modes lists the valid modes.
var Modes = []Mode{ModeClientFirst, ModeServerAfterDelay, ModePlain}

// Config configures an idle probe.
type Config struct {
	// Mode is who speaks after the idle time (default client-first).
	Mode Mode
	// Idle is how long the connection is held idle (default 30s).
	Idle time.Duration
	// ConnectTimeout bounds the handshake and, with a responder, the first
	// echo, of the idle and of the control connection (default 5s).
	ConnectTimeout time.Duration
	// ReplyTimeout is how long to wait for the answer after the idle time
	// (default 2s).
	ReplyTimeout time.Duration
	// Source, when valid, is the local address to bind to.
	Source netip.Addr
	// Resolver resolves a host name target (nil: the system resolver).
	Resolver *probe.Resolver
	// Send is the payload written after the idle time in plain mode.
	Send []byte
	// Expect, in plain mode, must appear in what the server sends after Send
	// (empty: any answer, or none, will do; only an RST or FIN fails).
	Expect []byte
}

// Defaults.
const (
	DefaultIdle           = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultReplyTimeout   = 2 * time.Second
	// MaxIdle is the longest idle time a probe may hold a connection.
	MaxIdle = 24 * time.Hour
)

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case "", ModeClientFirst, ModeServerAfterDelay, ModePlain:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want one of %v", c.Mode, Modes))
	}
	if c.Idle < 0 || c.Idle > MaxIdle {
		errs = append(errs, fmt.Errorf("idle %s must be between 0 and %s", c.Idle, MaxIdle))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect_timeout %s must not be negative", c.ConnectTimeout))
	}
	if c.ReplyTimeout < 0 {
		errs = append(errs, fmt.Errorf("reply_timeout %s must not be negative", c.ReplyTimeout))
	}

	if c.Mode != ModePlain && (len(c.Send) > 0 || len(c.Expect) > 0) {
		errs = append(errs, fmt.Errorf("send/expect are for mode plain; mode %s speaks the responder protocol", c.mode()))
	}
	return errors.Join(errs...)
}

func (c Config) mode() Mode {
	if c.Mode == "" {
		return ModeClientFirst
	}
	return c.Mode
}

func (c Config) withDefaults() Config {
	c.Mode = c.mode()
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReplyTimeout == 0 {
		c.ReplyTimeout = DefaultReplyTimeout
	}
	return c
}

// IdleStarted says that an attempt's connection went idle.
type IdleStarted struct {
	Local, Remote netip.AddrPort
	Server        netip.AddrPort // the responder's own address (invalid in plain mode)
	Idle          time.Duration  // how long it will be held idle
	At            time.Time
}

// AttemptDuration is the longest one attempt with idle time d can take:
// handshake and hello, idle, reply, and a control connection.
func (c Config) AttemptDuration(d time.Duration) time.Duration {
	c = c.withDefaults()
	return 2*c.ConnectTimeout + d + c.ReplyTimeout + c.ConnectTimeout + c.ReplyTimeout
}
