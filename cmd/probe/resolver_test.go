package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
)

// echoServer answers every read with the same bytes and holds idle
// connections open until the test ends.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(testlisten.Loopback(t, testlisten.Echo).Addr().String())
}

// TestResolverHonouredByEveryKind: a job's resolver (global.resolver, or the
// job's own) resolves the host name targets of every kind — connect, syn,
// app, idle and keepalive — and a name it does not know is dns_error with
// the server asked in the evidence. The names end in .invalid: no system
// resolver could answer them, and internal/testguard kills the test if one
// is asked.
func TestResolverHonouredByEveryKind(t *testing.T) {
	lab.RequirePriv(t) // kind syn needs CAP_NET_RAW
	tcp := echoServer(t)
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	wln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(wln)
	t.Cleanup(func() { web.Close() })
	httpPort := netip.MustParseAddrPort(wln.Addr().String()).Port()

	global, err := lab.NewDNS(map[string][]netip.Addr{"svc.resolver.invalid": {netip.MustParseAddr("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { global.Close() })
	// The job's own resolver knows another name, which global's does not.
	own, err := lab.NewDNS(map[string][]netip.Addr{"own.resolver.invalid": {netip.MustParseAddr("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })

	yaml := fmt.Sprintf(`global:
  interval: 10s
  timeout: 5s
  resolver: %s
probes:
  - {name: connect, kind: connect, targets: {static: ["svc.resolver.invalid:%[2]d"]}}
  - {name: syn, kind: syn, targets: {static: ["svc.resolver.invalid:%[2]d"]}}
  - {name: app, kind: app, targets: {static: ["http://svc.resolver.invalid:%[3]d/"]}}
  - {name: idle, kind: idle, interval: 20s, timeout: 8s, idle: {mode: plain, send: "x", idle: 200ms, reply_timeout: 500ms, connect_timeout: 1s}, targets: {static: ["svc.resolver.invalid:%[2]d"]}}
  - {name: keepalive, kind: keepalive, targets: {static: ["svc.resolver.invalid:%[2]d"]}}
  - {name: own, kind: connect, resolver: %[4]s, targets: {static: ["own.resolver.invalid:%[2]d"]}}
  - {name: unknown, kind: syn, targets: {static: ["nope.resolver.invalid:%[2]d"]}}
`, global.Addr(), tcp.Port(), httpPort, own.Addr())
	path := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Probes {
		j := &cfg.Probes[i]
		t.Run(j.Name, func(t *testing.T) {
			newProber, _, err := jobKind(j, nil)
			if err != nil {
				t.Fatal(err)
			}
			tg, err := probe.ParseTarget(j.Targets.Static[0])
			if err != nil {
				t.Fatal(err)
			}
			p, err := newProber(tg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			r := p.Probe(ctx)
			ev := strings.Join(r.Evidence, " | ")
			if j.Name == "unknown" {
				if r.Reason != probe.ReasonDNSError || r.Phase != probe.PhaseResolve {
					t.Fatalf("%s in %s, want dns_error in resolve; evidence %q", r.Reason, r.Phase, ev)
				}
				if !strings.Contains(ev, "on "+global.Addr()+":") {
					t.Errorf("evidence %q does not name the server asked, %s", ev, global.Addr())
				}
				return
			}
			if !r.Success() {
				t.Fatalf("%s in %s, want success; evidence %q, err %v", r.Reason, r.Phase, ev, r.Err)
			}
			if r.Remote.Addr() != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("probed %s, want 127.0.0.1", r.Remote)
			}
			if host := tg.Host; !strings.Contains(ev, "resolved "+host+" to 127.0.0.1") {
				t.Errorf("evidence %q, want the resolution of %s", ev, host)
			}
		})
	}
}

// TestRunResolverFlag: `probe run --resolver` resolves through the server
// given, for the default kind and for --kind keepalive; a bad value is a
// usage error.
func TestRunResolverFlag(t *testing.T) {
	tcp := echoServer(t)
	dns, err := lab.NewDNS(map[string][]netip.Addr{"svc.resolver.invalid": {netip.MustParseAddr("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	target := fmt.Sprintf("svc.resolver.invalid:%d", tcp.Port())
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"connect", []string{"run", "--resolver", dns.Addr(), target}, exitOK},
		{"keepalive", []string{"run", "--kind", "keepalive", "--resolver", dns.Addr(), "--timeout", "2s", target}, exitOK},
		{"unknown name", []string{"run", "--resolver", dns.Addr(), fmt.Sprintf("nope.resolver.invalid:%d", tcp.Port())}, exitFailed},
		{"a name as resolver", []string{"run", "--resolver", "dns.example:53", target}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(t.Context(), tt.args); got != tt.want {
				t.Errorf("probe %v: exit %d, want %d", tt.args, got, tt.want)
			}
		})
	}
}
