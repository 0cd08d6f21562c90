package configs

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/syn"
)

// Validate reports every problem of c, one per line, each with its path.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	checkDur := func(path, field string, d Duration) bool {
		if d.Err != nil {
			add(path, "%s %v", field, d.Err)
			return false
		}
		if d.D <= 0 {
			add(path, "%s %s must be positive", field, d.D)
			return false
		}
		return true
	}
	if checkDur("global", "interval", c.Global.Interval) && checkDur("global", "timeout", c.Global.Timeout) &&
		c.Global.Timeout.D >= c.Global.Interval.D {
		// Only when both are set: an unset timeout adapts (ApplyDefaults).
		add("global", "timeout %s must be shorter than interval %s", c.Global.Timeout.D, c.Global.Interval.D)
	}
	if r := c.Global.SynRate; r != nil && *r < 1 {
		add("global", "syn_rate %d must be positive (packets/s for all raw SYNs of the prober; unset: %d)", *r, syn.DefaultRate)
	}
	if k := c.Global.Kernel; k != nil {
		for i, n := range k.NetNS {
			if n == "" {
				add("global", "kernel.netns[%d]: empty (want a name under /run/netns, a path, pid:N or host)", i)
			}
		}
		if k.StuckAfter.Err != nil {
			add("global", "kernel.stuck_after %v", k.StuckAfter.Err)
		} else if k.StuckAfter.D < 0 {
			add("global", "kernel.stuck_after %s must not be negative", k.StuckAfter.D)
		}
	}
	if _, err := probe.ParseResolver(c.Global.Resolver); err != nil {
		add("global", "%v", err)
	}
	if len(c.Probes) == 0 {
		add("probes", "no jobs: nothing to probe")
	}
	seen := map[string]int{}
	for i := range c.Probes {
		j := &c.Probes[i]
		path := fmt.Sprintf("probes[%d] %q", i, j.Name)
		if j.Name == "" {
			path = fmt.Sprintf("probes[%d]", i)
			add(path, "name is required")
		} else if first, dup := seen[j.Name]; dup {
			add(path, "duplicate job name (first at probes[%d])", first)
		} else {
			seen[j.Name] = i
		}
		okI := checkDur(path, "interval", j.Interval)
		okT := checkDur(path, "timeout", j.Timeout)
		if okI && j.Interval.D < minInterval {
			add(path, "interval %s is below the minimum %s", j.Interval.D, minInterval)
		}
		switch {
		case j.Concurrency < 1 || j.Concurrency > maxConcurrency:
			add(path, "concurrency %d must be in 1-%d", j.Concurrency, maxConcurrency)
		case okI && okT && j.Concurrency == 1 && j.Timeout.D >= j.Interval.D:
			add(path, "timeout %s must be shorter than interval %s (or set concurrency to overlap attempts)", j.Timeout.D, j.Interval.D)
		case okI && okT && j.Timeout.D >= j.Interval.D*time.Duration(j.Concurrency):
			add(path, "timeout %s must be shorter than interval %s × concurrency %d = %s", j.Timeout.D, j.Interval.D, j.Concurrency, j.Interval.D*time.Duration(j.Concurrency))
		}
		if j.Resolver != c.Global.Resolver {
			if _, err := probe.ParseResolver(j.Resolver); err != nil {
				add(path, "%v", err)
			}
		}
		j.Expect.validate(func(format string, args ...any) { add(path, format, args...) })
		var kind *kindBlock
		for i, k := range kindBlocks {
			if k.name == j.Kind {
				kind = &kindBlocks[i]
			}
		}
		if kind == nil {
			add(path, "kind %q: want one of %s", j.Kind, strings.Join(slices.Sorted(slices.Values(Kinds())), ", "))
		}
		for _, k := range slices.SortedFunc(slices.Values(kindBlocks), func(a, b kindBlock) int { return strings.Compare(a.name, b.name) }) {
			if k.set(j) && k.name != j.Kind {
				add(path, "option block %q does not apply to kind %q", k.name, j.Kind)
			}
		}
		if kind != nil {
			if err := kind.check(j); err != nil {
				for _, e := range splitJoined(err) {
					add(path, "%v", e)
				}
			}
		}
		if j.App != nil && j.Kind == app.Kind {
			j.App.checkStatic(j.Targets.Static, func(format string, args ...any) { add(path, format, args...) })
		}
		if j.SLO != nil {
			j.SLO.validate(j.Timeout.D, func(format string, args ...any) { add(path, format, args...) })
		}
		if j.Vantage != nil {
			if j.NetNS != "" {
				add(path, "netns and vantage exclude each other (vantage probes from every matching namespace)")
			}
			j.Vantage.validate(func(format string, args ...any) { add(path, format, args...) })
		}
		if j.Trace != nil {
			j.Trace.validate(j, func(format string, args ...any) { add(path, format, args...) })
		}
		c.validateTargets(path, j, add)
	}
	return errors.Join(errs...)
}

func (c *Config) validateTargets(path string, j *Job, add func(path, format string, args ...any)) {
	t := j.Targets
	if len(t.Static) == 0 && t.FileSD == nil && len(t.DNS) == 0 && len(t.Kubernetes) == 0 {
		add(path, "targets: none (want static, file_sd, dns or kubernetes)")
	}
	for k, kc := range t.Kubernetes {
		if err := kc.Validate(); err != nil {
			for _, e := range splitJoined(err) {
				add(path, "targets.kubernetes[%d]: %v", k, e)
			}
		}
	}
	for k, s := range t.Static {
		if _, err := probe.ParseTarget(s); err != nil {
			add(path, "targets.static[%d]: %v", k, err)
		}
	}
	if f := t.FileSD; f != nil {
		if len(f.Files) == 0 {
			add(path, "targets.file_sd.files: none")
		}
		for k, name := range f.Files {
			switch _, err := filepath.Match(name, ""); {
			case name == "":
				add(path, "targets.file_sd.files[%d]: empty path", k)
			case err != nil:
				add(path, "targets.file_sd.files[%d] %q: bad glob: %v", k, name, err)
			case !slices.Contains([]string{".json", ".yaml", ".yml"}, strings.ToLower(filepath.Ext(name))):
				add(path, "targets.file_sd.files[%d] %q: want a .json, .yaml or .yml file (the extension says the format)", k, name)
			}
		}
		checkRefresh("targets.file_sd.refresh_interval", f.RefreshInterval, func(format string, args ...any) { add(path, format, args...) })
	}
	for k, d := range t.DNS {
		p := fmt.Sprintf("targets.dns[%d]", k)
		if d.Name == "" {
			add(path, "%s: name is required", p)
		}
		switch d.Type {
		case "A", "AAAA":
			if d.Port < 1 || d.Port > 65535 {
				add(path, "%s: port %d must be in 1-65535 for type %s", p, d.Port, d.Type)
			}
		case "SRV":
			if d.Port != 0 {
				add(path, "%s: port must not be set for type SRV (records carry their port)", p)
			}
		default:
			add(path, "%s: type %q: want A, AAAA or SRV", p, d.Type)
		}
		checkRefresh(p+".refresh_interval", d.RefreshInterval, func(format string, args ...any) { add(path, format, args...) })
		if d.Server != "" {
			if _, err := netip.ParseAddrPort(d.Server); err != nil {
				add(path, "%s.server %q: want ip:port", p, d.Server)
			}
		}
	}
}
