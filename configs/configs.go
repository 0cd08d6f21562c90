// Package configs is the schema of `probe serve`'s YAML file: jobs, each a
// probe kind pointed at a set of targets on an interval. Load decodes strictly
// (an unknown field is an error), fills in the defaults, and Validate reports
// every problem at once, each with its path:
//
//	probes[2] "db": timeout 5s must be shorter than interval 2s
//
// Each probe kind owns its typed Config (connect.Config, ...); this package
// holds the YAML option block of each kind (ConnectOptions, ...) and converts
// it. The kinds a job may name are one table (kinds.go).
package configs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/keepalive"
	"github.com/connprobe/connprobe/probe/syn"
	"github.com/connprobe/connprobe/scheduler/targets"
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

// ConnectOptions is the YAML option block of kind connect.
type ConnectOptions struct {
	// Source is the local address to bind to.
	Source string `yaml:"source"`
	// Send is written after the handshake.
	Send string `yaml:"send"`
	// Expect must appear in the reply.
	Expect string `yaml:"expect"`
	// UserTimeout sets TCP_USER_TIMEOUT.
	UserTimeout Duration `yaml:"user_timeout"`
}

// Config converts the block (nil: no options) into connect.Config for a job
// whose attempts last at most timeout.
func (o *ConnectOptions) Config(timeout time.Duration) (connect.Config, error) {
	cfg := connect.Config{Timeout: timeout}
	if o == nil {
		return cfg, nil
	}
	var errs []error
	cfg.Source, errs = parseSource("connect", o.Source, errs)
	cfg.Send = []byte(o.Send)
	cfg.Expect = []byte(o.Expect)
	if o.UserTimeout.Err != nil {
		errs = append(errs, fmt.Errorf("connect.user_timeout: %w", o.UserTimeout.Err))
	}
	cfg.UserTimeout = o.UserTimeout.D
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("connect: %w", err))
	}
	return cfg, errors.Join(errs...)
}

// IdleOptions is the YAML option block of kind idle (docs/idle.md): hold a
// connection idle, then use it; a job needs timeout >= the attempt's length
// and concurrency ceil(timeout/interval) so a result arrives every interval.
type IdleOptions struct {
	// Mode: client-first (default), server-after-delay, plain.
	Mode string `yaml:"mode"`
	// Idle is how long each connection is held idle (default 30s).
	Idle Duration `yaml:"idle"`
	// ReplyTimeout bounds the answer after the idle time (default 2s).
	ReplyTimeout Duration `yaml:"reply_timeout"`
	// ConnectTimeout bounds the handshake and first echo (default 5s).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Source is the local address to bind to.
	Source string `yaml:"source"`
	// Send and Expect are for mode plain.
	Send   string `yaml:"send"`
	Expect string `yaml:"expect"`
	// FindTimeout, when set, also searches each target's idle timeout in
	// the background on a period and exports the survived/lost boundary.
	FindTimeout *FindTimeoutOptions `yaml:"find_timeout"`
}

// FindTimeoutOptions is a periodic idle-timeout search (idle.Prober.Find)
// of every target of an idle job: connections with different idle times in
// parallel, narrowed down to the boundary, exported as
// connprobe_idle_timeout_boundary_seconds{bound="survived|lost"}.
type FindTimeoutOptions struct {
	// Every is the period of the searches, from the start of one to the
	// next (default 1h); a search still running then is cut short. The
	// first search starts within one job interval.
	Every Duration `yaml:"every"`
	// MaxIdle is the longest idle time tried (default 20m).
	MaxIdle Duration `yaml:"max_idle"`
	// MinIdle is the shortest (default 1s).
	MinIdle Duration `yaml:"min_idle"`
}

// Defaults of find_timeout.
const (
	DefaultFindEvery   = time.Hour
	DefaultFindMaxIdle = 20 * time.Minute
)

