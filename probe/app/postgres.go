package app

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/connprobe/connprobe/probe"
)

// postgresProbe speaks the PostgreSQL frontend/backend protocol. Without a
// user it sends an SSLRequest (answered with one byte, 'S' or 'N', by a
// freshly forked backend), upgrades to TLS when the server said 'S', and
// sends a StartupMessage for user connprobe: a PostgreSQL server answers
// with a well-formed authentication request ('R') or ErrorResponse ('E'),
// and the probe hangs up there (the server does not log a client that
// leaves during authentication). One byte proves nothing: an SSH server's
// banner starts with 'S' too. With a user it runs the startup (and TLS when
// sslmode asks for it) with pgx's pgconn over the probe's connection, reads
// server_version, and runs SELECT 1; a guard checks the server's first
// answer before pgx parses it, and pgx reads no message larger than the
// answer's byte budget.
type postgresProbe struct {
	connString string // "" : SSLRequest and startup only
	host       string // for TLS's SNI
	user       string
	insecure   bool
}

func newPostgres(t probe.Target, cfg Config) (speaker, error) {
	u := t.URL
	if u == nil || u.User == nil || u.User.Username() == "" {
		if u != nil && len(u.Query()) > 0 {
			return nil, fmt.Errorf("postgres options %q need a user", u.RawQuery)
		}
		return &postgresProbe{host: t.Host}, nil
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "sslmode", "application_name", "connect_timeout", "sslrootcert", "sslcert", "sslkey", "sslsni", "sslnegotiation":
		default:
			return nil, fmt.Errorf("postgres option %q is not supported here", k)
		}
	}
	// sslmode prefer and allow (pgx's default is prefer) try one mode and
	// redial in the other: a second connection the probe would not measure.
	switch q.Get("sslmode") {
	case "":
		q.Set("sslmode", "disable")
	case "disable", "require", "verify-ca", "verify-full":
	default:
		return nil, fmt.Errorf("postgres sslmode=%s needs a second connection when the first mode fails; use disable or require (or verify-ca, verify-full)", q.Get("sslmode"))
	}
	v := *u
	v.Scheme = "postgres"
	v.RawQuery = q.Encode()
	if _, err := pgconn.ParseConfig(v.String()); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &postgresProbe{connString: v.String(), user: u.User.Username(), insecure: cfg.InsecureSkipVerify}, nil
}

func (p *postgresProbe) speak(ctx context.Context, c *conn, r *probe.Result) error {
	if p.connString == "" {
		return p.sslRequest(c, r)
	}
	cfg, err := pgconn.ParseConfig(p.connString)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	g := &pgGuard{conn: c}
	cfg.DialFunc = g.dial
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		f := pgproto3.NewFrontend(r, w)
		// pgx allocates a message's declared length before reading it (its
		// own limit is 1 GiB): the messages of a login and SELECT 1 are
		// small.
		f.SetMaxBodyLen(pgMaxMessage)
		return f
	}
	host := cfg.Host
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{host}, nil }
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = 0
	if cfg.TLSConfig != nil && p.insecure {
		cfg.TLSConfig.InsecureSkipVerify = true
	}
	c.wait("answer to the startup message")
	t0 := time.Now()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		if gerr := g.failure(); gerr != nil {
			return gerr
		}
		return pgErr(err)
	}
	defer pc.Close(ctx) // Terminate: a polite goodbye
	login := time.Since(t0)
	c.wait("answer to SELECT 1")
	t1 := time.Now()
	res, err := pc.Exec(ctx, "SELECT 1").ReadAll()
	if err != nil {
		return pgErr(err)
	}
	val := "no row"
	if len(res) == 1 && len(res[0].Rows) == 1 && len(res[0].Rows[0]) == 1 {
		val = string(res[0].Rows[0][0])
	}
	tlsNote := ""
	if cfg.TLSConfig != nil {
		tlsNote = " over TLS"
	}
	r.Evidencef("PostgreSQL %s; logged in as %s%s in %s; SELECT 1 = %s in %s",
		pc.ParameterStatus("server_version"), p.user, tlsNote, probe.Round(login), val, probe.Round(time.Since(t1)))
	return nil
}

// sslRequestCode is the SSLRequest "protocol version" 1234.5679.
const sslRequestCode = 80877103

// pgMaxMessage bounds one message pgx reads.
const pgMaxMessage = 64 << 10

// pgProbeUser is the user the probe without credentials names in its startup
// message; the server's answer (an authentication request, or "role does
// not exist") proves it is PostgreSQL without logging in.
const pgProbeUser = "connprobe"

