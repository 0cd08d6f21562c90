//go:build !linux

package syn

import (
	"context"
	"errors"
	"fmt"
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
