//go:build !linux

package syn

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Prober is the SYN prober; raw SYN probes exist only on Linux.
type Prober struct{ target probe.Target }

// New returns errors.ErrUnsupported off Linux.
func New(t probe.Target, cfg Config) (*Prober, error) {
	return nil, fmt.Errorf("syn: raw SYN probes: %w", errors.ErrUnsupported)
}

// Check returns errors.ErrUnsupported off Linux.
func Check(nsPath string) error {
	return fmt.Errorf("syn: raw SYN probes: %w", errors.ErrUnsupported)
}

// Probe never runs: New fails off Linux.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	return probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now(), Reason: probe.ReasonOther, Err: errors.ErrUnsupported}
}

// Close does nothing.
func (p *Prober) Close() error { return nil }

// Flow is a held TCP flow identifier for TTL-limited SYNs; Linux only.
type Flow struct{}

// FlowReply answers one of a Flow's SYNs.
type FlowReply struct {
	Reply
	Index   int
	At      time.Time
	Foreign bool
}

// OpenFlow returns errors.ErrUnsupported off Linux.
func OpenFlow(nsPath string, dst netip.AddrPort, src netip.Addr, span int) (*Flow, error) {
	return nil, fmt.Errorf("syn: raw SYN flows: %w", errors.ErrUnsupported)
}

// Local is never called: OpenFlow fails off Linux.
func (f *Flow) Local() netip.AddrPort { return netip.AddrPort{} }

// Remote is never called: OpenFlow fails off Linux.
func (f *Flow) Remote() netip.AddrPort { return netip.AddrPort{} }

// Send fails off Linux.
func (f *Flow) Send(ctx context.Context, until time.Time, ttl int) (int, time.Time, error) {
	return 0, time.Time{}, errors.ErrUnsupported
}

// Wait never returns a reply off Linux.
func (f *Flow) Wait(ctx context.Context, until time.Time) (FlowReply, bool) {
	return FlowReply{}, false
}

// Strays is empty off Linux.
func (f *Flow) Strays() []string { return nil }

// Close does nothing.
func (f *Flow) Close() error { return nil }
