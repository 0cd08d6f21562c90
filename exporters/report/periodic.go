package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// QuietOK stops Result from writing a line for attempts that were plain
// successes (reason ok): with many targets, failures and degraded attempts
// stay readable between periodic reports (Report).
func (t *Text) QuietOK() {
	t.mu.Lock()
	t.quietOK = true
	t.mu.Unlock()
}

// Report writes one table of every target's statistics so far, like mtr's
// report: sent, ok, loss, handshake last/p50/p90/worst and the reasons, at
// now, elapsed after the start.
func (t *Text) Report(now time.Time, elapsed time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s summary: %d target(s), %s ---\n", now.Format("15:04:05"), len(t.order), elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	width := len("TARGET")
	for _, name := range t.order {
		width = max(width, len(name))
	}
	fmt.Fprintf(tw, "%-*s\tSENT\tOK\tLOSS%%\tLAST\tP50\tP90\tWORST\t  REASONS\n", width, "TARGET")
	for _, name := range t.order {
		s := t.stats[name]
		loss := 0.0
		if s.Sent > 0 {
			loss = 100 * float64(s.Sent-s.OK) / float64(s.Sent)
		}
		last, p50, p90, worst := "-", "-", "-", "-"
		if n := len(s.Handshakes); n > 0 {
			last = FormatDuration(s.Handshakes[n-1])
			d := slices.Clone(s.Handshakes)
			slices.Sort(d)
			p50, p90, worst = FormatDuration(Quantile(d, 0.5)), FormatDuration(Quantile(d, 0.9)), FormatDuration(d[n-1])
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t  %s\n", width, name, s.Sent, s.OK, loss, last, p50, p90, worst, reasonList(s.ByReason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

// reasonList renders counts by reason, most frequent first: "ok=30 refused=2".
func reasonList(by map[probe.Reason]int) string {
	reasons := make([]probe.Reason, 0, len(by))
	for r := range by {
		reasons = append(reasons, r)
	}
	slices.SortFunc(reasons, func(a, b probe.Reason) int {
		if c := by[b] - by[a]; c != 0 {
			return c
		}
		return strings.Compare(string(a), string(b))
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s=%d", r, by[r])
	}
	return strings.Join(parts, " ")
}
