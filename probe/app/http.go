package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
)

// httpProbe sends one GET over the probe's connection with net/http and
// times its phases with httptrace: TLS handshake, request written, first
// response byte. By default a 5xx status is app_error (the server is up but
// says it cannot serve) and any other status is an answer that counts as
// alive; Config.ExpectStatus and ExpectBody replace that rule. Redirects
// are not followed (a health check must see them, and following would need
// another connection): the evidence reports the status and its Location.
type httpProbe struct {
	url        string
	user, pass string
	auth       bool
	tls        *tls.Config
	caFile     string
	expect     []StatusRange
	expectBody string
}

// MaxBody is how much of a response's body the HTTP probe reads (and
// searches for Config.ExpectBody); the rest is left unread.
const MaxBody = 4096

// StatusRange is an accepted HTTP status: one code (302: Lo = Hi = 302) or
// a class (2xx: 200-299).
type StatusRange struct{ Lo, Hi int }

// ParseStatus parses a status code ("302") or class ("2xx", "2XX").
func ParseStatus(s string) (StatusRange, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if len(v) == 3 && v[0] >= '1' && v[0] <= '5' {
		if v[1:] == "xx" {
			lo := int(v[0]-'0') * 100
			return StatusRange{lo, lo + 99}, nil
		}
		if n, err := strconv.Atoi(v); err == nil && v[1] >= '0' && v[1] <= '9' && v[2] >= '0' && v[2] <= '9' {
			return StatusRange{n, n}, nil
		}
	}
	return StatusRange{}, fmt.Errorf("status %q: want a code 100-599 (302) or a class 1xx-5xx (2xx)", s)
}

// String renders s as it is written: "302" or "2xx".
func (s StatusRange) String() string {
	if s.Lo == s.Hi {
		return strconv.Itoa(s.Lo)
	}
	if s.Lo%100 == 0 && s.Hi == s.Lo+99 {
		return fmt.Sprintf("%dxx", s.Lo/100)
	}
	return fmt.Sprintf("%d-%d", s.Lo, s.Hi)
}

func (s StatusRange) contains(code int) bool { return code >= s.Lo && code <= s.Hi }

// statusList renders ss for evidence: "2xx", "2xx or 404", "200, 204 or 3xx".
func statusList(ss []StatusRange) string {
	n := make([]string, len(ss))
	for i, s := range ss {
		n[i] = s.String()
	}
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}

// MaxCAFile caps a ca_file: a PEM bundle of a few CAs is some KiB (the
// whole Mozilla bundle some 220 KiB).
const MaxCAFile = 1 << 20

// ReadCAFile reads the PEM certificates at path (a regular file of at most
// MaxCAFile, read through safefile until ctx ends) into a pool for
// Config.RootCAs. A file with no certificate, or with one that does not
// parse, is an error naming the path.
func ReadCAFile(ctx context.Context, path string) (*x509.CertPool, error) {
	b, err := safefile.ReadFile(ctx, path, MaxCAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	return ParseCAFile(path, b)
}

// ParseCAFile parses b, the contents of the ca_file at path, as ReadCAFile
// does.
func ParseCAFile(path string, b []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		n++
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_file %s: certificate %d: %w", path, n, err)
		}
		pool.AddCert(c)
	}
	if n == 0 {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate (-----BEGIN CERTIFICATE-----) in its %d bytes", path, len(b))
	}
	return pool, nil
}

func newHTTP(t probe.Target, cfg Config) (speaker, error) {
	if t.URL == nil {
		return nil, errors.New("http: want an http:// or https:// URL")
	}
	u := *t.URL
	p := &httpProbe{expect: cfg.ExpectStatus, expectBody: cfg.ExpectBody}
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
		p.tls = &tls.Config{ServerName: t.Host, InsecureSkipVerify: cfg.InsecureSkipVerify, RootCAs: cfg.RootCAs} //nolint:gosec // user's choice
		p.caFile = cfg.CAFile
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
	// The transport, not an http.Client: a client parses a redirect's
	// Location (failing on one it cannot parse) before it could be told not
	// to follow it. One request, one response, whatever its status.
	resp, err := tr.RoundTrip(req)
	if err != nil {
		var unknown x509.UnknownAuthorityError
		if p.caFile != "" && errors.As(err, &unknown) {
			return &ExpectationError{Msg: fmt.Sprintf("certificate not trusted by ca_file %s: %s", p.caFile, clip(err.Error()))}
		}
		return err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	resp.Body.Close()
	done := time.Now()
	if rerr != nil {
		return fmt.Errorf("http: read body: %w", rerr)
	}

	sendFrom := t0
	detail := ""
	if !tlsDone.IsZero() {
		detail = fmt.Sprintf("TLS %s in %s, ", tlsVersion(tlsState.Version), probe.Round(tlsDone.Sub(tlsStart)))
		if p.tls.InsecureSkipVerify {
			detail += "certificate not verified (insecure_skip_verify), "
		}
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
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Not followed: the health check sees the redirect, and says where to.
		if loc := resp.Header.Get("Location"); loc != "" {
			status += " → Location: " + printable([]byte(loc))
		} else {
			status += " → no Location header"
		}
	}
	snippet := ""
	if s := printable(body); s != "" {
		snippet = ": " + s
	}
	if len(p.expect) == 0 {
		if resp.StatusCode >= 500 {
			r.Evidencef("%s", detail)
			return &ServerError{Msg: status + snippet}
		}
	} else if !slicesContainsStatus(p.expect, resp.StatusCode) {
		r.Evidencef("%s (%s)", status, detail)
		return &ExpectationError{Msg: fmt.Sprintf("status %d, expected %s%s", resp.StatusCode, statusList(p.expect), snippet)}
	}
	if p.expectBody != "" {
		if !bytes.Contains(body, []byte(p.expectBody)) {
			r.Evidencef("%s (%s)", status, detail)
			return &ExpectationError{Msg: fmt.Sprintf("body did not contain %s in its first %d bytes (%d byte(s) read)%s", quoteClip(p.expectBody), MaxBody, len(body), snippet)}
		}
		r.Evidencef("%s (%s); body contains %s", status, detail, quoteClip(p.expectBody))
		return nil
	}
	r.Evidencef("%s (%s)", status, detail)
	return nil
}

func slicesContainsStatus(ss []StatusRange, code int) bool {
	for _, s := range ss {
		if s.contains(code) {
			return true
		}
	}
	return false
}

// quoteClip quotes an expected substring for evidence, at most 80 bytes of it.
func quoteClip(s string) string {
	if len(s) > 80 {
		return strconv.Quote(strings.ToValidUTF8(s[:80], "")) + "…"
	}
	return strconv.Quote(s)
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
