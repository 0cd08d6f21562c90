//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/scheduler/targets"
)

func newLintCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "lint --config FILE",
		Short: "Check a probe serve config file and exit",
		Long: `Load FILE as probe serve would: strict YAML, defaults, every problem listed
with its path, kinds and network namespaces checked. Exit 0 when it is good,
2 when it is not.

file_sd files are data that may appear only where serve runs (a ConfigMap, a
generator): a pattern that matches no file, or a file that cannot be read or
parsed now, is a warning on stderr, not an error.`,
		Example: `  probe lint --config configs/example.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usagef("lint: --config is required")
			}
			cfg, jobs, err := loadJobs(cmd.Context(), path, slog.New(slog.DiscardHandler))
			if err != nil {
				return usageError{err}
			}
			warnFileSD(cmd.Context(), cfg, cmd.ErrOrStderr())
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d job(s))\n", path, len(jobs))
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "config file to check")
	cmd.AddCommand(newLintNodeCmd()) // lint_node.go
	return cmd
}

// warnFileSD reports each file_sd pattern that names no file now, and each
// file that cannot be read or parsed, with its path in the config.
func warnFileSD(ctx context.Context, cfg *configs.Config, w io.Writer) {
	for i, j := range cfg.Probes {
		fsd := j.Targets.FileSD
		if fsd == nil {
			continue
		}
		for k, pat := range fsd.Files {
			where := fmt.Sprintf("probes[%d] %q: targets.file_sd.files[%d] %q", i, j.Name, k, pat)
			files, problems := targets.ExpandFileSD([]string{pat})
			for _, p := range problems {
				fmt.Fprintf(w, "probe lint: warning: %s: %s (serve picks up files that appear later)\n", where, p.Problem)
			}
			for _, f := range files {
				_, err := targets.ReadFileSD(ctx, f, "", slog.New(slog.DiscardHandler))
				switch {
				case errors.Is(err, fs.ErrNotExist):
					fmt.Fprintf(w, "probe lint: warning: %s: no such file (serve picks it up when it appears)\n", where)
				case err != nil:
					fmt.Fprintf(w, "probe lint: warning: %s: %v\n", where, err)
				}
			}
		}
	}
}
