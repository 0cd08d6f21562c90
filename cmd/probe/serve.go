//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/connprobe/connprobe/configs"
	promexp "github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/exporters/status"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/scheduler"
	"github.com/connprobe/connprobe/scheduler/stall"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// version is set at build time (Makefile: -X main.version=...).
var version = "dev"

// serveFlags are `probe serve`'s flags.
type serveFlags struct {
	config    string
	listen    string
	webConfig string
	// health is --web.health-listen-address: /healthz and /-/ready
	// without TLS or auth ("" = off; serve_health.go).
	health    string
	logLevel  string
	logFormat string
	// lifecycle enables POST /-/reload (--web.enable-lifecycle).
	lifecycle bool
	// pprof serves Go's profiles under /debug/pprof/ (--web.enable-pprof).
	pprof  bool
	web    httpLimits
	status statusFlags // serve_status.go
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Probe configured targets forever and export Prometheus metrics",
		Long: `Run every job of the config file on its interval and serve the results as
Prometheus metrics on /metrics, with a status page at / (every target's last
attempts and why they failed) and its JSON API at /api/v1/targets; failures
are logged once per streak, with summaries and a recovery line. /healthz
answers 200 while the scheduler makes progress and 503 with the reason when it
is stuck; /-/ready answers 503 with the reasons while a job cannot run (a
capability it needs is missing), 200 otherwise. SIGHUP re-reads the config
(and POST /-/reload, with --web.enable-lifecycle): a bad new config is logged
with every problem and the old one keeps running.

Scrape with honor_labels: true, so the job label is the probe job's.`,
		Example: `  probe serve --config configs/example.yaml
  probe serve --config /etc/connprobe/config.yaml --web.listen-address :9716 --web.config.file web.yml
  probe serve --config serve.yaml --web.enable-lifecycle   # then: curl -X POST localhost:9716/-/reload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(f.logLevel, f.logFormat, os.Stderr)
			if err != nil {
				return usageError{err}
			}
			if f.config == "" {
				return usagef("serve: --config is required")
			}
			if err := f.web.validate(); err != nil {
				return usageError{err}
			}
			routeLibraryLogs(log)
			if os.Getenv("GOGC") == "" {
				// Probes allocate short-lived garbage (sockets, results) while
				// the live heap stays small (~1.5 KiB per target), so GC at 50%
				// growth instead of 100% trims the resident headroom by a
				// third at no measurable CPU cost (BENCHMARKS.md).
				debug.SetGCPercent(50)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return serve(cmd.Context(), f, log, hup, nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "config file (YAML); check one with probe lint --config")
	fl.StringVar(&f.listen, "web.listen-address", ":9716", "[ip]:port to serve /metrics, /healthz and /-/reload on (an IP literal: names are not resolved)")
	fl.StringVar(&f.webConfig, "web.config.file", "", "exporter-toolkit web config file: TLS and basic auth")
	fl.StringVar(&f.health, "web.health-listen-address", "", "[ip]:port to serve /healthz and /-/ready on as well, plain HTTP without auth (for kubelet probes when --web.config.file sets TLS or auth); off when empty")
	fl.BoolVar(&f.lifecycle, "web.enable-lifecycle", false, "allow POST /-/reload (same-site requests only); SIGHUP always reloads")
	fl.BoolVar(&f.pprof, "web.enable-pprof", false, "serve Go's CPU, heap and goroutine profiles under /debug/pprof/ (behind --web.config.file's auth, if any)")
	fl.IntVar(&f.web.MaxConns, "web.max-connections", defaultWebMaxConns, "most open HTTP connections; more wait in the kernel's accept queue")
	fl.DurationVar(&f.web.Idle, "web.idle-timeout", defaultWebIdleTimeout, "close a keep-alive HTTP connection idle this long")
	fl.DurationVar(&f.web.Write, "web.write-timeout", defaultWebWriteTimeout, "longest time to write one response (a /metrics scrape must fit: see docs/serve.md, Limits)")
	f.web.ReadHeader, f.web.Read = defaultWebReadHeader, defaultWebRead
	fl.StringVar(&f.logLevel, "log.level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log.format", "logfmt", "log format: logfmt or json")
	addStatusFlags(fl, &f.status)
	return cmd
}

// server is a running `probe serve`.
type server struct {
	flags   serveFlags
	log     *slog.Logger
	exp     *promexp.Exporter
	sched   *scheduler.Scheduler
	current *configs.Config // owned by the reload loop once serving
	kernel  *kernelMetrics  // global.kernel (serve_kernel.go)
	status  *status.Status  // history, status page, API, failure log (serve_status.go)
	health  *targets.Health // target sources (serve_discovery.go)
	// reloads hands POST /-/reload requests to the reload loop, the one
	// goroutine that reloads (SIGHUP too). Each request carries a result
	// channel with room for the answer, so the loop never waits for a
	// requester that has hung up.
	reloads chan chan error
	ctx     context.Context // done when serve stops
	healthy atomic.Bool     // last /healthz verdict, to log changes only
	// notReady is what /-/ready answers 503 with ("" when ready): the jobs
	// the running config has that cannot run (serve_preflight.go).
	notReady atomic.Pointer[string]
}

// checkPreflight runs the preflight of cfg, logs its problems and sets
// what /-/ready answers.
func (s *server) checkPreflight(cfg *configs.Config) {
	problems := preflight(cfg)
	logPreflight(s.log, problems)
	msg := notReady(problems)
	s.notReady.Store(&msg)
}

func (s *server) handleReady(w http.ResponseWriter, _ *http.Request) {
	var problems []string
	if msg := s.notReady.Load(); msg != nil && *msg != "" {
		problems = append(problems, strings.TrimSuffix(*msg, "\n"))
	}
	if err := s.discoveryReady(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		http.Error(w, strings.Join(problems, "\n"), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// serve runs until ctx is done. ready, when set, is called with the
// listening address once /metrics is served.
func serve(ctx context.Context, f serveFlags, log *slog.Logger, hup <-chan os.Signal, ready func(net.Addr)) error {
	if err := checkListenAddr("--web.listen-address", f.listen); err != nil {
		return err
	}
	if err := checkHealthListen(f.health, f.listen); err != nil {
		return err
	}
	if f.web.MaxConns == 0 { // callers that set no limits (tests): the flags' defaults
		f.web = httpLimits{MaxConns: defaultWebMaxConns, ReadHeader: defaultWebReadHeader, Read: defaultWebRead,
			Write: defaultWebWriteTimeout, Idle: defaultWebIdleTimeout}
	}
	s := &server{
		flags:   f,
		log:     log,
		exp:     promexp.New(promexp.Options{Version: version, Revision: buildRevision()}),
		reloads: make(chan chan error),
	}
	s.healthy.Store(true)
	st, err := newStatus(f.status, log)
	if err != nil {
		return err
	}
	s.status = st
	s.sched = scheduler.New(scheduler.Tee(s.exp, st), log)
	paths.Store(s.exp)
	// Attempts during which the prober itself did not run (stopped,
	// CPU-throttled, paused) are discarded as prober_stalled.
	stalls := stall.New(stall.Options{Log: log})
	s.sched.DetectStalls(stalls)
	s.kernel = newKernelMetrics()
	if err := s.exp.Register(s.kernel.c); err != nil {
		return fmt.Errorf("serve: kernel metrics: %w", err)
	}
	s.health = &targets.Health{Log: log}
	if err := s.exp.Register(newDiscoveryCollector(s.health)); err != nil {
		return fmt.Errorf("serve: discovery metrics: %w", err)
	}
	cfg, jobs, err := loadJobsHealth(ctx, f.config, log, s.health)
	if err != nil {
		s.exp.ConfigLoaded(false, time.Now())
		return usageError{err}
	}
	if f.webConfig != "" {
		if err := web.Validate(f.webConfig); err != nil {
			return usagef("--web.config.file: %w", err)
		}
	}
	ln, err := f.web.listen(ctx, f.listen)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	hln, err := listenHealth(ctx, f.health)
	if err != nil {
		ln.Close()
		return err
	}
	ln, srv := f.web.serve(ln, s.routes())
	webFlags := &web.FlagConfig{
		WebListenAddresses: &[]string{f.listen},
		WebSystemdSocket:   new(bool),
		WebConfigFile:      &f.webConfig,
	}

	g, gctx := errgroup.WithContext(ctx)
	s.ctx = gctx
	g.Go(func() error { return stalls.Run(gctx) })
	g.Go(func() error { return s.sched.Run(gctx) })
	log.Info("stall detection", "threshold", stalls.Threshold(), "cpu_stat", stalls.CPUStatPath())
	applySynRate(cfg, nil, log)
	s.checkPreflight(cfg)
	s.kernel.apply(cfg)
	s.health.Expect(discoverySources(cfg))
	if err := s.sched.Update(gctx, jobs); err != nil {
		ln.Close()
		if hln != nil {
			hln.Close()
		}
		return g.Wait()
	}
	s.current = cfg
	s.exp.ConfigLoaded(true, time.Now())
	log.Info("config loaded", "file", f.config, "jobs", len(jobs))
	g.Go(func() error {
		err := web.Serve(ln, srv, webFlags, log)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: http: %w", err)
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error { s.reloadLoop(gctx, hup); return nil })
	if hln != nil {
		s.serveHealth(gctx, g, hln)
		log.Info("serving health", "address", hln.Addr().String())
	}
	log.Info("serving", "address", ln.Addr().String(), "version", version, "kubernetes", kubernetesBuilt,
		"lifecycle", f.lifecycle, "max_connections", f.web.MaxConns, "idle_timeout", f.web.Idle, "write_timeout", f.web.Write)
	if ready != nil {
		ready(ln.Addr())
	}
	err = g.Wait()
	log.Info("stopped")
	return err
}

// routes is serve's HTTP API.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.exp.Handler())
	mux.HandleFunc("/healthz", s.handleHealth)
	mux.HandleFunc("/-/reload", s.handleReload)
	mux.HandleFunc("/-/ready", s.handleReady)
	s.status.Register(mux) // /, /target, /api/v1/targets… (serve_status.go)
	if s.flags.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// handleHealth answers 200 "ok" while the scheduler makes progress, else
// 503 with what is stuck (scheduler.Health); a change is logged once.
func (s *server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	err := s.sched.Health()
	if was := s.healthy.Swap(err == nil); was != (err == nil) {
		if err != nil {
			s.log.Error("unhealthy: the scheduler is not making progress", "problems", strings.Split(err.Error(), "\n"))
		} else {
			s.log.Info("healthy again: the scheduler is making progress")
		}
	}
	if err != nil {
		http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *server) handleReload(w http.ResponseWriter, r *http.Request) {
	if !s.flags.lifecycle {
		http.Error(w, "reload over HTTP is disabled: start probe serve with --web.enable-lifecycle, or send it SIGHUP", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST to reload the config", http.StatusMethodNotAllowed)
		return
	}
	if code, msg := checkSameSite(r); code != 0 {
		http.Error(w, msg, code)
		return
	}
	rc := make(chan error, 1) // the loop's answer never waits for us
	select {
	case s.reloads <- rc:
	case <-r.Context().Done():
		return // hung up before the reload began: nothing was started
	case <-s.ctx.Done():
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	select {
	case err := <-rc:
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "config reloaded")
	case <-r.Context().Done():
		// Hung up mid-reload: the reload completes and is logged.
	case <-s.ctx.Done():
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	}
}

// maxCoalesced bounds how many waiting POSTs one reload answers.
const maxCoalesced = 64

// reloadLoop is the one goroutine that reloads, on SIGHUP and for POST
// /-/reload, until ctx is done. Requests waiting when a reload begins share
// it: it reads the file after each of them asked.
func (s *server) reloadLoop(ctx context.Context, hup <-chan os.Signal) {
	for {
		var waiting []chan error
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case rc := <-s.reloads:
			waiting = append(waiting, rc)
		more:
			for len(waiting) < maxCoalesced {
				select {
				case rc := <-s.reloads:
					waiting = append(waiting, rc)
				default:
					break more
				}
			}
		}
		err := s.reload(ctx)
		for _, rc := range waiting {
			rc <- err // buffered: never blocks
		}
	}
}

// reload re-reads the config; on any problem the running config stays.
func (s *server) reload(ctx context.Context) error {
	cfg, jobs, err := loadJobsHealth(ctx, s.flags.config, s.log, s.health)
	if err != nil {
		s.exp.ConfigLoaded(false, time.Now())
		s.log.Error("reload failed; the previous config keeps running", "file", s.flags.config,
			"problems", strings.Split(err.Error(), "\n"))
		return fmt.Errorf("reload: %w", err)
	}
	applySynRate(cfg, s.current, s.log)
	s.checkPreflight(cfg)
	s.kernel.apply(cfg)
	s.health.Expect(discoverySources(cfg))
	if err := s.sched.Update(ctx, jobs); err != nil {
		return fmt.Errorf("reload: %w", err) // shutting down
	}
	s.current = cfg
	s.exp.ConfigLoaded(true, time.Now())
	s.log.Info("config reloaded", "file", s.flags.config, "jobs", len(jobs))
	return nil
}

// loadJobs loads and validates the config file and builds its jobs.
func loadJobs(ctx context.Context, path string, log *slog.Logger) (*configs.Config, []*scheduler.Job, error) {
	return loadJobsHealth(ctx, path, log, nil)
}

// loadJobsHealth is loadJobs with target sources that report to h.
func loadJobsHealth(ctx context.Context, path string, log *slog.Logger, h *targets.Health) (*configs.Config, []*scheduler.Job, error) {
	cfg, err := configs.Load(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	jobs, err := buildJobsHealth(cfg, log, h)
	if _, kerr := kernelEnds(cfg); kerr != nil {
		err = errors.Join(err, kerr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, jobs, nil
}

// buildJobs turns a validated config into scheduler jobs; it reports every
// problem (a kind not built in, a missing netns, a static target the kind
// cannot probe) with the job's path.
func buildJobs(cfg *configs.Config, log *slog.Logger) ([]*scheduler.Job, error) {
	return buildJobsHealth(cfg, log, nil)
}

// buildJobsHealth is buildJobs with target sources that report to h.
func buildJobsHealth(cfg *configs.Config, log *slog.Logger, h *targets.Health) ([]*scheduler.Job, error) {
	var jobs []*scheduler.Job
	var errs []error
	for i := range cfg.Probes {
		j := &cfg.Probes[i]
		path := fmt.Sprintf("probes[%d] %q", i, j.Name)
		newProber, background, err := jobKind(j, log) // kinds.go
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		var nsPath string
		if j.NetNS != "" {
			if nsPath, err = netns.Resolve(j.NetNS); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
				continue
			}
		}
		var src targets.Merge
		if len(j.Targets.Static) > 0 {
			var static targets.Static
			for k, s := range j.Targets.Static {
				t, err := probe.ParseTarget(s)
				if err == nil {
					t.NetNS = nsPath
					var p probe.Prober
					if p, err = newProber(t); err == nil {
						p.Close()
					}
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: targets.static[%d]: %w", path, k, err))
					continue
				}
				static = append(static, t)
			}
			src = append(src, static)
		}
		if fs := j.Targets.FileSD; fs != nil {
			src = append(src, &targets.File{Paths: fs.Files, Refresh: fs.RefreshInterval.D, NetNS: nsPath,
				Log: log.With("job", j.Name), Health: h, Job: j.Name})
		}
		for _, d := range j.Targets.DNS {
			var server netip.AddrPort
			if d.Server != "" {
				server = netip.MustParseAddrPort(d.Server) // checked by Validate
			}
			src = append(src, &targets.DNS{Name: d.Name, Type: d.Type, Port: uint16(d.Port),
				Refresh: d.RefreshInterval.D, Server: server, Resolver: j.DNSResolver(), NetNS: nsPath, Log: log.With("job", j.Name), Health: h, Job: j.Name})
		}
		for k, kc := range j.Targets.Kubernetes {
			ks, err := newKubernetesSource(kc, nsPath, log.With("job", j.Name), h, j.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: targets.kubernetes[%d]: %w", path, k, err))
				continue
			}
			src = append(src, ks)
		}
		source, newJobProber, err := withVantage(j, src, newProber, log, h) // serve_vantage.go
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		newJobProber, traceBudget := withTrace(j, nsPath, newJobProber, recordPath, log) // serve_trace.go
		jobs = append(jobs, &scheduler.Job{
			Name:        j.Name,
			Kind:        j.Kind,
			Interval:    j.Interval.D,
			Timeout:     j.Timeout.D + traceBudget,
			Concurrency: j.Concurrency,
			Expect:      j.Expect.Expectation(),
			Latency:     j.LatencyThreshold(),
			Objective:   j.ObjectiveRatio(),
			Source:      source,
			New:         newJobProber,
			Fingerprint: j.Fingerprint(),
			Background:  background,
		})
	}
	return jobs, errors.Join(errs...)
}
