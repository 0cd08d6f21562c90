package app

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// mysqlGuard stands between go-sql-driver/mysql and the probe's connection.
// The driver trusts the server: it slices its packets at the offsets the
// protocol promises (a 5-byte "greeting" panics it), allocates a packet's
// declared length before reading it, joins 16 MiB continuation packets
// without a limit and makes a slice of whatever column count the server
// names. The guard reads every packet itself first: it checks the declared
// length against the answer's byte budget before allocating, refuses
// continuation packets (no answer of a health check is 16 MiB), and checks
// each packet's shape for the state the login and SELECT 1 are in, with the
// same offsets the driver will use, so the driver only ever parses packets
// it can parse. What fails the check is a *ServerError (or *TooLargeError)
// that speak returns instead of the driver's error.
//
// After a TLS upgrade (tls=true|skip-verify|preferred) the packets travel
// encrypted, and the driver decrypts them itself: from then on only the byte
// budget applies, and probe.SafeProbe catches what the driver still trusts.
type mysqlGuard struct {
	*conn
	br *bufio.Reader // over conn: a packet header is not a syscall

	mu          sync.Mutex
	st          mysqlState
	out         []byte // checked bytes not yet read by the driver
	err         error  // first check that failed
	passthrough bool   // TLS: bytes go through unchecked (budget only)
	serverCaps  uint32
	clientCaps  uint32
	cacheMeta   bool // MariaDB metadata-caching extension negotiated
	cols        int  // columns of the result set being read
	colsLeft    int
}

type mysqlState int

const (
	myGreeting   mysqlState = iota // the server's first packet
	myLogin                        // greeting read; the driver has not answered yet
	myAuth                         // handshake response sent: auth packets until OK or ERR
	myIdle                         // logged in, no command pending
	myHeader                       // COM_QUERY sent: OK, ERR or a column count
	myColumns                      // column definitions
	myColumnsEOF                   // the EOF after them (without CLIENT_DEPRECATE_EOF)
	myRows                         // rows until EOF/OK or ERR
	myDone                         // an ERR ended the exchange
)

// MySQL capability flags the guard needs to follow the driver.
const (
	myClientMySQL        = 1 << 0 // unset by MariaDB, which then sends extended capabilities
	myClientProtocol41   = 1 << 9
	myClientSSL          = 1 << 11
	myClientDeprecateEOF = 1 << 24
	myCacheMetadata      = 1 << 4 // MariaDB extended capability MARIADB_CLIENT_CACHE_METADATA
	myMoreResults        = 1 << 3 // SERVER_MORE_RESULTS_EXISTS
	myMaxColumns         = 64     // SELECT 1 has one column
	// myMaxMeta bounds a column definition or a row of SELECT 1's answer
	// ("1"): the driver quotes a value it cannot parse whole into its
	// error, so a large one would cost several times its size.
	myMaxMeta = 4 << 10
)

func newMySQLGuard(c *conn) *mysqlGuard {
	return &mysqlGuard{conn: c, br: bufio.NewReaderSize(c, 4096)}
}

