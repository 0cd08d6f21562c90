//go:build kubernetes

package main

// `probe serve` against a real kube-apiserver (internal/kubetest),
// authenticated as the agent's ServiceAccount (deploy/rbac.yaml), probing
// targets that live in a network-namespace pair the test builds (the
// cluster's addresses exist nowhere else; nothing routes out).

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/connprobe/connprobe/internal/kubetest"
	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/internal/testlisten"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { kubetest.Main(m, &kube) }

// kubeServe is a `probe serve` whose stop is timed.
type kubeServe struct {
	*runningServe
	cancel context.CancelFunc
	done   chan error
}

func startKubeServe(t *testing.T, path string) *kubeServe {
	t.Helper()
	rs := &runningServe{config: path, hup: make(chan os.Signal, 1), logs: &syncBuffer{mu: make(chan struct{}, 1)}}
	log := slog.New(slog.NewJSONHandler(rs.logs, nil)) // --log.format=json
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	ks := &kubeServe{runningServe: rs, cancel: cancel, done: make(chan error, 1)}
	f := serveFlags{config: path, listen: "127.0.0.1:0", lifecycle: true}
	go func() { ks.done <- serve(ctx, f, log, rs.hup, func(a net.Addr) { ready <- a }) }()
	select {
	case a := <-ready:
		rs.addr = a.String()
	case err := <-ks.done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() { ks.stop(t) })
	return ks
}

// stop cancels serve (what SIGTERM does) and returns how long it took.
func (ks *kubeServe) stop(t *testing.T) time.Duration {
	start := time.Now()
	ks.cancel()
	select {
	case err := <-ks.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
		ks.done <- nil
	case <-time.After(time.Minute):
		t.Fatal("serve did not stop within a minute")
	}
	return time.Since(start)
}

