package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
)

func newLintCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "lint --config FILE",
		Short: "Check a probe serve config file and exit",
		Long: `Load FILE as probe serve would: strict YAML, defaults, every problem listed
with its path, kinds and network namespaces checked. Exit 0 when it is good,
2 when it is not.`,
		Example: `  probe lint --config configs/example.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usagef("lint: --config is required")
			}
			_, jobs, err := loadJobs(cmd.Context(), path, slog.New(slog.DiscardHandler))
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d job(s))\n", path, len(jobs))
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "config file to check")
	cmd.AddCommand(newLintNodeCmd()) // lint_node.go
	return cmd
}
