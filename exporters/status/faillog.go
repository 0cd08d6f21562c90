package status

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// streak is the failure log's state of one target: a run of attempts that
// were failures or prober faults, and the quiet period after it. Its
// counters are fixed-size: a streak costs no allocation however long it
// lasts.
//
// A streak logs its first failure, each reason it had not seen yet, a
// summary every SummaryEvery while it fails, and its recovery. A target
// that fails again within SummaryEvery of recovering is flapping: the
// streak resumes silently and its summaries count the flaps, so a target
// that alternates never logs more than a few lines per SummaryEvery.
type streak struct {
	active      bool // failing, or recovered less than SummaryEvery ago
	failing     bool // the newest attempt was bad
	logged      bool // the recovery line was written
	since       time.Time
	lastSummary time.Time
	okSince     time.Time
	reason      probe.Reason // of the newest bad attempt
	class       probe.Class  // of the newest bad attempt
	attempts    int          // bad attempts
	flaps       int          // failures after a recovery
	seen        uint64       // reasons seen, by index
	counts      [64]uint32   // bad attempts by reason index
}

// logEvent is what one attempt makes the failure log write.
type logEvent uint8

const (
	evNone logEvent = iota
	evFirst
	evChange
	evSummary
	evRecovered
)

// eventData is a copy of the streak taken under the target's lock.
type eventData struct {
	ev       logEvent
	from     probe.Reason // evChange: the previous reason
	since    time.Time
	attempts int
	flaps    int
	reasons  string // "syn_timeout=700 refused=20", most frequent first
	now      time.Time
}

func (s *streak) data(ev logEvent, now time.Time) eventData {
	d := eventData{ev: ev, since: s.since, attempts: s.attempts, flaps: s.flaps, now: now}
	if ev == evSummary || ev == evRecovered {
		d.reasons = s.reasonList()
	}
	return d
}

// observe advances the streak with one attempt at now; the caller holds
// the target's lock.
func (s *streak) observe(now time.Time, every time.Duration, r probe.Reason, class probe.Class) eventData {
	bad := class == probe.ClassFailure || class == probe.ClassProber
	if !s.active && !bad {
		return eventData{}
	}
	ri, ok := reasonIndex[r]
	if !ok {
		ri = reasonIndex[probe.ReasonOther]
	}
	if !s.active {
		*s = streak{active: true, failing: true, since: now, lastSummary: now, reason: r, class: class,
			attempts: 1, seen: 1 << ri}
		s.counts[ri] = 1
		return s.data(evFirst, now)
	}
	if !bad {
		if s.failing {
			s.failing = false
			s.okSince = now
			if !s.logged {
				s.logged = true
				return s.data(evRecovered, now)
			}
			return eventData{}
		}
		if now.Sub(s.okSince) >= every {
			s.active = false
			if s.flaps > 0 {
				return s.data(evRecovered, now) // the final word on a flapping target
			}
		}
		return eventData{}
	}
	if !s.failing {
		s.failing = true
		s.flaps++
	}
	from := s.reason
	s.attempts++
	s.counts[ri]++
	s.reason, s.class = r, class
	if s.seen&(1<<ri) == 0 {
		s.seen |= 1 << ri
		d := s.data(evChange, now)
		d.from = from
		return d
	}
	if now.Sub(s.lastSummary) < every {
		return eventData{}
	}
	s.lastSummary = now
	return s.data(evSummary, now)
}

func (s *streak) reasonList() string {
	type rc struct {
		r probe.Reason
		n uint32
	}
	var l []rc
	for i, n := range s.counts {
		if n > 0 {
			l = append(l, rc{reasonOf(uint8(i)), n})
		}
	}
	slices.SortStableFunc(l, func(a, b rc) int { return int(b.n) - int(a.n) })
	var b strings.Builder
	for i, x := range l {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", x.r, x.n)
	}
	return b.String()
}

// logAttempt writes the failure log's line for one attempt, if any, and
// the debug line every attempt gets at debug level.
func (s *Status) logAttempt(t *target, r *probe.Result, class probe.Class, d eventData) {
	ctx := context.Background()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "attempt", slog.String("job", t.job), slog.String("target", t.name),
			slog.String("reason", string(r.Reason)), slog.String("class", string(class)), slog.String("phase", string(r.Phase)),
			slog.Duration("duration", r.Duration), slog.Any("timings", r.Timings), slog.Int("retransmits", r.Retransmits),
			slog.Any("evidence", r.Evidence))
	}
	if d.ev == evNone {
		return
	}
	attrs := []slog.Attr{slog.String("job", t.job), slog.String("target", t.name), slog.String("kind", t.kind)}
	level := slog.LevelWarn
	var msg string
	switch d.ev {
	case evFirst, evChange:
		msg = "target failing"
		if d.ev == evChange {
			msg += ": new reason"
			attrs = append(attrs, slog.String("from", string(d.from)))
		}
	case evSummary:
		msg = "target still failing"
		if d.flaps > 0 {
			msg = "target flapping"
		}
		attrs = append(attrs, slog.Duration("for", d.now.Sub(d.since)), slog.Int("attempts", d.attempts),
			slog.String("reasons", d.reasons))
		if d.flaps > 0 {
			attrs = append(attrs, slog.Int("flaps", d.flaps))
		}
	case evRecovered:
		attrs = append(attrs, slog.Duration("after", d.now.Sub(d.since)), slog.Int("failed_attempts", d.attempts),
			slog.String("reasons", d.reasons), slog.String("reason", string(r.Reason)))
		if d.flaps > 0 {
			attrs = append(attrs, slog.Int("flaps", d.flaps))
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "target recovered", attrs...)
		return
	}
	attrs = append(attrs, slog.String("reason", string(r.Reason)), slog.String("class", string(class)),
		slog.String("phase", string(r.Phase)), slog.Duration("duration", r.Duration))
	if r.Timings.Handshake > 0 {
		attrs = append(attrs, slog.Duration("handshake", r.Timings.Handshake))
	}
	if r.Retransmits > 0 {
		attrs = append(attrs, slog.Int("retransmits", r.Retransmits))
	}
	if r.Remote.IsValid() {
		attrs = append(attrs, slog.String("remote", r.Remote.String()))
	}
	attrs = append(attrs, slog.Any("evidence", r.Evidence))
	s.log.LogAttrs(ctx, level, msg, attrs...)
}

// forgotten closes a streak in progress when the target goes away.
func (t *target) forgotten() {
	t.mu.Lock()
	var st streak
	if t.bad != nil {
		st = t.bad.streak
		t.bad.streak.active = false
	}
	t.mu.Unlock()
	if !st.active || !st.failing {
		return
	}
	t.s.log.LogAttrs(context.Background(), slog.LevelInfo, "target removed while failing",
		slog.String("job", t.job), slog.String("target", t.name), slog.String("kind", t.kind),
		slog.Duration("for", t.s.o.Now().Sub(st.since)), slog.Int("failed_attempts", st.attempts),
		slog.String("reasons", st.reasonList()))
}
