package idle

import (
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe"
)

func outcomes(lost, survived []time.Duration) map[time.Duration]outcome {
	m := map[time.Duration]outcome{}
	for _, d := range lost {
		m[d] = outcome{lost: true, r: probe.Result{Reason: probe.ReasonStaleSession}}
	}
	for _, d := range survived {
		m[d] = outcome{r: probe.Result{Reason: probe.ReasonOK}}
	}
	return m
}

// TestTallyNonMonotonic (issue 21 item 11): a longer idle time that
// survived after a shorter one was lost is reported, within a round and
// across rounds, and the boundary keeps the shortest loss.
func TestTallyNonMonotonic(t *testing.T) {
	s := time.Second
	t.Run("across rounds", func(t *testing.T) {
		tl := tally{repeats: 6}
		tl.add([]time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s}, outcomes([]time.Duration{8 * s}, []time.Duration{s, 2 * s, 4 * s}))
		if tl.b.Untrusted != "" || tl.b.Lost != 8*s || tl.b.Survived != 4*s {
			t.Fatalf("round 1: %+v", tl.b)
		}
		line := tl.add([]time.Duration{5 * s, 6 * s, 7 * s}, outcomes([]time.Duration{5 * s}, nil))
		if tl.b.Lost != 5*s || tl.b.Survived != 4*s || tl.b.Untrusted != "" {
			t.Fatalf("round 2: %+v", tl.b)
		}
		// A third round (as the issue saw: "survived up to 30s") contradicts.
		line = tl.add([]time.Duration{30 * s}, outcomes(nil, []time.Duration{30 * s}))
		if tl.b.Untrusted == "" || !strings.Contains(line, "INCONSISTENT: survived 30s after a loss at 5s") {
			t.Fatalf("no contradiction reported: %q %+v", line, tl.b)
		}
		if tl.b.Lost != 5*s || tl.b.Survived != 4*s {
			t.Errorf("boundary %s–%s, want 4s–5s (the shortest loss)", tl.b.Survived, tl.b.Lost)
		}
		if v := tl.b.String(); !strings.HasPrefix(v, "NOT TRUSTWORTHY: ") || !strings.Contains(v, "survived 30s idle although one was lost after 5s") {
			t.Errorf("verdict %q", v)
		}
	})
	t.Run("within a round", func(t *testing.T) {
		tl := tally{repeats: 1}
		tl.add([]time.Duration{5 * s, 5500 * time.Millisecond, 6 * s}, outcomes([]time.Duration{5500 * time.Millisecond}, []time.Duration{5 * s, 6 * s}))
		if tl.b.Untrusted == "" || tl.b.Lost != 5500*time.Millisecond || tl.b.Survived != 5*s {
			t.Fatalf("%+v", tl.b)
		}
	})
	t.Run("consistent", func(t *testing.T) {
		tl := tally{repeats: 1}
		tl.add([]time.Duration{s, 2 * s, 4 * s}, outcomes(nil, []time.Duration{s, 2 * s, 4 * s}))
		if tl.b.Found() || tl.b.Untrusted != "" || tl.b.Survived != 4*s {
			t.Fatalf("%+v", tl.b)
		}
	})
}