func (p *postgresProbe) sslRequest(c *conn, r *probe.Result) error {
	t0 := time.Now()
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], sslRequestCode)
	if _, err := c.Write(req[:]); err != nil {
		return fmt.Errorf("postgres: write SSLRequest: %w", err)
	}
	c.wait("answer to the SSLRequest")
	var b [1]byte
	if err := readFull(c, b[:]); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	var rw net.Conn = c
	ssl := ""
	switch b[0] {
	case 'S':
		// TLS first, as the server expects; the certificate is not
		// checked: the probe logs in as no one and sends no secret.
		c.wait("TLS handshake after the SSLRequest")
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: p.host}) //nolint:gosec // identification only, no secret is sent
		if err := tc.Handshake(); err != nil {
			if ioErr, _, _, _ := c.state(); ioErr != nil {
				return fmt.Errorf("postgres: TLS handshake: %w", err)
			}
			return serverErrorf("not a PostgreSQL server: answered the SSLRequest with S, then no TLS: %v (first bytes %q)", err, printable(c.greeting()))
		}
		rw = tc
		ssl = "S (TLS available)"
	case 'N':
		ssl = "N (TLS not enabled)"
	case 'E':
		// A server too old for SSLRequest, or one refusing us already:
		// an ErrorResponse follows its type byte.
		return pgFirstMessage(c, c, b[0], nil)
	default:
		more := make([]byte, 64)
		n, _ := c.Read(more)
		return serverErrorf("not a PostgreSQL server: answered the SSLRequest with %q", printable(append(b[:], more[:n]...)))
	}
	sslTime := time.Since(t0)
	t1 := time.Now()
	if _, err := rw.Write(pgStartup(pgProbeUser, "postgres")); err != nil {
		return fmt.Errorf("postgres: write startup message: %w", err)
	}
	c.wait("answer to the startup message")
	var typ [1]byte
	if err := readFull(rw, typ[:]); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return pgFirstMessage(c, rw, typ[0], func(what string) {
		r.Evidencef("SSLRequest answered in %s: %s; startup answered in %s: %s", probe.Round(sslTime), ssl, probe.Round(time.Since(t1)), what)
	})
}

