//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/kernel"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// explainFlags are `probe run --explain`'s flags.
type explainFlags struct {
	on   bool
	peer string
}

func addExplainFlags(fl *pflag.FlagSet, f *explainFlags) {
	fl.BoolVar(&f.on, "explain", false, "add to a failed attempt the kernel counters that moved during it (drops, PAWS, timeouts, resets) at this end and, when its namespace is on this machine, at the far end")
	fl.StringVar(&f.peer, "peer-netns", "", "with --explain: the far end's namespace (default: the one on this machine that owns the target address)")
}

// explainer holds, per target (in argument order), the ends whose counters
// --explain compares.
type explainer struct {
	ends [][]kernel.End
	// why says, per target, why no far end is shown ("" when one is).
	why []string
}

// newExplainer finds the ends of each target: the local namespace, and the
// namespace that owns the target's address (or --peer-netns). Nil when
// --explain is off.
func newExplainer(ctx context.Context, f runFlags, args []string) (*explainer, error) {
	if !f.explainF.on {
		return nil, nil
	}
	local := kernel.End{Role: "local", Name: "host"}
	if f.netns != "" {
		p, err := netns.Resolve(f.netns)
		if err != nil {
			return nil, usagef("--netns: %v", err)
		}
		local = kernel.End{Role: "local", Name: f.netns, NetNS: p}
	}
	var fixed *kernel.End
	if f.explainF.peer != "" {
		p, err := netns.Resolve(f.explainF.peer)
		if err != nil {
			return nil, usagef("--peer-netns: %v", err)
		}
		fixed = &kernel.End{Role: "peer", Name: f.explainF.peer, NetNS: p}
	}
	var candidates []kernel.End
	if fixed == nil {
		// Every namespace on this machine, the host's included, except
		// the local one.
		nss, _ := targets.Discovery{IncludeHost: true}.Discover(ctx)
		for _, n := range nss {
			name := n.Name
			if name == "" {
				name = n.Label()
			}
			candidates = append(candidates, kernel.End{Role: "peer", Name: name, NetNS: n.Path})
		}
		candidates = append(candidates, kernel.End{Role: "peer", Name: "host"})
	}
	ex := &explainer{}
	for _, a := range args {
		ends := []kernel.End{local}
		why := "far end's namespace is not on this machine: only local counters shown"
		switch {
		case fixed != nil:
			ends = append(ends, *fixed)
		default:
			t, err := probe.ParseTarget(a)
			if err != nil {
				break
			}
			addr, err := netip.ParseAddr(t.Host)
			if err != nil {
				why = "far end unknown (a name, not an address): only local counters shown"
				break
			}
			if addr.Unmap().IsLoopback() {
				why = "a loopback target's far end is this same namespace: the local counters are both ends'"
				break
			}
			peer, ok, ambiguous := kernel.FindPeer(addr, candidates)
			switch {
			case ok && !samePath(peer.NetNS, local.NetNS):
				ends = append(ends, peer)
				why = ""
			case ok:
				why = "the target's address is this namespace's own: the local counters are both ends'"
			case len(ambiguous) > 0:
				names := make([]string, len(ambiguous))
				for i, e := range ambiguous {
					names[i] = e.Name
				}
				why = fmt.Sprintf("far end not shown: %d namespaces on this machine have %s (%s); name it with --peer-netns", len(ambiguous), addr, strings.Join(names, ", "))
			}
		}
		ex.ends = append(ex.ends, ends)
		ex.why = append(ex.why, why)
	}
	return ex, nil
}

func samePath(a, b string) bool {
	if a == b {
		return true
	}
	ia, erra := nsIno(a)
	ib, errb := nsIno(b)
	return erra == nil && errb == nil && ia == ib
}

// take snapshots the counters of target i's ends (nil when off).
func (e *explainer) take(i int) *kernel.Snapshot {
	if e == nil || i >= len(e.ends) {
		return nil
	}
	return kernel.Take(e.ends[i]...)
}

// add appends the counter deltas of target i's ends to a failed or
// degraded result.
func (e *explainer) add(i int, snap *kernel.Snapshot, r *probe.Result) {
	if snap == nil || (r.Success() && r.Reason == probe.ReasonOK) || r.Reason == probe.ReasonCanceled {
		return
	}
	r.Evidence = append(r.Evidence, snap.Evidence(kernel.Own{SynRetrans: r.Retransmits})...)
	if e.why[i] != "" {
		r.Evidence = append(r.Evidence, e.why[i])
	}
}

func nsIno(path string) (uint64, error) {
	if path == "" {
		path = "/proc/self/ns/net"
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