// metric returns the value of the series line starting with prefix, or -1.
func (ks *kubeServe) metric(t *testing.T, series string) float64 {
	t.Helper()
	_, body := ks.get(t, "/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return -1
}

func (ks *kubeServe) waitMetricFor(t *testing.T, line string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		_, body := ks.get(t, "/metrics")
		if strings.Contains(body, line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q within %s; last:\n%s", line, limit, grepLines(body, "connprobe_discovery"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ks *kubeServe) waitLog(t *testing.T, re string, limit time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(limit)
	for !rx.MatchString(ks.logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s within %s:\n%s", re, limit, ks.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// okResults sums the ok results of a job.
func (ks *kubeServe) okResults(t *testing.T, job string) float64 {
	t.Helper()
	_, body := ks.get(t, "/metrics")
	sum := 0.0
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "connprobe_probe_results_total{") && strings.Contains(l, `job="`+job+`"`) && strings.Contains(l, `reason="ok"`) {
			f, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			sum += f
		}
	}
	return sum
}

const kubeConfigTmpl = `global:
  interval: 500ms
  timeout: 400ms
probes:
  - name: k8s-endpoints
    kind: connect
    netns: %[1]s
    targets:
      kubernetes:
        - {role: endpoints, namespaces: [%[2]s], kubeconfig: %[3]s}
  - name: k8s-services
    kind: connect
    netns: %[1]s
    targets:
      kubernetes:
        - {role: service, namespaces: [%[2]s], kubeconfig: %[3]s}
  - name: k8s-pods
    kind: connect
    netns: %[1]s
    targets:
      kubernetes:
        - {role: pod, namespaces: [%[2]s], kubeconfig: %[3]s}
  - name: k8s-nodes
    kind: connect
    netns: %[1]s
    interval: %[4]s
    targets:
      kubernetes:
        - {role: node, ports: ["8080"], label_selector: "kubetest=%[2]s", kubeconfig: %[3]s}
`

var kubeJobs = []string{"k8s-endpoints", "k8s-services", "k8s-pods", "k8s-nodes"}

// TestServeKubernetesRealAPI: serve follows the four roles as objects
// change and probes what they name; through a 30 s API outage it keeps
// probing, warns per job and exports the blindness, reloads in under a
// second and stops in under five; after it logs each recovery.
func TestServeKubernetesRealAPI(t *testing.T) {
	nstest.RequirePriv(t)
	cluster := kube.Get(t)
	t.Cleanup(func() { _ = cluster.StartAPI() })
	ctx := t.Context()

	// Network: the client namespace probes; the server namespace answers
	// on every address the cluster hands out (its own, and the ClusterIPs
	// routed to it).
	pair := nstest.NewPair(t)
	nstest.Exec(t, pair.Client, "ip", "route", "add", kubetest.ServiceCIDR, "via", pair.ServerIP.String())
	ln := nstest.Listen(t, pair.Server, "0.0.0.0:8080")
	testlisten.Serve(t, ln, testlisten.Close)
	ln80 := nstest.Listen(t, pair.Server, "0.0.0.0:80")
	testlisten.Serve(t, ln80, testlisten.Close)
	server := pair.ServerIP.String()

	// Cluster: the agent's identity, a namespace with one object per role.
	token, err := cluster.Agent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig, err := cluster.Kubeconfig(dir, token)
	if err != nil {
		t.Fatal(err)
	}
	ns := cluster.Namespace(t, "serve")
	admin := cluster.Admin
	node := "node-" + ns
	svc, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nstest.Exec(t, pair.Server, "ip", "addr", "add", svc.Spec.ClusterIP+"/32", "dev", "lo")
	slice := func(name, pod, ip string) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
		}
		es.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{ip},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: ns}, NodeName: &node}}
		return es
	}
	if _, err := admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-1", "web-0", server), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: server, PodIPs: []corev1.PodIP{{IP: server}}}
	if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"kubetest": ns}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: server}}
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "config.yaml")
	write := func(nodeInterval string) {
		cfg := fmt.Sprintf(kubeConfigTmpl, nstest.Path(pair.Client), ns, kubeconfig, nodeInterval)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("500ms")
	a := startKubeServe(t, path) // lives through the outage
	b := startKubeServe(t, path) // stopped during it
	for _, s := range []*kubeServe{a, b} {
		for _, job := range kubeJobs {
			s.waitMetric(t, fmt.Sprintf(`connprobe_job_targets{job=%q} 1`, job))
			s.waitMetric(t, fmt.Sprintf(`connprobe_discovery_synced{job=%q} 1`, job))
		}
	}
	for _, job := range kubeJobs {
		deadline := time.Now().Add(20 * time.Second)
		for a.okResults(t, job) < 2 {
			if time.Now().After(deadline) {
				_, body := a.get(t, "/metrics")
				t.Fatalf("job %s: no ok probes:\n%s", job, grepLines(body, job))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Objects change: a second endpoint appears and goes again.
	es2, err := admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-2", "web-9", "10.250.255.9"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.waitMetric(t, `connprobe_job_targets{job="k8s-endpoints"} 2`)
	if err := admin.DiscoveryV1().EndpointSlices(ns).Delete(ctx, es2.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a.waitMetric(t, `connprobe_job_targets{job="k8s-endpoints"} 1`)

	// Outage.
	before := map[string]float64{}
	for _, job := range kubeJobs {
		before[job] = a.okResults(t, job)
	}
	if err := cluster.StopAPI(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	for _, job := range kubeJobs {
		a.waitLog(t, `"level":"WARN","msg":"discovery: source lost its view; probing its last known targets","job":"`+job+`"`, 40*time.Second)
	}
	t.Logf("every job warned %s into the outage", time.Since(down).Round(time.Second))
	for _, job := range kubeJobs {
		if v := a.metric(t, fmt.Sprintf(`connprobe_discovery_synced{job=%q}`, job)); v != 0 {
			t.Errorf("job %s: discovery_synced %v during the outage, want 0", job, v)
		}
		if v := a.metric(t, fmt.Sprintf(`connprobe_discovery_errors_total{job=%q,source="kubernetes"}`, job)); v < 1 {
			t.Errorf("job %s: discovery_errors_total %v during the outage, want > 0", job, v)
		}
	}
	// A reload that restarts a kubernetes job returns at once.
	write("700ms")
	start := time.Now()
	if code, body := a.reload(t); code != http.StatusOK {
		t.Fatalf("reload during the outage: %d %s", code, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reload during the outage took %s, want < 1 s", d)
	} else {
		t.Logf("reload during the outage: %s", d.Round(time.Millisecond))
	}
	time.Sleep(30*time.Second - time.Since(down))
	if d := b.stop(t); d > 5*time.Second {
		t.Errorf("serve took %s to stop %s into the outage, want < 5 s", d, time.Since(down).Round(time.Second))
	} else {
		t.Logf("serve stopped in %s, %s into the outage", d.Round(time.Millisecond), time.Since(down).Round(time.Second))
	}
	for _, job := range kubeJobs[:3] { // the fourth restarted with no targets
		if got := a.okResults(t, job); got < before[job]+20 {
			t.Errorf("job %s: %v ok probes before the outage, %v after 30 s of it: probing did not go on", job, before[job], got)
		}
	}

	// Recovery.
	if err := cluster.StartAPI(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	for _, job := range kubeJobs[:3] {
		a.waitLog(t, `"level":"INFO","msg":"discovery: source recovered; its targets are current again","job":"`+job+`"`, 90*time.Second)
	}
	for _, job := range kubeJobs {
		a.waitMetricFor(t, fmt.Sprintf(`connprobe_discovery_synced{job=%q} 1`, job), 90*time.Second)
	}
	t.Logf("recovered %s after the API came back", time.Since(up).Round(time.Second))
	a.waitMetricFor(t, `connprobe_job_targets{job="k8s-nodes"} 1`, 90*time.Second)
	// client-go's own lines (klog) went through slog: every line is JSON.
	for _, l := range strings.Split(strings.TrimSpace(a.logs.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Errorf("log line is not JSON under --log.format=json: %s", l)
		}
	}
	if strings.Contains(a.logs.String(), "forbidden") {
		t.Errorf("the restart was reported as a permission problem:\n%s", a.logs)
	}
	if d := a.stop(t); d > 5*time.Second {
		t.Errorf("serve took %s to stop", d)
	}
}
