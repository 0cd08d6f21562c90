package idle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// FindOptions tune Find.
type FindOptions struct {
	// MaxIdle is the longest idle time tried (default 20m).
	MaxIdle time.Duration
	// MinIdle is the shortest (default 1s, at most MaxIdle).
	MinIdle time.Duration
	// Steps is how many connections a narrowing round runs in parallel
	// (default 8).
	Steps int
	// Resolution: narrowing stops when the boundary is known to within
	// max(Resolution, 5% of it) (default 500ms).
	Resolution time.Duration
}

// Boundary is what Find learned about the path's idle timeout.
type Boundary struct {
	// Survived is the longest idle time a connection survived (0: none did).
	Survived time.Duration
	// Lost is the shortest idle time after which a connection was lost
	// (0: every idle time up to MaxIdle survived).
	Lost time.Duration
	// LostReason is how that connection was lost: stale_session (the path
	// forgot it) or peer_closed (the server closed it).
	LostReason probe.Reason
	// ClosedAt, for peer_closed, is the idle time at which the FIN came.
	ClosedAt time.Duration
	Rounds   int           // narrowing rounds run
	Attempts int           // connections used
	Elapsed  time.Duration // wall time of the search
	// Evidence is one line per round.
	Evidence []string
}

// Found reports whether a loss was seen below MaxIdle.
func (b Boundary) Found() bool { return b.Lost > 0 }

// String is the one-line verdict.
func (b Boundary) String() string {
	switch {
	case !b.Found():
		return fmt.Sprintf("idle connections survived every idle time tried, up to %s", probe.Round(b.Survived))
	case b.LostReason == probe.ReasonPeerClosed:
		return fmt.Sprintf("the server closes idle connections after %s (FIN; lost between %s and %s idle)", probe.Round(b.ClosedAt), probe.Round(b.Survived), probe.Round(b.Lost))
	}
	return fmt.Sprintf("idle connections are lost after %s–%s (conntrack/IPVS session timeout?)", probe.Round(b.Survived), probe.Round(b.Lost))
}

// ErrPathDown is returned by Find when connections could not even be opened.
var ErrPathDown = errors.New("idle: path down")

// Find searches the idle time the path survives. Each round opens one
// connection per candidate idle time at once, so the round ends when the
// shortest lost one is known: the first round tries MinIdle, 2×MinIdle, …
// up to MaxIdle; each following round tries Steps-1 evenly spaced idle times
// between the longest survived and the shortest lost one, until the gap is
// below the resolution. Connections longer than a known loss are dropped at
// once. With a responder it uses server-after-delay, which loses a stale
// session whatever backend a re-DNATed segment would reach (a client-first
// probe through loose conntrack survives by chance when it lands on the
// same backend).
func (p *Prober) Find(ctx context.Context, o FindOptions) (Boundary, error) {
	o = o.withDefaults()
	fp := *p
	if fp.cfg.Mode == ModeClientFirst {
		fp.cfg.Mode = ModeServerAfterDelay
	}
	start := time.Now()
	b := Boundary{}
	var ds []time.Duration
	for d := o.MinIdle; d < o.MaxIdle; d *= 2 {
		ds = append(ds, d)
	}
	ds = append(ds, o.MaxIdle)
	lo, hi := time.Duration(0), time.Duration(0)
	for {
		b.Rounds++
		res, err := fp.round(ctx, ds)
		b.Attempts += len(ds)
		if err != nil {
			b.Elapsed = time.Since(start)
			return b, err
		}
		rlo, rhi, lost := lo, time.Duration(0), probe.Result{}
		for _, d := range ds {
			r, ok := res[d]
			if !ok {
				continue // dropped: longer than a loss
			}
			if r.Success {
				rlo = max(rlo, d)
			} else if rhi == 0 || d < rhi {
				rhi, lost = d, r
			}
		}
		line := fmt.Sprintf("round %d: tried %s", b.Rounds, durations(ds))
		if rhi > 0 {
			lo, hi = rlo, rhi
			b.LostReason = lost.Reason
			if lost.Reason == probe.ReasonPeerClosed {
				b.ClosedAt = lost.Timings.Idle
			}
			line += fmt.Sprintf("; survived %s, lost %s (%s)", probe.Round(lo), probe.Round(hi), lost.Reason)
		} else {
			lo = max(lo, rlo)
			line += fmt.Sprintf("; all survived (up to %s)", probe.Round(rlo))
		}
		b.Evidence = append(b.Evidence, line)
		if hi == 0 {
			// Nothing lost up to MaxIdle.
			b.Survived = lo
			break
		}
		if b.LostReason == probe.ReasonPeerClosed || hi-lo <= max(o.Resolution, lo/20) {
			// A FIN says exactly when; else the gap is narrow enough.
			break
		}
		ds = ds[:0]
		for i := 1; i < o.Steps; i++ {
			ds = append(ds, lo+(hi-lo)*time.Duration(i)/time.Duration(o.Steps))
		}
	}
	b.Survived, b.Lost = lo, hi
	b.Elapsed = time.Since(start)
	return b, nil
}

