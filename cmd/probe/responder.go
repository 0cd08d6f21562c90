//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/connprobe/connprobe/internal/responder"
)

func newResponderCmd() *cobra.Command {
	var (
		cfg                              responder.Config
		listen                           string
		metricsAddr                      string
		logLevel, logFormat, oldLogLevel string
	)
	cmd := &cobra.Command{
		Use:   "responder",
		Short: "Server end of idle-then-send probes: echo now, or reply after a delay; deploy behind the Service under test",
		Long: `probe responder answers connprobe's idle probes (probe run --kind idle,
the idle job of probe serve) over a small line protocol (docs/idle.md):

  CPR1 ECHO <nonce>         -> CPR1 OK <nonce> <server> <client>
  CPR1 DELAY <ms> <nonce>   -> CPR1 WAIT <nonce>, and <ms> later CPR1 OK ...

TCP keep-alive is never enabled on its connections (its probes would refresh
the NAT session under test). It records what became of its delayed replies:
one answered by an RST means the client's path forgot the session
(a stale NAT/IPVS entry); see connprobe_responder_delayed_replies_total{outcome="reset"} and the
warning in its log. Every limit is a flag; a request over a limit gets
"CPR1 ERR <code> <text>" and the connection is closed.`,
		Example: `  probe responder --listen :7700 --metrics-listen :9107
  probe responder --listen :7700 --close-idle 30s   # emulate a server idle timeout`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("log-level") && !cmd.Flags().Changed("log.level") {
				logLevel = oldLogLevel
			}
			log, err := newLogger(logLevel, logFormat, os.Stderr)
			if err != nil {
				return usageError{err}
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			if err := checkListenAddr("--listen", listen); err != nil {
				return err
			}
			if metricsAddr != "" {
				if err := checkListenAddr("--metrics-listen", metricsAddr); err != nil {
					return err
				}
			}
			return runResponder(cmd.Context(), cfg, listen, metricsAddr, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", ":7700", "[ip]:port for probe connections (an IP literal: names are not resolved)")
	fl.StringVar(&metricsAddr, "metrics-listen", ":9107", "[ip]:port for /metrics (empty: none)")
	fl.DurationVar(&cfg.MaxDelay, "max-delay", responder.DefaultMaxDelay, "longest DELAY accepted")
	fl.IntVar(&cfg.MaxConns, "max-conns", responder.DefaultMaxConns, "most open connections in total")
	fl.IntVar(&cfg.MaxPerSource, "max-per-source", responder.DefaultMaxPerSource, "most open connections from one client address")
	fl.DurationVar(&cfg.FirstRequest, "first-request-timeout", responder.DefaultFirstRequest, "close a new connection that sends no complete first request line this soon (ERR idle)")
	fl.DurationVar(&cfg.MaxIdle, "max-idle", responder.DefaultMaxIdle, "close a connection that sends no request for this long (must exceed the probes' idle time)")
	fl.DurationVar(&cfg.CloseIdle, "close-idle", 0, "close connections idle this long with a plain FIN, like a server idle timeout (0: off)")
	fl.StringVar(&logLevel, "log.level", "info", "debug, info, warn or error")
	fl.StringVar(&logFormat, "log.format", "logfmt", "log format: logfmt or json")
	// --log-level was the responder's own spelling; serve's is --log.level.
	fl.StringVar(&oldLogLevel, "log-level", "info", "same as --log.level")
	_ = fl.MarkDeprecated("log-level", "use --log.level, as probe serve does")
	return cmd
}

func runResponder(ctx context.Context, cfg responder.Config, listen, metricsAddr string, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := responder.New(cfg, reg, log)
	if err != nil {
		return usageError{err}
	}
	ln, err := responder.Listen(ctx, listen)
	if err != nil {
		return err
	}
	log.Info("responder: listening", "addr", ln.Addr().String(), "max_delay", cfg.MaxDelay, "max_conns", cfg.MaxConns,
		"max_per_source", cfg.MaxPerSource, "first_request_timeout", cfg.FirstRequest, "max_idle", cfg.MaxIdle, "close_idle", cfg.CloseIdle)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, ln) })
	if metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mln, err := responderMetricsLimits.listen(ctx, metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("responder: metrics listen: %w", err)
		}
		mln, hs := responderMetricsLimits.serve(mln, mux)
		log.Info("responder: metrics", "addr", mln.Addr().String())
		g.Go(func() error {
			if err := hs.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("responder: metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	return g.Wait()
}
