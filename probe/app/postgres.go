package app

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/connprobe/connprobe/probe"
)

// postgresProbe speaks the PostgreSQL frontend/backend protocol. Without a
// user it sends an SSLRequest, which every server answers with one byte
// ('S' or 'N') from a freshly forked backend, then hangs up (the server does
// not log a client that leaves right after that answer). With a user it
// runs the startup (and TLS when sslmode asks for it) with pgx's pgconn over
// the probe's connection, reads server_version, and runs SELECT 1.
type postgresProbe struct {
	connString string // "" : SSLRequest only
	user       string
	insecure   bool
}

func newPostgres(t probe.Target, cfg Config) (speaker, error) {
	u := t.URL
	if u == nil || u.User == nil || u.User.Username() == "" {
		if u != nil && len(u.Query()) > 0 {
			return nil, fmt.Errorf("postgres options %q need a user", u.RawQuery)
		}
		return &postgresProbe{}, nil
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
	cfg.DialFunc = c.dial
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
	switch b[0] {
	case 'S':
		r.Evidencef("SSLRequest answered in %s: S (PostgreSQL server, TLS available)", probe.Round(time.Since(t0)))
	case 'N':
		r.Evidencef("SSLRequest answered in %s: N (PostgreSQL server, TLS not enabled)", probe.Round(time.Since(t0)))
	case 'E':
		// A server too old for SSLRequest, or one refusing us already:
		// the rest is an ErrorResponse.
		buf := make([]byte, 1024)
		n, _ := c.Read(buf)
		return &ServerError{Msg: parsePgErrorFields(buf[:n])}
	default:
		more := make([]byte, 64)
		n, _ := c.Read(more)
		return serverErrorf("not a PostgreSQL server: answered the SSLRequest with %q", printable(append(b[:], more[:n]...)))
	}
	return nil
}

// parsePgErrorFields renders an ErrorResponse body after its type byte:
// int32 length, then (code byte, C string) fields until a 0 byte.
func parsePgErrorFields(b []byte) string {
	if len(b) >= 4 {
		b = b[4:]
	}
	var sev, code, msg string
	for len(b) > 1 && b[0] != 0 {
		t := b[0]
		end := indexByte(b[1:], 0)
		if end < 0 {
			end = len(b) - 1
		}
		v := printable(b[1 : 1+end])
		switch t {
		case 'S':
			sev = v
		case 'C':
			code = v
		case 'M':
			msg = v
		}
		b = b[min(len(b), 2+end):]
	}
	if msg == "" {
		return "PostgreSQL error response"
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s: %s", sev, code, msg))
}

// pgErr turns an ErrorResponse into a ServerError; other errors stay for
// appFailed to classify by what the socket saw.
func pgErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &ServerError{Msg: fmt.Sprintf("%s %s: %s", pe.Severity, pe.Code, pe.Message)}
	}
	return err
}
