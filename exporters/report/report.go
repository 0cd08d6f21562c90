// Package report renders the results of `probe run` for people (one line per
// attempt, like ping or mtr, then a summary per target) and for programs
// (JSON Lines, one object per attempt).
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Writer receives results as they arrive and writes a summary at the end.
type Writer interface {
	Result(r probe.Result) error
	Summary() error
}

// New returns the writer for format "text" or "json".
func New(format string, w io.Writer) (Writer, error) {
	switch format {
	case "text", "":
		return &Text{w: w, stats: map[string]*Stats{}}, nil
	case "json":
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // evidence says "a -> b", not "a -\u003e b"
		return &JSON{enc: enc}, nil
	}
	return nil, fmt.Errorf("output %q: want text or json", format)
}

// JSON writes one JSON object per attempt (JSON Lines) and no summary.
type JSON struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// Result writes r as one line.
func (j *JSON) Result(r probe.Result) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.enc.Encode(r)
}

// Summary writes nothing: a JSON consumer aggregates itself.
func (j *JSON) Summary() error { return nil }

// Text writes a line per attempt and a summary per target.
type Text struct {
	mu    sync.Mutex
	w     io.Writer
	order []string
	stats map[string]*Stats
	// quietOK: no line for plain successes (periodic.go).
	quietOK bool
}

// Result writes one line: time, target, reason, handshake time, retransmits,
// and the most telling line of evidence.
func (t *Text) Result(r probe.Result) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.stats[r.Target]
	if !ok {
		s = &Stats{Target: r.Target, Kind: r.Kind, ByReason: map[probe.Reason]int{}}
		t.stats[r.Target] = s
		t.order = append(t.order, r.Target)
	}
	s.Add(r)
	if t.quietOK && r.Reason == probe.ReasonOK {
		return nil
	}
	// The time column is the attempt's duration; the handshake's is added
	// where it differs (a 5 s reply_timeout after a 0.1 ms handshake).
	d, hs := r.Duration, ""
	if d <= 0 {
		d = r.Timings.Handshake
	}
	if h := r.Timings.Handshake; h > 0 && d-h > d/10 {
		hs = "  hs=" + FormatDuration(h)
	}
	col := "-"
	if d > 0 {
		col = FormatDuration(d)
	}
	app := ""
	if r.Timings.App > 0 {
		app = "  app=" + FormatDuration(r.Timings.App)
	}
	_, err := fmt.Fprintf(t.w, "%s  %-22s %-18s %9s  retx=%d%s%s  %s\n",
		r.Start.Format("15:04:05.000"), r.Target, r.Reason, col, r.Retransmits, hs, app, note(r))
	return err
}

// Summary writes the per-target statistics.
func (t *Text) Summary() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range t.order {
		if _, err := io.WriteString(t.w, t.stats[name].String()); err != nil {
			return err
		}
	}
	return nil
}

// note is the attempt's evidence on one line: every item, for successes
// too (a --paws check's verdict and the SYN/ACK's RTT are both decisive).
func note(r probe.Result) string {
	return strings.Join(r.Evidence, "; ")
}

// Stats aggregates the attempts against one target.
type Stats struct {
	Target     string
	Kind       string
	Sent       int
	OK         int // successes, degraded ones included
	Prober     int // the prober's own faults: no verdict on the target
	ByReason   map[probe.Reason]int
	Handshakes []time.Duration // of attempts that completed a handshake
	Apps       []time.Duration // application phase (kind app) of attempts that reached it
	ByLayer    map[string]int  // failures by where they happened (Layer)
}

// appKind is probe/app's Kind: its attempts have an application phase.
const appKind = "app"

// Layer says where a failed attempt failed: "network" (the SYN went
// unanswered or unrouted), "tcp" (the peer's TCP stack refused or reset),
// "server" (connected, but the application did not serve: app_error,
// app_timeout, or the server closing or resetting during its protocol),
// "local" (this side: setup, permissions). "" for successes.
func Layer(r probe.Result) string {
	if r.Success() {
		return ""
	}
	if r.Phase == probe.PhaseApp {
		return "server"
	}
	switch r.Reason {
	case probe.ReasonSynTimeout, probe.ReasonUnreachable, probe.ReasonDNSError:
		return "network"
	case probe.ReasonRefused, probe.ReasonReset, probe.ReasonPeerClosed, probe.ReasonReplyTimeout:
		return "tcp"
	}
	return "local"
}

