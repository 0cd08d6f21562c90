package probe_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
)

func TestParseResolvConf(t *testing.T) {
	in := `# a pod's
nameserver 10.96.0.10
nameserver not-an-ip
nameserver fd00::a
nameserver 10.0.0.2
nameserver 10.0.0.3
domain old.example
search shop.svc.cluster.local svc.cluster.local cluster.local. a b c d e
options ndots:5 timeout:1
options ndots:99x
`
	rc, err := probe.ParseResolvConf([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var servers []string
	for _, s := range rc.Servers {
		servers = append(servers, s.String())
	}
	if want := []string{"10.96.0.10:53", "[fd00::a]:53", "10.0.0.2:53"}; !slices.Equal(servers, want) {
		t.Errorf("servers = %v, want %v (the first 3 valid)", servers, want)
	}
	if want := []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "a", "b", "c"}; !slices.Equal(rc.Search, want) {
		t.Errorf("search = %v, want %v (the last line, 6 at most)", rc.Search, want)
	}
	if rc.Ndots != 5 {
		t.Errorf("ndots = %d, want 5", rc.Ndots)
	}

	rc, err = probe.ParseResolvConf([]byte("options ndots:40\n\x00\xff junk\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rc.Ndots != 15 || len(rc.Search) != 0 || len(rc.Servers) != 2 || rc.Servers[0].String() != "127.0.0.1:53" {
		t.Errorf("junk file = %+v; want ndots capped at 15, no search, loopback servers (glibc's default)", rc)
	}
}

// TestStubResolverSearch: a short name is tried with each search domain
// (ndots), from the resolver's own servers in order, and never through the
// system resolver's search list.
func TestStubResolverSearch(t *testing.T) {
	db := netip.MustParseAddr("10.1.2.3")
	ext := netip.MustParseAddr("10.9.9.9")
	dns, err := lab.NewDNS(map[string][]netip.Addr{
		"db.shop.svc.lab.invalid": {db},
		"api.ext.lab.invalid":     {ext},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	server := netip.MustParseAddrPort(dns.Addr())
	// A dead first server (nothing listens on this loopback port) must
	// fail over to the second.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := netip.MustParseAddrPort(dead.LocalAddr().String())
	dead.Close()

	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	rc := probe.ResolvConf{Servers: []netip.AddrPort{deadAddr, server}, Search: []string{"shop.svc.lab.invalid", "ext.lab.invalid"}, Ndots: 5}
	r, err := probe.NewStubResolver(rc, dial)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for host, want := range map[string]netip.Addr{"db": db, "api": ext, "db.shop.svc.lab.invalid": db, "db.shop.svc.lab.invalid.": db} {
		ips, err := r.LookupNetIP(ctx, "ip4", host)
		if err != nil || len(ips) == 0 || ips[0] != want {
			t.Errorf("LookupNetIP(%q) = %v, %v; want %v", host, ips, err, want)
		}
	}
	mu.Lock()
	if !slices.Contains(dialed, deadAddr.String()) || !slices.Contains(dialed, server.String()) {
		t.Errorf("dialed %v: want both servers asked, in order", dialed)
	}
	mu.Unlock()

	_, err = r.LookupNetIP(ctx, "ip4", "nope")
	if err == nil || !strings.Contains(err.Error(), "search shop.svc.lab.invalid ext.lab.invalid") {
		t.Errorf("unknown name: err = %v; want the search list named", err)
	}

	// ndots 1: a dotted name is tried as is first (it is in the zone).
	rc.Ndots = 1
	r, _ = probe.NewStubResolver(rc, nil)
	if ips, err := r.LookupNetIP(ctx, "ip4", "db.shop.svc.lab.invalid"); err != nil || ips[0] != db {
		t.Errorf("ndots 1: %v, %v", ips, err)
	}
}
