//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/exporters/status"
)

// statusFlags are probe serve's flags for the history, the status page and
// the failure log (exporters/status).
type statusFlags struct {
	attempts     int
	failures     int
	summaryEvery time.Duration
}

func addStatusFlags(fl *pflag.FlagSet, f *statusFlags) {
	fl.IntVar(&f.attempts, "status.attempts", defaultStatusFlags.attempts,
		"attempts kept per target for the status page and /api/v1 (12 bytes each; 0: no history)")
	fl.IntVar(&f.failures, "status.failures", defaultStatusFlags.failures,
		"failures kept whole per target, with their evidence, beyond the attempts")
	fl.DurationVar(&f.summaryEvery, "log.failure-summary", defaultStatusFlags.summaryEvery,
		"while a target keeps failing, log a summary of its streak this often")
}

// defaultStatusFlags are the flags' defaults.
var defaultStatusFlags = statusFlags{attempts: status.DefaultAttempts, failures: status.DefaultFailures,
	summaryEvery: status.DefaultSummaryEvery}

// newStatus builds the status sink of probe serve. Flags left all zero (a
// serve started in-process, not from the command line) take the defaults.
func newStatus(f statusFlags, log *slog.Logger) (*status.Status, error) {
	if f == (statusFlags{}) {
		f = defaultStatusFlags
	}
	var errs []string
	if f.attempts < 0 || f.attempts > 4096 {
		errs = append(errs, fmt.Sprintf("--status.attempts %d: want 0 to 4096", f.attempts))
	}
	if f.failures < 1 || f.failures > 256 {
		errs = append(errs, fmt.Sprintf("--status.failures %d: want 1 to 256", f.failures))
	}
	if f.summaryEvery < time.Second {
		errs = append(errs, fmt.Sprintf("--log.failure-summary %s: want at least 1s", f.summaryEvery))
	}
	if len(errs) > 0 {
		return nil, usagef("%s", strings.Join(errs, "\n"))
	}
	return status.New(status.Options{Attempts: f.attempts, Failures: f.failures, SummaryEvery: f.summaryEvery,
		Log: log, Node: nodeName()}), nil
}

// nodeName names this agent on the status page: the node (the DaemonSet
// sets NODE_NAME), else the host name.
func nodeName() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

// routeLibraryLogs sends what libraries log through log, so that
// --log.format json makes every line JSON: the standard library's log
// package (net/http's server errors among others), the MySQL driver, and
// in the Kubernetes build client-go's klog (logging_kubernetes.go).
func routeLibraryLogs(log *slog.Logger) {
	slog.SetDefault(log)
	_ = mysql.SetLogger(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	routeKlog(log)
}
