// Package connect is the kernel connect() probe: it lets the local TCP stack
// do the handshake, exactly as an application would, and reads back from the
// kernel what that cost — DNS and handshake time, how many SYNs had to be
// retransmitted (TCP_INFO), the smoothed RTT — and, when the handshake failed
// on an ICMP error, which ICMP message came back and from whom (IP_RECVERR).
//
// An optional request/expect exchange after the handshake catches servers
// that accept but do not serve, close idle connections (peer_closed), or are
// reset mid-connection.
package connect

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Config configures a connect probe.
type Config struct {
	// Timeout bounds one attempt (resolve, handshake, send, reply).
	Timeout time.Duration
	// Source, when valid, is the local address to bind to.
	Source netip.Addr
	// Send is written after the handshake (may be empty).
	Send []byte
	// Expect, when non-empty, must appear in what the server sends back
	// before the timeout.
	Expect []byte
	// UserTimeout sets TCP_USER_TIMEOUT: how long sent data may stay
	// unacknowledged before the kernel drops the connection (0 = kernel default).
	UserTimeout time.Duration
	// Resolver resolves host names (nil: the system resolver; probe.Resolve
	// has the address-pick rule). Tests and the lab demo point it at a
	// loopback DNS server so no real DNS is asked.
	Resolver *probe.Resolver
}

// DefaultTimeout is the attempt timeout when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s must not be negative", c.Timeout))
	}
	if c.UserTimeout < 0 {
		errs = append(errs, fmt.Errorf("user_timeout %s must not be negative", c.UserTimeout))
	}
	if c.UserTimeout > 0 && c.UserTimeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("user_timeout %s is below the kernel's 1ms resolution", c.UserTimeout))
	}
	return errors.Join(errs...)
}

func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}
