// Package app is the application-handshake probe: after the TCP phase —
// run by probe/connect exactly as the connect probe runs it, so syn_timeout,
// refused, unreachable and SYN retransmits mean the same thing here — it
// speaks just enough of the target's protocol to prove the server is alive
// and serving, and times that exchange as its own phase (Timings.App).
//
// The protocol comes from the target's URL scheme:
//
//	mysql://[user[:pass]@]host:port[/db]  greeting (version); with a user: log in, SELECT 1
//	postgres://[user[:pass]@]host:port[/db][?sslmode=disable|require]
//	                                       SSLRequest, startup answered by R or E; with a user: SELECT 1
//	redis://[[user]:pass@]host:port[/db]   AUTH when a password is given, PING, INFO server
//	kafka://host:port                      ApiVersions, Metadata (brokers, leaderless partitions)
//	http://host:port/path, https://…       one GET with httptrace phases; 5xx is an error
//
// Two reasons belong to this phase: app_timeout (connected, but no greeting or
// answer before the timeout) and app_error (the server answered, with an error
// or with something that is not its protocol; the server's message is in the
// evidence). An I/O error during the exchange is classified by its errno as
// everywhere else (reset, peer_closed).
//
// Every protocol runs over the one connection the TCP phase established: the
// client libraries (go-sql-driver/mysql, pgx's pgconn) get a dial function
// that hands them that connection, so a probe never opens a second,
// unmeasured one.
//
// Every byte a server sends is hostile: each answer is read under a byte
// budget (MaxAnswer), declared lengths and counts are checked against it
// before anything is allocated, and the libraries that trust the server's
// bytes are fronted by our own parsers (mysqlGuard, pgGuard; Kafka answers
// are decoded by our own decoders). probe.SafeProbe, around every probe,
// turns what still panics into one failed attempt.
package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

// Kind is the probe kind name used in results and configs.
const Kind = "app"

// Config configures an application probe.
type Config struct {
	// Timeout bounds one attempt: TCP phase and application exchange.
	Timeout time.Duration
	// Source, when valid, is the local address to bind to.
	Source netip.Addr
	// UserTimeout sets TCP_USER_TIMEOUT on the connection (0 = kernel default).
	UserTimeout time.Duration
	// Resolver resolves a host name target (nil: the system resolver).
	Resolver *probe.Resolver
	// InsecureSkipVerify turns off certificate verification for https://
	// (and TLS-enabled mysql/postgres targets).
	InsecureSkipVerify bool

	// The options below apply to http:// and https:// targets only; New
	// refuses them for another scheme.

	// ExpectStatus lists the statuses that count as an answer (any one
	// matches). Empty: the default rule, any status below 500 (a redirect
	// and a 404 are answers, a 5xx is app_error).
	ExpectStatus []StatusRange
	// ExpectBody, when set, must occur in the first MaxBody bytes of the
	// body; otherwise the attempt is app_error.
	ExpectBody string
	// RootCAs, when set, replaces the system's roots for https:// targets;
	// CAFile is the file it was read from (ReadCAFile), named in errors and
	// evidence. New refuses a CAFile without RootCAs: the file was not read
	// (Validate, which reads no file, accepts it).
	CAFile  string
	RootCAs *x509.CertPool
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	errs := []error{c.connect().Validate()}
	for _, s := range c.ExpectStatus {
		if s.Lo < 100 || s.Hi > 599 || s.Lo > s.Hi {
			errs = append(errs, fmt.Errorf("expect_status %d-%d: want a code 100-599 or a class 1xx-5xx", s.Lo, s.Hi))
		}
	}
	if len(c.ExpectBody) > MaxBody {
		errs = append(errs, fmt.Errorf("expect_body of %d bytes is longer than the %d bytes of body the probe reads", len(c.ExpectBody), MaxBody))
	}
	if c.CAFile != "" && c.InsecureSkipVerify {
		errs = append(errs, errors.New("ca_file and insecure_skip_verify exclude each other (one trusts a CA, the other trusts any certificate)"))
	}
	return errors.Join(errs...)
}

// httpOnly returns the names of the options set in c that only http:// and
// https:// targets take (ca_file: https:// only) and that scheme would not.
func (c Config) httpOnly(scheme string) []string {
	var n []string
	if scheme != "http" && scheme != "https" {
		if len(c.ExpectStatus) > 0 {
			n = append(n, "expect_status")
		}
		if c.ExpectBody != "" {
			n = append(n, "expect_body")
		}
	}
	if scheme != "https" && c.CAFile != "" {
		n = append(n, "ca_file")
	}
	return n
}

