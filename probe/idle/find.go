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
	// Steps is how many idle times a narrowing round tries in parallel
	// (default 8).
	Steps int
	// Resolution: narrowing stops when the boundary is known to within
	// max(Resolution, 5% of it) (default 500ms).
	Resolution time.Duration
	// Repeats is how many connections try each idle time (a loss on any is
	// a loss). Default: 1 against a responder (server-after-delay loses a
	// stale session whatever backend a segment would reach), DefaultRepeats
	// in plain mode, where a segment re-DNATed to the backend that holds the
	// session survives by chance.
	Repeats int
	// Progress, when set, is called with a line when a round starts and
	// when it ends (the same line as in Boundary.Evidence), from Find's
	// goroutine.
	Progress func(line string)
}

// DefaultRepeats is FindOptions.Repeats in plain mode: behind a VIP with
// two backends a forgotten session survives one try by chance half the
// time, all six with probability 1/64.
const DefaultRepeats = 6

// Boundary is what Find learned about the path's idle timeout.
type Boundary struct {
	// Survived is the longest idle time below Lost that every connection
	// survived (0: none did).
	Survived time.Duration
	// Lost is the shortest idle time after which a connection was lost
	// (0: every idle time up to MaxIdle survived).
	Lost time.Duration
	// LostReason is how that connection was lost: stale_session (the path
	// forgot it) or peer_closed (the server closed it).
	LostReason probe.Reason
	// ClosedAt, for peer_closed, is the idle time at which the FIN came.
	ClosedAt time.Duration
	// Untrusted, when not empty, says why the answer cannot be trusted:
	// results that contradict each other (a longer idle time survived than
	// one that was lost: backends with different timeouts, or a loss or a
	// survival by chance).
	Untrusted string
	Repeats   int           // connections per idle time
	Rounds    int           // narrowing rounds run
	Attempts  int           // connections used
	Elapsed   time.Duration // wall time of the search
	// Evidence is one line per round.
	Evidence []string
}

// Found reports whether a loss was seen below MaxIdle.
func (b Boundary) Found() bool { return b.Lost > 0 }

// String is the one-line verdict.
func (b Boundary) String() string {
	var v string
	switch {
	case !b.Found():
		v = fmt.Sprintf("idle connections survived every idle time tried, up to %s", probe.Round(b.Survived))
	case b.LostReason == probe.ReasonPeerClosed:
		v = fmt.Sprintf("the server closes idle connections after %s (FIN; lost between %s and %s idle)", probe.Round(b.ClosedAt), probe.Round(b.Survived), probe.Round(b.Lost))
	default:
		v = fmt.Sprintf("idle connections are lost after %s–%s (conntrack/IPVS session timeout?)", probe.Round(b.Survived), probe.Round(b.Lost))
	}
	if b.Untrusted != "" {
		return "NOT TRUSTWORTHY: " + v + "; " + b.Untrusted
	}
	return v
}

// ErrPathDown is returned by Find when connections could not even be opened.
var ErrPathDown = errors.New("idle: path down")

// ErrServer is returned by Find when the server, not the path, failed an
// attempt: the responder refused (app_error) or a server hung on a request
// its kernel had ACKed (reply_timeout). There is no boundary to find.
var ErrServer = errors.New("idle: server fault")

// Find searches the idle time the path survives. Each round opens Repeats
// connections per candidate idle time at once, so the round ends when the
// shortest lost one is known: the first round tries MinIdle, 2×MinIdle, …
// up to MaxIdle; each following round tries Steps-1 evenly spaced idle times
// between the longest survived and the shortest lost one, until the gap is
// below the resolution. Connections longer than a known loss are dropped at
// once. With a responder it uses server-after-delay, which loses a stale
// session whatever backend a re-DNATed segment would reach (a client-first
// probe through loose conntrack survives by chance when it lands on the
// same backend); in plain mode the repeats make such luck unlikely.
//
// An idle time is lost when any of its connections was lost. When a longer
// idle time survived than one that was lost (within a round, or across
// rounds) the search stops and the Boundary says it is not trustworthy.
func (p *Prober) Find(ctx context.Context, o FindOptions) (Boundary, error) {
	fp := *p
	if fp.cfg.Mode == ModeClientFirst {
		fp.cfg.Mode = ModeServerAfterDelay
	}
	o = o.withDefaults(fp.cfg.Mode)
	start := time.Now()
	var ds []time.Duration
	for d := o.MinIdle; d < o.MaxIdle; d *= 2 {
		ds = append(ds, d)
	}
	ds = append(ds, o.MaxIdle)
	t := tally{repeats: o.Repeats}
	for {
		n := len(t.b.Evidence) + 1
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("round %d: trying %s%s", n, durations(ds), t.times()))
		}
		res, err := fp.round(ctx, ds, o.Repeats)
		if err != nil {
			t.b.Rounds, t.b.Attempts = n, t.b.Attempts+len(ds)*o.Repeats
			t.b.Elapsed = time.Since(start)
			return t.b, err
		}
		line := t.add(ds, res)
		if o.Progress != nil {
			o.Progress(line)
		}
		lo, hi := t.b.Survived, t.b.Lost
		if hi == 0 || t.b.Untrusted != "" || t.b.LostReason == probe.ReasonPeerClosed || hi-lo <= max(o.Resolution, lo/20) {
			// Nothing lost up to MaxIdle; or results that contradict each
			// other (more rounds will not mend them); or a FIN, which says
			// exactly when; or the gap is narrow enough.
			break
		}
		ds = ds[:0]
		for i := 1; i < o.Steps; i++ {
			ds = append(ds, lo+(hi-lo)*time.Duration(i)/time.Duration(o.Steps))
		}
	}
	t.b.Elapsed = time.Since(start)
	return t.b, nil
}

