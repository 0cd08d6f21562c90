package app

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/connprobe/connprobe/probe"
)

// A MariaDB 10.11 greeting as captured from the test server.
var mariaGreeting = []byte("\x0a5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x06\x00\x00\x00" +
	"abcdefgh\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00" +
	"ijklmnopqrst\x00mysql_native_password\x00")

func TestParseMySQLGreeting(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    MySQLGreeting
		wantErr string
	}{
		{"mariadb drops its 5.5.5- prefix", mariaGreeting, MySQLGreeting{10, "10.11.19-MariaDB-0+deb12u1", 6, "mysql_native_password"}, ""},
		{"too many connections instead of a greeting", []byte("\xff\x10\x04Too many connections"), MySQLGreeting{}, "ERROR 1040: Too many connections"},
		{"error with sql state", []byte("\xff\x15\x04#28000Access denied"), MySQLGreeting{}, "ERROR 1045 (28000): Access denied"},
		{"http server on the port", []byte("TTP/1.1 400 Bad Request"), MySQLGreeting{}, "not a MySQL greeting"},
		{"empty", nil, MySQLGreeting{}, "not a MySQL greeting"},
		{"unterminated version", []byte("\x0a8.0.36"), MySQLGreeting{}, "unterminated version"},
		{"short greeting keeps the version", []byte("\x0a8.0.36\x00\x01\x00"), MySQLGreeting{Protocol: 10, Version: "8.0.36"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMySQLGreeting(tt.in)
			if tt.wantErr != "" {
				var se *ServerError
				if !errors.As(err, &se) || !strings.Contains(se.Msg, tt.wantErr) {
					t.Fatalf("err = %v, want a ServerError with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseMySQLGreeting(f *testing.F) {
	f.Add(mariaGreeting)
	f.Add([]byte("\xff\x10\x04#08004Too many connections"))
	f.Add([]byte{0x0a, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseMySQLGreeting(b)
	})
}

func TestReadRESP(t *testing.T) {
	tests := []struct {
		in, want string
		kind     byte
		err      string
	}{
		{"+PONG\r\n", "PONG", '+', ""},
		{"-NOAUTH Authentication required.\r\n", "NOAUTH Authentication required.", '-', ""},
		{"$11\r\nredis_versi\r\n", "redis_versi", '$', ""},
		{"*2\r\n$1\r\na\r\n:1\r\n", "", '*', ""},
		{"HTTP/1.1 400 Bad Request\r\n", "", 0, "not a Redis server"},
		{"\x4a\x00\x00\x00\x0a8.0.36", "", 0, "not a Redis server"}, // a MySQL greeting: no newline ever comes
		{"$999999999\r\n", "", 0, "not a Redis reply"},
		{"+PONG\n", "", 0, "not a Redis reply"},
	}
	for _, tt := range tests {
		v, err := readRESP(bufio.NewReader(strings.NewReader(tt.in)), 0)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || v.kind != tt.kind || v.str != tt.want {
			t.Errorf("%q: got %c %q %v, want %c %q", tt.in, v.kind, v.str, err, tt.kind, tt.want)
		}
	}
}

func FuzzReadRESP(f *testing.F) {
	for _, s := range []string{"+PONG\r\n", "$3\r\nabc\r\n", "*1\r\n*1\r\n:1\r\n", "-ERR x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = readRESP(bufio.NewReader(strings.NewReader(string(b))), 0)
	})
}

func FuzzSkipTags(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 0, 2, 'a', 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = skipTags(b)
	})
}

func TestParsePgError(t *testing.T) {
	b := []byte("SFATAL\x00C53300\x00Msorry, too many clients already\x00\x00")
	f := parsePgError(b)
	if got, want := f.String(), "FATAL 53300: sorry, too many clients already"; got != want || !f.wellFormed {
		t.Errorf("got %q (well-formed %v), want %q", got, f.wellFormed, want)
	}
	for _, b := range [][]byte{nil, {0}, []byte("M"), []byte("Mabc"), []byte("Mabc\x00"), []byte("SSH-2.0-OpenSSH\r\n")} {
		if f := parsePgError(b); f.wellFormed { // and no panic
			t.Errorf("%q parsed as a well-formed error", b)
		}
	}
}

// TestDecodeMetadataEveryVersion encodes a Metadata response with kmsg at
// every version the probe may ask for and decodes it with our decoder.
func TestDecodeMetadataEveryVersion(t *testing.T) {
	for v := int16(0); v <= kmsg.NewPtrMetadataRequest().MaxVersion(); v++ {
		m := kmsg.NewPtrMetadataResponse()
		m.Version = v
		id := "c1"
		m.ClusterID = &id
		m.ControllerID = 2
		for _, n := range []int32{2, 1} {
			b := kmsg.NewMetadataResponseBroker()
			b.NodeID, b.Host, b.Port = n, "10.0.0."+string(rune('0'+n)), 9092
			rack := "r1"
			b.Rack = &rack
			m.Brokers = append(m.Brokers, b)
		}
		topic := "orders"
		tp := kmsg.NewMetadataResponseTopic()
		tp.Topic = &topic
		for i, leader := range []int32{1, -1, 2, -1} {
			p := kmsg.NewMetadataResponseTopicPartition()
			p.Partition, p.Leader = int32(i), leader
			p.Replicas, p.ISR, p.OfflineReplicas = []int32{1, 2}, []int32{1}, []int32{2}
			if leader < 0 {
				p.ErrorCode = 5 // LEADER_NOT_AVAILABLE
			}
			tp.Partitions = append(tp.Partitions, p)
		}
		m.Topics = append(m.Topics, tp, kmsg.NewMetadataResponseTopic())
		body := m.AppendTo(nil)
		s, err := decodeMetadata(body, v)
		if err != nil {
			t.Errorf("v%d: %v", v, err)
			continue
		}
		head := "2 broker(s)"
		switch {
		case v >= 2:
			head = "cluster c1, controller 2, " + head
		case v >= 1:
			head = "controller 2, " + head
		}
		if want := head + ": 1=10.0.0.1:9092 2=10.0.0.2:9092; 2 topic(s), 4 partition(s)"; s.Brokers != want {
			t.Errorf("v%d: brokers = %q, want %q", v, s.Brokers, want)
		}
		if strings.Join(s.Leaderless, ",") != "orders/1,orders/3" || s.LeaderlessCount != 2 {
			t.Errorf("v%d: leaderless = %v (%d), want orders/1, orders/3", v, s.Leaderless, s.LeaderlessCount)
		}
		// Every truncation is malformed, never a panic or a wrong summary.
		for i := range body {
			if _, err := decodeMetadata(body[:i], v); err == nil {
				t.Errorf("v%d: %d of %d bytes decoded without error", v, i, len(body))
				break
			}
		}
	}
}

func TestDecodeApiVersionsEveryVersion(t *testing.T) {
	for v := int16(0); v <= 3; v++ {
		m := kmsg.NewPtrApiVersionsResponse()
		m.Version = v
		for _, k := range []int16{0, 3, 18} {
			a := kmsg.NewApiVersionsResponseApiKey()
			a.ApiKey, a.MinVersion, a.MaxVersion = k, 1, 12
			m.ApiKeys = append(m.ApiKeys, a)
		}
		s, err := decodeApiVersions(m.AppendTo(nil), v)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if want := (ApiVersionsSummary{APIs: 3, HasMetadata: true, MetadataMin: 1, MetadataMax: 12}); s != want {
			t.Errorf("v%d: got %+v, want %+v", v, s, want)
		}
	}
	// An old broker answers a v3 request in the v0 format with
	// UNSUPPORTED_VERSION: the code is what matters.
	old := kmsg.NewPtrApiVersionsResponse()
	old.ErrorCode = 35
	if s, err := decodeApiVersions(old.AppendTo(nil), 3); err != nil || s.ErrorCode != 35 {
		t.Errorf("v0 answer to v3: %+v, %v; want error code 35", s, err)
	}
}

func TestTargetNameHidesPassword(t *testing.T) {
	tg, err := probe.ParseTarget("mysql://app:s3cret@db:3306/x")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tg.Name, "s3cret") {
		t.Errorf("Name %q shows the password", tg.Name)
	}
	if p, _ := tg.URL.User.Password(); p != "s3cret" {
		t.Errorf("URL lost the password: %q", p)
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, s := range []string{
		"postgres://u:p@db:5432/x?sslmode=prefer",
		"postgres://u:p@db:5432/x?bogus=1",
		"mysql://u:p@db:3306/x?tls=maybe",
		"mysql://db:3306/?tls=true",
		"redis://db:6379/notanumber",
		"kafka://u:p@db:9092",
		"gopher://db:70",
	} {
		tg, err := probe.ParseTarget(s)
		if err != nil {
			continue // also fine: rejected even earlier
		}
		if _, err := New(tg, Config{}); err == nil {
			t.Errorf("New(%s) accepted it", s)
		}
	}
}
