//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/exporters/report"
)

// runStdout is where probe run writes its report (tests replace it).
var runStdout io.Writer = os.Stdout

func addSummaryFlags(fl *pflag.FlagSet, f *runFlags) {
	fl.DurationVar(&f.summaryEvery, "summary-every", 0,
		"every D, print a table of every target so far (like mtr --report); lines are then printed only for attempts that were not ok (0: off; text output only)")
}

func checkSummaryFlags(f runFlags) []error {
	var errs []error
	if f.summaryEvery < 0 {
		errs = append(errs, fmt.Errorf("--summary-every %s must not be negative", f.summaryEvery))
	}
	if f.summaryEvery > 0 && f.output == "json" {
		errs = append(errs, fmt.Errorf("--summary-every is for text output; a JSON consumer aggregates itself"))
	}
	return errs
}

// startSummaries prints out's periodic report every f.summaryEvery until
// the returned stop is called.
func startSummaries(ctx context.Context, f runFlags, out report.Writer) (stop func()) {
	txt, ok := out.(*report.Text)
	if f.summaryEvery <= 0 || !ok {
		return func() {}
	}
	txt.QuietOK()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(f.summaryEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if err := txt.Report(now, now.Sub(start)); err != nil {
					fmt.Fprintln(os.Stderr, "probe: write:", err)
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}