// outcome is what a round learned about one idle time.
type outcome struct {
	lost bool
	r    probe.Result // the first lost connection's result, or a survivor's
}

// tally accumulates the rounds' outcomes into a Boundary.
type tally struct {
	repeats  int
	b        Boundary
	survived []time.Duration // every idle time all of whose connections survived
}

func (t *tally) times() string {
	if t.repeats > 1 {
		return fmt.Sprintf(" (%d connections each)", t.repeats)
	}
	return ""
}

// add takes one round's outcomes (idle times dropped from the round are
// absent) and returns the round's evidence line.
func (t *tally) add(ds []time.Duration, res map[time.Duration]outcome) string {
	b := &t.b
	b.Rounds++
	b.Repeats = t.repeats
	b.Attempts += len(ds) * t.repeats
	rlo, rhi := time.Duration(0), time.Duration(0)
	var lost probe.Result
	for _, d := range ds {
		o, ok := res[d]
		switch {
		case !ok:
			continue // dropped: longer than a loss
		case !o.lost:
			rlo = max(rlo, d)
			t.survived = append(t.survived, d)
		case rhi == 0 || d < rhi:
			rhi, lost = d, o.r
		}
	}
	line := fmt.Sprintf("round %d: tried %s%s", b.Rounds, durations(ds), t.times())
	if rhi > 0 && (b.Lost == 0 || rhi < b.Lost) {
		b.Lost, b.LostReason, b.ClosedAt = rhi, lost.Reason, 0
		if lost.Reason == probe.ReasonPeerClosed {
			b.ClosedAt = lost.Timings.Idle
		}
	}
	// Survived: the longest survivor below the shortest loss; a survivor
	// above it contradicts the loss.
	var above time.Duration
	b.Survived = 0
	for _, d := range t.survived {
		if b.Lost == 0 || d < b.Lost {
			b.Survived = max(b.Survived, d)
		} else {
			above = max(above, d)
		}
	}
	switch {
	case rhi > 0:
		// Survived: the longest below this round's loss, in any round.
		var lo time.Duration
		for _, d := range t.survived {
			if d < rhi {
				lo = max(lo, d)
			}
		}
		line += fmt.Sprintf("; survived %s, lost %s (%s)", probe.Round(lo), probe.Round(rhi), lost.Reason)
	default:
		line += fmt.Sprintf("; all survived (up to %s)", probe.Round(rlo))
	}
	if above > 0 && b.Untrusted == "" {
		b.Untrusted = fmt.Sprintf("a connection survived %s idle although one was lost after %s: backends with different timeouts, or a loss or survival by chance (a segment re-DNATed to the backend that still holds the session); repeat the search, or use a responder (server-after-delay)",
			probe.Round(above), probe.Round(b.Lost))
		line += fmt.Sprintf("; INCONSISTENT: survived %s after a loss at %s", probe.Round(above), probe.Round(b.Lost))
	}
	b.Evidence = append(b.Evidence, line)
	return line
}

// round runs repeats attempts per idle time in ds, all at once. When an
// attempt is lost, attempts with longer idle times, and the other attempts
// of its own idle time, are canceled (a loss on any is a loss); idle times
// with a canceled attempt and no loss are left out. An idle time survived
// when all its attempts did.
func (p *Prober) round(ctx context.Context, ds []time.Duration, repeats int) (map[time.Duration]outcome, error) {
	type done struct {
		d time.Duration
		r probe.Result
	}
	type slot struct {
		d      time.Duration
		cancel context.CancelFunc
	}
	var slots []slot
	out := make(chan done, len(ds)*repeats)
	var wg sync.WaitGroup
	for _, d := range ds {
		for range repeats {
			actx, cancel := context.WithCancel(ctx)
			slots = append(slots, slot{d, cancel})
			wg.Go(func() {
				out <- done{d, p.attemptOnly(actx, d)}
			})
		}
	}
	cancelFrom := func(d time.Duration) {
		for _, s := range slots {
			if s.d >= d {
				s.cancel()
			}
		}
	}
	defer func() {
		cancelFrom(0)
		wg.Wait()
	}()
	res := map[time.Duration]outcome{}
	ok := map[time.Duration]int{} // survivors per idle time
	var down error
	for range slots {
		var x done
		select {
		case x = <-out:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		switch {
		case x.r.Reason == probe.ReasonCanceled:
			continue
		case !x.r.Success() && x.r.Phase != probe.PhaseIdle && x.r.Reason != probe.ReasonStaleSession:
			// Not even a fresh connection worked, or the server failed:
			// no boundary to find.
			if down == nil {
				cause := ErrPathDown
				if x.r.Reason == probe.ReasonAppError || x.r.Reason == probe.ReasonReplyTimeout {
					cause = ErrServer
				}
				down = fmt.Errorf("%w: %s idle attempt: %s (%s)", cause, probe.Round(x.d), x.r.Reason, last(x.r.Evidence))
				cancelFrom(0)
			}
			continue
		case !x.r.Success():
			if o, seen := res[x.d]; !seen || !o.lost {
				res[x.d] = outcome{lost: true, r: x.r}
				cancelFrom(x.d)
			}
		default:
			if ok[x.d]++; ok[x.d] == repeats {
				res[x.d] = outcome{r: x.r}
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

func (o FindOptions) withDefaults(m Mode) FindOptions {
	if o.Repeats <= 0 {
		o.Repeats = 1
		if m == ModePlain {
			o.Repeats = DefaultRepeats
		}
	}
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