// Search converts the find_timeout block of an idle job whose probes use
// cfg into the search's options and period; ok is false when the block is
// not set.
func (o *IdleOptions) Search(cfg idle.Config) (fo idle.FindOptions, every time.Duration, ok bool, err error) {
	if o == nil || o.FindTimeout == nil {
		return fo, 0, false, nil
	}
	f := o.FindTimeout
	var errs []error
	every, fo.MaxIdle, fo.MinIdle = DefaultFindEvery, DefaultFindMaxIdle, time.Second
	for _, d := range []struct {
		name string
		v    Duration
		dst  *time.Duration
	}{{"every", f.Every, &every}, {"max_idle", f.MaxIdle, &fo.MaxIdle}, {"min_idle", f.MinIdle, &fo.MinIdle}} {
		switch {
		case d.v.Err != nil:
			errs = append(errs, fmt.Errorf("idle.find_timeout.%s: %w", d.name, d.v.Err))
		case !d.v.set():
		case d.v.D <= 0:
			errs = append(errs, fmt.Errorf("idle.find_timeout.%s %s must be positive", d.name, d.v.D))
		default:
			*d.dst = d.v.D
		}
	}
	if len(errs) == 0 {
		if fo.MinIdle > fo.MaxIdle {
			errs = append(errs, fmt.Errorf("idle.find_timeout.min_idle %s must not exceed max_idle %s", fo.MinIdle, fo.MaxIdle))
		}
		if fo.MaxIdle > idle.MaxIdle {
			errs = append(errs, fmt.Errorf("idle.find_timeout.max_idle %s must be at most %s", fo.MaxIdle, idle.MaxIdle))
		}
		if need := cfg.AttemptDuration(fo.MaxIdle); every < need {
			errs = append(errs, fmt.Errorf("idle.find_timeout.every %s is shorter than one search round can take (%s: a connection idle max_idle %s, reply, control connection)", every, need, fo.MaxIdle))
		}
	}
	return fo, every, true, errors.Join(errs...)
}

// Config converts the block (nil: defaults) into idle.Config for a job whose
// attempts last at most timeout.
func (o *IdleOptions) Config(timeout time.Duration) (idle.Config, error) {
	var cfg idle.Config
	var errs []error
	if o != nil {
		cfg.Mode = idle.Mode(o.Mode)
		for _, d := range []struct {
			name string
			v    Duration
			dst  *time.Duration
		}{{"idle", o.Idle, &cfg.Idle}, {"reply_timeout", o.ReplyTimeout, &cfg.ReplyTimeout}, {"connect_timeout", o.ConnectTimeout, &cfg.ConnectTimeout}} {
			if d.v.Err != nil {
				errs = append(errs, fmt.Errorf("idle.%s: %w", d.name, d.v.Err))
			}
			*d.dst = d.v.D
		}
		cfg.Source, errs = parseSource("idle", o.Source, errs)
		cfg.Send, cfg.Expect = []byte(o.Send), []byte(o.Expect)
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("idle: %w", err))
	} else {
		d := cfg.Idle
		if d == 0 {
			d = idle.DefaultIdle
		}
		if need := cfg.AttemptDuration(d); timeout > 0 && timeout < need {
			errs = append(errs, fmt.Errorf("timeout %s is shorter than an idle attempt can take (%s: handshakes, idle %s, reply, control connection)", timeout, need, d))
		}
	}
	return cfg, errors.Join(errs...)
}

