//go:build kubernetes

package kubernetes

// Against a real kube-apiserver (internal/kubetest), authenticated as the
// agent's ServiceAccount with deploy/rbac.yaml's role: discovery follows
// Services, EndpointSlices, Pods and Nodes as they change; an outage is
// warned about and its end logged; a Source stops in bounded time while
// the API is down.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"

	"github.com/connprobe/connprobe/internal/kubetest"
	"github.com/connprobe/connprobe/scheduler/targets"
)

var shared kubetest.Shared

func TestMain(m *testing.M) { kubetest.Main(m, &shared) }

func agentClient(t *testing.T, cluster *kubetest.Cluster) clientset.Interface {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	token, err := cluster.Agent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientset.NewForConfig(cluster.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// running is a Source watching in the background.
type running struct {
	mu     sync.Mutex
	last   []Target
	n      int
	cancel context.CancelFunc
	done   chan error
}

func runSource(t *testing.T, c clientset.Interface, cfg Config, opts Options) *running {
	t.Helper()
	src, err := New(c, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- src.Watch(ctx, func(ts []Target) {
			r.mu.Lock()
			r.last, r.n = ts, r.n+1
			r.mu.Unlock()
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the Source and returns how long Watch took to return.
func (r *running) stop(t *testing.T) time.Duration {
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Watch: %v", err)
		}
		r.done <- nil // later stops return at once
	case <-time.After(time.Minute):
		t.Fatal("Watch did not return within a minute of cancel")
	}
	return time.Since(start)
}

func (r *running) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, t := range r.last {
		out = append(out, fmt.Sprintf("%s %s:%d", t.Name, t.Host, t.Port))
	}
	return out
}

// waitFor polls until the target list satisfies ok.
func (r *running) waitFor(t *testing.T, what string, ok func([]string) bool) []string {
	t.Helper()
	return r.waitForWithin(t, what, ok, 30*time.Second)
}

func (r *running) waitForWithin(t *testing.T, what string, ok func([]string) bool, limit time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := r.names()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets never %s; have %q", what, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasPrefix(prefix string) func([]string) bool {
	return func(ts []string) bool {
		return slices.ContainsFunc(ts, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
}

func equal(want ...string) func([]string) bool {
	return func(ts []string) bool { return slices.Equal(ts, want) }
}

func TestRealAPIFollowsObjects(t *testing.T) {
	cluster := shared.Get(t)
	agent := agentClient(t, cluster)
	admin := cluster.Admin
	ns := cluster.Namespace(t, "disc")
	ctx := t.Context()
	node := "node-" + ns
	logs := &lockedLog{}
	opts := Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Job: "t"}

	svcs := runSource(t, agent, Config{Role: RoleService, Namespaces: []string{ns}}, opts)
	eps := runSource(t, agent, Config{Role: RoleEndpoints, Namespaces: []string{ns}}, opts)
	pods := runSource(t, agent, Config{Role: RolePod, Namespaces: []string{ns}}, opts)
	nodes := runSource(t, agent, Config{Role: RoleNode, Ports: []string{"9716"}, LabelSelector: "kubetest=" + ns}, opts)
	for _, r := range []*running{svcs, eps, pods, nodes} {
		r.waitFor(t, "synced (empty)", func([]string) bool { r.mu.Lock(); defer r.mu.Unlock(); return r.n > 0 })
	}

	// Service: appears with its allocated ClusterIP, gains a port, goes.
	svc, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.Spec.ClusterIP
	if !strings.HasPrefix(vip, "10.96.") {
		t.Fatalf("ClusterIP %q not from %s", vip, kubetest.ServiceCIDR)
	}
	svcs.waitFor(t, "show the service", equal(fmt.Sprintf("service/%s/web:80 %s:80", ns, vip)))
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "https", Port: 443})
	if _, err := admin.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svcs.waitFor(t, "gain port 443", equal(
		fmt.Sprintf("service/%s/web:443 %s:443", ns, vip), fmt.Sprintf("service/%s/web:80 %s:80", ns, vip)))

	// EndpointSlice: a ready endpoint appears, turns not ready, comes back.
	ready := true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.250.7.2"},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "web-a", Namespace: ns},
			NodeName:   &node,
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}
	es, err = admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps.waitFor(t, "show the endpoint", equal(fmt.Sprintf("endpoint/%s/web/web-a:8080 10.250.7.2:8080", ns)))
	ready = false
	es.Endpoints[0].Conditions.Ready = &ready
	if es, err = admin.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eps.waitFor(t, "drop the unready endpoint", equal())

	// Pod: pending is not probed, running is, deleted is gone.
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-a"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "web", Image: "example.invalid/web",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.250.7.3", PodIPs: []corev1.PodIP{{IP: "10.250.7.3"}}}
	if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods.waitFor(t, "show the running pod", equal(fmt.Sprintf("pod/%s/web-a:8080 10.250.7.3:8080", ns)))
	if err := admin.CoreV1().Pods(ns).Delete(ctx, "web-a", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	pods.waitFor(t, "drop the deleted pod", equal())

	// Node: its InternalIP at the port; relabelled out of the selector.
	n, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"kubetest": ns}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.250.7.4"}}
	if n, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes.waitFor(t, "show the node", equal(fmt.Sprintf("node/%s:9716 10.250.7.4:9716", node)))
	n.Labels["kubetest"] = "elsewhere"
	if _, err := admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nodes.waitFor(t, "drop the relabelled node", equal())

	if err := admin.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	svcs.waitFor(t, "drop the deleted service", equal())
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("healthy discovery logged warnings:\n%s", logs)
	}
}

