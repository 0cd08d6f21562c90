package app

import (
	"context"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/connprobe/connprobe/probe"
)

// mysqlProbe speaks the MySQL/MariaDB client protocol. Without a user it
// only reads the server's greeting (the initial handshake packet, which the
// server sends first) and parses the version; a server out of connection
// slots sends an ERR packet ("Too many connections") instead. With a user it
// logs in with go-sql-driver/mysql over the probe's connection and runs
// SELECT 1.
type mysqlProbe struct {
	cfg *mysql.Config // nil: greeting only
}

func newMySQL(t probe.Target, cfg Config) (speaker, error) {
	u := t.URL
	if u == nil || u.User == nil || u.User.Username() == "" {
		if u != nil && len(u.Query()) > 0 {
			return nil, fmt.Errorf("mysql options %q need a user", u.RawQuery)
		}
		return &mysqlProbe{}, nil
	}
	mc := mysql.NewConfig()
	mc.User = u.User.Username()
	mc.Passwd, _ = u.User.Password()
	mc.Net = "tcp"
	mc.Addr = t.HostPort()
	mc.DBName = strings.TrimPrefix(u.Path, "/")
	mc.Logger = nopLogger{}
	// A fixed max_allowed_packet spares the driver its extra query for it.
	mc.MaxAllowedPacket = 4 << 20
	for k, v := range u.Query() {
		switch k {
		case "tls":
			mc.TLSConfig = v[len(v)-1]
		default:
			return nil, fmt.Errorf("mysql option %q: want tls=true|skip-verify|preferred|false", k)
		}
	}
	if cfg.InsecureSkipVerify && mc.TLSConfig == "true" {
		mc.TLSConfig = "skip-verify"
	}
	switch mc.TLSConfig {
	case "", "false", "true", "skip-verify", "preferred":
	default:
		return nil, fmt.Errorf("mysql option tls=%q: want true, skip-verify, preferred or false", mc.TLSConfig)
	}
	if _, err := mysql.NewConnector(mc); err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return &mysqlProbe{cfg: mc}, nil
}

func (m *mysqlProbe) speak(ctx context.Context, c *conn, r *probe.Result) error {
	if m.cfg == nil {
		t0 := time.Now()
		c.wait("greeting")
		g, err := readMySQLPacket(c, maxGreeting)
		if err != nil {
			return err
		}
		h, err := ParseMySQLGreeting(g)
		if err != nil {
			return err
		}
		// MariaDB and MySQL check max_connections at login, after the
		// greeting (MariaDB's greeting comes even when every slot is
		// taken): only a login proves the server accepts clients.
		r.Evidencef("greeting in %s: %s; greeting only: a login (mysql://user:pass@…) proves the server accepts clients", probe.Round(time.Since(t0)), h)
		return nil
	}

	cfg := m.cfg.Clone()
	// The driver reads the server's packets only through the guard, which
	// checks each one first (see mysqlGuard).
	g := newMySQLGuard(c)
	cfg.DialFunc = g.dial
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	c.wait("greeting")
	t0 := time.Now()
	dc, err := connector.Connect(ctx)
	if err != nil {
		return mysqlErr(g, err)
	}
	defer dc.Close() // COM_QUIT: a polite goodbye
	login := time.Since(t0)
	greet := "greeting"
	if h, err := ParseMySQLGreeting(mysqlPayload(c.greeting())); err == nil {
		greet = h.String()
	}
	c.wait("answer to SELECT 1")
	t1 := time.Now()
	v, err := mysqlSelect1(ctx, dc)
	if err != nil {
		return mysqlErr(g, err)
	}
	r.Evidencef("%s; logged in as %s in %s; SELECT 1 = %v in %s", greet, cfg.User, probe.Round(login), v, probe.Round(time.Since(t1)))
	return nil
}

func mysqlSelect1(ctx context.Context, dc driver.Conn) (driver.Value, error) {
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil, errors.New("mysql: driver cannot query")
	}
	rows, err := q.QueryContext(ctx, "SELECT 1", nil)
	if err != nil {
		return nil, err
	}
	dest := make([]driver.Value, len(rows.Columns()))
	err = rows.Next(dest)
	// Close reads the rest of the answer: what it finds counts too.
	if cerr := rows.Close(); cerr != nil && err == nil {
		return nil, fmt.Errorf("mysql: SELECT 1: %w", cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("mysql: SELECT 1 returned no row: %w", err)
	}
	if len(dest) != 1 {
		return nil, serverErrorf("SELECT 1 returned %d columns", len(dest))
	}
	if b, ok := dest[0].([]byte); ok {
		return string(b), nil
	}
	return dest[0], nil
}

// mysqlErr turns the server's ERR packet into a ServerError; a packet the
// guard refused is that refusal; other errors stay for appFailed to
// classify by what the socket saw.
func mysqlErr(g *mysqlGuard, err error) error {
	if gerr := g.failure(); gerr != nil {
		return gerr
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return &ServerError{Msg: mysqlErrorText(me.Number, string(me.SQLState[:]), me.Message)}
	}
	return err
}

