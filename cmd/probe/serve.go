package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/connprobe/connprobe/configs"
	promexp "github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/scheduler"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// version is set at build time (Makefile: -X main.version=...).
var version = "dev"

// serveFlags are `probe serve`'s flags.
type serveFlags struct {
	config    string
	listen    string
	webConfig string
	logLevel  string
	logFormat string
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Probe configured targets forever and export Prometheus metrics",
		Long: `Run every job of the config file on its interval and serve the results as
Prometheus metrics on /metrics. /healthz answers 200 while serving; POST
/-/reload or SIGHUP re-reads the config: a bad new config is logged with every
problem and the old one keeps running.

Scrape with honor_labels: true, so the job label is the probe job's.`,
		Example: `  probe serve --config configs/example.yaml
  probe serve --config /etc/connprobe/config.yaml --web.listen-address :9716 --web.config.file web.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(f.logLevel, f.logFormat, os.Stderr)
			if err != nil {
				return usageError{err}
			}
			if f.config == "" {
				return usagef("serve: --config is required")
			}
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
	fl.StringVar(&f.listen, "web.listen-address", ":9716", "address to serve /metrics, /healthz and /-/reload on")
	fl.StringVar(&f.webConfig, "web.config.file", "", "exporter-toolkit web config file: TLS and basic auth")
	fl.StringVar(&f.logLevel, "log.level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log.format", "logfmt", "log format: logfmt or json")
	return cmd
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log.level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "logfmt", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log.format %q: want logfmt or json", format)
}

// server is a running `probe serve`.
type server struct {
	flags   serveFlags
	log     *slog.Logger
	exp     *promexp.Exporter
	sched   *scheduler.Scheduler
	mu      sync.Mutex // serialises reloads
	current *configs.Config
	kernel  *kernelMetrics  // global.kernel (serve_kernel.go)
	health  *targets.Health // target sources (serve_discovery.go)
}

// serve runs until ctx is done. ready, when set, is called with the
// listening address once /metrics is served.
func serve(ctx context.Context, f serveFlags, log *slog.Logger, hup <-chan os.Signal, ready func(net.Addr)) error {
	s := &server{
		flags: f,
		log:   log,
		exp:   promexp.New(promexp.Options{Version: version}),
	}
	s.sched = scheduler.New(s.exp, log)
	s.kernel = newKernelMetrics()
	if err := s.exp.Register(s.kernel.c); err != nil {
		return fmt.Errorf("serve: kernel metrics: %w", err)
	}
	s.health = &targets.Health{Log: log}
	if err := s.exp.Register(newDiscoveryCollector(s.health)); err != nil {
		return fmt.Errorf("serve: discovery metrics: %w", err)
	}
	routeKlog(log) // kubernetes.go
	cfg, jobs, err := loadJobsHealth(f.config, log, s.health)
	if err != nil {
		s.exp.ConfigLoaded(false, time.Now())
		return usageError{err}
	}
	if f.webConfig != "" {
		if err := web.Validate(f.webConfig); err != nil {
			return usagef("--web.config.file: %w", err)
		}
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.exp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/-/reload", s.handleReload)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<html><body><h1>connprobe</h1><p><a href=\"/metrics\">/metrics</a> <a href=\"/healthz\">/healthz</a></p></body></html>\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	webFlags := &web.FlagConfig{
		WebListenAddresses: &[]string{f.listen},
		WebSystemdSocket:   new(bool),
		WebConfigFile:      &f.webConfig,
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.sched.Run(gctx) })
	applySynRate(cfg, nil, log)
	s.kernel.apply(cfg)
	s.health.Expect(discoverySources(cfg))
	if err := s.sched.Update(gctx, jobs); err != nil {
		ln.Close()
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
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				_ = s.reload(gctx)
			}
		}
	})
	log.Info("serving", "address", ln.Addr().String(), "version", version, "kubernetes", kubernetesBuilt)
	if ready != nil {
		ready(ln.Addr())
	}
	err = g.Wait()
	log.Info("stopped")
	return err
}

func (s *server) handleReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "use POST to reload the config", http.StatusMethodNotAllowed)
		return
	}
	if err := s.reload(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "config reloaded")
}

// reload re-reads the config; on any problem the running config stays.
func (s *server) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, jobs, err := loadJobsHealth(s.flags.config, s.log, s.health)
	if err != nil {
		s.exp.ConfigLoaded(false, time.Now())
		s.log.Error("reload failed; the previous config keeps running", "file", s.flags.config,
			"problems", strings.Split(err.Error(), "\n"))
		return fmt.Errorf("reload: %w", err)
	}
	applySynRate(cfg, s.current, s.log)
	s.kernel.apply(cfg)
	s.health.Expect(discoverySources(cfg))
	if err := s.sched.Update(ctx, jobs); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	s.current = cfg
	s.exp.ConfigLoaded(true, time.Now())
	s.log.Info("config reloaded", "file", s.flags.config, "jobs", len(jobs))
	return nil
}

// loadJobs loads and validates the config file and builds its jobs.
func loadJobs(path string, log *slog.Logger) (*configs.Config, []*scheduler.Job, error) {
	return loadJobsHealth(path, log, nil)
}

// loadJobsHealth is loadJobs with target sources that report to h.
func loadJobsHealth(path string, log *slog.Logger, h *targets.Health) (*configs.Config, []*scheduler.Job, error) {
	cfg, err := configs.Load(path)
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
		newProber, err := proberFactory(j.Kind, jobConfigs{j})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		background, err := jobBackground(j, log) // serve_idle.go
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
				Refresh: d.RefreshInterval.D, Server: server, NetNS: nsPath, Log: log.With("job", j.Name), Health: h, Job: j.Name})
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
		jobs = append(jobs, &scheduler.Job{
			Name:        j.Name,
			Kind:        j.Kind,
			Interval:    j.Interval.D,
			Timeout:     j.Timeout.D,
			Concurrency: j.Concurrency,
			ExpectFail:  j.Expect == configs.ExpectFail,
			Source:      source,
			New:         newJobProber,
			Fingerprint: j.Fingerprint(),
			Background:  background,
		})
	}
	return jobs, errors.Join(errs...)
}
