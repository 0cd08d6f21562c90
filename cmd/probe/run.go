//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/exporters/report"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/app"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/idle"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/probe/syn"
	"github.com/connprobe/connprobe/scheduler/stall"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// runFlags are `probe run`'s flags.
type runFlags struct {
	kind        string
	count       int
	interval    time.Duration
	timeout     time.Duration
	netns       string
	pod         string      // --pod NAMESPACE/NAME (pod.go)
	podV        *podVantage // found by runProbes
	source      string
	resolver    string
	send        string
	expect      string
	userTimeout time.Duration
	output      string
	expectFail  string // --expect-fail[=reasons]: "" off, "any" every failure reason
	kindSet     bool   // --kind given explicitly: no fallback from syn to connect
	paws        bool
	synRate     int
	idleF       idleFlags      // kind idle (run_idle.go)
	explainF    explainFlags   // --explain (run_explain.go)
	kaF         keepaliveFlags // kind keepalive (run_keepalive.go)
	appF        appFlags       // http(s):// app targets (run_app.go)
	trace       bool           // --trace (trace.go)
	live        bool           // --live (live.go)
	traceF      traceFlags
	changed     func(name string) bool // whether a flag was given
	stdout      io.Writer              // nil: os.Stdout
	stderr      io.Writer              // nil: os.Stderr

	summaryEvery time.Duration // --summary-every (run_summary.go)
}

func (f runFlags) stdoutW() io.Writer {
	if f.stdout == nil {
		return os.Stdout
	}
	return f.stdout
}

func (f runFlags) stderrW() io.Writer {
	if f.stderr == nil {
		return os.Stderr
	}
	return f.stderr
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] TARGET...",
		Short: "Probe targets now and print what happened and why",
		Long: `Probe each TARGET (host:port, [v6]:port, tcp://host:port, or an application
URL: mysql://, postgres://, redis://, kafka://, http(s)://) --count times,
--interval apart, and print one line per attempt and a summary per target.
Every attempt ends with a reason (ok, syn_retransmitted, syn_timeout, refused,
unreachable, reset, peer_closed, ...) and the evidence behind it.

An attempt the prober itself could not make properly (permission,
local_error, prober_stalled: the process was stopped or CPU-throttled during
it) is no verdict on the target: it is shown, with a warning for a stall, and
left out of the verdict. --expect-fail turns the verdict around: the targets
must NOT answer (a NetworkPolicy that must block), and only verdicts about the
network count as blocked (optionally only the reasons listed).

Exit status: 0 when every attempt met the expectation (answered; with
--expect-fail, was blocked), 1 when any did not or a target got no verdict at
all, 2 on bad usage.`,
		Example: `  probe run 10.96.0.10:80
  probe run -c 10 -i 200ms --netns pod-a db.internal:3306
  probe run --send 'PING\r\n' --expect '+PONG' -o json redis:6379
  probe run -c 20 mysql://db:3306 'postgres://probe:secret@db:5432/app' http://web/healthz
  probe run --pod shop/web-1 db:5432   # from the pod, names resolved as it does
  probe run --netns web-pod --expect-fail=refused,unreachable 10.96.0.20:5432`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("run: at least one TARGET is required")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f.kindSet = cmd.Flags().Changed("kind")
			f.changed = cmd.Flags().Changed
			f.stdout, f.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return runProbes(cmd.Context(), f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kind, "kind", "connect", "probe kind: connect, syn (raw half-open SYN, needs CAP_NET_RAW), app (the default for mysql://, postgres://, redis://, kafka://, http(s):// targets), idle (idle-then-send long connection, see --idle*), keepalive (hold a connection with kernel keep-alive, see --ka-*)")
	fl.BoolVar(&f.paws, "paws", false, "after an answered SYN, send one with an older TCP timestamp (PAWS check; implies --kind syn)")
	fl.IntVar(&f.synRate, "syn-rate", syn.DefaultRate, "budget for all raw SYNs of this process, packets/s")
	fl.IntVarP(&f.count, "count", "c", 1, "attempts per target (0: until interrupted)")
	fl.DurationVarP(&f.interval, "interval", "i", time.Second, "time between attempts")
	fl.DurationVar(&f.timeout, "timeout", connect.DefaultTimeout, "timeout of one attempt")
	fl.StringVar(&f.netns, "netns", "", "network namespace to probe from: a name under /run/netns, a path, or pid:N")
	fl.StringVar(&f.pod, "pod", "", "probe from pod NAMESPACE/NAME on this node: its network namespace, and names resolved as the pod does (its resolv.conf's nameservers, search and ndots, asked from inside it)")
	fl.StringVar(&f.source, "source", "", "local source address")
	fl.StringVar(&f.resolver, "resolver", "", "DNS server (ip or ip:port) that resolves host name targets (default: the system resolver, /etc/resolv.conf; with --pod, the pod's)")
	fl.StringVar(&f.send, "send", "", `payload to send after the handshake (Go escapes: \r \n \x00)`)
	fl.StringVar(&f.expect, "expect", "", "substring the reply must contain")
	fl.StringVar(&f.expectFail, "expect-fail", "", "the targets must NOT answer: success is the failure; =REASON,... counts only those reasons as blocked (default: any verdict about the network)")
	fl.Lookup("expect-fail").NoOptDefVal = "any"
	fl.DurationVar(&f.userTimeout, "user-timeout", 0, "TCP_USER_TIMEOUT for the connection (0: kernel default)")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	addIdleFlags(fl, &f.idleF)
	addExplainFlags(fl, &f.explainF)
	addKeepaliveFlags(fl, &f.kaF)
	addAppFlags(fl, &f.appF)
	addSummaryFlags(fl, &f)
	fl.BoolVar(&f.trace, "trace", false, "after a failed handshake, trace the path to the target (TTL-limited SYNs, needs CAP_NET_RAW) and add the verdict to the evidence")
	addTraceFlags(fl, &f.traceF, "trace-")
	fl.BoolVar(&f.live, "live", false, "redraw a table in place (like mtr): per target the last reason, recent outcomes, loss, handshake times and, with --trace, the hops; q quits")
	return cmd
}