func (c Config) connect() connect.Config {
	return connect.Config{Timeout: c.Timeout, Source: c.Source, UserTimeout: c.UserTimeout, Resolver: c.Resolver}
}

func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return connect.DefaultTimeout
	}
	return c.Timeout
}

// speaker runs one protocol's exchange over an established connection. It
// adds evidence to r and returns nil when the server proved alive; an error
// the server sent back is returned as a *ServerError.
type speaker interface {
	speak(ctx context.Context, c *conn, r *probe.Result) error
}

// Schemes returns the URL schemes this package speaks, sorted.
func Schemes() []string {
	s := make([]string, 0, len(protocols))
	for k := range protocols {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// protocols maps a URL scheme to the constructor of its speaker, which checks
// the target's URL (credentials, options) once, at construction.
var protocols = map[string]func(t probe.Target, cfg Config) (speaker, error){
	"mysql":    newMySQL,
	"postgres": newPostgres,
	"redis":    newRedis,
	"kafka":    newKafka,
	"http":     newHTTP,
	"https":    newHTTP,
}

// Supports reports whether scheme has an application probe.
func Supports(scheme string) bool {
	_, ok := protocols[strings.ToLower(scheme)]
	return ok
}

// Prober runs application probes against one target.
type Prober struct {
	target probe.Target
	cfg    Config
	tcp    *connect.Prober
	proto  speaker
}

// New returns a Prober for t, whose Scheme picks the protocol. Bad URLs
// (an unsupported option, credentials a protocol cannot use) are errors here.
func New(t probe.Target, cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	mk, ok := protocols[t.Scheme]
	if !ok {
		return nil, fmt.Errorf("app: target %q: scheme %q has no application probe (want one of %s)", t.Name, t.Scheme, strings.Join(Schemes(), ", "))
	}
	if cfg.CAFile != "" && cfg.RootCAs == nil {
		return nil, fmt.Errorf("app: ca_file %q was not read (app.ReadCAFile)", cfg.CAFile)
	}
	if n := cfg.httpOnly(t.Scheme); len(n) > 0 {
		want := "http:// and https://"
		if len(n) == 1 && n[0] == "ca_file" {
			want = "https://"
		}
		verb := "applies"
		if len(n) > 1 {
			verb = "apply"
		}
		return nil, fmt.Errorf("app: target %q: %s %s to %s targets, not %s://", t.Name, strings.Join(n, ", "), verb, want, t.Scheme)
	}
	tcp, err := connect.New(t, cfg.connect())
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	sp, err := mk(t, cfg)
	if err != nil {
		return nil, fmt.Errorf("app: target %q: %w", t.Name, err)
	}
	return &Prober{target: t, cfg: cfg, tcp: tcp, proto: sp}, nil
}

// Close implements probe.Prober; an app prober holds nothing between attempts.
func (p *Prober) Close() error { return nil }

// Probe makes one attempt: the TCP phase, then the protocol exchange.
func (p *Prober) Probe(ctx context.Context) probe.Result {
	r := probe.Result{Target: p.target.Name, Kind: Kind, Start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.timeout())
	defer cancel()
	if nc := p.tcp.Establish(ctx, &r); nc != nil {
		deadline, _ := ctx.Deadline()
		c := newConn(nc, deadline)
		t0 := time.Now()
		err := p.proto.speak(ctx, c, &r)
		r.Timings.App = time.Since(t0)
		c.Close()
		if err != nil {
			appFailed(ctx, &r, c, p.target.Scheme, err)
		} else {
			// ok, or the handshake's degraded success syn_retransmitted.
			r.Phase = probe.PhaseDone
		}
	}
	r.Kind = Kind
	r.Duration = time.Since(r.Start)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && !r.Success() {
		// The caller gave up (shutdown): not a network failure.
		r.Reason = probe.ReasonCanceled
	}
	return r
}

// ServerError is an error the server sent back (or an answer that is not
// the protocol at all): it makes the attempt app_error.
type ServerError struct {
	Msg string // the server's own words, e.g. "ERROR 1040 (08004): Too many connections"
}

func (e *ServerError) Error() string { return e.Msg }

// ExpectationError is an answer that the probe's expectation (expect_status,
// expect_body) refuses: it makes the attempt app_error, with Msg saying what
// was expected and what came.
type ExpectationError struct {
	Msg string // "status 503, expected 2xx"
}

func (e *ExpectationError) Error() string { return e.Msg }

func serverErrorf(format string, args ...any) error {
	return &ServerError{Msg: fmt.Sprintf(format, args...)}
}

// appFailed classifies a failed exchange. What the server said wins; then
// what the socket saw (the errno of the first failed read or write: a
// deadline is app_timeout, EOF peer_closed, RST reset); then the attempt's
// own deadline (libraries that close the connection on ctx expiry report
// "use of closed connection" instead of a timeout).
func appFailed(ctx context.Context, r *probe.Result, c *conn, scheme string, err error) {
	r.Phase = probe.PhaseApp
	r.Err = err
	var se *ServerError
	var unmet *ExpectationError
	var big *TooLargeError
	ioErr, nread, nwritten, waiting := c.state()
	switch {
	case errors.As(ioErr, &big) || errors.As(err, &big):
		// Checked first: a library that hit the budget reports it in its
		// own words ("unexpected EOF", "bad conn").
		r.Reason = probe.ReasonAppError
		r.Evidencef("%v (while waiting for the %s; %d byte(s) received, %d sent)", big, waiting, nread, nwritten)
		return
	case errors.As(err, &unmet):
		r.Reason = probe.ReasonAppError
		r.Evidencef("%s", unmet.Msg)
		return
	case errors.As(err, &se):
		r.Reason = probe.ReasonAppError
		r.Evidencef("server answered with an error: %s", se.Msg)
		return
	case ioErr != nil && !errors.Is(ioErr, net.ErrClosed):
		r.Fail(probe.PhaseApp, ioErr)
	case ctx.Err() != nil:
		r.Fail(probe.PhaseApp, context.Cause(ctx))
	case nread > 0:
		// The server sent something the client library could not accept.
		r.Reason = probe.ReasonAppError
		r.Evidencef("server answered something the %s client rejects: %s", scheme, clip(err.Error()))
		return
	default:
		r.Fail(probe.PhaseApp, err)
	}
	r.Err = err
	switch r.Reason {
	case probe.ReasonAppTimeout:
		if r.Retransmits > 0 {
			// The attempt's one timeout covers both phases: say when the
			// handshake ate it, so the server is not blamed alone.
			r.Evidencef("the handshake's %d SYN retransmit(s) took %s of the attempt's timeout; the server had %s left", r.Retransmits, probe.Round(r.Timings.Handshake), probe.Round(r.Timings.App))
		}
		if nread == 0 {
			r.Evidencef("connected, but the server sent nothing: no %s within %s (%d byte(s) sent)", waiting, probe.Round(r.Timings.App), nwritten)
		} else {
			r.Evidencef("no %s within %s (%d byte(s) received before, %d sent)", waiting, probe.Round(r.Timings.App), nread, nwritten)
		}
	case probe.ReasonPeerClosed, probe.ReasonReset:
		r.Evidencef("while waiting for the %s (%d byte(s) received, %d sent)", waiting, nread, nwritten)
	}
}

// MaxAnswer is the byte budget of one answer: what a peer may send between
// two of our writes. A health check's answers (a greeting, an
// authentication request, PONG and INFO, ApiVersions, an HTTP head and 4 KiB
// of body) are a few KiB; a peer that sends more is hostile or broken, and
// the connection fails its next read instead of letting a client library
// buffer it. Kafka's Metadata of all topics gets maxKafkaMetadata instead.
const MaxAnswer = 1 << 20

// TooLargeError is a peer's answer that exceeds its byte budget, or that
// declares a length or count larger than the budget allows (checked before
// anything is allocated for it). It makes the attempt app_error.
type TooLargeError struct {
	Limit int64  // the budget, bytes
	What  string // what was too large: "answer", "MySQL packet of 16777215 bytes"
}

func (e *TooLargeError) Error() string {
	if e.What == "" || e.What == "answer" {
		return "answer larger than " + byteSize(e.Limit)
	}
	return fmt.Sprintf("answer larger than %s: %s", byteSize(e.Limit), e.What)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// conn is the established connection as the protocol code sees it. It
// records what the socket saw (first I/O error, byte counts, the first bytes
// received: the greeting) so failures are classified by facts rather than by
// a library's error text, it never lets a library move a deadline past the
// attempt's own, and it reads each answer under a byte budget: after
// budget bytes without a write of ours in between, Read fails with a
// *TooLargeError, so no library can buffer more than that of a peer's bytes.
type conn struct {
	net.Conn
	limit time.Time
	// budget bounds the bytes read since our last write (one answer).
	budget   int64
	answered int64

	mu       sync.Mutex
	ioErr    error
	nread    int64
	nwritten int64
	head     []byte // first bytes read, up to headMax
	waiting  string // what the protocol waits for now, for evidence
	dialed   bool
}

const headMax = 1024

func newConn(nc net.Conn, limit time.Time) *conn {
	c := &conn{Conn: nc, limit: limit, waiting: "answer", budget: MaxAnswer}
	if !limit.IsZero() {
		_ = nc.SetDeadline(limit)
	}
	return c
}

func (c *conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	left := c.budget - c.answered
	c.mu.Unlock()
	if left <= 0 {
		err := &TooLargeError{Limit: c.budget, What: "answer"}
		c.mu.Lock()
		if c.ioErr == nil {
			c.ioErr = err
		}
		c.mu.Unlock()
		return 0, err
	}
	if int64(len(b)) > left {
		b = b[:left]
	}
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.nread += int64(n)
	c.answered += int64(n)
	if len(c.head) < headMax && n > 0 {
		c.head = append(c.head, b[:min(n, headMax-len(c.head))]...)
	}
	if err != nil && c.ioErr == nil {
		c.ioErr = err
	}
	c.mu.Unlock()
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.nwritten += int64(n)
	c.answered = 0 // a new request: a new answer
	if err != nil && c.ioErr == nil {
		c.ioErr = err
	}
	c.mu.Unlock()
	return n, err
}

func (c *conn) clamp(t time.Time) time.Time {
	if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
		return c.limit
	}
	return t
}

func (c *conn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// setBudget sets the byte budget of the answers that follow.
func (c *conn) setBudget(n int64) {
	c.mu.Lock()
	c.budget = n
	c.mu.Unlock()
}

// left returns how many bytes the current answer may still take: a length
// or count a peer declares is checked against it before allocating.
func (c *conn) left() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.budget - c.answered
}

// tooLarge is the error for a declared size (what) beyond the budget.
func (c *conn) tooLarge(what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &TooLargeError{Limit: c.budget, What: what}
}

// wait records what the protocol waits for next ("greeting", "PONG").
func (c *conn) wait(what string) {
	c.mu.Lock()
	c.waiting = what
	c.mu.Unlock()
}

func (c *conn) state() (ioErr error, nread, nwritten int64, waiting string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ioErr, c.nread, c.nwritten, c.waiting
}

// greeting returns a copy of the first bytes the server sent.
func (c *conn) greeting() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.head...)
}