// The agent's role reads only what discovery needs: a source of a kind it
// may not read is forbidden, which is warned about (after BlindAfter) with
// the fix, and counted.
func TestRealAPIForbiddenIsWarned(t *testing.T) {
	cluster := shared.Get(t)
	ctx := t.Context()
	// A ServiceAccount with no role at all.
	ns := cluster.Namespace(t, "noperm")
	if _, err := cluster.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := cluster.Token(ctx, ns, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientset.NewForConfig(cluster.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	h := &targets.Health{Log: slog.New(slog.NewTextHandler(logs, nil)), BlindAfter: 2 * time.Second}
	h.Expect(map[string]int{"web": 1})
	r := runSource(t, c, Config{Role: RoleService, Namespaces: []string{ns}}, Options{Health: h, Job: "web"})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), `level=WARN msg="discovery: source has not synced`) {
		if time.Now().After(deadline) {
			t.Fatalf("no WARN for a forbidden source:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "the service account needs list/watch on services (deploy/rbac.yaml)") {
		t.Errorf("the WARN does not say what is missing:\n%s", logs)
	}
	js := h.Jobs()
	if len(js) != 1 || js[0].Synced || js[0].Errors["kubernetes"] == 0 {
		t.Errorf("health %+v, want job web not synced with errors", js)
	}
	if h.Ready() == nil {
		t.Error("ready with a source that never synced")
	}
	if d := r.stop(t); d > 5*time.Second {
		t.Errorf("Watch took %s to stop", d)
	}
}

// An API outage: the Source keeps its last targets, warns once the outage
// outlasts BlindAfter, logs the recovery (and no "forbidden" for the 403s
// a restarting server answers while its RBAC is not loaded), and while the
// API is down it stops within 5 s (client-go's watch-list backoff used to
// hold it for up to a minute).
func TestRealAPIOutage(t *testing.T) {
	cluster := shared.Get(t)
	t.Cleanup(func() { _ = cluster.StartAPI() }) // for the tests after this one, if it failed midway
	agent := agentClient(t, cluster)
	ns := cluster.Namespace(t, "outage")
	ctx := t.Context()
	if _, err := cluster.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	h := &targets.Health{Log: slog.New(slog.NewTextHandler(logs, nil)), BlindAfter: 5 * time.Second}
	h.Expect(map[string]int{"web": 2})
	cfg := Config{Role: RoleService, Namespaces: []string{ns}}
	a := runSource(t, agent, cfg, Options{Health: h, Job: "web"})
	b := runSource(t, agent, cfg, Options{Health: h, Job: "web"})
	want := a.waitFor(t, "show the service", hasPrefix("service/"+ns+"/web:80"))
	b.waitFor(t, "show the service", hasPrefix("service/"+ns+"/web:80"))
	if err := h.Ready(); err != nil {
		t.Fatalf("not ready after sync: %v", err)
	}

	if err := cluster.StopAPI(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	waitLog(t, logs, `level=WARN msg="discovery: source lost its view; probing its last known targets"`, 30*time.Second)
	if d := time.Since(down); d < 5*time.Second {
		t.Errorf("warned %s into the outage, before BlindAfter", d)
	}
	if js := h.Jobs(); len(js) != 1 || js[0].Synced || js[0].Errors["kubernetes"] == 0 {
		t.Errorf("during the outage: %+v, want not synced with errors", js)
	}
	// 30 s down: client-go's backoff has grown (0.8 s doubling, up to 30 s).
	time.Sleep(30*time.Second - time.Since(down))
	if got := a.names(); !slices.Equal(got, want) {
		t.Errorf("targets changed during the outage: %q, want %q", got, want)
	}
	if d := b.stop(t); d > 5*time.Second {
		t.Errorf("Watch took %s to stop during the outage, want < 5 s", d)
	} else {
		t.Logf("stopped %s into the outage in %s", time.Since(down).Round(time.Second), d.Round(time.Millisecond))
	}

	if err := cluster.StartAPI(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	waitLog(t, logs, `level=INFO msg="discovery: source recovered; its targets are current again"`, 90*time.Second)
	t.Logf("recovery logged %s after the API was ready again", time.Since(up).Round(time.Second))
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("a restart was reported as a permission problem:\n%s", logs)
	}
	// The watch works again: a change is seen.
	if err := cluster.Admin.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// After a restart the reflector's watch typically ends at once with 410
	// Gone and it relists after its backoff, which the outage grew to up to
	// a minute: the view is stale (and reported so) until then.
	a.waitForWithin(t, "drop the deleted service", equal(), 90*time.Second)
	waitSynced(t, h, 90*time.Second)
}

func waitSynced(t *testing.T, h *targets.Health, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		js := h.Jobs()
		if len(js) == 1 && js[0].Synced {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not synced within %s: %+v", limit, js)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitLog(t *testing.T, logs *lockedLog, line string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(logs.String(), line) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s:\n%s", line, limit, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Mesh over the real API: the probers are the Ready agent pods the agent's
// ServiceAccount lists cluster-wide; backends all on one node are probed
// from the others, and from their own node once too few others remain; an
// agent being deleted (deletionTimestamp set, the pod still there) hands
// its share on; a node without an agent probes nothing.
func TestRealAPIMeshProbersAreAgents(t *testing.T) {
	cluster := shared.Get(t)
	agent := agentClient(t, cluster)
	admin := cluster.Admin
	ns := cluster.Namespace(t, "mesh")
	ctx := t.Context()
	sel := "connprobe-mesh-test=" + ns // other tests' pods must not count
	a, b, c, d := "a-"+ns, "b-"+ns, "c-"+ns, "d-"+ns

	for _, n := range []string{a, b, c} {
		p, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "agent-" + n[:1], Labels: map[string]string{"connprobe-mesh-test": ns}},
			Spec:       corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "agent", Image: "example.invalid/agent"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.250.8.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ready := true
	var eps []discoveryv1.Endpoint
	for i, pod := range []string{"cart-x", "cart-y"} {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.250.8.%d", 10+i)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: ns},
			NodeName:   &a,
		})
	}
	if _, err := admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "cart-1", Labels: map[string]string{discoveryv1.LabelServiceName: "cart"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	both := equal(fmt.Sprintf("endpoint/%s/cart/cart-x:8080 10.250.8.10:8080", ns),
		fmt.Sprintf("endpoint/%s/cart/cart-y:8080 10.250.8.11:8080", ns))

	cfg := Config{Role: RoleEndpoints, Namespaces: []string{ns}, Mesh: Mesh{PeersPerNode: 2, AgentSelector: sel}}
	srcs := map[string]*running{}
	for _, n := range []string{a, b, c, d} {
		srcs[n] = runSource(t, agent, cfg, Options{NodeName: n, Job: "t"})
	}
	srcs[b].waitFor(t, "probe both backends from b", both)
	srcs[c].waitFor(t, "probe both backends from c", both)
	for _, n := range []string{a, d} {
		r := srcs[n]
		r.waitFor(t, "synced", func([]string) bool { r.mu.Lock(); defer r.mu.Unlock(); return r.n > 0 })
		if got := r.names(); len(got) != 0 {
			t.Fatalf("%s probes %q; want nothing (home node with enough others, or no agent)", n, got)
		}
	}

	// b's agent is being deleted (no kubelet here: the pod stays with a
	// deletionTimestamp): only c is left elsewhere, so a fills the second
	// place itself.
	if err := admin.CoreV1().Pods(ns).Delete(ctx, "agent-b", metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
		t.Fatal(err)
	}
	srcs[b].waitFor(t, "empty on the leaving agent", equal())
	srcs[a].waitFor(t, "probe its own node's backends", both)
	srcs[c].waitFor(t, "keep both backends", both)
	if got := srcs[d].names(); len(got) != 0 {
		t.Fatalf("node without an agent probes %q", got)
	}
}
