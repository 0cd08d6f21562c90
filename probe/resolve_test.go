package probe_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
)

func TestParseResolver(t *testing.T) {
	tests := []struct {
		in      string
		want    string // server; "" with wantErr
		wantErr string
	}{
		{"", "system", ""},
		{"10.96.0.10", "10.96.0.10:53", ""},
		{"10.96.0.10:5353", "10.96.0.10:5353", ""},
		{"fd00::a", "[fd00::a]:53", ""},
		{"[fd00::a]:5353", "[fd00::a]:5353", ""},
		{"::ffff:10.0.0.1", "10.0.0.1:53", ""},
		{"dns.example:53", "", "not a name"},
		{"dns.example", "", "not a name"},
		{"10.0.0.1:0", "", "port 0"},
		{"10.0.0.1:99999", "", "not a name"},
		{"fe80::1%eth0", "", "zones are not supported"},
	}
	for _, tt := range tests {
		r, err := probe.ParseResolver(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseResolver(%q) = %v, %v; want error with %q", tt.in, r, err, tt.wantErr)
			}
			continue
		}
		if err != nil || r.String() != tt.want {
			t.Errorf("ParseResolver(%q) = %v, %v; want %s", tt.in, r, err, tt.want)
		}
	}
}

// TestResolvePickRule: one rule for every kind — a source's family decides
// which addresses are asked for; without a source the first in the
// resolver's order; a literal is not looked up; a target's own resolver (a
// DNS SRV source's server) wins over the job's.
func TestResolvePickRule(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::3")
	dns, err := lab.NewDNS(map[string][]netip.Addr{
		"both.resolve.invalid": {v4, v6},
		"v6.resolve.invalid":   {v6},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	r := probe.NewResolver(netip.MustParseAddrPort(dns.Addr()))
	other, err := lab.NewDNS(map[string][]netip.Addr{"srv.resolve.invalid": {v4}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })

	tests := []struct {
		name   string
		target probe.Target
		source netip.Addr
		want   netip.Addr
		err    string
	}{
		{"v4 source takes the A record", probe.Target{Host: "both.resolve.invalid", Port: 80}, netip.MustParseAddr("10.0.0.1"), v4, ""},
		{"v6 source takes the AAAA record", probe.Target{Host: "both.resolve.invalid", Port: 80}, netip.MustParseAddr("fd00::1"), v6, ""},
		{"v4 source, only AAAA: no such host", probe.Target{Host: "v6.resolve.invalid", Port: 80}, netip.MustParseAddr("10.0.0.1"), netip.Addr{}, "no such host"},
		{"no source, only AAAA", probe.Target{Host: "v6.resolve.invalid", Port: 80}, netip.Addr{}, v6, ""},
		{"literal is not looked up", probe.Target{Host: "192.0.2.1", Port: 80}, netip.Addr{}, netip.MustParseAddr("192.0.2.1"), ""},
		{"the target's resolver wins", probe.Target{Host: "srv.resolve.invalid", Port: 80, Resolver: probe.NewResolver(netip.MustParseAddrPort(other.Addr()))}, netip.Addr{}, v4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			got, err := probe.Resolve(ctx, r, tt.target, tt.source)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Resolve = %s, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != netip.AddrPortFrom(tt.want, 80) {
				t.Fatalf("Resolve = %s, %v; want %s", got, err, netip.AddrPortFrom(tt.want, 80))
			}
		})
	}
}

// TestResolveErrorNamesServerAsked: Go's resolver names the
// /etc/resolv.conf server in its errors even when its Dial goes elsewhere;
// the evidence must name the server that was asked (and said no, or did
// not answer).
func TestResolveErrorNamesServerAsked(t *testing.T) {
	dns, err := lab.NewDNS(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	// A UDP port with nothing behind it: the query is refused (ICMP).
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silent := pc.LocalAddr().String()
	pc.Close()
	for _, server := range []string{dns.Addr(), silent} {
		var res probe.Result
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		_, ok := probe.ResolveFor(ctx, &res, probe.NewResolver(netip.MustParseAddrPort(server)),
			probe.Target{Host: "nope.resolve.invalid", Port: 80}, netip.Addr{}, time.Time{})
		cancel()
		if ok || res.Reason != probe.ReasonDNSError || res.Phase != probe.PhaseResolve {
			t.Fatalf("server %s: ok %v, %s in %s; want dns_error in resolve", server, ok, res.Reason, res.Phase)
		}
		var de *net.DNSError
		if !errors.As(res.Err, &de) || de.Server != server {
			t.Errorf("server %s: error %v names server %q", server, res.Err, de.Server)
		}
		if ev := strings.Join(res.Evidence, " | "); !strings.Contains(ev, " on "+server+":") {
			t.Errorf("server %s: evidence %q does not name it", server, ev)
		}
		if res.Timings.Resolve <= 0 {
			t.Errorf("server %s: no resolve timing", server)
		}
	}
}
