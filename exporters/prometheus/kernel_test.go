package prometheus

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe/kernel"
)

func TestKernelCollectorExportsNamespaceEvidence(t *testing.T) {
	p := nstest.NewPair(t)
	nstest.Sysctl(t, p.Server, "net.ipv4.ip_local_port_range=1024 65535")
	ln := nstest.Listen(t, p.Server, p.ServerIP.String()+":9092")
	testlisten.Serve(t, ln, testlisten.Hold)
	nstest.Dial(t, p.Client, p.Addr(9092).String()).Close()
	time.Sleep(300 * time.Millisecond)

	ends := []kernel.End{{Name: "netns:" + p.Server, NetNS: nstest.Path(p.Server)}}
	c := &KernelCollector{Ends: func() []kernel.End { return ends }, StuckAfter: 200 * time.Millisecond}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}
	ns := "netns:" + p.Server
	want := `
# HELP connprobe_netns_tcp_stuck_sockets CLOSE-WAIT or SYN-RECV sockets older than the threshold.
# TYPE connprobe_netns_tcp_stuck_sockets gauge
connprobe_netns_tcp_stuck_sockets{netns="` + ns + `",state="close_wait"} 1
connprobe_netns_tcp_stuck_sockets{netns="` + ns + `",state="syn_recv"} 0
# HELP connprobe_netns_sysctl_finding 1 for each sysctl lint finding in the namespace (see probe lint node).
# TYPE connprobe_netns_sysctl_finding gauge
connprobe_netns_sysctl_finding{netns="` + ns + `",severity="warning",sysctl="net.ipv4.ip_local_port_range"} 1
# HELP connprobe_netns_tcp_sockets TCP sockets in the namespace by state (sock_diag).
# TYPE connprobe_netns_tcp_sockets gauge
connprobe_netns_tcp_sockets{netns="` + ns + `",state="close_wait"} 1
connprobe_netns_tcp_sockets{netns="` + ns + `",state="listen"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "connprobe_netns_tcp_stuck_sockets", "connprobe_netns_sysctl_finding", "connprobe_netns_tcp_sockets"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "connprobe_netns_tcp_events_total"); n != len(kernel.Watched) {
		t.Errorf("tcp events series = %d, want %d", n, len(kernel.Watched))
	}
	// A namespace that goes away: its series and auditor go with it.
	ends = nil
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("series after the namespace left = %d, want 0", n)
	}
	if len(c.auditors) != 0 {
		t.Errorf("auditors kept for gone namespaces: %v", c.auditors)
	}
}
