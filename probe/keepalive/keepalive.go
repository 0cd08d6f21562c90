// Package keepalive watches long-lived idle TCP connections with the
// kernel's own keep-alive (a lost keep-alive, the server's FIN,
// then "write: broken pipe").
//
// The model: a Prober holds one connection, opened from the target's network
// namespace with chosen TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (and
// optionally TCP_USER_TIMEOUT), and never writes on it. Each Probe call
// watches the connection for up to Config.Watch (or until the caller's
// deadline) by blocking in read(2): an idle connection that is healthy
// returns nothing, so the call reports ok with the connection's age; a
// connection that ends wakes the read at once, so the end is timed exactly:
//
//   - read returns ETIMEDOUT: the keep-alive probes went unanswered
//     (tcp_keepalive_timer gives up after KEEPCNT probes, or TCP_USER_TIMEOUT
//     expired) → keepalive_timeout;
//   - read returns 0 (FIN): the peer closed, e.g. its idle timeout →
//     peer_closed; a write would now draw an RST and then EPIPE;
//   - read returns ECONNRESET (or EPIPE) in answer to a keep-alive probe
//     (tcpi_probes > 0) → reset: the peer no longer knows the connection;
//     an RST with no probe out answers nothing we sent → peer_closed, like
//     a FIN (the same rule as kind idle: the peer ended the connection on
//     its own).
//
// The connection persists across Probe calls as a plain field; after it
// ended, the next call opens a new one. When the probing namespace is gone
// the connection is closed at once — an open socket pins its namespace, so
// keeping it would keep a deleted pod's network alive — and the call reports
// netns_gone.
package keepalive

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Kind is the probe kind name used in results and configs.
const Kind = "keepalive"

// Config configures a keep-alive watch.
type Config struct {
	// Idle is TCP_KEEPIDLE: how long the connection is idle before the first
	// keep-alive probe. Whole seconds, 1s to 32767s.
	Idle time.Duration
	// Interval is TCP_KEEPINTVL: the time between unanswered probes.
	Interval time.Duration
	// Count is TCP_KEEPCNT: unanswered probes before the kernel gives up
	// (1-127).
	Count int
	// UserTimeout, when > 0, sets TCP_USER_TIMEOUT. With keep-alive on it
	// also bounds how long probes may go unanswered (tcp(7)).
	UserTimeout time.Duration
	// ConnectTimeout bounds the handshake of a new connection.
	ConnectTimeout time.Duration
	// Watch is how long one Probe call watches the connection when the
	// caller's context has no earlier deadline.
	Watch time.Duration
	// Source, when valid, is the local address to bind to; a host name
	// target resolves to an address of its family.
	Source netip.Addr
	// Resolver resolves a host name target (nil: the system resolver).
	Resolver *probe.Resolver
}

// Defaults used for zero fields.
const (
	DefaultIdle           = 30 * time.Second
	DefaultInterval       = 5 * time.Second
	DefaultCount          = 3
	DefaultConnectTimeout = 5 * time.Second
	DefaultWatch          = time.Second
)

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Count == 0 {
		c.Count = DefaultCount
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Watch == 0 {
		c.Watch = DefaultWatch
	}
	return c
}

// Validate reports every problem of c at once. Zero fields are valid (they
// take defaults).
func (c Config) Validate() error {
	var errs []error
	// The kernel takes whole seconds for all three (tcp(7)); a fraction
	// would be truncated silently, so refuse it.
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"idle", c.Idle}, {"interval", c.Interval}} {
		switch {
		case f.d == 0:
		case f.d < time.Second || f.d > 32767*time.Second:
			errs = append(errs, fmt.Errorf("%s %s must be between 1s and 32767s", f.name, f.d))
		case f.d%time.Second != 0:
			errs = append(errs, fmt.Errorf("%s %s must be whole seconds (the kernel's resolution)", f.name, f.d))
		}
	}
	if c.Count < 0 || c.Count > 127 {
		errs = append(errs, fmt.Errorf("count %d must be between 1 and 127", c.Count))
	}
	if c.UserTimeout < 0 {
		errs = append(errs, fmt.Errorf("user_timeout %s must not be negative", c.UserTimeout))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect_timeout %s must not be negative", c.ConnectTimeout))
	}
	if c.Watch < 0 {
		errs = append(errs, fmt.Errorf("watch %s must not be negative", c.Watch))
	}
	return errors.Join(errs...)
}

// DeadAfter is how long after the last data a dead path is detected:
// idle + count×interval (or the user timeout when that is set and shorter).
func (c Config) DeadAfter() time.Duration {
	c = c.WithDefaults()
	d := c.Idle + time.Duration(c.Count)*c.Interval
	if c.UserTimeout > 0 && c.UserTimeout < d {
		return c.UserTimeout
	}
	return d
}
