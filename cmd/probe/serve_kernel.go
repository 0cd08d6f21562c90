//go:build linux

package main

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/connprobe/connprobe/configs"
	promexp "github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/probe/kernel"
	"github.com/connprobe/connprobe/probe/netns"
)

// kernelMetrics exports the kernel evidence of the namespaces the running
// config names (global.kernel): one promexp.KernelCollector, registered once, whose
// set of namespaces follows each (re)load.
type kernelMetrics struct {
	ends atomic.Pointer[[]kernel.End]
	c    *promexp.KernelCollector
}

func newKernelMetrics() *kernelMetrics {
	k := &kernelMetrics{}
	k.c = &promexp.KernelCollector{Ends: func() []kernel.End {
		if e := k.ends.Load(); e != nil {
			return *e
		}
		return nil
	}}
	return k
}

// apply switches to the namespaces of cfg (checked by kernelEnds when the
// config was loaded).
func (k *kernelMetrics) apply(cfg *configs.Config) {
	ends, _ := kernelEnds(cfg)
	if o := cfg.Global.Kernel; o != nil {
		k.c.StuckAfter = o.StuckAfter.D
	}
	k.ends.Store(&ends)
}

// kernelEnds lists the namespaces whose kernel evidence cfg exports, each
// once, labelled as the config names it ("host" for the prober's own).
func kernelEnds(cfg *configs.Config) ([]kernel.End, error) {
	o := cfg.Global.Kernel
	if o == nil {
		return nil, nil
	}
	var ends []kernel.End
	var errs []error
	seen := map[string]bool{}
	add := func(spec string) error {
		if seen[spec] {
			return nil
		}
		seen[spec] = true
		if spec == "host" || spec == "" {
			ends = append(ends, kernel.End{Name: "host"})
			seen["host"], seen[""] = true, true
			return nil
		}
		p, err := netns.Resolve(spec)
		if err != nil {
			return err
		}
		ends = append(ends, kernel.End{Name: spec, NetNS: p})
		return nil
	}
	if o.FromJobs() {
		for _, j := range cfg.Probes {
			if j.Vantage != nil {
				continue // its namespaces come and go: not exported
			}
			// A job's bad netns is reported with the job's path by buildJobs.
			_ = add(j.NetNS)
		}
	}
	for i, n := range o.NetNS {
		if err := add(n); err != nil {
			errs = append(errs, fmt.Errorf("global: kernel.netns[%d]: %w", i, err))
		}
	}
	return ends, errors.Join(errs...)
}
