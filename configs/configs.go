// Package configs is the schema of `probe serve`'s YAML file: jobs, each a
// probe kind pointed at a set of targets on an interval. Load decodes strictly
// (an unknown field is an error), fills in the defaults, and Validate reports
// every problem at once, each with its path:
//
//	probes[2] "db": timeout 5s must be shorter than interval 2s
//
// Each probe kind owns its typed Config (connect.Config, ...); this package
// holds the YAML option block of each kind (ConnectOptions, ...) and converts
// it. Files: configs.go the schema, kinds.go the table of kinds,
// options.go the option blocks, defaults.go, validate.go, load.go (strict
// decoding), duration.go, expect.go, trace.go.
package configs

import (
	"path"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/syn"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes/spec"
)

// Defaults.
const (
	DefaultInterval      = 10 * time.Second
	DefaultTimeout       = 5 * time.Second
	DefaultKind          = "connect"
	DefaultFileSDRefresh = 5 * time.Second
	DefaultDNSRefresh    = 30 * time.Second
	DefaultConcurrency   = 1
	DefaultDNSType       = "A"
	maxConcurrency       = 1000
	minInterval          = 10 * time.Millisecond
	// MinRefreshInterval is the shortest refresh_interval of file_sd, dns
	// and vantage: discovery re-reads files, resolves names and scans
	// /proc, and at 1ns it would keep a core busy.
	MinRefreshInterval = time.Second
)

// Expectations of a job.
const (
	ExpectSuccess = "success" // the targets must answer (the default)
	ExpectFail    = "fail"    // the targets must NOT answer (a NetworkPolicy that must block): success is the alarm
)

// Config is a whole configuration file.
type Config struct {
	// Global holds the defaults of every job.
	Global Global `yaml:"global"`
	// Probes are the jobs.
	Probes []Job `yaml:"probes"`
}

// Global holds defaults applied to jobs that do not set them, and the
// settings of the whole prober process.
type Global struct {
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	// SynRate is the budget, in packets per second, for every raw SYN the
	// process sends: all kind syn jobs and targets, retransmits and PAWS
	// checks together, so the prober can never become a SYN flood (a probe
	// that finds no room before its timeout ends with local_error). Unset:
	// syn.DefaultRate.
	SynRate *int `yaml:"syn_rate"`
	// Kernel, when set, exports the kernel evidence (connprobe_netns_*
	// metrics: TCP counters, socket states, stuck sockets, conntrack,
	// sysctl findings; docs/podnetns.md) of the namespaces the jobs probe
	// from, read on each scrape.
	Kernel *KernelOptions `yaml:"kernel"`
	// Resolver is the DNS server (ip or ip:port, port 53 by default) that
	// resolves host name targets of every job that names none, and the
	// dns target sources without a server. Unset: the system resolver
	// (/etc/resolv.conf of the prober's own network namespace).
	Resolver string `yaml:"resolver"`
}

// KernelOptions says whose kernel evidence `probe serve` exports. The netns
// label is "host" for the prober's own namespace, else the namespace as the
// config names it (a job's netns, an entry of NetNS): bounded by the file.
type KernelOptions struct {
	// Jobs exports the namespace of every job: its netns, or the prober's
	// own ("host") for jobs without one. Default true.
	Jobs *bool `yaml:"jobs"`
	// NetNS lists more namespaces: names under /run/netns, paths, pid:N,
	// or "host" (the prober's own).
	NetNS []string `yaml:"netns"`
	// StuckAfter is the age from which CLOSE-WAIT and SYN-RECV sockets
	// count as stuck (default 1m).
	StuckAfter Duration `yaml:"stuck_after"`
}

// FromJobs reports whether the jobs' namespaces are exported.
func (k *KernelOptions) FromJobs() bool { return k != nil && (k.Jobs == nil || *k.Jobs) }

// SynBudget returns the SYN packets-per-second budget, syn.DefaultRate when
// unset.
func (g Global) SynBudget() int {
	if g.SynRate == nil {
		return syn.DefaultRate
	}
	return *g.SynRate
}

