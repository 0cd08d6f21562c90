package main

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/connprobe/connprobe/configs"
	"github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/internal/lab"
)

func TestKernelEnds(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		name, config string
		want         []string // End names
		err          string
	}{
		{"off", "probes: [{name: a, targets: {static: ['127.0.0.1:1']}}]", nil, ""},
		{"jobs", "global: {kernel: {}}\nprobes: [{name: a, targets: {static: ['127.0.0.1:1']}}, {name: b, targets: {static: ['127.0.0.1:2']}}]", []string{"host"}, ""},
		{"listed, not jobs", "global: {kernel: {jobs: false, netns: [host, pid:" + self + "]}}\nprobes: [{name: a, targets: {static: ['127.0.0.1:1']}}]", []string{"host", "pid:" + self}, ""},
		{"missing", "global: {kernel: {netns: [connprobe-no-such-ns]}}\nprobes: [{name: a, targets: {static: ['127.0.0.1:1']}}]", []string{"host"},
			`global: kernel.netns[0]: netns "connprobe-no-such-ns": /run/netns/connprobe-no-such-ns: network namespace not found (no such name in /run/netns; ip netns list or probe netns ls shows the ones there are)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := configs.Parse([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			ends, err := kernelEnds(cfg)
			var got []string
			for _, e := range ends {
				got = append(got, e.Name)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("ends = %v, want %v", got, tt.want)
			}
			if (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
				t.Errorf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

// TestKernelMetricsLint: the collector registered on the exporter yields
// promlint-clean metrics of the prober's own namespace.
func TestKernelMetricsLint(t *testing.T) {
	cfg, err := configs.Parse([]byte("global: {kernel: {stuck_after: 30s}}\nprobes: [{name: a, targets: {static: ['127.0.0.1:1']}}]"))
	if err != nil {
		t.Fatal(err)
	}
	exp := prometheus.New(prometheus.Options{NoRuntimeMetrics: true})
	k := newKernelMetrics()
	if err := exp.Register(k.c); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(k.c); n != 0 {
		t.Errorf("%d series before a config names namespaces", n)
	}
	k.apply(cfg)
	probs, err := testutil.GatherAndLint(exp.Gatherer())
	if err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}
	if err := testutil.GatherAndCompare(exp.Gatherer(), strings.NewReader(`
# HELP connprobe_netns_tcp_stuck_sockets CLOSE-WAIT or SYN-RECV sockets older than the threshold.
# TYPE connprobe_netns_tcp_stuck_sockets gauge
connprobe_netns_tcp_stuck_sockets{netns="host",state="close_wait"} 0
connprobe_netns_tcp_stuck_sockets{netns="host",state="syn_recv"} 0
`), "connprobe_netns_tcp_stuck_sockets"); err != nil {
		// Another process of this machine may hold a stuck socket: only
		// the series' presence is the point here.
		if !strings.Contains(err.Error(), `netns="host",state="close_wait"`) {
			t.Error(err)
		}
	}
	if k.c.StuckAfter.Seconds() != 30 {
		t.Errorf("stuck_after not applied: %s", k.c.StuckAfter)
	}
}

// TestServeKernelMetricsOfJobNetNS: a job probing from a lab pod namespace
// exports that namespace's kernel evidence; a reload without the job drops
// its series.
func TestServeKernelMetricsOfJobNetNS(t *testing.T) {
	l := lab.New(t)
	vip := netip.AddrPortFrom(l.VIP, 8081).String() // no listener: refused
	rs := startServe(t, `
global: {kernel: {}}
probes:
  - name: from-pod
    netns: `+l.Pod+`
    interval: 100ms
    targets: {static: ["`+vip+`"]}
`, "")
	rs.waitMetric(t, `connprobe_probe_success{job="from-pod",target="`+vip+`"} 0`)
	for _, src := range []string{"counters", "sockets", "sysctls"} {
		rs.waitMetric(t, `connprobe_netns_kernel_read_success{netns="`+l.Pod+`",source="`+src+`"} 1`)
	}
	_, body := rs.get(t, "/metrics")
	// The pod's refused connects, counted by its own kernel.
	if v := metricValue(t, body, `connprobe_netns_tcp_events_total{counter="AttemptFails",netns="`+l.Pod+`"}`); v < 1 {
		t.Errorf("AttemptFails of the pod namespace = %v, want >= 1", v)
	}
	if strings.Contains(body, `netns="host"`) {
		t.Error("host namespace exported though no job probes from it")
	}
	if err := os.WriteFile(rs.config, []byte("global: {kernel: {}}\nprobes: [{name: here, interval: 100ms, targets: {static: ['"+listen(t).Addr().String()+"']}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := rs.reload(t); code != 200 {
		t.Fatalf("reload: %d %s", code, msg)
	}
	rs.waitMetric(t, `connprobe_netns_kernel_read_success{netns="host",source="counters"} 1`)
	if _, body := rs.get(t, "/metrics"); strings.Contains(body, `netns="`+l.Pod+`"`) {
		t.Errorf("series of the pod namespace remain after reload:\n%s", grepAll(body, l.Pod))
	}
}
