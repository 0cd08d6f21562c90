package configs

import (
	"strings"
	"time"

	"github.com/connprobe/connprobe/scheduler/targets"
)

// ApplyDefaults fills in every unset field with its default.
func (c *Config) ApplyDefaults() {
	if !c.Global.Interval.set() {
		c.Global.Interval.D = DefaultInterval
	}
	if !c.Global.Timeout.set() {
		c.Global.Timeout.D = DefaultTimeout
		if gi := c.Global.Interval; gi.Err == nil && gi.D > 0 && gi.D <= DefaultTimeout {
			c.Global.Timeout.D = gi.D * 4 / 5
		}
	}
	for i := range c.Probes {
		j := &c.Probes[i]
		if j.Kind == "" {
			j.Kind = j.defaultKind()
		}
		if !j.Interval.set() {
			j.Interval = c.Global.Interval
		}
		if !j.Timeout.set() {
			j.Timeout = c.Global.Timeout
			if j.Timeout.Err == nil && j.Interval.Err == nil && j.Interval.D > 0 &&
				j.Timeout.D >= j.Interval.D*time.Duration(max(j.Concurrency, 1)) {
				// An inherited timeout adapts to a short interval.
				j.Timeout = Duration{D: j.Interval.D * 4 / 5}
			}
		}
		if j.Concurrency == 0 {
			j.Concurrency = DefaultConcurrency
		}
		if j.Resolver == "" {
			j.Resolver = c.Global.Resolver
		}
		if v := j.Vantage; v != nil && !v.RefreshInterval.set() {
			v.RefreshInterval.D = targets.DefaultVantageRefresh
		}
		if j.Targets.FileSD != nil && !j.Targets.FileSD.RefreshInterval.set() {
			j.Targets.FileSD.RefreshInterval.D = DefaultFileSDRefresh
		}
		for k := range j.Targets.DNS {
			d := &j.Targets.DNS[k]
			if d.Type == "" {
				d.Type = DefaultDNSType
			}
			d.Type = strings.ToUpper(d.Type)
			if !d.RefreshInterval.set() {
				d.RefreshInterval.D = DefaultDNSRefresh
			}
		}
	}
}