// AppOptions is the YAML option block of kind app (docs/app.md): after the
// TCP phase, speak the protocol of the target's URL scheme (mysql://,
// postgres://, redis://, kafka://, http://, https://).
type AppOptions struct {
	// Source is the local address to bind to.
	Source string `yaml:"source"`
	// UserTimeout sets TCP_USER_TIMEOUT.
	UserTimeout Duration `yaml:"user_timeout"`
	// InsecureSkipVerify turns off certificate verification for https://
	// (and TLS-enabled mysql/postgres targets).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Config converts the block (nil: no options) into app.Config for a job
// whose attempts last at most timeout.
func (o *AppOptions) Config(timeout time.Duration) (app.Config, error) {
	cfg := app.Config{Timeout: timeout}
	var errs []error
	if o != nil {
		cfg.Source, errs = parseSource("app", o.Source, errs)
		if o.UserTimeout.Err != nil {
			errs = append(errs, fmt.Errorf("app.user_timeout: %w", o.UserTimeout.Err))
		}
		cfg.UserTimeout = o.UserTimeout.D
		cfg.InsecureSkipVerify = o.InsecureSkipVerify
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range splitJoined(err) {
			errs = append(errs, fmt.Errorf("app: %w", e))
		}
	}
	return cfg, errors.Join(errs...)
}

// KeepaliveOptions is the YAML option block of kind keepalive
// (docs/podnetns.md): each target's prober holds one connection with the
// kernel's keep-alive and, at every attempt, watches it for Watch; a
// connection that ended is reported once (keepalive_timeout, peer_closed,
// reset) and reopened at the next attempt.
type KeepaliveOptions struct {
	// Idle is TCP_KEEPIDLE (default 30s), whole seconds.
	Idle Duration `yaml:"idle"`
	// Interval is TCP_KEEPINTVL (default 5s), whole seconds.
	Interval Duration `yaml:"interval"`
	// Count is TCP_KEEPCNT (default 3).
	Count int `yaml:"count"`
	// UserTimeout sets TCP_USER_TIMEOUT.
	UserTimeout Duration `yaml:"user_timeout"`
	// ConnectTimeout bounds the handshake of a new connection (default:
	// the job's timeout).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Watch is how long each attempt watches the held connection (default
	// 1s); it must be shorter than the job's timeout.
	Watch Duration `yaml:"watch"`
	// Source is the local address to bind to.
	Source string `yaml:"source"`
}

// Config converts the block (nil: defaults) into keepalive.Config for a job
// whose attempts last at most timeout.
func (o *KeepaliveOptions) Config(timeout time.Duration) (keepalive.Config, error) {
	cfg := keepalive.Config{ConnectTimeout: timeout}
	var errs []error
	if o != nil {
		for _, d := range []struct {
			name string
			v    Duration
			dst  *time.Duration
		}{{"idle", o.Idle, &cfg.Idle}, {"interval", o.Interval, &cfg.Interval}, {"user_timeout", o.UserTimeout, &cfg.UserTimeout},
			{"connect_timeout", o.ConnectTimeout, &cfg.ConnectTimeout}, {"watch", o.Watch, &cfg.Watch}} {
			if d.v.Err != nil {
				errs = append(errs, fmt.Errorf("keepalive.%s: %w", d.name, d.v.Err))
				continue
			}
			if d.v.set() {
				*d.dst = d.v.D
			}
		}
		cfg.Count = o.Count
		cfg.Source, errs = parseSource("keepalive", o.Source, errs)
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range splitJoined(err) {
			errs = append(errs, fmt.Errorf("keepalive: %w", e))
		}
	}
	if w := cfg.WithDefaults().Watch; timeout > 0 && w >= timeout {
		errs = append(errs, fmt.Errorf("keepalive.watch %s must be shorter than timeout %s", w, timeout))
	}
	return cfg, errors.Join(errs...)
}

// SynOptions is the YAML option block of kind syn (raw half-open SYN probe;
// needs CAP_NET_RAW).
type SynOptions struct {
	// Source is the source address of the SYNs (default: the route's).
	Source string `yaml:"source"`
	// Retransmit lists when SYNs are retransmitted, as offsets from the
	// first SYN (default: the kernel's 1s,2s,3s,4s,5s,7s,11s,…).
	Retransmit []Duration `yaml:"retransmit"`
	// PAWS enables the older-TSval check after an answered SYN.
	PAWS bool `yaml:"paws"`
	// PAWSWait bounds the wait for an answer to the older-TSval SYN.
	PAWSWait Duration `yaml:"paws_wait"`
}

// Config converts the block (nil: no options) into syn.Config for a job
// whose attempts last at most timeout.
func (o *SynOptions) Config(timeout time.Duration) (syn.Config, error) {
	cfg := syn.Config{Timeout: timeout}
	if o == nil {
		return cfg, nil
	}
	var errs []error
	cfg.Source, errs = parseSource("syn", o.Source, errs)
	if o.Retransmit != nil {
		cfg.Schedule = []time.Duration{}
		for i, d := range o.Retransmit {
			if d.Err != nil {
				errs = append(errs, fmt.Errorf("syn.retransmit[%d]: %w", i, d.Err))
			}
			cfg.Schedule = append(cfg.Schedule, d.D)
		}
	}
	cfg.PAWS = o.PAWS
	if o.PAWSWait.Err != nil {
		errs = append(errs, fmt.Errorf("syn.paws_wait: %w", o.PAWSWait.Err))
	}
	cfg.PAWSWait = o.PAWSWait.D
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("syn: %w", err))
	}
	return cfg, errors.Join(errs...)
}

