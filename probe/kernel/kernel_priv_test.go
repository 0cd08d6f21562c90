package kernel

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
	"github.com/connprobe/connprobe/probe/netns"
)

// A server that never closes its side keeps every connection its clients
// closed in CLOSE-WAIT (incident 000): the audit names count, age and peer.
func TestAuditCloseWait(t *testing.T) {
	p := nstest.NewPair(t)
	ln := nstest.Listen(t, p.Server, p.ServerIP.String()+":9092")
	testlisten.Serve(t, ln, testlisten.Hold) // held, never closed during the test
	for range 3 {
		nstest.Dial(t, p.Client, p.Addr(9092).String()).Close() // client FIN
	}
	a := NewAuditor(time.Second)
	socks, err := Sockets(nstest.Path(p.Server))
	if err != nil {
		t.Fatal(err)
	}
	first := a.Observe(socks, time.Now())
	if got := first.ByState[CloseWait]; got != 3 {
		t.Fatalf("CLOSE-WAIT sockets = %d (%v), want 3", got, first.Summary())
	}
	if first.ByState[Listen] != 1 {
		t.Errorf("LISTEN sockets = %d, want 1", first.ByState[Listen])
	}
	if len(first.Stuck) != 0 {
		t.Errorf("fresh sockets reported stuck: %v", first.Stuck)
	}
	time.Sleep(1200 * time.Millisecond)
	socks, err = Sockets(nstest.Path(p.Server))
	if err != nil {
		t.Fatal(err)
	}
	au := a.Observe(socks, time.Now())
	t.Logf("audit: %q", au.Summary())
	if len(au.Stuck) != 1 {
		t.Fatalf("stuck = %v, want one group", au.Stuck)
	}
	s := au.Stuck[0]
	if s.State != CloseWait || s.Count != 3 || s.Peer != p.ClientIP || s.Local != p.Addr(9092) {
		t.Errorf("stuck = %+v, want 3 CLOSE-WAIT %s <- %s", s, p.Addr(9092), p.ClientIP)
	}
	if s.Age < time.Second || s.Idle < time.Second {
		t.Errorf("age %s idle %s, want both >= 1s", s.Age, s.Idle)
	}
	// The client namespace has none: sockets are per namespace.
	cs, err := Sockets(nstest.Path(p.Client))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cs {
		if s.State == CloseWait {
			t.Errorf("client namespace shows a server socket: %+v", s)
		}
	}
}

