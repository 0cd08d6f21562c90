//go:build linux

package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/connprobe/connprobe/scheduler/targets"
)

func newNetnsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netns",
		Short: "Network namespaces on this machine (pods' included)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newNetnsLsCmd())
	return cmd
}

func newNetnsLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List network namespaces with their pod, a PID inside and the probe command to use",
		Long: `List every network namespace on this machine: named ones (/run/netns) and
those of running processes (/proc/PID/ns/net), one line each, deduplicated,
with the pod it belongs to (from the pod UID in the cgroup of a process
inside; namespace/name when the pod's environment names it), a PID inside,
and the --netns argument that probes from it. Needs root (CAP_SYS_PTRACE to
read other processes' namespaces) and, in a pod, hostPID.`,
		Example: `  probe netns ls
  probe run --netns /run/netns/cni-5d1a 10.96.0.10:53   # the COMMAND column`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nss, err := targets.Discovery{IncludeHost: true}.Discover(cmd.Context())
			if err != nil {
				return fmt.Errorf("netns ls: %w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMESPACE\tPOD\tPID\tCOMMAND")
			for _, n := range nss {
				pod := "-"
				switch {
				case n.PodNamespace != "" && n.PodName != "":
					pod = n.PodNamespace + "/" + n.PodName
				case n.PodUID != "":
					pod = "uid " + n.PodUID
				}
				pid := "-"
				if n.PID > 0 {
					pid = strconv.Itoa(n.PID)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\tprobe run --netns %s HOST:PORT\n", n.Label(), pod, pid, n.Path)
			}
			return w.Flush()
		},
	}
}
