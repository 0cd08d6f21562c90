package main

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/netutil"
)

// httpLimits bound what HTTP clients can make one of our listeners hold:
// every listener the binary opens for HTTP (serve's web listener, the
// responder's metrics listener) is built from one.
type httpLimits struct {
	// MaxConns caps open connections: one more waits in the kernel's
	// accept queue until a slot frees (it costs no fd or goroutine here).
	MaxConns int
	// ReadHeader bounds reading a request's headers; Read the whole request
	// (our endpoints take no body).
	ReadHeader, Read time.Duration
	// Write bounds writing a response, from the end of the request headers:
	// it must cover the largest /metrics scrape at the slowest reader we
	// serve (docs/serve.md, Limits).
	Write time.Duration
	// Idle closes a keep-alive connection that sends no next request.
	Idle time.Duration
}

// Defaults of serve's web listener (flags --web.*).
const (
	defaultWebMaxConns     = 128
	defaultWebReadHeader   = 10 * time.Second
	defaultWebRead         = 30 * time.Second
	defaultWebWriteTimeout = 2 * time.Minute
	defaultWebIdleTimeout  = 2 * time.Minute
	webMaxHeaderBytes      = 16 << 10
)

// responderMetricsLimits are the responder's metrics listener's: its
// /metrics is a few KiB.
var responderMetricsLimits = httpLimits{MaxConns: 32, ReadHeader: defaultWebReadHeader, Read: defaultWebRead,
	Write: 30 * time.Second, Idle: defaultWebIdleTimeout}

func (l httpLimits) validate() error {
	var errs []error
	if l.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("--web.max-connections %d: want at least 1", l.MaxConns))
	}
	if l.Write <= 0 {
		errs = append(errs, fmt.Errorf("--web.write-timeout %s: want a positive duration", l.Write))
	}
	if l.Idle <= 0 {
		errs = append(errs, fmt.Errorf("--web.idle-timeout %s: want a positive duration", l.Idle))
	}
	return errors.Join(errs...)
}

// server returns an http.Server serving h under l's timeouts.
func (l httpLimits) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    webMaxHeaderBytes,
	}
}

// listener caps ln at l.MaxConns open connections.
func (l httpLimits) listener(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, l.MaxConns)
}

// checkListenAddr checks a listen flag without resolving anything: the
// host must be empty (every address) or an IP literal, the port a number.
// A name would go through the system resolver at startup, and a typo like
// 999.1.1.1 would read as a name: both are usage errors.
func checkListenAddr(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("%s %q: want [ip]:port, e.g. :9716 or 127.0.0.1:9716 or [::1]:9716", flag, addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return usagef("%s %q: host %q is not an IP address (names are not resolved; leave the host empty to listen on every address)", flag, addr, host)
		}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return usagef("%s %q: port %q is not a number from 0 to 65535", flag, addr, port)
	}
	return nil
}

// crossOrigin guards the state-changing endpoints against requests a web
// page makes a browser send (CSRF): Go's CrossOriginProtection rejects a
// request whose Sec-Fetch-Site is cross-site or same-site, or whose Origin
// names another host; and the content types an HTML form or a no-CORS fetch
// can send without a preflight are refused outright, since no reload needs
// a body. A request with none of these headers (curl, a sidecar) passes.
var crossOrigin = http.NewCrossOriginProtection()

// formContentTypes are the CORS-safelisted request content types: the ones
// a cross-site page can send without a preflight.
var formContentTypes = map[string]bool{
	"application/x-www-form-urlencoded": true,
	"multipart/form-data":               true,
	"text/plain":                        true,
}

// checkSameSite says why r must be refused (with its status), or "" and 0.
func checkSameSite(r *http.Request) (int, string) {
	if err := crossOrigin.Check(r); err != nil {
		return http.StatusForbidden, "cross-origin request refused: " + err.Error()
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || formContentTypes[mt] {
			return http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q refused: send the POST without a body (curl -X POST URL)", ct)
		}
	}
	return 0, ""
}
