package kernel

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCountersFixtures(t *testing.T) {
	c := Counters{}
	for _, f := range []string{"testdata/netstat", "testdata/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := ParseCounters(b, c); err != nil {
			t.Fatalf("ParseCounters(%s) = %v", f, err)
		}
	}
	for _, k := range []string{"TcpExt.ListenDrops", "TcpExt.ListenOverflows", "TcpExt.PAWSTimewait", "TcpExt.TCPSynRetrans", "TcpExt.TCPTimeouts", "TcpExt.TCPAbortOnTimeout", "Tcp.RetransSegs", "IpExt.InOctets"} {
		if _, ok := c[k]; !ok {
			t.Errorf("counter %s missing", k)
		}
	}
	if got := c["Tcp.MaxConn"]; got != -1 {
		t.Errorf("Tcp.MaxConn = %d, want -1 (signed)", got)
	}
}

func TestParseCountersMalformed(t *testing.T) {
	tests := []struct {
		name, in string
		want     Counters
		wantErr  string
	}{
		{"pair", "TcpExt: A B\nTcpExt: 1 2\n", Counters{"TcpExt.A": 1, "TcpExt.B": 2}, ""},
		{"count mismatch skips the pair", "TcpExt: A B\nTcpExt: 1\nTcp: C\nTcp: 3\n", Counters{"Tcp.C": 3}, "line 2: TcpExt has 1 values for 2 names"},
		{"bad number skips one", "Tcp: A B\nTcp: x 2\n", Counters{"Tcp.B": 2}, `"x" is not a number`},
		{"no prefix", "garbage\n", Counters{}, "line 1"},
		{"header without values", "Tcp: A B\n", Counters{}, ""},
		{"huge unsigned", "Tcp: A\nTcp: 18446744073709551615\n", Counters{"Tcp.A": 9223372036854775807}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Counters{}
			err := ParseCounters([]byte(tt.in), got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	before := Counters{"TcpExt.ListenDrops": 5, "TcpExt.ListenOverflows": 5, "Tcp.RetransSegs": 10}
	after := Counters{"TcpExt.ListenDrops": 8, "TcpExt.ListenOverflows": 8, "Tcp.RetransSegs": 10}
	got := FormatChanges(Delta(before, after))
	want := "ListenOverflows +3 (accept queue full: SYNs/ACKs to a listener dropped), ListenDrops +3 (SYNs to LISTEN sockets dropped (any cause, netstat -s))"
	if got != want {
		t.Errorf("FormatChanges = %q, want %q", got, want)
	}
}

func FuzzParseCounters(f *testing.F) {
	for _, p := range []string{"testdata/netstat", "testdata/snmp"} {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("Tcp: A\nTcp: -\n:\n::\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ParseCounters(b, Counters{})
	})
}
