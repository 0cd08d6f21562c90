//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/probe/syn"
	"github.com/connprobe/connprobe/probe/trace"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// traceFlags are `probe trace`'s flags (and --trace's for `probe run`).
type traceFlags struct {
	maxHops    int
	queries    int
	hopTimeout time.Duration
	gap        int
}

func addTraceFlags(fl *pflag.FlagSet, f *traceFlags, prefix string) {
	fl.IntVar(&f.maxHops, prefix+"max-hops", trace.DefaultMaxHops, "highest TTL (IPv6: hop limit) a trace tries")
	fl.IntVar(&f.queries, prefix+"queries", trace.DefaultQueries, "SYNs per hop")
	fl.DurationVar(&f.hopTimeout, prefix+"hop-timeout", trace.DefaultHopTimeout, "how long each SYN of a trace waits for its answer")
	fl.IntVar(&f.gap, prefix+"gap", trace.DefaultGap, "end a trace after this many silent hops in a row")
}

func (f traceFlags) config(nsPath string, src netip.Addr) trace.Config {
	return trace.Config{NetNS: nsPath, Source: src, MaxHops: f.maxHops, Queries: f.queries, HopTimeout: f.hopTimeout, Gap: f.gap}
}

func newTraceCmd() *cobra.Command {
	var (
		tf           traceFlags
		ns, src, pod string
		out          string
		explain      bool
		rate         int
	)
	cmd := &cobra.Command{
		Use:   "trace [flags] TARGET",
		Short: "Find where a SYN or its SYN/ACK dies: a TCP traceroute on the probe's own flow",
		Long: `Send SYNs with TTL 1, 2, 3… to TARGET (ip:port) on one flow identifier (the
same source and destination ports for every hop, as the real connection), match
the routers' ICMP time-exceeded by the SYN they quote, and end at the target's
SYN/ACK or RST, an ICMP unreachable, or silence after the last hop that
answered. --explain reads the flow's conntrack entry in the namespaces on this
machine: which backend a Service VIP's DNAT chose, and whether the node saw it
answer. Needs CAP_NET_RAW.

Exit status: 0 when the target answered with a SYN/ACK, 1 otherwise, 2 on bad usage.`,
		Example: `  probe trace 10.96.0.10:80
  probe trace --netns pid:4242 --explain -o json 10.96.0.10:80`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("trace: exactly one TARGET (ip:port) is required")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dst, err := netip.ParseAddrPort(args[0])
			if err != nil || dst.Port() == 0 {
				return usagef("trace: target %q: want ip:port (an IP literal, e.g. 10.96.0.10:80 or [fd00::1]:80)", args[0])
			}
			if out != "text" && out != "json" {
				return usagef("--output %q: want text or json", out)
			}
			var nsPath string
			if ns != "" {
				if nsPath, err = netns.Resolve(ns); err != nil {
					return usagef("--netns: %v", err)
				}
			}
			if pod != "" {
				if ns != "" {
					return usagef("--pod and --netns are mutually exclusive: --pod finds the pod's namespace")
				}
				n, err := findPodNS(cmd.Context(), targets.Discovery{IncludeHost: true}, pod)
				if err != nil {
					return err
				}
				nsPath = n.Path
			}
			var source netip.Addr
			if src != "" {
				if source, err = netip.ParseAddr(src); err != nil {
					return usagef("--source %q: not an IP address", src)
				}
			}
			cfg := tf.config(nsPath, source)
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			if err := syn.SetRate(rate, min(rate, syn.DefaultBurst)); err != nil {
				return usagef("--syn-rate: %v", err)
			}
			tr := trace.Run(cmd.Context(), "", dst, cfg)
			if explain {
				tr.Explain(tracePlaces(cmd.Context(), nsPath))
			}
			if err := writeTrace(cmd.OutOrStdout(), out, tr); err != nil {
				return err
			}
			if tr.End == trace.EndError {
				if _, ok := errorsAsPerm(tr.Err); ok {
					fmt.Fprintln(cmd.ErrOrStderr(), "probe: trace needs raw sockets (CAP_NET_RAW); without them try `probe run --kind connect` for the reason, not the place")
				}
			}
			if tr.End != trace.EndSynAck {
				return errFailed
			}
			return nil
		},
	}
	fl := cmd.Flags()
	addTraceFlags(fl, &tf, "")
	fl.StringVar(&ns, "netns", "", "network namespace to trace from: a name under /run/netns, a path, or pid:N")
	fl.StringVar(&pod, "pod", "", "trace from pod NAMESPACE/NAME on this node (its network namespace)")
	fl.StringVar(&src, "source", "", "local source address")
	fl.StringVarP(&out, "output", "o", "text", "output format: text or json")
	fl.BoolVar(&explain, "explain", false, "look up the flow's conntrack entry in the namespaces on this machine (the node of a Service VIP)")
	fl.IntVar(&rate, "syn-rate", syn.DefaultRate, "budget for all raw SYNs of this process, packets/s")
	return cmd
}

