package configs

import (
	"time"

	"github.com/connprobe/connprobe/probe/trace"
)

// TraceOptions turn on, for a job, one path trace when a target turns from
// ok to syn_timeout or unreachable (docs/trace.md). The trace's verdict is
// added to that failure's evidence.
type TraceOptions struct {
	// Enabled turns the trace on (the block alone does not).
	Enabled bool `yaml:"enabled"`
	// MaxHops, Queries, HopTimeout and Gap are probe trace's --max-hops,
	// --queries, --hop-timeout and --gap; unset: 16, 2, 500ms, 3.
	MaxHops    int      `yaml:"max_hops"`
	Queries    int      `yaml:"queries"`
	HopTimeout Duration `yaml:"hop_timeout"`
	Gap        int      `yaml:"gap"`
	// MinInterval is the least time between two traces of one target
	// (default 10m).
	MinInterval Duration `yaml:"min_interval"`
}

// Trace defaults for serve: fewer queries and a shorter wait than probe
// trace's, so a trace fits in a probe interval.
const (
	DefaultTraceQueries     = 2
	DefaultTraceHopTimeout  = 500 * time.Millisecond
	DefaultTraceMinInterval = 10 * time.Minute
)

// Config returns the trace configuration (NetNS and Source are the job's).
func (o *TraceOptions) Config() trace.Config {
	c := trace.Config{MaxHops: o.MaxHops, Queries: o.Queries, HopTimeout: o.HopTimeout.D, Gap: o.Gap}
	if c.Queries == 0 {
		c.Queries = DefaultTraceQueries
	}
	if c.HopTimeout == 0 {
		c.HopTimeout = DefaultTraceHopTimeout
	}
	return c
}

// Every is the least time between two traces of one target.
func (o *TraceOptions) Every() time.Duration {
	if o.MinInterval.D == 0 {
		return DefaultTraceMinInterval
	}
	return o.MinInterval.D
}

// Budget is the most a trace may take: every SYN unanswered, plus the last
// look for late answers and an RST's confirming SYN.
func (o *TraceOptions) Budget() time.Duration {
	c := o.Config()
	return c.MaxDuration() + 2*c.HopTimeout
}

func (o *TraceOptions) validate(j *Job, add func(format string, args ...any)) {
	if err := o.Config().Validate(); err != nil {
		for _, e := range splitJoined(err) {
			add("trace: %v", e)
		}
		o.checkMinInterval(add)
		return
	}
	o.checkMinInterval(add)
	if !o.Enabled {
		return
	}
	if b := o.Budget(); j.Interval.D > 0 && j.Timeout.D+b >= j.Interval.D {
		c := o.Config()
		hops := c.MaxHops
		if hops == 0 {
			hops = trace.DefaultMaxHops
		}
		add("trace: a trace takes up to %s (max_hops × queries × hop_timeout = %d × %d × %s, plus 2 × hop_timeout); with timeout %s that is not shorter than interval %s: lower max_hops, queries or hop_timeout, or raise the interval",
			b, hops, c.Queries, c.HopTimeout, j.Timeout.D, j.Interval.D)
	}
}

func (o *TraceOptions) checkMinInterval(add func(format string, args ...any)) {
	if o.MinInterval.D < 0 {
		add("trace: min_interval %s must not be negative", o.MinInterval.D)
	}
}
