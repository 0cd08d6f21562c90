//go:build linux

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/connprobe/connprobe/probe/kernel"
	"github.com/connprobe/connprobe/probe/netns"
)

// lintNodeFlags are `probe lint node`'s flags.
type lintNodeFlags struct {
	netns     string
	nodePorts string
	pathIdle  time.Duration
	nat       bool
	stuck     time.Duration
}

func newLintNodeCmd() *cobra.Command {
	var f lintNodeFlags
	cmd := &cobra.Command{
		Use:   "node [--netns NS]",
		Short: "Check a node's (or a namespace's) TCP sysctls, stuck sockets and conntrack table",
		Long: `Read the TCP sysctls of this node's network namespace (or of --netns) and
report every setting known to break connections: the ephemeral port range
overlapping the NodePort range, SYN retry counts that let a connect hang for
minutes, a keep-alive time longer than the path's idle timeout, TIME-WAIT
reuse/recycling and timestamps behind NAT. Each finding says why it matters
and what to set. Also lists sockets stuck in CLOSE-WAIT or SYN-RECV and the
conntrack table's fill and drops.

Exit status: 0 when nothing was found, 1 when something was, 2 on bad usage.`,
		Example: `  probe lint node
  probe lint node --netns pod-a --nat
  probe lint node --netns pid:4242 --path-idle-timeout 900s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lintNode(cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.netns, "netns", "", "network namespace to check: a name under /run/netns, a path, or pid:N (default: this process's)")
	fl.StringVar(&f.nodePorts, "nodeport-range", "30000-32767", "the cluster's NodePort range (--service-node-port-range)")
	fl.DurationVar(&f.pathIdle, "path-idle-timeout", 0, "shortest NAT/load-balancer idle timeout on the paths from here (0: 900s when IPVS services exist, else unchecked)")
	fl.BoolVar(&f.nat, "nat", false, "connections from here leave through a shared NAT address (pods behind the node IP)")
	fl.DurationVar(&f.stuck, "stuck-after", time.Minute, "report CLOSE-WAIT / SYN-RECV sockets idle at least this long")
	return cmd
}

func lintNode(w io.Writer, f lintNodeFlags) error {
	lo, hi, err := kernel.ParsePortRange(f.nodePorts)
	if err != nil {
		return usagef("--nodeport-range: %v", err)
	}
	path, where := "", "this node's namespace"
	if f.netns != "" {
		if path, err = netns.Resolve(f.netns); err != nil {
			return usagef("--netns: %v", err)
		}
		where = "namespace " + f.netns
	}
	s, err := kernel.ReadSysctls(path)
	if err != nil {
		return err
	}
	findings := kernel.Lint(s, kernel.LintConfig{NodePortLow: lo, NodePortHigh: hi, PathIdleTimeout: f.pathIdle, NAT: f.nat})
	problems := len(findings)
	fmt.Fprintf(w, "sysctls of %s: %d finding(s)\n", where, len(findings))
	for _, fd := range findings {
		fmt.Fprintf(w, "\n%s\n", fd)
	}

	socks, err := kernel.Sockets(path)
	if err != nil {
		fmt.Fprintf(w, "\nsockets: %v\n", err)
	} else {
		au := kernel.NewAuditor(f.stuck).Observe(socks, time.Now())
		lines := au.Summary()
		fmt.Fprintf(w, "\n%s\n", lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "stuck: %s\n", l)
		}
		problems += len(au.Stuck)
	}

	ct, err := kernel.ConntrackStats(path)
	if err != nil {
		fmt.Fprintf(w, "conntrack: %v\n", err)
	} else {
		fmt.Fprintf(w, "conntrack: %d/%d entries, insert_failed %d, drop %d, early_drop %d, invalid %d\n", ct.Entries, ct.Max, ct.InsertFailed, ct.Drop, ct.EarlyDrop, ct.Invalid)
		if ct.Max > 0 && uint64(ct.Entries)*10 >= uint64(ct.Max)*9 {
			fmt.Fprintf(w, "warning: conntrack table %d%% full: new connections are dropped when it fills (raise net.netfilter.nf_conntrack_max)\n", uint64(ct.Entries)*100/uint64(ct.Max))
			problems++
		}
		if ct.InsertFailed > 0 || ct.Drop > 0 {
			fmt.Fprintf(w, "warning: conntrack dropped packets (insert_failed %d, drop %d): SYNs lost to NAT races or a full table look like syn_retransmitted on clients\n", ct.InsertFailed, ct.Drop)
			problems++
		}
		if ct.Invalid > 0 {
			// Not a problem by itself (stray packets of closed flows are
			// invalid too), but a rising count with nf_conntrack_tcp_loose=0
			// is how a forgotten session shows: its packets are dropped.
			fmt.Fprintf(w, "notice: conntrack saw %d invalid packets (no tracked flow matched): if it rises while idle connections hang, a session was forgotten (stale NAT)\n", ct.Invalid)
		}
	}
	if problems > 0 {
		return errFailed
	}
	return nil
}