// runPlan is a validated `probe run`: probers built, output chosen.
type runPlan struct {
	probers []probe.Prober
	targets []string // probers[i] probes targets[i] (Target.Name)
	kinds   []string // and is of kind kinds[i]
	out     report.Writer
	expect  probe.Expectation
}

func planRun(f runFlags, args []string) (*runPlan, error) {
	var errs []error
	if f.count < 0 {
		errs = append(errs, fmt.Errorf("--count %d must not be negative", f.count))
	}
	if f.interval <= 0 {
		errs = append(errs, fmt.Errorf("--interval %s must be positive", f.interval))
	}
	if f.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s must be positive", f.timeout))
	}
	out, err := report.New(f.output, f.stdoutW())
	if err != nil {
		errs = append(errs, fmt.Errorf("--output: %w", err))
	}
	cfg := connect.Config{Timeout: f.timeout, UserTimeout: f.userTimeout}
	if f.source != "" {
		a, err := netip.ParseAddr(f.source)
		if err != nil {
			errs = append(errs, fmt.Errorf("--source %q: not an IP address", f.source))
		}
		cfg.Source = a
	}
	if cfg.Resolver, err = probe.ParseResolver(f.resolver); err != nil {
		errs = append(errs, fmt.Errorf("--resolver: %w", err))
	}
	if f.podV != nil {
		if f.resolver == "" {
			cfg.Resolver = f.podV.resolver
		} else if cfg.Resolver != nil {
			// An explicit --resolver replaces the pod's nameservers only.
			if cfg.Resolver, err = f.podV.withServer(cfg.Resolver.Server()); err != nil {
				errs = append(errs, fmt.Errorf("--resolver: %w", err))
			}
		}
	}
	if cfg.Send, err = unescape(f.send); err != nil {
		errs = append(errs, fmt.Errorf("--send: %w", err))
	}
	if cfg.Expect, err = unescape(f.expect); err != nil {
		errs = append(errs, fmt.Errorf("--expect: %w", err))
	}
	var nsPath string
	if f.netns != "" {
		if nsPath, err = netns.Resolve(f.netns); err != nil {
			errs = append(errs, fmt.Errorf("--netns: %w", err))
		}
	}
	kind := f.kind
	if f.paws && !f.kindSet {
		kind = syn.Kind
	}
	if f.paws && kind != syn.Kind {
		errs = append(errs, fmt.Errorf("--paws needs --kind syn, not %q", kind))
	}
	if err := syn.SetRate(f.synRate, min(f.synRate, syn.DefaultBurst)); err != nil {
		errs = append(errs, fmt.Errorf("--syn-rate: %w", err))
	}
	errs = append(errs, checkIdleFlags(f, kind, f.changed)...)
	errs = append(errs, checkKindFlags(kind, f.changed)...)
	appCfg, appErrs := f.appF.config(app.Config{Timeout: cfg.Timeout, Source: cfg.Source, UserTimeout: cfg.UserTimeout, Resolver: cfg.Resolver})
	errs = append(errs, appErrs...)
	expect, err := parseExpectFail(f.expectFail)
	if err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkSummaryFlags(f)...)
	if len(errs) > 0 {
		return nil, usageError{errors.Join(errs...)}
	}
	var perm *probe.PermissionError
	if kind == syn.Kind && !f.kindSet && errors.As(syn.Check(nsPath), &perm) {
		// Asked for implicitly (--paws): degrade to the kernel's connect()
		// rather than fail; --kind syn given explicitly reports permission.
		fmt.Fprintf(os.Stderr, "probe: raw sockets not allowed (needs %s): falling back to --kind connect, no PAWS check\n", perm.Capability)
		kind = connect.Kind
	}
	rs := runSettings{f: f, conn: cfg, app: appCfg}
	factories := map[string]newProberFunc{}
	plan := &runPlan{out: out, expect: expect}
	for _, a := range args {
		t, err := probe.ParseTarget(a)
		if err != nil {
			return nil, usageError{err}
		}
		t.NetNS = nsPath
		k := kind
		if k == connect.Kind && app.Supports(t.Scheme) {
			// mysql://, redis://, http://…: probe the application handshake too.
			k = app.Kind
		}
		if err := checkRunTarget(k, t, cfg); err != nil {
			return nil, usageError{err}
		}
		if err := checkAppTarget(f.appF, k, t); err != nil {
			return nil, usageError{err}
		}
		newProber, ok := factories[k]
		if !ok {
			if newProber, err = runProberFactory(k, rs); err != nil {
				if _, unknown := errors.AsType[unknownKindError](err); unknown {
					err = fmt.Errorf("--%w", err)
				}
				return nil, usageError{err}
			}
			factories[k] = newProber
		}
		p, err := newProber(t)
		if err != nil {
			return nil, usageError{err}
		}
		plan.probers = append(plan.probers, p)
		plan.targets = append(plan.targets, t.Name)
		plan.kinds = append(plan.kinds, k)
	}
	return plan, nil
}

