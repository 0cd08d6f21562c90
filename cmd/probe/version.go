//go:build linux

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// revision is the git commit, set at build time (Makefile: -X
// main.revision=...); else the Go toolchain's vcs.revision when it
// recorded one; else "unknown".
var revision = ""

func buildRevision() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, git revision, Go version and build tags",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k := "no (build with TAGS=kubernetes)"
			if kubernetesBuilt {
				k = "yes"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "probe %s\nrevision: %s\ngo: %s\nkubernetes client: %s\n",
				version, buildRevision(), runtime.Version(), k)
			return err
		},
	}
}
