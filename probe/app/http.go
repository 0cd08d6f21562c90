package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// httpProbe sends one GET over the probe's connection with net/http and
// times its phases with httptrace: TLS handshake, request written, first
// response byte. A 5xx status is app_error (the server is up but says it
// cannot serve); any other status is an answer and counts as alive.
// Redirects are not followed: they would need another connection.
type httpProbe struct {
	url        string
	user, pass string
	auth       bool
	tls        *tls.Config
}

func newHTTP(t probe.Target, cfg Config) (speaker, error) {
	if t.URL == nil {
		return nil, errors.New("http: want an http:// or https:// URL")
	}
	u := *t.URL
	p := &httpProbe{}
	if u.User != nil {
		p.user = u.User.Username()
		p.pass, _ = u.User.Password()
		p.auth = true
		u.User = nil
	}
	if u.Path == "" {
		u.Path = "/"
	}
	p.url = u.String()
	if t.Scheme == "https" {
		p.tls = &tls.Config{ServerName: t.Host, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // user's choice
	}
	if _, err := url.Parse(p.url); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	return p, nil
}

func (p *httpProbe) speak(ctx context.Context, c *conn, r *probe.Result) error {
	tr := &http.Transport{
		DialContext:            c.dial,
		Proxy:                  nil, // the probe measures the path to the target, not to a proxy
		TLSClientConfig:        p.tls,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var tlsStart, tlsDone, wrote, firstByte time.Time
	var tlsState tls.ConnectionState
	trace := &httptrace.ClientTrace{
		TLSHandshakeStart: func() { tlsStart = time.Now(); c.wait("TLS handshake") },
		TLSHandshakeDone: func(s tls.ConnectionState, err error) {
			tlsDone = time.Now()
			if err == nil {
				tlsState = s
			}
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { wrote = time.Now(); c.wait("HTTP response") },
		GotFirstResponseByte: func() { firstByte = time.Now() },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	req.Header.Set("User-Agent", "connprobe")
	if p.auth {
		req.SetBasicAuth(p.user, p.pass)
	}
	t0 := time.Now()
	c.wait("HTTP response")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	done := time.Now()
	if rerr != nil {
		return fmt.Errorf("http: read body: %w", rerr)
	}

	sendFrom := t0
	detail := ""
	if !tlsDone.IsZero() {
		detail = fmt.Sprintf("TLS %s in %s, ", tlsVersion(tlsState.Version), probe.Round(tlsDone.Sub(tlsStart)))
		sendFrom = tlsDone
	}
	if !wrote.IsZero() {
		r.Timings.Send = wrote.Sub(sendFrom)
		if !firstByte.IsZero() {
			r.Timings.Reply = firstByte.Sub(wrote)
		}
	}
	detail += fmt.Sprintf("request written in %s, first byte after %s, %d byte(s) of body in %s",
		probe.Round(r.Timings.Send), probe.Round(r.Timings.Reply), len(body), probe.Round(done.Sub(t0)))
	status := fmt.Sprintf("%s %s", resp.Proto, resp.Status)
	if resp.StatusCode >= 500 {
		msg := status
		if s := printable(body); s != "" {
			msg += ": " + s
		}
		r.Evidencef("%s", detail)
		return &ServerError{Msg: msg}
	}
	r.Evidencef("%s (%s)", status, detail)
	return nil
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
