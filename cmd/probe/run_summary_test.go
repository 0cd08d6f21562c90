package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRunSummaryEvery: probe run -c 0 against many targets stays readable:
// a table every --summary-every, lines only for attempts that were not ok.
func TestRunSummaryEvery(t *testing.T) {
	up := listen(t).Addr().String()
	down := closedPort(t)
	out := &syncBuffer{mu: make(chan struct{}, 1)}
	runStdout = out
	t.Cleanup(func() { runStdout = os.Stdout })
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if got := run(ctx, []string{"run", "-c", "0", "-i", "50ms", "--summary-every", "400ms", up, down}); got != exitFailed {
		t.Errorf("exit %d, want %d (the closed port refused)", got, exitFailed)
	}
	s := out.String()
	if n := strings.Count(s, " summary: 2 target(s), "); n < 2 || n > 4 {
		t.Errorf("%d periodic summaries in 1.5s at 400ms, want 2 to 4:\n%s", n, s)
	}
	for _, want := range []string{"TARGET", "LOSS%", "REASONS", "refused=", "100.0", "  ok=", "ECONNREFUSED"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, " "+up+" ") && strings.Contains(l, " ok ") {
			t.Errorf("an ok attempt got a line: %q", l)
		}
	}
	// The final per-target statistics still close the run.
	if !strings.Contains(s, "--- "+up+" connect statistics ---") {
		t.Errorf("no final statistics:\n%s", s)
	}
}

func TestRunSummaryEveryFlags(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--summary-every", "1s", "-o", "json", "127.0.0.1:1"},
		{"run", "--summary-every", "-1s", "127.0.0.1:1"},
	} {
		if got := run(context.Background(), args); got != exitUsage {
			t.Errorf("probe %v: exit %d, want %d", args, got, exitUsage)
		}
	}
}