func mysqlErrorText(code uint16, state, msg string) string {
	if strings.Trim(state, "\x00") == "" {
		return fmt.Sprintf("ERROR %d: %s", code, msg)
	}
	return fmt.Sprintf("ERROR %d (%s): %s", code, state, msg)
}

// maxGreeting bounds a greeting: a real one is under 128 bytes.
const maxGreeting = 64 << 10

// readMySQLPacket reads one packet: a 3-byte little-endian length, a
// sequence byte, then the payload.
func readMySQLPacket(c *conn, maxLen int) ([]byte, error) {
	var hdr [4]byte
	if err := readFull(c, hdr[:]); err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n == 0 || n > maxLen {
		return nil, serverErrorf("not a MySQL greeting: packet header %x (%q)", hdr, printable(hdr[:]))
	}
	b, err := readN(c, int64(n))
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return b, nil
}

// mysqlPayload strips the packet header from the first bytes received.
func mysqlPayload(head []byte) []byte {
	if len(head) < 4 {
		return nil
	}
	n := int(head[0]) | int(head[1])<<8 | int(head[2])<<16
	return head[4:min(len(head), 4+n)]
}

// MySQLGreeting is what the server's initial handshake packet says.
type MySQLGreeting struct {
	Protocol     uint8
	Version      string // "10.11.19-MariaDB-0+deb12u1"
	ConnectionID uint32
	AuthPlugin   string // "mysql_native_password", when the server names it
}

func (g MySQLGreeting) String() string {
	s := fmt.Sprintf("server %s (protocol %d, connection id %d", g.Version, g.Protocol, g.ConnectionID)
	if g.AuthPlugin != "" {
		s += ", auth " + g.AuthPlugin
	}
	return s + ")"
}

// ParseMySQLGreeting parses the payload of the server's first packet: a
// HandshakeV10, or an ERR packet (0xff, error code, "#" and SQL state,
// message) sent instead when the server refuses the connection — "Too many
// connections", "Host ... is blocked". An ERR packet is returned as a
// *ServerError; anything else that is not a greeting is one too. It never
// panics on malformed input.
func ParseMySQLGreeting(p []byte) (MySQLGreeting, error) {
	if len(p) == 0 {
		return MySQLGreeting{}, serverErrorf("not a MySQL greeting: empty packet")
	}
	if p[0] == 0xff {
		if len(p) < 3 {
			return MySQLGreeting{}, serverErrorf("malformed MySQL error packet %x", p)
		}
		code := binary.LittleEndian.Uint16(p[1:3])
		rest := p[3:]
		state := ""
		if len(rest) >= 6 && rest[0] == '#' {
			state, rest = string(rest[1:6]), rest[6:]
		}
		return MySQLGreeting{}, &ServerError{Msg: mysqlErrorText(code, state, printable(rest))}
	}
	if p[0] != 10 && p[0] != 9 {
		return MySQLGreeting{}, serverErrorf("not a MySQL greeting: protocol byte %d: %q", p[0], printable(p))
	}
	g := MySQLGreeting{Protocol: p[0]}
	rest := p[1:]
	i := indexByte(rest, 0)
	if i < 0 {
		return MySQLGreeting{}, serverErrorf("not a MySQL greeting: unterminated version: %q", printable(p))
	}
	g.Version = printable(rest[:i])
	// MariaDB prefixes its version with "5.5.5-" for old replication
	// clients; the real version follows.
	if v, ok := strings.CutPrefix(g.Version, "5.5.5-"); ok && strings.Contains(v, "MariaDB") {
		g.Version = v
	}
	rest = rest[i+1:]
	if g.Protocol == 9 || len(rest) < 4 {
		return g, nil
	}
	g.ConnectionID = binary.LittleEndian.Uint32(rest)
	// auth-plugin-data-part-1 (8), filler (1), capability flags lower (2),
	// charset (1), status (2), capability flags upper (2), auth data length
	// (1), reserved (10), auth-plugin-data-part-2 (max(13, len-8)), plugin name.
	rest = rest[4:]
	const fixed = 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
	if len(rest) < fixed {
		return g, nil
	}
	caps := uint32(binary.LittleEndian.Uint16(rest[9:11])) | uint32(binary.LittleEndian.Uint16(rest[14:16]))<<16
	authLen := int(rest[16])
	rest = rest[fixed:]
	const clientPluginAuth = 1 << 19
	if caps&clientPluginAuth != 0 {
		skip := max(13, authLen-8)
		if len(rest) > skip {
			name := rest[skip:]
			if j := indexByte(name, 0); j >= 0 {
				name = name[:j]
			}
			g.AuthPlugin = printable(name)
		}
	}
	return g, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// nopLogger keeps the driver from logging to stderr: its errors reach us as
// return values and socket facts.
type nopLogger struct{}

func (nopLogger) Print(...any) {}
