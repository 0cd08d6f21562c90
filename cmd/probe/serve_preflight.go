//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/probe/syn"
)

// grantHint says where the deployment grants a capability.
const grantHint = "deploy/daemonset.yaml grants it: securityContext.capabilities.add [NET_RAW, NET_ADMIN, SYS_ADMIN] as uid 0"

// preflightProblem is a job (or global block) that cannot run as configured
// because the prober lacks what it needs.
type preflightProblem struct {
	Job        string // `probes[1] "db"` or "global.kernel"
	Need       string // what the job needs, in words
	Capability string // the capability to grant
	Err        error
	Blocking   bool // the job cannot run: /-/ready says 503
}

func (p preflightProblem) String() string {
	return fmt.Sprintf("%s: %s needs %s (%v); %s", p.Job, p.Need, p.Capability, p.Err, grantHint)
}

// preflight checks what every job of cfg needs from this process: a raw
// socket for kind syn, setns(2) for netns and vantage jobs, netlink
// (CAP_NET_ADMIN) for conntrack evidence. Each check makes the operation
// itself where it can (open a raw socket, enter the job's namespace), else
// reads the effective capability set.
func preflight(cfg *configs.Config) []preflightProblem {
	var out []preflightProblem
	for i := range cfg.Probes {
		j := &cfg.Probes[i]
		path := fmt.Sprintf("probes[%d] %q", i, j.Name)
		var nsPath string
		if j.NetNS != "" {
			p, err := netns.Resolve(j.NetNS)
			if err != nil {
				continue // reported by loadJobs
			}
			nsPath = p
		}
		add := func(need, capability string, err error) {
			out = append(out, preflightProblem{Job: path, Need: need, Capability: capability, Err: err, Blocking: true})
		}
		if j.Vantage != nil {
			if err := needCap(unix.CAP_SYS_ADMIN); err != nil {
				add("probing from pod namespaces (vantage) with setns(2)", "CAP_SYS_ADMIN", err)
			}
		} else if nsPath != "" && j.Kind != syn.Kind {
			if err := netns.Do(nsPath, func() error { return nil }); err != nil {
				var perm *probe.PermissionError
				if errors.As(err, &perm) {
					add("entering netns "+j.NetNS+" with setns(2)", perm.Capability, err)
				}
			}
		}
		if j.Kind == syn.Kind {
			ns := nsPath
			if j.Vantage != nil {
				ns = "" // its namespaces come and go; the capability is the same
			}
			var perm *probe.PermissionError
			if err := syn.Check(ns); errors.As(err, &perm) {
				need := "the raw SYN probe (kind syn): a raw socket"
				if strings.HasPrefix(perm.Op, "setns") {
					need = "the raw SYN probe from netns " + j.NetNS + ": setns(2)"
				}
				add(need, perm.Capability, err)
			}
		}
	}
	if cfg.Global.Kernel != nil {
		if err := needCap(unix.CAP_NET_ADMIN); err != nil {
			// Counters and socket states still work: not blocking.
			out = append(out, preflightProblem{Job: "global.kernel", Need: "conntrack statistics over netlink",
				Capability: "CAP_NET_ADMIN", Err: err})
		}
	}
	return out
}

// needCap reports a missing capability in the effective set.
func needCap(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[c/32].Effective&(1<<(uint(c)%32)) == 0 {
		return errors.New("not in the effective capability set")
	}
	return nil
}

// logPreflight logs each problem once (per start or reload), as a warning.
func logPreflight(log *slog.Logger, problems []preflightProblem) {
	for _, p := range problems {
		msg := "job cannot run: its attempts count as prober faults (cause permission), not target failures; /-/ready is 503"
		if !p.Blocking {
			msg = "prober lacks a capability: evidence is partial"
		}
		log.Warn(msg, "job", p.Job, "needs", p.Need, "capability", p.Capability, "err", p.Err, "grant", grantHint)
	}
}

// notReady renders the blocking problems for /-/ready; "" when ready.
func notReady(problems []preflightProblem) string {
	var b strings.Builder
	n := 0
	for _, p := range problems {
		if p.Blocking {
			n++
			b.WriteString(p.String())
			b.WriteByte('\n')
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("not ready: %d job(s) cannot run\n%s", n, b.String())
}