// checkKindFlags reports each given flag that kind does not take (the
// flags of the kinds table): nothing given on the command line is silently
// dropped.
func checkKindFlags(kind string, changed func(string) bool) []error {
	if changed == nil {
		return nil
	}
	var errs []error
	for _, n := range kindFlagNames() {
		var takers []string
		for _, k := range kinds {
			if slices.Contains(k.flags, n) {
				takers = append(takers, k.name)
			}
		}
		if !slices.Contains(takers, kind) && changed(n) {
			errs = append(errs, fmt.Errorf("--%s needs --kind %s, not %s", n, orList(takers), kind))
		}
	}
	return errs
}

// kindFlagNames lists the flags of the kinds table, each once.
func kindFlagNames() []string {
	var names []string
	for _, k := range kinds {
		for _, n := range k.flags {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// orList is "a", "a or b", "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// checkRunTarget rejects flags that do not apply to a target of kind k.
func checkRunTarget(k string, t probe.Target, cfg connect.Config) error {
	payload := len(cfg.Send) > 0 || len(cfg.Expect) > 0
	switch {
	case k == app.Kind && payload:
		return fmt.Errorf("target %q: --send/--expect are for tcp:// targets; a %s:// target speaks its own protocol", t.Name, t.Scheme)
	case k == syn.Kind && payload:
		return fmt.Errorf("target %q: kind syn sends only a SYN: want a tcp target, no --send/--expect", t.Name)
	}
	return nil
}

// runSettings is what `probe run`'s flags give every kind's entry in the
// kinds table (its run function).
type runSettings struct {
	f    runFlags
	conn connect.Config // --timeout, --source, --resolver, --send, --expect, --user-timeout
	app  app.Config     // and --expect-status, --expect-body, --ca-file, --insecure (run_app.go)
}

func runProbes(ctx context.Context, f runFlags, args []string) error {
	if f.pod != "" {
		if f.netns != "" {
			return usagef("--pod and --netns are mutually exclusive: --pod finds the pod's namespace")
		}
		v, err := findPod(ctx, targets.Discovery{IncludeHost: true}, f.pod)
		if err != nil {
			return err
		}
		f.netns, f.podV = v.ns.Path, v
		if f.output == "text" {
			res := fmt.Sprintf("resolver %s from %s", v.resolver, v.from)
			if f.resolver != "" {
				res = "resolver " + f.resolver + " (--resolver)"
			}
			fmt.Fprintf(f.stderrW(), "probe: from pod %s: netns %s, %s\n", f.pod, v.ns.Path, res)
		}
	}
	if err := f.appF.readCA(ctx); err != nil {
		return err
	}
	plan, err := planRun(f, args)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range plan.probers {
			p.Close()
		}
	}()
	if f.idleF.find {
		return runFindIdle(ctx, plan, f)
	}
	ex, err := newExplainer(ctx, f, args)
	if err != nil {
		return err
	}
	// The stall detector sees the prober not running (stopped, throttled):
	// such an attempt is discarded, with a warning, not blamed on a target.
	det := stall.New(stall.Options{})
	dctx, stopDet := context.WithCancel(ctx)
	var detWG sync.WaitGroup
	detWG.Go(func() { det.Run(dctx) })
	defer func() { stopDet(); detWG.Wait() }()

	tracer, err := newRunTracer(f)
	if err != nil {
		return err
	}
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var live *liveView
	if plan.out, live = startLive(f, plan.out, cancelRun, liveTitle(f)); live != nil && tracer != nil {
		tracer.seen = live.traced
	}
	failed := false
	attempted := make([]bool, len(plan.probers)) // got a result that was not canceled
	judged := make([]bool, len(plan.probers))    // got a verdict about the target
	met := make([]int, len(plan.probers))        // verdicts that met the expectation
	unmet := make([]int, len(plan.probers))
	var mu sync.Mutex
	stderr := &lineWriter{w: f.stderrW()}
	idleDone := make([]func(), len(plan.probers))
	for pi, p := range plan.probers {
		idleDone[pi] = func() {}
		if ip, ok := p.(*idle.Prober); ok {
			idleDone[pi] = watchIdle(ctx, ip, stderr)
		}
	}
	stopSummaries := startSummaries(ctx, f, plan.out)
	defer stopSummaries()
	ticker := time.NewTicker(f.interval)
	defer ticker.Stop()
	for i := 0; f.count == 0 || i < f.count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-ticker.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		var wg sync.WaitGroup
		for pi, p := range plan.probers {
			wg.Go(func() {
				snap := ex.take(pi)
				start := det.Now()
				r := probe.SafeProbe(ctx, p) // a panic is one failed attempt
				if r.Target == "" {
					r.Target, r.Kind = plan.targets[pi], plan.kinds[pi]
				}
				idleDone[pi]()
				if st, stalled := det.Check(start, det.Now()); stalled && r.Reason != probe.ReasonCanceled {
					stall.Mark(&r, st)
					stderr.printf("probe: warning: %s: the prober itself stalled during the attempt (%s, %s); attempt discarded as prober_stalled, not counted against the target",
						r.Target, st.Cause(), st.To.Sub(st.From).Round(time.Millisecond))
				}
				ex.add(pi, snap, &r)
				tracer.after(ctx, &r)
				if r.Reason == probe.ReasonCanceled {
					return
				}
				good, ok := plan.expect.Judge(&r)
				mu.Lock()
				attempted[pi] = true
				judged[pi] = judged[pi] || ok
				switch {
				case ok && good:
					met[pi]++
				case ok:
					unmet[pi]++
					failed = true
				}
				mu.Unlock()
				if err := plan.out.Result(r); err != nil {
					stderr.printf("probe: write: %v", err)
				}
			})
		}
		wg.Wait()
	}
	if err := plan.out.Summary(); err != nil {
		return err
	}
	for pi := range plan.probers {
		if plan.expect.Fail && f.output != "json" && judged[pi] {
			verdict := "blocked as expected"
			if unmet[pi] > 0 {
				verdict = "NOT blocked as expected"
			}
			fmt.Printf("expect fail (%s): %s: %s; %d of %d judged attempt(s) met the expectation\n",
				plan.expect, args[pi], verdict, met[pi], met[pi]+unmet[pi])
		}
		if attempted[pi] && !judged[pi] {
			// Nothing was learnt about this target: not a success.
			fmt.Fprintf(os.Stderr, "probe: no verdict on %s: every attempt was the prober's own fault (see the reasons above)\n", args[pi])
			failed = true
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// parseExpectFail parses --expect-fail: "" (off), "any" (every failure
// reason counts as blocked) or a comma-separated list of failure reasons.
func parseExpectFail(v string) (probe.Expectation, error) {
	switch v {
	case "":
		return probe.Expectation{}, nil
	case "any":
		return probe.Expectation{Fail: true}, nil
	}
	e := probe.Expectation{Fail: true}
	var errs []error
	for _, r := range strings.Split(v, ",") {
		r = strings.TrimSpace(r)
		if err := configs.CheckBlockedReason(r); err != nil {
			errs = append(errs, fmt.Errorf("--expect-fail: %q %w", r, err))
			continue
		}
		e.Blocked = append(e.Blocked, probe.Reason(r))
	}
	return e, errors.Join(errs...)
}

// unescape interprets Go string escapes (\r, \n, \x00) in a flag value.
func unescape(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	u, err := strconv.Unquote(`"` + s + `"`)
	if err != nil {
		return nil, fmt.Errorf("%q: bad escape sequence", s)
	}
	return []byte(u), nil
}