// pgStartup builds a protocol 3.0 StartupMessage.
func pgStartup(user, db string) []byte {
	b := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(b[4:], 3<<16)
	for _, kv := range []string{"user", user, "database", db, "application_name", "connprobe"} {
		b = append(b, kv...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// pgAuthMethods names the authentication requests ('R' codes).
var pgAuthMethods = map[int32]string{
	0: "no password asked (trust)", 2: "Kerberos V5", 3: "cleartext password", 5: "MD5 password",
	7: "GSSAPI", 8: "GSSAPI continue", 9: "SSPI", 10: "SASL", 11: "SASL continue", 12: "SASL final",
}

// pgFirstMessage reads the rest of the server's first message after its
// type byte typ and judges it: a well-formed authentication request proves
// a PostgreSQL server (ok, reported through proved); an ErrorResponse about
// who we are (SQLSTATE class 28, invalid authorization, or 3D, no such
// database) proves one too, since the probe has no credentials; any other
// ErrorResponse (too many clients, starting up) is the server's error;
// anything else is not PostgreSQL. The length is checked against the
// answer's budget before the body is allocated.
func pgFirstMessage(c *conn, rw io.Reader, typ byte, proved func(string)) error {
	if typ != 'R' && typ != 'E' && typ != 'v' {
		more := make([]byte, 64)
		n, _ := rw.Read(more)
		return serverErrorf("not a PostgreSQL server: answered the startup message with %q", printable(append([]byte{typ}, more[:n]...)))
	}
	body, err := readPgBody(c, rw, typ)
	if err != nil {
		return err
	}
	switch typ {
	case 'R':
		if len(body) < 4 {
			return serverErrorf("not a PostgreSQL server: authentication request of %d bytes", len(body))
		}
		code := int32(binary.BigEndian.Uint32(body))
		name, ok := pgAuthMethods[code]
		if !ok {
			return serverErrorf("not a PostgreSQL server: authentication request %d", code)
		}
		if code == 10 {
			// SASL: the mechanisms follow, NUL-terminated.
			name = "SASL " + strings.Join(strings.FieldsFunc(string(body[4:]), func(r rune) bool { return r == 0 }), " ")
		}
		if proved != nil {
			proved(fmt.Sprintf("authentication request (%s): a PostgreSQL server", printable([]byte(name))))
		}
		return nil
	case 'v':
		if proved != nil {
			proved("protocol version negotiation: a PostgreSQL server")
		}
		return nil
	}
	f := parsePgError(body)
	if !f.wellFormed {
		return serverErrorf("not a PostgreSQL server: malformed error response %q", printable(body))
	}
	if proved != nil && (strings.HasPrefix(f.code, "28") || strings.HasPrefix(f.code, "3D")) {
		proved(fmt.Sprintf("%s (the probe has no credentials): a PostgreSQL server", f))
		return nil
	}
	return &ServerError{Msg: f.String()}
}

// readPgBody reads a message's length and body after its type byte.
func readPgBody(c *conn, rw io.Reader, typ byte) ([]byte, error) {
	var l [4]byte
	if err := readFull(rw, l[:]); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	n := int64(int32(binary.BigEndian.Uint32(l[:])))
	if n < 4 {
		return nil, serverErrorf("not a PostgreSQL server: message %q of length %d", typ, n)
	}
	if n-4 > c.left() {
		return nil, c.tooLarge(fmt.Sprintf("a PostgreSQL %q message of %d bytes", typ, n))
	}
	body, err := readN(rw, n-4)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return body, nil
}

// pgErrorFields are the fields of an ErrorResponse the evidence shows.
type pgErrorFields struct {
	severity, code, msg string
	wellFormed          bool // fields, each NUL-terminated, then a final NUL
}

func (f pgErrorFields) String() string {
	if f.msg == "" {
		return "PostgreSQL error response"
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s: %s", f.severity, f.code, f.msg))
}

// parsePgError parses an ErrorResponse body (after type and length):
// (code byte, C string) fields until a 0 byte. It never panics.
func parsePgError(b []byte) pgErrorFields {
	var f pgErrorFields
	for len(b) > 0 {
		t := b[0]
		if t == 0 {
			f.wellFormed = f.msg != "" && f.severity != ""
			return f
		}
		end := indexByte(b[1:], 0)
		if end < 0 {
			return f
		}
		v := printable(b[1 : 1+end])
		switch t {
		case 'S':
			f.severity = v
		case 'C':
			f.code = v
		case 'M':
			f.msg = v
		}
		b = b[2+end:]
	}
	return f
}

// pgErr turns an ErrorResponse into a ServerError and a message over pgx's
// limit into a TooLargeError; other errors stay for appFailed to classify
// by what the socket saw.
func pgErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &ServerError{Msg: fmt.Sprintf("%s %s: %s", pe.Severity, pe.Code, pe.Message)}
	}
	var big *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &big) {
		return &TooLargeError{Limit: int64(big.MaxExpectedBodyLen), What: fmt.Sprintf("a PostgreSQL message of %d bytes", big.ActualBodyLen)}
	}
	return err
}

// pgGuard stands between pgx and the probe's connection until the server's
// first answer is checked: the one-byte answer to an SSLRequest must be 'S'
// or 'N', and the first message after the startup must be an
// authentication request, an ErrorResponse or a protocol negotiation whose
// length fits the answer's budget. After that (or once TLS starts) bytes
// pass through: pgx's decoders check lengths, its frontend refuses
// messages over the budget, and the connection enforces it.
type pgGuard struct {
	*conn
	mu      sync.Mutex
	sentSSL bool // an SSLRequest is waiting for its one-byte answer
	startup bool // the startup message is waiting for its first answer
	done    bool
	ahead   []byte // checked bytes pgx has not read yet
	err     error
}

func (g *pgGuard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := g.conn.dial(ctx, network, addr); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *pgGuard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *pgGuard) Write(b []byte) (int, error) {
	g.mu.Lock()
	if !g.done {
		if len(b) == 8 && binary.BigEndian.Uint32(b[4:]) == sslRequestCode {
			g.sentSSL = true
		} else {
			g.startup = true
		}
	}
	g.mu.Unlock()
	return g.conn.Write(b)
}

func (g *pgGuard) Read(b []byte) (int, error) {
	g.mu.Lock()
	if g.err == nil && len(g.ahead) == 0 && !g.done {
		if err := g.check(); err != nil {
			g.mu.Unlock()
			return 0, err
		}
	}
	if g.err != nil {
		err := g.err
		g.mu.Unlock()
		return 0, err
	}
	if len(g.ahead) > 0 {
		n := copy(b, g.ahead)
		g.ahead = g.ahead[n:]
		g.mu.Unlock()
		return n, nil
	}
	// Checked: pass through, without the lock (pgx may read in the
	// background while it writes).
	g.mu.Unlock()
	return g.conn.Read(b)
}

// check reads and checks what the server sends first: the answer to the
// SSLRequest, or the header of the first message after the startup.
func (g *pgGuard) check() error {
	switch {
	case g.sentSSL:
		var one [1]byte
		if err := readFull(g.conn, one[:]); err != nil {
			return err
		}
		g.sentSSL = false
		switch one[0] {
		case 'S':
			g.done = true // TLS follows
		case 'N':
		default:
			g.err = serverErrorf("not a PostgreSQL server: answered the SSLRequest with %q", printable(one[:]))
			return g.err
		}
		g.ahead = one[:]
	case g.startup:
		var hdr [5]byte
		if err := readFull(g.conn, hdr[:]); err != nil {
			return err
		}
		n := int64(int32(binary.BigEndian.Uint32(hdr[1:])))
		switch {
		case hdr[0] != 'R' && hdr[0] != 'E' && hdr[0] != 'v':
			g.err = serverErrorf("not a PostgreSQL server: answered the startup message with %q", printable(hdr[:]))
		case n < 4:
			g.err = serverErrorf("not a PostgreSQL server: message %q of length %d", hdr[0], n)
		case n-4 > g.conn.left():
			g.err = g.conn.tooLarge(fmt.Sprintf("a PostgreSQL %q message of %d bytes", hdr[0], n))
		}
		if g.err != nil {
			return g.err
		}
		g.done = true
		g.ahead = hdr[:]
	}
	return nil
}