// Duration is a Go duration string ("500ms", "10s", "2m"). A malformed value
// does not stop decoding: it is kept in Err and reported by Validate with
// its path, together with every other problem.
type Duration struct {
	D   time.Duration
	Raw string
	Err error
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	*d = Duration{Raw: n.Value}
	if n.Kind != yaml.ScalarNode {
		d.Err = fmt.Errorf("line %d: want a duration such as 10s", n.Line)
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.Err = fmt.Errorf("%q is not a duration (want e.g. 500ms, 10s, 2m)", n.Value)
		return nil
	}
	d.D = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) {
	if d.Raw != "" && d.D == 0 {
		return d.Raw, nil
	}
	return d.D.String(), nil
}

func (d Duration) set() bool { return d.Raw != "" || d.D != 0 }

// MaxConfigSize caps a config file: Load reads regular files only, at most
// this much (a path that is a FIFO or /dev/zero is an error, not a hang or
// an out-of-memory kill).
const MaxConfigSize = 16 << 20

// Load reads, decodes, defaults and validates the file at path; ctx ends
// the read (SIGTERM while the file's file system hangs).
func Load(ctx context.Context, path string) (*Config, error) {
	b, err := safefile.ReadFile(ctx, path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes b strictly, applies the defaults and validates the result.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var decodeErr error
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, yamlError(err) // not YAML at all: nothing to validate
		}
		// Unknown fields and type errors leave the rest decoded: report
		// them together with every other problem.
		decodeErr = yamlError(err)
	}
	// yaml.v3 reads one document; a second would be silently ignored.
	// Empty ones (a trailing ---) are harmless.
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if decodeErr == nil {
				decodeErr = yamlError(err)
			}
			break
		}
		if len(extra.Content) == 1 && extra.Content[0].ShortTag() == "!!null" && extra.Content[0].Value == "" {
			continue
		}
		decodeErr = errors.Join(decodeErr, fmt.Errorf("line %d: a second YAML document: a config is one document (remove the ---, or merge the jobs into one probes list)", extra.Line))
		break
	}
	c.ApplyDefaults()
	if err := errors.Join(decodeErr, c.Validate()); err != nil {
		return nil, err
	}
	return &c, nil
}

var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// yamlError rewrites yaml.v3's messages to name the problem without Go
// type names: "line 7: unknown field "colour"".
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var errs []error
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			errs = append(errs, fmt.Errorf("line %s: unknown field %q", m[1], m[2]))
			continue
		}
		errs = append(errs, errors.New(e))
	}
	return errors.Join(errs...)
}

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

// splitJoined undoes errors.Join so each problem gets its own path.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	return []error{err}
}

// parseSource parses a block's optional source address; a bad one is added
// to errs as "<block>.source %q: not an IP address".
func parseSource(block, s string, errs []error) (netip.Addr, []error) {
	if s == "" {
		return netip.Addr{}, errs
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s.source %q: not an IP address", block, s))
	}
	return a, errs
}
