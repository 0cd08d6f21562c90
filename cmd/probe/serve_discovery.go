//go:build linux

package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// discoveryCollector exports what targets.Health knows about each job's
// target sources:
//
//	connprobe_discovery_synced{job}                1: every source synced and working
//	connprobe_discovery_errors_total{job,source}   failed lists, watches, lookups, reads
type discoveryCollector struct {
	h      *targets.Health
	synced *prometheus.Desc
	errors *prometheus.Desc
}

func newDiscoveryCollector(h *targets.Health) *discoveryCollector {
	return &discoveryCollector{
		h: h,
		synced: prometheus.NewDesc("connprobe_discovery_synced",
			"1 when every target source of the job (file_sd, dns, kubernetes) has synced and its last list, watch, lookup or read worked; 0 while one has not synced yet or is failing (the job probes its last known targets).",
			[]string{"job"}, nil),
		errors: prometheus.NewDesc("connprobe_discovery_errors_total",
			"Failed attempts of a job's target sources: Kubernetes list and watch requests, DNS lookups, file_sd files that could not be read or parsed.",
			[]string{"job", "source"}, nil),
	}
}

func (c *discoveryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.synced
	ch <- c.errors
}

func (c *discoveryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, j := range c.h.Jobs() {
		v := 0.0
		if j.Synced {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.synced, prometheus.GaugeValue, v, j.Job)
		for src, n := range j.Errors {
			ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(n), j.Job, src)
		}
	}
}

// discoverySources counts each job's target sources that report to
// Health (targets.Health.Expect): file_sd, each dns entry, each kubernetes
// block and a vantage pods_selector.
func discoverySources(cfg *configs.Config) map[string]int {
	n := map[string]int{}
	for _, j := range cfg.Probes {
		c := len(j.Targets.DNS) + len(j.Targets.Kubernetes)
		if j.Targets.FileSD != nil {
			c++
		}
		if j.Vantage != nil && j.Vantage.PodsSelector != nil {
			c++
		}
		if c > 0 {
			n[j.Name] = c
		}
	}
	return n
}

// discoveryReady is the discovery part of readiness: nil once every target
// source of the running config has synced once (a Kubernetes source has
// listed, a DNS name resolved, the file_sd files been read), else an error
// that names those still waiting.
func (s *server) discoveryReady() error {
	return s.health.Ready()
}
