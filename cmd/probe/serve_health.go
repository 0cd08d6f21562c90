//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// healthLimits bound the health listener: a kubelet sends one request per
// probe period, so a handful of connections is plenty.
var healthLimits = httpLimits{MaxConns: 16, ReadHeader: defaultWebReadHeader, Read: defaultWebRead,
	Write: 30 * time.Second, Idle: defaultWebIdleTimeout}

// healthRoutes is what the health listener serves: /healthz and /-/ready,
// plain HTTP without authentication, and nothing else. Both say only
// whether the agent works (no target, no metric), so a kubelet's
// httpGet probe works when the main listener requires TLS and basic auth
// (--web.config.file), which an httpGet probe cannot send.
func (s *server) healthRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.handleHealth)
	mux.HandleFunc("/-/ready", s.handleReady)
	return mux
}

// listenHealth opens the health listener (--web.health-listen-address),
// or returns nil when it is off.
func listenHealth(ctx context.Context, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := healthLimits.listen(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("serve: health listen: %w", err)
	}
	return ln, nil
}

// serveHealth serves the health routes on ln in g until ctx is done.
func (s *server) serveHealth(ctx context.Context, g *errgroup.Group, ln net.Listener) {
	ln, srv := healthLimits.serve(ln, s.healthRoutes())
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: health: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}

// checkHealthListen validates --web.health-listen-address against the main
// listener's address.
func checkHealthListen(health, listen string) error {
	if health == "" {
		return nil
	}
	if err := checkListenAddr("--web.health-listen-address", health); err != nil {
		return err
	}
	if _, hp, _ := net.SplitHostPort(health); hp != "0" {
		if _, lp, _ := net.SplitHostPort(listen); lp == hp {
			return usagef("--web.health-listen-address %q: same port as --web.listen-address %q: the health listener needs a port of its own", health, listen)
		}
	}
	return nil
}
