package app

// Hostile and wrong servers on loopback listeners: each answer a broken or
// malicious peer could send, and each service that is not the one the
// scheme names. Every attempt must end as a Result (never a panic) within
// its timeout, allocating no more than a stated bound.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
)

// hostileServer runs serve on every connection accepted on a loopback
// listener and returns the listener's address.
func hostileServer(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	return testlisten.Loopback(t, testlisten.Func(func(_ context.Context, c net.Conn) { serve(c) })).Addr().String()
}

// flood writes chunk until the peer goes away.
var floodChunk = bytes.Repeat([]byte{'x'}, 64<<10)

func flood(c net.Conn) {
	for {
		if _, err := c.Write(floodChunk); err != nil {
			return
		}
	}
}

// readSome reads what the client sent (one request), up to 64 KiB.
func readSome(c net.Conn) []byte {
	b := make([]byte, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(b)
	return b[:n]
}

// probeBounded runs one attempt (Probe itself, not SafeProbe: the parsers
// must not panic) and fails the test when it allocates more than maxAlloc
// bytes in all (runtime.MemStats.TotalAlloc, an upper bound of its peak)
// or takes longer than its timeout allows.
func probeBounded(t *testing.T, target string, timeout time.Duration, maxAlloc uint64) probe.Result {
	t.Helper()
	tg, err := probe.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(tg, Config{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	r := p.Probe(t.Context())
	took := time.Since(t0)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%s: reason=%s in %s, %d KiB allocated, evidence=%q err=%v", target, r.Reason, took.Round(time.Millisecond), alloc>>10, r.Evidence, r.Err)
	if alloc > maxAlloc {
		t.Errorf("allocated %d KiB, want at most %d KiB", alloc>>10, maxAlloc>>10)
	}
	if took > timeout+timeout/2 {
		t.Errorf("took %s, want the attempt's timeout %s at most (with margin)", took, timeout)
	}
	return r
}

// mysqlPacket frames payload with sequence number seq.
func mysqlPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// mysqlLoggedIn greets, accepts any login and answers the first command
// with then.
func mysqlLoggedIn(then []byte) func(c net.Conn) {
	return func(c net.Conn) {
		c.Write(mysqlPacket(0, mariaGreeting))
		readSome(c)                                          // handshake response
		c.Write(mysqlPacket(2, []byte{0, 0, 0, 2, 0, 0, 0})) // OK
		readSome(c)                                          // COM_QUERY SELECT 1
		c.Write(then)
		readSome(c)
	}
}

const (
	hostileTimeout = 3 * time.Second
	// allocBound is what one attempt may allocate against a hostile server:
	// a few answers' budgets (1 MiB each) and the client libraries' own
	// buffers, far below the DaemonSet's 256 MiB.
	allocBound = 16 << 20
)

func TestHostileMySQL(t *testing.T) {
	const login = "mysql://probe:x@"
	for _, tc := range []struct {
		name, target string
		serve        func(net.Conn)
		want         probe.Reason
		evidence     string
	}{
		{"5-byte greeting (go-sql-driver panics on it)", login, func(c net.Conn) {
			c.Write([]byte{0x01, 0x00, 0x00, 0x00, 0x30})
			readSome(c)
		}, probe.ReasonAppError, "not a MySQL greeting"},
		{"greeting cut after the connection id", login, func(c net.Conn) {
			c.Write(mysqlPacket(0, []byte("\x0a8.0.36\x00\x01\x00\x00\x00abc")))
			readSome(c)
		}, probe.ReasonAppError, "too short for its fields"},
		{"one-byte error packet at login", login, func(c net.Conn) {
			c.Write(mysqlPacket(0, mariaGreeting))
			readSome(c)
			c.Write(mysqlPacket(2, []byte{0xff}))
			readSome(c)
		}, probe.ReasonAppError, "malformed MySQL error packet"},
		{"16 MiB continuation packets at login", login, func(c net.Conn) {
			c.Write(mysqlPacket(0, mariaGreeting))
			readSome(c)
			c.Write([]byte{0xff, 0xff, 0xff, 2})
			flood(c)
		}, probe.ReasonAppError, "answer larger than 1 MiB"},
		{"a 900 KiB row", login, mysqlLoggedIn(rowsOf(900 << 10)),
			probe.ReasonAppError, "not an answer to SELECT 1: row of 921600 bytes"},
		{"endless rows", login, func(c net.Conn) {
			c.Write(mysqlPacket(0, mariaGreeting))
			readSome(c)
			c.Write(mysqlPacket(2, []byte{0, 0, 0, 2, 0, 0, 0}))
			readSome(c)
			c.Write(rowsOf())
			var rows []byte // 256 rows: the sequence numbers wrap around
			for i := range 256 {
				rows = append(rows, mysqlPacket(byte(3+i), []byte("\x011"))...)
			}
			for {
				if _, err := c.Write(rows); err != nil {
					return
				}
			}
		}, probe.ReasonAppError, "answer larger than 1 MiB"},
		{"column count of 2^60 in answer to SELECT 1", login, mysqlLoggedIn(
			mysqlPacket(1, []byte{0xfe, 0, 0, 0, 0, 0, 0, 0, 0x10})),
			probe.ReasonAppError, "not an answer to SELECT 1"},
		{"row shorter than its length says", login, mysqlLoggedIn(append(append(
			mysqlPacket(1, []byte{1, 1}), // one column, metadata follows (MariaDB's cache extension)
			mysqlPacket(2, []byte(mysqlColumn))...),
			mysqlPacket(3, []byte{0xfc, 0xff})...)),
			probe.ReasonAppError, "malformed MySQL row"},
		{"SSH server", login, sshServer, probe.ReasonAppError, `not a MySQL greeting: packet header 5353482d ("SSH-")`},
		{"SMTP server", "mysql://", func(c net.Conn) {
			c.Write([]byte("220 mail.example ESMTP Postfix\r\n"))
			readSome(c)
		}, probe.ReasonAppError, "not a MySQL greeting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileServer(t, tc.serve)
			r := probeBounded(t, tc.target+addr, hostileTimeout, allocBound)
			check(t, r, tc.want, tc.evidence)
		})
	}
}

// mysqlColumn is the column definition of SELECT 1.
const mysqlColumn = "\x03def\x00\x00\x00\x011\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00"

// rowsOf answers SELECT 1 with one column and rows of the given sizes.
func rowsOf(sizes ...int) []byte {
	b := append(mysqlPacket(1, []byte{1, 1}), mysqlPacket(2, []byte(mysqlColumn))...)
	for i, n := range sizes {
		row := append([]byte{0xfd, byte(n - 4), byte((n - 4) >> 8), byte((n - 4) >> 16)}, make([]byte, n-4)...)
		b = append(b, mysqlPacket(byte(3+i), row)...)
	}
	return b
}

func sshServer(c net.Conn) {
	c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"))
	readSome(c)
	c.Write([]byte("Invalid SSH identification string.\r\n"))
}

// pgAnswer answers an SSLRequest with ssl ('N' or 'S'), then the startup
// message (over TLS after 'S', with a self-signed certificate) with then.
func pgAnswer(t *testing.T, ssl byte, then []byte) func(net.Conn) {
	cert := selfSigned(t)
	return func(c net.Conn) {
		readSome(c)
		c.Write([]byte{ssl})
		var rw net.Conn = c
		if ssl == 'S' {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			rw = tc
		}
		readSome(rw)
		rw.Write(then)
		if bytes.HasPrefix(then, []byte{'R', 0x40}) {
			flood(rw)
		}
		readSome(rw)
	}
}

// pgMsg frames a backend message.
func pgMsg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

func TestHostilePostgres(t *testing.T) {
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	httpAddr := strings.TrimPrefix(httpSrv.URL, "http://")
	// pgx sends the startup message at once (sslmode=disable); the
	// probe without credentials sends an SSLRequest first.
	loginAnswer := func(then []byte) func(net.Conn) {
		return func(c net.Conn) {
			readSome(c)
			c.Write(then)
			if bytes.HasPrefix(then, []byte{'R', 0x40}) {
				flood(c)
			}
			readSome(c)
		}
	}
	gib := []byte{'R', 0x40, 0, 0, 0} // an 'R' message claiming 1 GiB
	for _, tc := range []struct {
		name, target string
		serve        func(net.Conn)
		want         probe.Reason
		evidence     string
	}{
		{"authentication request over TLS", "postgres://", pgAnswer(t, 'S', pgMsg('R', "\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00")),
			probe.ReasonOK, "S (TLS available); startup answered in"},
		{"role unknown is still PostgreSQL", "postgres://", pgAnswer(t, 'N', pgMsg('E', "SFATAL\x00C28000\x00Mrole \"connprobe\" does not exist\x00\x00")),
			probe.ReasonOK, `FATAL 28000: role "connprobe" does not exist (the probe has no credentials): a PostgreSQL server`},
		{"too many clients for the probe without credentials", "postgres://", pgAnswer(t, 'N', pgMsg('E', "SFATAL\x00C53300\x00Msorry, too many clients already\x00\x00")),
			probe.ReasonAppError, "FATAL 53300: sorry, too many clients already"},
		{"'R' claiming 1 GiB", "postgres://", pgAnswer(t, 'N', gib), probe.ReasonAppError, `answer larger than 1 MiB: a PostgreSQL 'R' message of 1073741824 bytes`},
		{"'R' claiming 1 GiB to pgx", "postgres://probe:x@", loginAnswer(gib), probe.ReasonAppError, `answer larger than 1 MiB: a PostgreSQL 'R' message of 1073741824 bytes`},
		{"garbage after N", "postgres://", pgAnswer(t, 'N', []byte("<html>")), probe.ReasonAppError, `not a PostgreSQL server: answered the startup message with "<html>`},
		{"SSH server (its banner starts with S)", "postgres://", sshServer, probe.ReasonAppError, "not a PostgreSQL server: answered the SSLRequest with S, then no TLS"},
		{"SSH server to pgx", "postgres://probe:x@", sshServer, probe.ReasonAppError, `not a PostgreSQL server: answered the startup message with "SSH-2"`},
		{"Redis server", "postgres://", func(c net.Conn) {
			readSome(c)
			c.Write([]byte("-ERR Protocol error: invalid multibulk length\r\n"))
		}, probe.ReasonAppError, `not a PostgreSQL server: answered the SSLRequest with "-ERR Protocol error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileServer(t, tc.serve)
			r := probeBounded(t, tc.target+addr+"/postgres", hostileTimeout, allocBound)
			check(t, r, tc.want, tc.evidence)
		})
	}
	t.Run("HTTP server", func(t *testing.T) {
		// An HTTP server waits for the end of a request line that never
		// comes: silent, like a hung server, and reported as such.
		r := probeBounded(t, "postgres://"+httpAddr, time.Second, allocBound)
		check(t, r, probe.ReasonAppTimeout, "server sent nothing: no answer to the SSLRequest")
	})
}

func TestHostileRedis(t *testing.T) {
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	for _, tc := range []struct {
		name     string
		addr     string
		evidence string
	}{
		{"SSH server", hostileServer(t, sshServer), `not a Redis server: answered "SSH-2.0-OpenSSH`},
		{"HTTP server", strings.TrimPrefix(httpSrv.URL, "http://"), `not a Redis server: answered "HTTP/1.1 400 Bad Request`},
		{"MySQL server (its greeting has no newline)", hostileServer(t, func(c net.Conn) {
			c.Write(mysqlPacket(0, mariaGreeting))
			readSome(c)
		}), "not a Redis server"},
		{"bulk string of 1 GiB", hostileServer(t, func(c net.Conn) {
			readSome(c)
			c.Write([]byte("$1073741824\r\n"))
			flood(c)
		}), "not a Redis reply"},
		{"array of a million 1 MiB strings", hostileServer(t, func(c net.Conn) {
			readSome(c)
			c.Write([]byte("*1000000\r\n"))
			for {
				if _, err := c.Write([]byte("$1048576\r\n")); err != nil {
					return
				}
				if _, err := c.Write(floodChunk); err != nil {
					return
				}
			}
		}), "answer larger than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := probeBounded(t, "redis://"+tc.addr, hostileTimeout, allocBound)
			check(t, r, probe.ReasonAppError, tc.evidence)
		})
	}
}

// kafkaResponse frames body as the response to correlation id corr.
func kafkaResponse(corr int32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(b, uint32(4+len(body)))
	binary.BigEndian.PutUint32(b[4:], uint32(corr))
	return append(b, body...)
}

// kafkaBroker answers ApiVersions with a real answer (Metadata v0-12)
// unless apiVersions is set, and Metadata with metadata.
func kafkaBroker(apiVersions, metadata []byte) func(net.Conn) {
	return func(c net.Conn) {
		readSome(c)
		if apiVersions != nil {
			c.Write(apiVersions)
			readSome(c)
			return
		}
		av := kmsg.NewPtrApiVersionsResponse()
		av.Version = 3
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MaxVersion = 3, 12
		av.ApiKeys = append(av.ApiKeys, k)
		c.Write(kafkaResponse(1, av.AppendTo(nil)))
		readSome(c)
		c.Write(metadata)
		readSome(c)
	}
}

// hugeCount is a v3 ApiVersions body whose ApiKeys array claims as many
// elements as it has bytes left: the most franz-go's kmsg accepts, and what
// made it allocate 1.13 GB.
func hugeCount(size int) []byte {
	body := []byte{0, 0} // error code
	n := size - len(body) - 5
	body = binary.AppendUvarint(body, uint64(n)+1)
	return append(body, make([]byte, n)...)
}

func TestHostileKafka(t *testing.T) {
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	// A Metadata v12 body: throttle, brokers (compact count), then the
	// topics array claiming one topic per remaining byte.
	md := []byte{0}                  // header: no tagged fields
	md = append(md, 0, 0, 0, 0)      // throttle
	md = binary.AppendUvarint(md, 1) // no brokers
	md = append(md, 0)               // cluster id null
	md = append(md, 0, 0, 0, 0)      // controller
	n := 3<<20 - len(md) - 5
	md = binary.AppendUvarint(md, uint64(n)+1)
	md = append(md, make([]byte, n)...)
	for _, tc := range []struct {
		name     string
		addr     string
		evidence string
	}{
		{"ApiVersions array count as large as its bytes", hostileServer(t, kafkaBroker(kafkaResponse(1, hugeCount(1<<20-16)), nil)), "malformed ApiVersions v3 response"},
		{"Metadata topics count as large as its bytes", hostileServer(t, kafkaBroker(nil, kafkaResponse(2, md))), "malformed Metadata v12 response"},
		{"ApiVersions answer of 2 MiB", hostileServer(t, kafkaBroker(kafkaResponse(1, hugeCount(2<<20)), nil)), "answer larger than 1 MiB: a Kafka response of 2097"},
		{"SSH server", hostileServer(t, sshServer), `not a Kafka server: answered "SSH-`},
		{"HTTP server", strings.TrimPrefix(httpSrv.URL, "http://"), `not a Kafka server: answered "HTTP`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := probeBounded(t, "kafka://"+tc.addr, hostileTimeout, allocBound)
			check(t, r, probe.ReasonAppError, tc.evidence)
		})
	}
}

func TestHostileHTTP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		serve    func(net.Conn)
		evidence string
	}{
		{"SSH server", sshServer, "server answered something the http client rejects"},
		{"MySQL server", func(c net.Conn) {
			c.Write(mysqlPacket(0, mariaGreeting))
			readSome(c)
			c.Write(mysqlPacket(2, []byte("\xff\x13\x04Bad handshake")))
		}, "server answered something the http client rejects"},
		{"endless header", func(c net.Conn) {
			readSome(c)
			c.Write([]byte("HTTP/1.1 200 OK\r\nX: "))
			flood(c)
		}, "server response headers exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileServer(t, tc.serve)
			r := probeBounded(t, "http://"+addr+"/", hostileTimeout, allocBound)
			check(t, r, probe.ReasonAppError, tc.evidence)
		})
	}
}

// selfSigned makes a throwaway certificate for a TLS test server.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