// Job is one named probe: a kind, its options, and its targets.
type Job struct {
	// Name is the job label; unique in the file.
	Name string `yaml:"name"`
	// Kind is the probe kind: connect, syn, app, idle, keepalive. Unset:
	// app when the job has an app block or every static target is a URL
	// with an application scheme (mysql://, http://, …, as probe run
	// infers it), else connect.
	Kind string `yaml:"kind"`
	// Interval is the time between two attempts on one target.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one attempt.
	Timeout Duration `yaml:"timeout"`
	// Concurrency is how many attempts on one target may overlap. Probes
	// that last longer than the interval (idle, keepalive) need
	// ceil(timeout/interval) of them, staggered one interval apart, so that
	// a result still arrives every interval. Default 1.
	Concurrency int `yaml:"concurrency"`
	// Expect is success (default) or fail: a job whose targets must be
	// unreachable, where a successful attempt is the alarm; {fail: [...]}
	// names the reasons that count as blocked (expect.go).
	Expect Expect `yaml:"expect"`
	// Resolver is the DNS server (ip or ip:port) of this job's host name
	// targets and dns sources without a server; unset: global.resolver.
	Resolver string `yaml:"resolver"`
	// NetNS is the network namespace the job probes from: a name under
	// /run/netns, a path, or pid:N. Empty: the prober's own.
	NetNS string `yaml:"netns"`
	// Vantage, when set, probes every target from every matching pod or
	// network namespace on this node instead of from one netns
	// (docs/podnetns.md).
	Vantage *VantageOptions `yaml:"vantage"`
	// Targets are where the job's targets come from.
	Targets Targets `yaml:"targets"`
	// Trace, when enabled, traces the path once when a target turns from
	// ok to syn_timeout or unreachable (docs/trace.md).
	Trace *TraceOptions `yaml:"trace"`
	// SLO is the job's service-level objective: what the SLO rules in
	// deploy/prometheus hold its targets to (unset: their defaults).
	SLO *SLO `yaml:"slo"`

	// Per-kind option blocks; at most the one of Kind may be set.

	// Connect holds the options of kind connect.
	Connect *ConnectOptions `yaml:"connect"`
	// Syn holds the options of kind syn.
	Syn *SynOptions `yaml:"syn"`
	// Idle holds the options of kind idle.
	Idle *IdleOptions `yaml:"idle"`
	// App holds the options of kind app.
	App *AppOptions `yaml:"app"`
	// Keepalive holds the options of kind keepalive.
	Keepalive *KeepaliveOptions `yaml:"keepalive"`
}

// defaultKind is the kind of a job that names none: app when it has an app
// block or every static target is a URL with an application scheme (as
// probe run infers it), else connect.
func (j *Job) defaultKind() string {
	if j.App != nil {
		return app.Kind
	}
	if len(j.Targets.Static) == 0 {
		return DefaultKind
	}
	for _, s := range j.Targets.Static {
		t, err := probe.ParseTarget(s)
		if err != nil || !app.Supports(t.Scheme) {
			return DefaultKind
		}
	}
	return app.Kind
}

// Targets lists the target sources of a job; they are merged.
type Targets struct {
	// Static targets: host:port, [v6]:port or scheme://host:port.
	Static []string `yaml:"static"`
	// FileSD are files in Prometheus file_sd format (JSON or YAML), re-read
	// when they change.
	FileSD *FileSD `yaml:"file_sd"`
	// DNS names resolved periodically; each address is a target.
	DNS []DNSSD `yaml:"dns"`
	// Kubernetes discovers Services, EndpointSlices, Pods or Nodes with a
	// watch on the API (docs/kubernetes.md).
	Kubernetes []spec.Config `yaml:"kubernetes"`
}

// FileSD is a set of file_sd files.
type FileSD struct {
	Files           []string `yaml:"files"`
	RefreshInterval Duration `yaml:"refresh_interval"`
}

// DNSSD is a DNS name resolved on a period.
type DNSSD struct {
	// Name is the DNS name to query.
	Name string `yaml:"name"`
	// Type is A, AAAA or SRV (default A).
	Type string `yaml:"type"`
	// Port is required for A and AAAA; SRV records carry their own.
	Port int `yaml:"port"`
	// RefreshInterval is how often the name is resolved again.
	RefreshInterval Duration `yaml:"refresh_interval"`
	// Server, when set, is the DNS server (ip:port) to ask instead of the
	// system resolver.
	Server string `yaml:"server"`
}

// SLO is a job's `slo` block: its availability objective and the latency
// threshold of its latency SLI. The agent exports both
// (connprobe_job_slo_objective, connprobe_job_slo_latency_seconds) and
// counts the attempts slower than Latency (connprobe_probe_slow_total); the
// rules in deploy/prometheus join them by job.
type SLO struct {
	// Objective is the fraction of attempts that must be good, in (0, 1):
	// 0.999 allows 0.1 % bad attempts. Unset: the rules' default (0.999).
	Objective *float64 `yaml:"objective"`
	// Latency is the threshold of the latency SLI: a successful attempt
	// slower than this is slow (handshake for connect, syn and keepalive;
	// the whole attempt for app; the attempt less its idle time for idle).
	// Unset: DefaultLatency, or half the timeout when that is shorter.
	Latency Duration `yaml:"latency"`
}

// DefaultLatency is the latency threshold of a job without slo.latency.
const DefaultLatency = 500 * time.Millisecond

// LatencyThreshold returns the job's latency threshold: slo.latency, or
// DefaultLatency capped at half the job's timeout.
func (j *Job) LatencyThreshold() time.Duration {
	if j.SLO != nil && j.SLO.Latency.D > 0 {
		return j.SLO.Latency.D
	}
	if t := j.Timeout.D / 2; t > 0 && t < DefaultLatency {
		return t
	}
	return DefaultLatency
}

