package app

// Fuzz targets for every parser a hostile server feeds, each run through the
// real login path where there is one (go-sql-driver behind our guard, pgx
// behind its guard, the Kafka exchange), with an allocation bound asserted
// per input: a parser that allocates by what a peer declares, rather than by
// what it sent, fails here even when it does not crash.

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/connprobe/connprobe/probe"
)

// scriptConn is a server that sends script and swallows what it is sent.
type scriptConn struct{ r *bytes.Reader }

func (s scriptConn) Read(b []byte) (int, error) {
	if s.r.Len() == 0 {
		return 0, io.EOF
	}
	return s.r.Read(b)
}
func (scriptConn) Write(b []byte) (int, error)      { return len(b), nil }
func (scriptConn) Close() error                     { return nil }
func (scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3306} }
func (scriptConn) SetDeadline(time.Time) error      { return nil }
func (scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (scriptConn) SetWriteDeadline(time.Time) error { return nil }

// speakScript runs the protocol of target against a server that sends
// script, and fails when the exchange allocates more than twice the
// script's size plus base (what the client libraries need for themselves).
func speakScript(t *testing.T, target string, script []byte, base uint64) {
	t.Helper()
	tg, err := probe.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := protocols[tg.Scheme](tg, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := newConn(scriptConn{bytes.NewReader(script)}, time.Time{})
	var r probe.Result
	allocBounded(t, uint64(2*len(script))+base, func() { _ = sp.speak(ctx, c, &r) })
}

// allocBounded fails when fn allocates more than limit bytes.
func allocBounded(t *testing.T, limit uint64, fn func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > limit {
		t.Fatalf("allocated %d bytes, want at most %d", d, limit)
	}
}

func FuzzMySQLLogin(f *testing.F) {
	ok := mysqlPacket(2, []byte{0, 0, 0, 2, 0, 0, 0})
	f.Add(mysqlPacket(0, mariaGreeting))
	f.Add([]byte{0x01, 0x00, 0x00, 0x00, 0x30})
	f.Add(append(mysqlPacket(0, mariaGreeting), mysqlPacket(2, []byte{0xff})...))
	f.Add(append(append(mysqlPacket(0, mariaGreeting), ok...), rowsOf(5)...))
	f.Add(append(append(mysqlPacket(0, mariaGreeting), ok...), mysqlPacket(1, []byte{0xfe, 0, 0, 0, 0, 0, 0, 0, 0x10})...))
	f.Add(append(mysqlPacket(0, mariaGreeting), 0xff, 0xff, 0xff, 2))
	f.Fuzz(func(t *testing.T, script []byte) {
		speakScript(t, "mysql://probe:x@127.0.0.1:3306/db", script, 512<<10)
	})
}

func FuzzMySQLGreetingOnly(f *testing.F) {
	f.Add(mysqlPacket(0, mariaGreeting))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		speakScript(t, "mysql://127.0.0.1:3306", script, 64<<10)
	})
}

func FuzzPostgresStartup(f *testing.F) {
	f.Add(append([]byte{'N'}, pgMsg('R', "\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00")...))
	f.Add(append([]byte{'N'}, pgMsg('E', "SFATAL\x00C53300\x00Msorry\x00\x00")...))
	f.Add([]byte{'N', 'R', 0x40, 0, 0, 0, 0, 0, 0, 5})
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		speakScript(t, "postgres://127.0.0.1:5432", script, 64<<10)
	})
}

func FuzzPostgresLogin(f *testing.F) {
	f.Add(pgMsg('R', "\x00\x00\x00\x00"))
	f.Add(append(pgMsg('R', "\x00\x00\x00\x03"), pgMsg('R', "\x00\x00\x00\x00")...))
	f.Add(pgMsg('E', "SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"))
	f.Add([]byte{'R', 0x40, 0, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		speakScript(t, "postgres://probe:x@127.0.0.1:5432/db", script, 512<<10)
	})
}

func FuzzKafka(f *testing.F) {
	av := kmsg.NewPtrApiVersionsResponse()
	av.Version = 3
	k := kmsg.NewApiVersionsResponseApiKey()
	k.ApiKey, k.MaxVersion = 3, 12
	av.ApiKeys = append(av.ApiKeys, k)
	md := kmsg.NewPtrMetadataResponse()
	md.Version = 12
	b := kmsg.NewMetadataResponseBroker()
	b.Host, b.Port = "127.0.0.1", 9092
	md.Brokers = append(md.Brokers, b)
	tp := kmsg.NewMetadataResponseTopic()
	tp.Partitions = append(tp.Partitions, kmsg.NewMetadataResponseTopicPartition())
	md.Topics = append(md.Topics, tp)
	good := append(kafkaResponse(1, av.AppendTo(nil)), kafkaResponse(2, append([]byte{0}, md.AppendTo(nil)...))...)
	f.Add(good)
	f.Add(kafkaResponse(1, hugeCount(4096)))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		speakScript(t, "kafka://127.0.0.1:9092", script, 64<<10)
	})
}

// FuzzKafkaDecode feeds the decoders bodies of every version directly: the
// first byte picks the version.
func FuzzKafkaDecode(f *testing.F) {
	md := kmsg.NewPtrMetadataResponse()
	for v := range int16(14) {
		md.Version = v
		f.Add(append([]byte{byte(v)}, md.AppendTo(nil)...))
	}
	f.Add(append([]byte{3}, hugeCount(64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		v := int16(b[0] % 14)
		allocBounded(t, uint64(len(b))+16<<10, func() {
			_, _ = decodeApiVersions(b[1:], v%4)
			_, _ = decodeMetadata(b[1:], v)
		})
	})
}

func FuzzRedis(f *testing.F) {
	f.Add([]byte("+PONG\r\n$10\r\nredis_vers\r\n"))
	f.Add([]byte("*3\r\n$1048576\r\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		speakScript(t, "redis://127.0.0.1:6379", script, 64<<10)
	})
}
