//go:build !linux

package idle

import (
	"context"
	"errors"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Prober runs idle probes; only Linux is supported.
type Prober struct{ cfg Config }

// New returns errors.ErrUnsupported: the idle probe needs Linux sockets.
func New(t probe.Target, cfg Config) (*Prober, error) { return nil, errors.ErrUnsupported }

// Target returns the probed target.
func (p *Prober) Target() probe.Target { return probe.Target{} }

// Config returns the prober's configuration.
func (p *Prober) Config() Config { return p.cfg }

// Close does nothing.
func (p *Prober) Close() error { return nil }

// Probe is unsupported.
func (p *Prober) Probe(ctx context.Context) probe.Result { return p.ProbeIdle(ctx, p.cfg.Idle) }

// ProbeIdle is unsupported.
func (p *Prober) ProbeIdle(ctx context.Context, d time.Duration) probe.Result {
	return probe.Result{Kind: Kind, Reason: probe.ReasonLocalError, Err: errors.ErrUnsupported}
}

// OnIdle does nothing: New fails off Linux.
func (p *Prober) OnIdle(fn func(IdleStarted)) {}
