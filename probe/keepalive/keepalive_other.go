//go:build !linux

package keepalive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Prober is only supported on Linux.
type Prober struct{ target probe.Target }

// New returns errors.ErrUnsupported off Linux.
func New(t probe.Target, cfg Config) (*Prober, error) {
	return nil, fmt.Errorf("keepalive: %w", errors.ErrUnsupported)
}

// Probe is never reached: New fails off Linux.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	return probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now(), Reason: probe.ReasonOther, Err: errors.ErrUnsupported}
}

// Close does nothing.
func (p *Prober) Close() error { return nil }