// dial is a dial function for client libraries: it hands out this
// connection once; a library that wants a second connection gets an error
// (the probe measures exactly one).
func (c *conn) dial(context.Context, string, string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dialed {
		return nil, errSecondDial
	}
	c.dialed = true
	return c, nil
}

var errSecondDial = errors.New("app: the client library asked for a second connection")

// readN reads the n bytes a peer declared (n already checked against the
// answer's budget), allocating as they arrive: a peer that declares a
// megabyte and sends five bytes costs five bytes and a small buffer, not
// the megabyte.
func readN(r io.Reader, n int64) ([]byte, error) {
	// The buffer doubles as bytes arrive, up to exactly n: at most 2n
	// allocated in all, and only for bytes the peer actually sent.
	buf := make([]byte, 0, min(n, 4<<10))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(n, 2*int64(cap(buf))))
			copy(nb, buf)
			buf = nb
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil && int64(len(buf)) < n {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read: %w", err)
		}
	}
	return buf, nil
}

// readFull reads exactly len(b) bytes.
func readFull(c io.Reader, b []byte) error {
	for off := 0; off < len(b); {
		n, err := c.Read(b[off:])
		off += n
		if err != nil {
			if off == len(b) {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
	}
	return nil
}

// clip bounds a library's error text for evidence: it may quote what the
// server sent.
func clip(s string) string {
	if len(s) > 300 {
		return strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// printable renders server bytes for evidence: at most 120 characters,
// control characters escaped.
func printable(b []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '.'
		}
		return r
	}, s)
}