// A full accept queue (backlog 1, syncookies off) drops SYNs: the failed
// probe's evidence shows ListenOverflows/ListenDrops of the server end.
func TestSynFloodShowsListenDropsInEvidence(t *testing.T) {
	p := nstest.NewPair(t)
	nstest.Sysctl(t, p.Server, "net.ipv4.tcp_syncookies=0")
	nstest.Sysctl(t, p.Server, "net.core.somaxconn=1")      // listen() backlog is capped by it
	nstest.Listen(t, p.Server, p.ServerIP.String()+":9000") // never accepts
	// Fill the accept queue (backlog+1 connections fit), then keep flooding.
	for range 2 {
		nstest.Dial(t, p.Client, p.Addr(9000).String())
	}

	tgt, _ := probe.ParseTarget(p.Addr(9000).String())
	tgt.NetNS = nstest.Path(p.Client)
	pr, err := connect.New(tgt, connect.Config{Timeout: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	local := End{Role: "local", Name: p.Client, NetNS: nstest.Path(p.Client)}
	peer, ok, _ := FindPeer(p.ServerIP, []End{local, {Role: "peer", Name: p.Server, NetNS: nstest.Path(p.Server)}})
	if !ok || peer.Name != p.Server {
		t.Fatalf("FindPeer(%s) = %+v, %v; want the server namespace", p.ServerIP, peer, ok)
	}
	snap := Take(local, peer)
	// Another client in the same namespace retries at the same time: the
	// namespace-wide TCPSynRetrans counts its SYNs too, and says so.
	other := make(chan struct{})
	go func() {
		defer close(other)
		_ = netns.Do(nstest.Path(p.Client), func() error {
			c, err := (&net.Dialer{Timeout: 2500 * time.Millisecond, KeepAlive: -1}).Dial("tcp", p.Addr(9000).String())
			if err == nil {
				c.Close()
			}
			return nil
		})
	}()
	r := pr.Probe(context.Background())
	<-other
	r.Evidence = append(r.Evidence, snap.Evidence(Own{SynRetrans: r.Retransmits})...)
	t.Logf("%s %q", r.Reason, r.Evidence)
	if r.Success() {
		t.Fatalf("probe succeeded (%s) against a full accept queue", r.Reason)
	}
	ev := strings.Join(r.Evidence, "\n")
	for _, want := range []string{
		"kernel peer " + p.Server + " (namespace-wide, every socket in it): ListenOverflows +", "ListenDrops +",
		"kernel local " + p.Client + " (namespace-wide, every socket in it): ",
		fmt.Sprintf("this probe retransmitted %d SYN(s) of the ", r.Retransmits), "other sockets account for the rest",
	} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
}

func TestReadSysctlsAndLintInNamespace(t *testing.T) {
	p := nstest.NewPair(t)
	s, err := ReadSysctls(nstest.Path(p.Client))
	if err != nil {
		t.Fatal(err)
	}
	if got := Lint(s, LintConfig{}); len(got) != 0 {
		t.Errorf("fresh namespace: findings %v, want none", got)
	}
	nstest.Sysctl(t, p.Client, "net.ipv4.ip_local_port_range=1024 65535")
	nstest.Sysctl(t, p.Client, "net.ipv4.tcp_syn_linear_timeouts=0")
	s, err = ReadSysctls(nstest.Path(p.Client))
	if err != nil {
		t.Fatal(err)
	}
	got := Lint(s, LintConfig{})
	if len(got) != 2 || got[0].Key != "net.ipv4.ip_local_port_range" || got[1].Key != "net.ipv4.tcp_syn_retries" || !strings.Contains(got[1].Problem, "2m7s") {
		t.Errorf("findings %v, want port range overlap and the 127 s connect budget", got)
	}
	// The host's namespace was not touched: values are per namespace.
	host, err := ReadSysctls("")
	if err != nil {
		t.Fatal(err)
	}
	if host["net.ipv4.ip_local_port_range"] == "1024 65535" {
		t.Error("read the namespace's value from the host")
	}
}

func TestCountersArePerNamespace(t *testing.T) {
	p := nstest.NewPair(t)
	before, err := ReadCounters(nstest.Path(p.Server))
	if err != nil {
		t.Fatal(err)
	}
	// Connection attempts to a closed port: the server namespace sends RSTs.
	for range 3 {
		_ = netns.Do(nstest.Path(p.Client), func() error {
			c, err := net.DialTimeout("tcp", p.Addr(9).String(), time.Second)
			if err == nil {
				c.Close()
			}
			return nil
		})
	}
	after, err := ReadCounters(nstest.Path(p.Server))
	if err != nil {
		t.Fatal(err)
	}
	if d := after["Tcp.OutRsts"] - before["Tcp.OutRsts"]; d != 3 {
		t.Errorf("server Tcp.OutRsts rose by %d, want 3", d)
	}
}

func TestConntrackStatsInNamespace(t *testing.T) {
	p := nstest.NewPair(t)
	// A ct rule makes the client namespace track its connections.
	nstest.Exec(t, p.Client, "nft", "add table inet track; add chain inet track out { type filter hook output priority 0; }; add rule inet track out ct state new counter")
	nstest.Listen(t, p.Server, p.ServerIP.String()+":9000")
	nstest.Dial(t, p.Client, p.Addr(9000).String())
	st, err := ConntrackStats(nstest.Path(p.Client))
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries < 1 || st.Max == 0 {
		t.Errorf("conntrack = %+v, want >= 1 entry and a max", st)
	}
	host, err := ConntrackStats("")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client ns %+v; host entries %d", st, host.Entries)
}
