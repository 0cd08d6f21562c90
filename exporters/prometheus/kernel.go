package prometheus

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connprobe/connprobe/probe/kernel"
)

// KernelCollector exports the kernel evidence of a set of namespaces as metrics,
// read on each scrape: the kernel.Watched TCP counters, sockets by state, stuck
// CLOSE-WAIT/SYN-RECV sockets, conntrack fill and drops, and sysctl lint
// findings. Labels are bounded: netns is a namespace label (one per
// namespace on the node, see targets.Namespace.Label), counter/state/sysctl
// come from fixed lists; remote endpoints are never labels.
type KernelCollector struct {
	// Ends returns the namespaces to export now, keyed by kernel.End.Name (the
	// netns label). Namespaces no longer returned are forgotten.
	Ends func() []kernel.End
	// StuckAfter is the age from which CLOSE-WAIT/SYN-RECV sockets count
	// as stuck (default 1 min).
	StuckAfter time.Duration
	// Lint configures the sysctl lint.
	Lint kernel.LintConfig

	mu       sync.Mutex
	auditors map[string]*kernel.Auditor
}

var (
	kernelDescCounter   = prometheus.NewDesc("connprobe_netns_tcp_events_total", "TCP events counted by the namespace's kernel (/proc/net/netstat, /proc/net/snmp), by counter name.", []string{"netns", "counter"}, nil)
	kernelDescSockets   = prometheus.NewDesc("connprobe_netns_tcp_sockets", "TCP sockets in the namespace by state (sock_diag).", []string{"netns", "state"}, nil)
	kernelDescStuck     = prometheus.NewDesc("connprobe_netns_tcp_stuck_sockets", "CLOSE-WAIT or SYN-RECV sockets older than the threshold.", []string{"netns", "state"}, nil)
	kernelDescStuckAge  = prometheus.NewDesc("connprobe_netns_tcp_stuck_socket_age_seconds", "Age of the oldest stuck socket: time since first seen, or since it last received data when longer.", []string{"netns", "state"}, nil)
	kernelDescCtEntries = prometheus.NewDesc("connprobe_netns_conntrack_entries", "Connection-tracking entries in the namespace.", []string{"netns"}, nil)
	kernelDescCtMax     = prometheus.NewDesc("connprobe_netns_conntrack_entries_limit", "nf_conntrack_max as seen from the namespace.", []string{"netns"}, nil)
	kernelDescCtEvents  = prometheus.NewDesc("connprobe_netns_conntrack_events_total", "Conntrack insert failures and drops, summed over CPUs.", []string{"netns", "event"}, nil)
	kernelDescFinding   = prometheus.NewDesc("connprobe_netns_sysctl_finding", "1 for each sysctl lint finding in the namespace (see probe lint node).", []string{"netns", "sysctl", "severity"}, nil)
	kernelDescUp        = prometheus.NewDesc("connprobe_netns_kernel_read_success", "Whether reading a source of kernel evidence of the namespace worked (1) or not (0).", []string{"netns", "source"}, nil)
)

// Describe implements prometheus.Collector.
func (c *KernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{kernelDescCounter, kernelDescSockets, kernelDescStuck, kernelDescStuckAge, kernelDescCtEntries, kernelDescCtMax, kernelDescCtEvents, kernelDescFinding, kernelDescUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *KernelCollector) Collect(ch chan<- prometheus.Metric) {
	ends := c.Ends()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auditors == nil {
		c.auditors = map[string]*kernel.Auditor{}
	}
	live := map[string]bool{}
	for _, e := range ends {
		live[e.Name] = true
		c.collect(ch, e)
	}
	for name := range c.auditors {
		if !live[name] {
			delete(c.auditors, name)
		}
	}
}

func kernelUp(ch chan<- prometheus.Metric, ns, source string, err error) bool {
	v := 1.0
	if err != nil {
		v = 0
	}
	ch <- prometheus.MustNewConstMetric(kernelDescUp, prometheus.GaugeValue, v, ns, source)
	return err == nil
}

func (c *KernelCollector) collect(ch chan<- prometheus.Metric, e kernel.End) {
	ns := e.Name
	if cs, err := kernel.ReadCounters(e.NetNS); kernelUp(ch, ns, "counters", err) {
		for _, w := range kernel.Watched {
			if v, ok := cs[w.Key]; ok {
				ch <- prometheus.MustNewConstMetric(kernelDescCounter, prometheus.CounterValue, float64(v), ns, w.Key[strings.IndexByte(w.Key, '.')+1:])
			}
		}
	}

	if socks, err := kernel.Sockets(e.NetNS); kernelUp(ch, ns, "sockets", err) {
		a, ok := c.auditors[ns]
		if !ok {
			th := c.StuckAfter
			if th == 0 {
				th = time.Minute
			}
			a = kernel.NewAuditor(th)
			c.auditors[ns] = a
		}
		au := a.Observe(socks, time.Now())
		for st, n := range au.ByState {
			ch <- prometheus.MustNewConstMetric(kernelDescSockets, prometheus.GaugeValue, float64(n), ns, st.Label())
		}
		// Always export both, so an alert on them sees 0, not absence.
		for _, st := range []kernel.State{kernel.CloseWait, kernel.SynRecv} {
			count, age := 0, time.Duration(0)
			for _, s := range au.Stuck {
				if s.State == st || (st == kernel.SynRecv && s.State == kernel.NewSynRecv) {
					count += s.Count
					age = max(age, s.Age, s.Idle)
				}
			}
			ch <- prometheus.MustNewConstMetric(kernelDescStuck, prometheus.GaugeValue, float64(count), ns, st.Label())
			ch <- prometheus.MustNewConstMetric(kernelDescStuckAge, prometheus.GaugeValue, age.Seconds(), ns, st.Label())
		}
	}

	if ct, err := kernel.ConntrackStats(e.NetNS); kernelUp(ch, ns, "conntrack", err) {
		ch <- prometheus.MustNewConstMetric(kernelDescCtEntries, prometheus.GaugeValue, float64(ct.Entries), ns)
		ch <- prometheus.MustNewConstMetric(kernelDescCtMax, prometheus.GaugeValue, float64(ct.Max), ns)
		for _, ev := range []struct {
			name string
			v    uint64
		}{{"insert_failed", ct.InsertFailed}, {"drop", ct.Drop}, {"early_drop", ct.EarlyDrop}, {"invalid", ct.Invalid}} {
			ch <- prometheus.MustNewConstMetric(kernelDescCtEvents, prometheus.CounterValue, float64(ev.v), ns, ev.name)
		}
	}

	if s, err := kernel.ReadSysctls(e.NetNS); kernelUp(ch, ns, "sysctls", err) {
		for _, f := range kernel.Lint(s, c.Lint) {
			ch <- prometheus.MustNewConstMetric(kernelDescFinding, prometheus.GaugeValue, 1, ns, f.Key, string(f.Severity))
		}
	}
}
