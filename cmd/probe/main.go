//go:build linux

// Command probe is connprobe's single binary: on-demand probes (run), the
// always-on prober (serve), the responder for long-connection probes, config
// and node lint, and the network-namespace lab.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses: 0 all attempts ok, 1 any failed, 2 bad usage or config.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError marks errors that are the user's input, not the network's.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errFailed is returned by commands whose probes ran but did not all succeed:
// already reported, exit 1.
var errFailed = errors.New("some attempts failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	root := newRootCmd()
	root.SetOut(runStdout)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFailed):
		return exitFailed
	}
	fmt.Fprintln(os.Stderr, "probe: "+err.Error())
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailed
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "probe",
		Short:         "Active connectivity prober: says what failed and why",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newRunCmd(),
		newTraceCmd(),
		newLabCmd(),
		newResponderCmd(),
		newServeCmd(),
		newLintCmd(),
		newNetnsCmd(), // netns_cmd.go
		newVersionCmd(),
	)
	return root
}

// isCobraUsage recognises cobra's own argument errors (unknown command, wrong
// number of arguments), which it returns as plain errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