// failure returns the check that failed, if any.
func (g *mysqlGuard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// dial hands the guard to the driver, once.
func (g *mysqlGuard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := g.conn.dial(ctx, network, addr); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *mysqlGuard) Read(b []byte) (int, error) {
	g.mu.Lock()
	if g.err == nil && len(g.out) == 0 && g.passthrough {
		g.mu.Unlock()
		return g.br.Read(b)
	}
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	if len(g.out) == 0 {
		p, err := g.readPacket()
		if err != nil {
			if ie, io := err.(ioError); io {
				return 0, ie.error
			}
			g.err = err
			return 0, err
		}
		g.out = p
	}
	n := copy(b, g.out)
	g.out = g.out[n:]
	return n, nil
}

// readErr passes a socket error on as one (ioError), and the budget's
// refusal as the check that failed.
func (g *mysqlGuard) readErr(err error) error {
	var big *TooLargeError
	if errors.As(err, &big) {
		return big
	}
	return ioError{err}
}

// ioError marks a socket error: the driver gets it as is, and appFailed
// classifies it by the socket's own record.
type ioError struct{ error }

// readPacket reads one packet (header and payload) and checks it.
func (g *mysqlGuard) readPacket() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(g.br, hdr[:]); err != nil {
		return nil, g.readErr(err)
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	switch {
	case g.st == myGreeting && n > maxGreeting:
		return nil, serverErrorf("not a MySQL greeting: packet header %x (%q)", hdr, printable(hdr[:]))
	case n == 0xffffff:
		return nil, g.conn.tooLarge("a MySQL packet continued in another (16 MiB or more)")
	case int64(n) > g.conn.left():
		return nil, g.conn.tooLarge(fmt.Sprintf("a MySQL packet of %d bytes", n))
	case n == 0:
		return nil, serverErrorf("not a MySQL answer: empty packet")
	}
	payload, err := readN(g.br, int64(n))
	if err != nil {
		return nil, g.readErr(err)
	}
	if err := g.check(payload); err != nil {
		return nil, err
	}
	return append(hdr[:], payload...), nil
}

// check validates payload p for the current state and moves the state on.
// Every offset the driver reads in such a packet is checked to exist.
func (g *mysqlGuard) check(p []byte) error {
	if p[0] == 0xff && g.st != myGreeting {
		if !mysqlErrOK(p) {
			return serverErrorf("malformed MySQL error packet %x", p[:min(len(p), 16)])
		}
		if g.st == myAuth || g.st == myLogin {
			g.st = myDone
		} else {
			g.st = myIdle
		}
		return nil
	}
	switch g.st {
	case myGreeting:
		caps, ext, err := checkMySQLGreeting(p)
		if err != nil {
			return err
		}
		g.serverCaps, g.cacheMeta = caps, ext&myCacheMetadata != 0
		g.st = myLogin
	case myAuth:
		switch p[0] {
		case 0x00: // OK: logged in
			status, ok := mysqlOK(p)
			if !ok {
				return serverErrorf("malformed MySQL OK packet %x", p[:min(len(p), 16)])
			}
			_ = status
			g.st = myIdle
		case 0x01, 0xfe: // more auth data, auth switch: the driver checks their contents
		default:
			return serverErrorf("not a MySQL answer to the login: %q", printable(p))
		}
	case myHeader:
		switch p[0] {
		case 0x00:
			status, ok := mysqlOK(p)
			if !ok {
				return serverErrorf("malformed MySQL OK packet %x", p[:min(len(p), 16)])
			}
			g.afterResult(status)
		case 0xfb:
			return serverErrorf("server asked for a local file (LOAD DATA LOCAL) in answer to SELECT 1")
		default:
			v, n, null, ok := mysqlLenenc(p)
			if !ok || null || v == 0 || v > myMaxColumns {
				return serverErrorf("not an answer to SELECT 1: result header %x", p[:min(len(p), 16)])
			}
			if g.cacheMeta && (len(p) <= n || p[n] != 1) {
				// The driver reads the metadata-follows flag after the
				// count; the first query of a connection has no cache.
				return serverErrorf("not an answer to SELECT 1: result header %x without metadata", p[:min(len(p), 16)])
			}
			g.cols, g.colsLeft = int(v), int(v)
			g.st = myColumns
		}
	case myColumns:
		if len(p) > myMaxMeta {
			return serverErrorf("not an answer to SELECT 1: column definition of %d bytes", len(p))
		}
		if !mysqlColumnOK(p) {
			return serverErrorf("malformed MySQL column definition %x", p[:min(len(p), 32)])
		}
		if g.colsLeft--; g.colsLeft == 0 {
			g.st = myRows
			if g.clientCaps&myClientDeprecateEOF == 0 {
				g.st = myColumnsEOF
			}
		}
	case myColumnsEOF:
		if p[0] != 0xfe || len(p) < 5 {
			return serverErrorf("malformed MySQL EOF packet %x", p[:min(len(p), 16)])
		}
		g.st = myRows
	case myRows:
		if p[0] == 0xfe {
			var status uint16
			if g.clientCaps&myClientDeprecateEOF == 0 {
				if len(p) < 5 {
					return serverErrorf("malformed MySQL EOF packet %x", p[:min(len(p), 16)])
				}
				status = binary.LittleEndian.Uint16(p[3:5])
			} else {
				s, ok := mysqlOK(p)
				if !ok {
					return serverErrorf("malformed MySQL OK packet %x", p[:min(len(p), 16)])
				}
				status = s
			}
			g.afterResult(status)
			return nil
		}
		if len(p) > myMaxMeta {
			return serverErrorf("not an answer to SELECT 1: row of %d bytes", len(p))
		}
		rest := p
		for range g.cols {
			v, n, null, ok := mysqlLenenc(rest)
			if !ok || (!null && v > uint64(len(rest)-n)) {
				return serverErrorf("malformed MySQL row %x", p[:min(len(p), 32)])
			}
			if !null {
				n += int(v)
			}
			rest = rest[n:]
		}
	default: // myLogin, myIdle, myDone: the server speaks out of turn
		return serverErrorf("MySQL server sent an unexpected packet: %q", printable(p))
	}
	return nil
}

// afterResult moves on after a result's closing OK/EOF: another result set
// follows when the server says so.
func (g *mysqlGuard) afterResult(status uint16) {
	if status&myMoreResults != 0 {
		g.st = myHeader
	} else {
		g.st = myIdle
	}
}

// Write watches the driver's packets: the handshake response (its
// capabilities decide how result sets end), an SSLRequest (TLS follows), a
// command (its answer is checked).
func (g *mysqlGuard) Write(b []byte) (int, error) {
	g.mu.Lock()
	if !g.passthrough && len(b) > 4 {
		payload := b[4:]
		switch g.st {
		case myLogin:
			if len(payload) >= 4 {
				g.clientCaps = binary.LittleEndian.Uint32(payload) & g.serverCaps
				if g.clientCaps&myClientSSL != 0 {
					g.passthrough = true
				}
			}
			g.st = myAuth
		case myIdle:
			if payload[0] == 0x03 { // COM_QUERY
				g.st = myHeader
			}
		}
	}
	g.mu.Unlock()
	return g.conn.Write(b)
}

// checkMySQLGreeting parses a greeting with ParseMySQLGreeting and checks
// that it has every field go-sql-driver/mysql reads at a fixed offset
// (readHandshakePacket): protocol 10, version, connection id, 8 bytes of
// scramble, filler, capabilities; and when more follows, the full
// HandshakeV10 up to the 13-byte second scramble part. It returns the
// capabilities and MariaDB's extended capabilities as the driver sees them.
func checkMySQLGreeting(p []byte) (caps, ext uint32, err error) {
	if _, err := ParseMySQLGreeting(p); err != nil {
		return 0, 0, err
	}
	if p[0] != 10 {
		return 0, 0, serverErrorf("MySQL protocol %d is too old (want 10)", p[0])
	}
	v := indexByte(p[1:], 0)
	pos := 1 + v + 1 + 4 + 8 + 1 // version, NUL, connection id, scramble, filler
	if len(p) < pos+2 {
		return 0, 0, serverErrorf("not a MySQL greeting: %d bytes, too short for its fields", len(p))
	}
	caps = uint32(binary.LittleEndian.Uint16(p[pos:]))
	if caps&myClientProtocol41 == 0 {
		return caps, 0, nil // the driver refuses it with its own error
	}
	pos += 2
	// The driver reads a 20-byte scramble for mysql_native_password from a
	// greeting that ends here (pre-4.1 servers): it must go on.
	// charset 1, status 2, caps upper 2, auth data length 1, reserved 6,
	// MariaDB extended caps 4, scramble part 2 (12 + NUL).
	if len(p) < pos+3+2+1+6+4+13 {
		return 0, 0, serverErrorf("not a MySQL greeting: %d bytes, too short for its fields", len(p))
	}
	caps |= uint32(binary.LittleEndian.Uint16(p[pos+3:])) << 16
	if caps&myClientMySQL == 0 {
		ext = binary.LittleEndian.Uint32(p[pos+3+2+1+6:])
	}
	return caps, ext, nil
}

// mysqlLenenc reads a length-encoded integer: its value, its size, whether
// it is the NULL marker (0xfb), and whether it fits in b.
func mysqlLenenc(b []byte) (v uint64, n int, null, ok bool) {
	if len(b) == 0 {
		return 0, 0, false, false
	}
	switch b[0] {
	case 0xfb:
		return 0, 1, true, true
	case 0xfc:
		n = 3
	case 0xfd:
		n = 4
	case 0xfe:
		n = 9
	case 0xff:
		return 0, 0, false, false
	default:
		return uint64(b[0]), 1, false, true
	}
	if len(b) < n {
		return 0, 0, false, false
	}
	var buf [8]byte
	copy(buf[:], b[1:n])
	return binary.LittleEndian.Uint64(buf[:]), n, false, true
}

// mysqlOK checks an OK packet (0x00, or 0xfe closing a result set):
// affected rows, last insert id, status flags.
func mysqlOK(p []byte) (status uint16, ok bool) {
	pos := 1
	for range 2 {
		_, n, null, ok := mysqlLenenc(p[pos:])
		if !ok || null {
			return 0, false
		}
		pos += n
	}
	if len(p) < pos+2 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(p[pos:]), true
}

// mysqlErrOK checks an ERR packet: code, and the SQL state when '#' says
// one follows.
func mysqlErrOK(p []byte) bool {
	return len(p) >= 4 && (p[3] != '#' || len(p) >= 9)
}

// mysqlColumnOK checks a column definition: six length-encoded strings,
// then the 0x0c-long block of fixed fields the driver reads.
func mysqlColumnOK(p []byte) bool {
	pos := 0
	for range 6 {
		v, n, null, ok := mysqlLenenc(p[pos:])
		if !ok || null || v > uint64(len(p)-pos-n) {
			return false
		}
		pos += n + int(v)
	}
	return len(p) >= pos+1+2+4+1+2+1
}
