package main

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/nstest"
)

// addPod adds a second pod-like namespace to the lab: its own veth link to
// the node, 10.244.3.2/24 via 10.244.3.1, so it reaches the VIP and the
// backends the way the lab's pod does, over a path of its own. The node's
// end of the link is veth-pod2.
func addPod(t *testing.T, l *lab.Lab) string {
	t.Helper()
	ns := nstest.Named(t, l.Prefix+"-pod2") // Sweep's cpt<pid>-<hex>-<role> form
	nstest.Veth(t,
		nstest.End{NS: ns, Dev: "eth0", Addr: netip.MustParsePrefix("10.244.3.2/24")},
		nstest.End{NS: l.Router, Dev: "veth-pod2", Addr: netip.MustParsePrefix("10.244.3.1/24")})
	nstest.Exec(t, ns, "ip", "route", "add", "default", "via", "10.244.3.1")
	return ns
}

// nodeFault adds an nft rule to a table of its own in the lab's node
// namespace, dropping the SYNs it matches before conntrack and DNAT; the
// returned func removes it.
func nodeFault(t *testing.T, l *lab.Lab, match string) func() {
	t.Helper()
	nft := func(script string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", l.Router, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
	}
	nft(`table ip e2efault {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		` + match + ` tcp flags & (syn | ack) == syn drop
	}
}
`)
	return func() { nft("delete table ip e2efault\n") }
}

// TestServeE2EPrometheusVantage: two `probe serve` agents probe the same
// targets (the Service VIP and a backend directly) from two pod namespaces;
// a real Prometheus scrapes both and evaluates deploy/prometheus/rules.yml
// (shortened). A fault on the second pod's own path fires
// ConnprobeVantageFault naming that agent, and no target alert; a fault at
// the target (the VIP blackholed for everyone) fires the target's burn-rate
// alert and no vantage alert.
func TestServeE2EPrometheusVantage(t *testing.T) {
	l := lab.New(t)
	pod2 := addPod(t, l)
	for _, ns := range []string{l.Backend1, l.Backend2} {
		ln, err := l.Listen(ns, ":8080")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { lab.Serve(ln, lab.Echo) })
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}
	vip := netip.AddrPortFrom(l.VIP, 8080)
	b1 := netip.AddrPortFrom(l.Backend1IP, 8080)
	config := func(ns string) string {
		return fmt.Sprintf(`
probes:
  - name: web
    interval: 250ms
    timeout: 200ms
    netns: %s
    slo: {objective: 0.99}
    targets: {static: ["%s", "%s"]}
`, l.Path(ns), vip, b1)
	}
	good := startServe(t, config(l.Pod), "")
	bad := startServe(t, config(pod2), "")
	api := startPrometheus(t, good.addr, bad.addr)

	vantageFiring := `ALERTS{alertname="ConnprobeVantageFault",alertstate="firing",job="web"}`
	targetFiring := `ALERTS{alertname=~"ConnprobeErrorBudgetBurn.*",alertstate="firing",job="web"}`
	api.waitFor(t, "both vantages reporting, no errors", 30*time.Second, func() bool {
		n, ok := api.value(t, fmt.Sprintf(`connprobe:probe_vantages:count{job="web",target="%s"}`, vip))
		e, oke := api.value(t, fmt.Sprintf(`connprobe:probe_error:ratio_rate5m{job="web",target="%s"}`, vip))
		o, oko := api.value(t, `connprobe:slo_objective:ratio{job="web"}`)
		return ok && n == 2 && oke && e == 0 && oko && o == 0.99
	})

	// 1. The second pod's own path drops its SYNs: a vantage problem.
	t0 := time.Now()
	// The second pod's own link to the node drops its SYNs: a fault on
	// that vantage's path (its node port, its CNI) the other pod does not
	// share.
	clear := nodeFault(t, l, `iifname "veth-pod2"`)
	api.waitFor(t, "ConnprobeVantageFault firing", 45*time.Second, func() bool {
		return len(api.labels(t, vantageFiring)) > 0
	})
	t.Logf("vantage alert fired %s after the path fault", time.Since(t0).Round(100*time.Millisecond))
	ls := api.labels(t, vantageFiring)
	if len(ls) != 1 || ls[0]["instance"] != bad.addr || ls[0]["scope"] != "vantage" {
		t.Errorf("vantage alerts %v, want one naming instance %s (the agent in the faulty pod; the healthy one is %s)", ls, bad.addr, good.addr)
	}
	if v, _ := api.value(t, `ALERTS{alertname="ConnprobeVantageFault",alertstate="firing"}`); v != 1 {
		t.Errorf("vantage alert value %v", v)
	}
	if n, ok := api.value(t, `connprobe:probe_vantage_fault:count{job="web"}`); !ok || n != 1 {
		t.Errorf("connprobe:probe_vantage_fault:count = %v %v, want 1 burning vantage", n, ok)
	}
	// Half the attempts fail, over 14.4× the budget: without localisation
	// this would page for both targets.
	if got := api.labels(t, fmt.Sprintf(`max_over_time(%s[%ds])`, targetFiring, int(time.Since(t0).Seconds())+2)); len(got) > 0 {
		t.Errorf("target alerts fired during a vantage fault: %v", got)
	}

	// Clear it and wait until every window has forgotten it.
	clear()
	api.waitFor(t, "vantage fault resolved", 45*time.Second, func() bool {
		_, burning := api.value(t, `connprobe_vantage:probe_error:burning{job="web"}`)
		_, pending := api.value(t, `ALERTS{alertname="ConnprobeVantageFault"}`)
		return !burning && !pending
	})

	// 2. The VIP is blackholed for everyone: a target problem.
	t1 := time.Now()
	nodeFault(t, l, fmt.Sprintf("ip daddr %s tcp dport %d", vip.Addr(), vip.Port()))
	api.waitFor(t, "the VIP's fast burn alert firing", 45*time.Second, func() bool {
		ls := api.labels(t, `ALERTS{alertname="ConnprobeErrorBudgetBurnFast",alertstate="firing",job="web"}`)
		return len(ls) == 1 && ls[0]["target"] == vip.String()
	})
	t.Logf("target alert fired %s after the VIP fault", time.Since(t1).Round(100*time.Millisecond))
	// Longer than the vantage alert's for: (5s here): a vantage alert that
	// was going to fire has had the time to.
	time.Sleep(8 * time.Second)
	window := fmt.Sprintf("[%ds]", int(time.Since(t1).Seconds())+1)
	if got := api.labels(t, `max_over_time(`+vantageFiring+window+`)`); len(got) > 0 {
		t.Errorf("vantage alert fired for a fault at the target: %v", got)
	}
	if got := api.labels(t, `max_over_time(ALERTS{alertname="ConnprobeErrorBudgetBurnFast",alertstate="firing",job="web"}`+window+`)`); len(got) != 1 || got[0]["target"] != vip.String() {
		t.Errorf("target alerts during the VIP fault: %v, want only %s (the backend reached directly is fine)", got, vip)
	}
}