// Add counts one result.
func (s *Stats) Add(r probe.Result) {
	s.Sent++
	s.ByReason[r.Reason]++
	if r.Reason.ProberFault() {
		s.Prober++ // neither success nor failure; its timings are the prober's
		return
	}
	if r.Success() {
		s.OK++
	}
	// Only completed handshakes: a timed-out one measures the timeout.
	completed := r.Success() || (r.Phase != probe.PhaseHandshake && r.Phase != probe.PhaseSetup && r.Phase != probe.PhaseResolve)
	if r.Timings.Handshake > 0 && completed {
		s.Handshakes = append(s.Handshakes, r.Timings.Handshake)
	}
	if r.Timings.App > 0 {
		s.Apps = append(s.Apps, r.Timings.App)
	}
	if l := Layer(r); l != "" {
		if s.ByLayer == nil {
			s.ByLayer = map[string]int{}
		}
		s.ByLayer[l]++
	}
}

// String renders the summary block.
func (s *Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s %s statistics ---\n", s.Target, s.Kind)
	loss := 0.0
	if judged := s.Sent - s.Prober; judged > 0 {
		loss = 100 * float64(judged-s.OK) / float64(judged)
	}
	fmt.Fprintf(&b, "%d sent, %d ok, %.0f%% failed", s.Sent, s.OK, loss)
	if s.Prober > 0 {
		fmt.Fprintf(&b, " (%d not counted: the prober's own fault)", s.Prober)
	}
	reasons := make([]probe.Reason, 0, len(s.ByReason))
	for r := range s.ByReason {
		reasons = append(reasons, r)
	}
	slices.SortFunc(reasons, func(a, b probe.Reason) int {
		if c := s.ByReason[b] - s.ByReason[a]; c != 0 {
			return c
		}
		return strings.Compare(string(a), string(b))
	})
	parts := make([]string, 0, len(reasons))
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s=%d", r, s.ByReason[r]))
	}
	fmt.Fprintf(&b, "; by reason: %s\n", strings.Join(parts, " "))
	if len(s.Handshakes) > 0 {
		d := slices.Clone(s.Handshakes)
		slices.Sort(d)
		fmt.Fprintf(&b, "handshake min/p50/p90/max = %s/%s/%s/%s\n",
			FormatDuration(d[0]), FormatDuration(Quantile(d, 0.5)), FormatDuration(Quantile(d, 0.9)), FormatDuration(d[len(d)-1]))
	}
	if s.Kind == appKind {
		s.writeWhere(&b)
	}
	return b.String()
}

// writeWhere says where the time and the failures of app attempts are:
// network, TCP or server.
func (s *Stats) writeWhere(b *strings.Builder) {
	if len(s.Apps) > 0 {
		d := slices.Clone(s.Apps)
		slices.Sort(d)
		fmt.Fprintf(b, "app       min/p50/p90/max = %s/%s/%s/%s\n",
			FormatDuration(d[0]), FormatDuration(Quantile(d, 0.5)), FormatDuration(Quantile(d, 0.9)), FormatDuration(d[len(d)-1]))
		if len(s.Handshakes) > 0 {
			h := slices.Clone(s.Handshakes)
			slices.Sort(h)
			hp, ap := Quantile(h, 0.5), Quantile(d, 0.5)
			fmt.Fprintf(b, "time (p50): network+tcp handshake %s, server %s (%.0f%% in the server)\n",
				FormatDuration(hp), FormatDuration(ap), 100*float64(ap)/float64(hp+ap))
		}
	}
	if s.Sent-s.Prober == s.OK {
		b.WriteString("failures: none\n")
		return
	}
	parts := make([]string, 0, 4)
	for _, l := range []string{"network", "tcp", "server", "local"} {
		if n := s.ByLayer[l]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", l, n))
		}
	}
	fmt.Fprintf(b, "failures: %s (network: SYN unanswered or unroutable; tcp: refused or reset; server: connected, protocol failed)\n", strings.Join(parts, ", "))
}

// Quantile returns the q-quantile of sorted durations (nearest rank).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// FormatDuration renders d with a precision that suits its size: "0.215ms",
// "12.3ms", "1.021s".
func FormatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