// round runs one attempt per idle time in ds, all at once. When an attempt
// is lost, attempts with longer idle times are canceled (they would be lost
// too); their results are left out.
func (p *Prober) round(ctx context.Context, ds []time.Duration) (map[time.Duration]probe.Result, error) {
	type done struct {
		d time.Duration
		r probe.Result
	}
	cancels := map[time.Duration]context.CancelFunc{}
	out := make(chan done, len(ds))
	var wg sync.WaitGroup
	for _, d := range ds {
		actx, cancel := context.WithCancel(ctx)
		cancels[d] = cancel
		wg.Go(func() {
			out <- done{d, p.attemptOnly(actx, d)}
		})
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}()
	res := map[time.Duration]probe.Result{}
	var lostAt time.Duration
	var down error
	for range ds {
		var x done
		select {
		case x = <-out:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		switch {
		case x.r.Reason == probe.ReasonCanceled:
			continue
		case !x.r.Success && x.r.Phase != probe.PhaseIdle && x.r.Reason != probe.ReasonStaleSession:
			// Not even a fresh connection worked: no boundary to find.
			if down == nil {
				down = fmt.Errorf("%w: %s idle attempt: %s (%s)", ErrPathDown, probe.Round(x.d), x.r.Reason, last(x.r.Evidence))
				for _, c := range cancels {
					c()
				}
			}
			continue
		}
		res[x.d] = x.r
		if !x.r.Success && (lostAt == 0 || x.d < lostAt) {
			lostAt = x.d
			for d, c := range cancels {
				if d > lostAt {
					c()
				}
			}
		}
	}
	if down != nil {
		return res, down
	}
	return res, nil
}

// attemptOnly is one idle attempt whose failure is judged by a control
// connection, like Probe, but which counts any failure in the idle phase as
// a loss (a reset or FIN during the idle time ends a session as surely).
func (p *Prober) attemptOnly(ctx context.Context, d time.Duration) probe.Result {
	return p.ProbeIdle(ctx, d)
}

func (o FindOptions) withDefaults() FindOptions {
	if o.MaxIdle <= 0 {
		o.MaxIdle = 20 * time.Minute
	}
	if o.MinIdle <= 0 {
		o.MinIdle = time.Second
	}
	o.MinIdle = min(o.MinIdle, o.MaxIdle)
	if o.Steps < 2 {
		o.Steps = 8
	}
	if o.Resolution <= 0 {
		o.Resolution = 500 * time.Millisecond
	}
	return o
}

func durations(ds []time.Duration) string {
	out := ""
	for i, d := range ds {
		if i > 0 {
			out += " "
		}
		out += probe.Round(d).String()
	}
	return out
}

func last(ev []string) string {
	if len(ev) == 0 {
		return ""
	}
	return ev[len(ev)-1]
}