func errorsAsPerm(err error) (*probe.PermissionError, bool) {
	return errors.AsType[*probe.PermissionError](err)
}

// tracePlaces lists the namespaces on this machine whose conntrack may hold
// the traced flow: every one but the tracing namespace itself, and the host.
func tracePlaces(ctx context.Context, local string) []trace.Place {
	var ps []trace.Place
	nss, _ := targets.Discovery{IncludeHost: true}.Discover(ctx)
	for _, n := range nss {
		if samePath(n.Path, local) {
			continue
		}
		name := n.Name
		if name == "" {
			name = n.Label()
		}
		ps = append(ps, trace.Place{Name: name, NetNS: n.Path})
	}
	if local != "" {
		ps = append(ps, trace.Place{Name: "host"})
	}
	return ps
}

func writeTrace(w io.Writer, format string, tr *trace.Trace) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(tr.JSON())
	}
	for _, l := range tr.Lines() {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// newRunTracer is nil unless --trace.
func newRunTracer(f runFlags) (*runTracer, error) {
	if !f.trace {
		for _, n := range []string{"trace-max-hops", "trace-queries", "trace-hop-timeout", "trace-gap"} {
			if f.changed != nil && f.changed(n) {
				return nil, usagef("--%s needs --trace", n)
			}
		}
		return nil, nil
	}
	var nsPath string
	if f.netns != "" {
		p, err := netns.Resolve(f.netns)
		if err != nil {
			return nil, usagef("--netns: %v", err)
		}
		nsPath = p
	}
	var src netip.Addr
	if f.source != "" {
		src, _ = netip.ParseAddr(f.source) // checked by planRun
	}
	cfg := f.traceF.config(nsPath, src)
	if err := cfg.Validate(); err != nil {
		return nil, usageError{fmt.Errorf("--trace: %w", err)}
	}
	return &runTracer{cfg: cfg, explain: f.explainF.on, nsPath: nsPath}, nil
}

// runTracer adds `probe run --trace`: after a failed attempt, one trace of
// the target, its verdict appended to the attempt's evidence.
type runTracer struct {
	cfg     trace.Config
	explain bool
	nsPath  string
	seen    func(target string, tr *trace.Trace) // the live view's, when on
}

func (rt *runTracer) after(ctx context.Context, r *probe.Result) {
	if rt == nil || r.Success() || r.Reason.Class() != probe.ClassFailure || r.Phase != probe.PhaseHandshake || !r.Remote.IsValid() {
		return
	}
	tr := trace.Run(ctx, r.Target, r.Remote, rt.cfg)
	if rt.explain {
		tr.Explain(tracePlaces(ctx, rt.nsPath))
	}
	r.Evidence = append(r.Evidence, "trace: "+tr.Verdict)
	if rt.seen != nil {
		rt.seen(r.Target, tr)
	}
}