// ObjectiveRatio returns the job's own objective, 0 when it sets none.
func (j *Job) ObjectiveRatio() float64 {
	if j.SLO == nil || j.SLO.Objective == nil {
		return 0
	}
	return *j.SLO.Objective
}

func (o *SLO) validate(timeout time.Duration, add func(format string, args ...any)) {
	if o.Objective == nil && !o.Latency.set() {
		add("slo: neither objective nor latency (want e.g. slo: {objective: 0.999, latency: 100ms})")
	}
	if v := o.Objective; v != nil && !(*v > 0 && *v < 1) {
		add("slo.objective %v must be between 0 and 1, exclusive (0.999 allows 0.1 %% bad attempts)", *v)
	}
	switch d := o.Latency; {
	case d.Err != nil:
		add("slo.latency %v", d.Err)
	case !d.set():
	case d.D <= 0:
		add("slo.latency %s must be positive", d.D)
	case timeout > 0 && d.D >= timeout:
		add("slo.latency %s must be shorter than timeout %s (no attempt could be slower)", d.D, timeout)
	}
}

// VantageOptions is a job's `vantage` block: the job's targets are probed
// from every network namespace on this node that matches, each (target,
// namespace) its own loop, named "DEST from LABEL" where LABEL is
// pod:NAMESPACE/NAME, pod:UID, netns:NAME (targets.Namespace.Label).
type VantageOptions struct {
	// Pods are NAMESPACE/NAME globs ("shop/web-*"; path.Match syntax) over
	// the pods whose namespaces run on this node; a pod whose name is not
	// known matches as "*/UID".
	Pods []string `yaml:"pods"`
	// PodsSelector selects the pods on this node through the Kubernetes
	// API (a pod watch restricted to NODE_NAME, label selector applied by
	// the server), joined to their namespaces by pod UID; their names come
	// from the API, not from the container's environment.
	PodsSelector *spec.PodSelector `yaml:"pods_selector"`
	// NetNS are globs over the names of named namespaces (/run/netns).
	NetNS []string `yaml:"netns"`
	// RefreshInterval is how often namespaces are rediscovered (default
	// targets.DefaultVantageRefresh, 10s); a probe that finds its namespace gone triggers one at once.
	RefreshInterval Duration `yaml:"refresh_interval"`
}

func (o *VantageOptions) validate(add func(format string, args ...any)) {
	if len(o.Pods) == 0 && o.PodsSelector == nil && len(o.NetNS) == 0 {
		add("vantage: neither pods, pods_selector nor netns: no namespace to probe from")
	}
	if o.PodsSelector != nil {
		if err := o.PodsSelector.Validate(); err != nil {
			for _, e := range splitJoined(err) {
				add("vantage.pods_selector.%v", e)
			}
		}
	}
	for i, p := range o.Pods {
		switch _, err := path.Match(p, ""); {
		case p == "":
			add("vantage.pods[%d]: empty (want a NAMESPACE/NAME glob such as shop/web-*)", i)
		case err != nil:
			add("vantage.pods[%d] %q: bad glob: %v", i, p, err)
		case strings.Count(p, "/") != 1:
			add("vantage.pods[%d] %q: want NAMESPACE/NAME (a glob such as shop/web-* or */*)", i, p)
		}
	}
	for i, p := range o.NetNS {
		switch _, err := path.Match(p, ""); {
		case p == "":
			add("vantage.netns[%d]: empty (want a glob over /run/netns names such as cni-*)", i)
		case err != nil:
			add("vantage.netns[%d] %q: bad glob: %v", i, p, err)
		case strings.Contains(p, "/"):
			add("vantage.netns[%d] %q: want a name glob under /run/netns, not a path", i, p)
		}
	}
	checkRefresh("vantage.refresh_interval", o.RefreshInterval, add)
}

// checkRefresh reports a refresh_interval that is malformed or shorter
// than MinRefreshInterval.
func checkRefresh(field string, d Duration, add func(format string, args ...any)) {
	switch {
	case d.Err != nil:
		add("%s %v", field, d.Err)
	case d.D <= 0:
		add("%s %s must be positive", field, d.D)
	case d.D < MinRefreshInterval:
		add("%s %s is below the minimum %s", field, d.D, MinRefreshInterval)
	}
}

// DNSResolver is the job's resolver (nil: the system's); Validate has
// checked it.
func (j *Job) DNSResolver() *probe.Resolver {
	r, _ := probe.ParseResolver(j.Resolver)
	return r
}

// Job returns the job named name, or nil.
func (c *Config) Job(name string) *Job {
	for i := range c.Probes {
		if c.Probes[i].Name == name {
			return &c.Probes[i]
		}
	}
	return nil
}

// Fingerprint is a canonical rendering of the job: two jobs with the same
// fingerprint probe the same way, so a reload can keep it running.
func (j *Job) Fingerprint() string {
	b, err := yaml.Marshal(j)
	if err != nil {
		return "error:" + strconv.Quote(err.Error())
	}
	return string(b)
}
