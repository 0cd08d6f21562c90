package targets

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// TestDNSSRVTargetsResolveThroughTheServer: an SRV record names a host;
// the probe must resolve it through the server that named it (the block's
// server), not through the system resolver (which, during a test, would
// send a real query out; internal/testguard kills the test if it is
// asked). A block without a server uses the job's resolver for both.
func TestDNSSRVTargetsResolveThroughTheServer(t *testing.T) {
	f := startFakeDNS(t)
	kafka0 := netip.MustParseAddr("127.0.0.9")
	f.set(func(f *fakeDNS) {
		f.srv["_kafka._tcp.connprobe.test."] = []net.SRV{{Target: "kafka-0.connprobe.test.", Port: 9092, Priority: 1, Weight: 1}}
		f.a["kafka-0.connprobe.test."] = []netip.Addr{kafka0}
	})
	for _, tt := range []struct {
		name string
		src  *DNS
	}{
		{"block server", &DNS{Name: "_kafka._tcp.connprobe.test.", Type: "SRV", Refresh: time.Hour, Server: f.addr}},
		{"job resolver", &DNS{Name: "_kafka._tcp.connprobe.test.", Type: "SRV", Refresh: time.Hour, Resolver: probe.NewResolver(f.addr)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan []probe.Target, 1)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() {
				done <- tt.src.Run(ctx, func(ts []probe.Target) {
					select {
					case got <- ts:
					default:
					}
				})
			}()
			defer func() { cancel(); <-done }()
			var ts []probe.Target
			select {
			case ts = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("no target set")
			}
			if len(ts) != 1 || ts[0].Host != "kafka-0.connprobe.test" {
				t.Fatalf("targets %+v, want kafka-0.connprobe.test:9092", ts)
			}
			if s := ts[0].Resolver.Server(); s != f.addr {
				t.Errorf("target's resolver %s, want the block's server %s", s, f.addr)
			}
			// What a probe does with the target (the job's resolver: the
			// system's, nil).
			rctx, rcancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer rcancel()
			addr, err := probe.Resolve(rctx, nil, ts[0], netip.Addr{})
			if err != nil || addr != netip.AddrPortFrom(kafka0, 9092) {
				t.Errorf("probe resolves %s to %s, %v; want %s", ts[0].Name, addr, err, netip.AddrPortFrom(kafka0, 9092))
			}
		})
	}
}
