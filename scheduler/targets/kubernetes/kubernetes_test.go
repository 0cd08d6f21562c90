package kubernetes

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/mesh"
)

// watcher runs a Source and records every list it hands on.
type watcher struct {
	t       *testing.T
	updates chan []Target
	mu      sync.Mutex
	calls   int
}

func start(t *testing.T, client *fake.Clientset, cfg Config, opts Options) *watcher {
	t.Helper()
	s, err := New(client, cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w := &watcher{t: t, updates: make(chan []Target, 100)}
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(ts []Target) {
			w.mu.Lock()
			w.calls++
			w.mu.Unlock()
			w.updates <- ts
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return w
}

// names renders a list as "name=host:port" lines for comparison.
func names(ts []Target) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s=%s", t.Name, t.HostPort()))
	}
	return out
}

// expect waits for a list equal to want (as names), failing after a timeout
// with the last list seen.
func (w *watcher) expect(want ...string) []Target {
	w.t.Helper()
	if want == nil {
		want = []string{}
	}
	var last []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ts := <-w.updates:
			last = names(ts)
			if slices.Equal(last, want) {
				return ts
			}
		case <-deadline:
			w.t.Fatalf("targets never became\n  %s\nlast list:\n  %s", strings.Join(want, "\n  "), strings.Join(last, "\n  "))
		}
	}
}

// quiet asserts no new list is handed on for a while.
func (w *watcher) quiet(d time.Duration) {
	w.t.Helper()
	select {
	case ts := <-w.updates:
		w.t.Fatalf("unexpected update %v", names(ts))
	case <-time.After(d):
	}
}

func ptr[T any](v T) *T { return &v }

func service(ns, name string, lbl map[string]string, ips []string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ips[0], ClusterIPs: ips, Ports: ports},
	}
}

func TestServicesAppearChangeAndDisappear(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(
		service("shop", "web", map[string]string{"app": "web"}, []string{"10.96.0.10"},
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		// Filtered out: wrong label, wrong namespace, headless, ExternalName.
		service("shop", "cache", map[string]string{"app": "cache"}, []string{"10.96.0.11"}, corev1.ServicePort{Port: 6379}),
		service("other", "web", map[string]string{"app": "web"}, []string{"10.96.0.12"}, corev1.ServicePort{Port: 80}),
		service("shop", "web-headless", map[string]string{"app": "web"}, []string{"None"}, corev1.ServicePort{Port: 80}),
	)
	w := start(t, client, Config{Role: RoleService, Namespaces: []string{"shop"}, LabelSelector: "app=web"}, Options{})
	w.expect("service/shop/web:80=10.96.0.10:80")

	// Dual stack and a NodePort-type service with a second port appear.
	svcs := client.CoreV1().Services("shop")
	api := service("shop", "api", map[string]string{"app": "web"}, []string{"10.96.0.20", "fd00::20"},
		corev1.ServicePort{Name: "grpc", Port: 9090, NodePort: 30090})
	api.Spec.Type = corev1.ServiceTypeNodePort
	if _, err := svcs.Create(ctx, api, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect(
		"service/shop/api:9090=10.96.0.20:9090",
		"service/shop/api:9090/ipv6=[fd00::20]:9090",
		"service/shop/web:80=10.96.0.10:80",
	)

	// A port change follows.
	web, _ := svcs.Get(ctx, "web", metav1.GetOptions{})
	web.Spec.Ports[0].Port = 8080
	if _, err := svcs.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect(
		"service/shop/api:9090=10.96.0.20:9090",
		"service/shop/api:9090/ipv6=[fd00::20]:9090",
		"service/shop/web:8080=10.96.0.10:8080",
	)

	// A relabel out of the selector removes it; deletion removes the other.
	web.Labels = map[string]string{"app": "old"}
	if _, err := svcs.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect("service/shop/api:9090=10.96.0.20:9090", "service/shop/api:9090/ipv6=[fd00::20]:9090")
	if err := svcs.Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect()
}

func TestNodePortsOnThisNode(t *testing.T) {
	svc := service("shop", "web", nil, []string{"10.96.0.10"}, corev1.ServicePort{Name: "http", Port: 80, NodePort: 30080})
	svc.Spec.Type = corev1.ServiceTypeNodePort
	client := fake.NewClientset(svc)
	w := start(t, client, Config{Role: RoleService, NodePorts: true},
		Options{NodeName: "node-a", NodeIP: netip.MustParseAddr("192.0.2.7")})
	ts := w.expect("nodeport/shop/web:30080=192.0.2.7:30080", "service/shop/web:80=10.96.0.10:80")
	if ts[0].Node != "node-a" || ts[0].Service != "web" || ts[0].Namespace != "shop" {
		t.Errorf("nodeport target identity = %+v", ts[0])
	}
}

func TestPortsFilterByNameOrNumber(t *testing.T) {
	client := fake.NewClientset(service("shop", "web", nil, []string{"10.96.0.10"},
		corev1.ServicePort{Name: "http", Port: 80},
		corev1.ServicePort{Name: "https", Port: 443},
		corev1.ServicePort{Name: "metrics", Port: 9100}))
	w := start(t, client, Config{Role: RoleService, Ports: []string{"https", "9100"}}, Options{})
	w.expect("service/shop/web:443=10.96.0.10:443", "service/shop/web:9100=10.96.0.10:9100")
}

func slice(ns, svc, name string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, "app": svc,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("http"), Port: ptr[int32](8080), Protocol: ptr(corev1.ProtocolTCP)},
			{Name: ptr("dns"), Port: ptr[int32](53), Protocol: ptr(corev1.ProtocolUDP)},
		},
	}
}

func endpoint(ip, pod, node string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ready},
		NodeName:   ptr(node),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: "shop", UID: types.UID("uid-" + pod)},
	}
}

func TestEndpointSlicesFollowReadiness(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(
		slice("shop", "web", "web-abc",
			endpoint("10.244.1.7", "web-1", "node-a", ptr(true)),
			endpoint("10.244.2.8", "web-2", "node-b", nil), // unknown reads as ready
			endpoint("10.244.3.9", "web-3", "node-c", ptr(false))),
		slice("shop", "db", "db-xyz", endpoint("10.244.1.20", "db-0", "node-a", ptr(true))),
	)
	w := start(t, client, Config{Role: RoleEndpoints, LabelSelector: "kubernetes.io/service-name=web"}, Options{})
	ts := w.expect(
		"endpoint/shop/web/web-1:8080=10.244.1.7:8080",
		"endpoint/shop/web/web-2:8080=10.244.2.8:8080",
	)
	if got := ts[0]; got.Pod != "web-1" || got.PodUID != "uid-web-1" || got.Node != "node-a" || got.Service != "web" {
		t.Errorf("endpoint identity = %+v", got)
	}

	// web-3 becomes ready, web-1 not ready.
	es, _ := client.DiscoveryV1().EndpointSlices("shop").Get(ctx, "web-abc", metav1.GetOptions{})
	es.Endpoints[0].Conditions.Ready = ptr(false)
	es.Endpoints[2].Conditions.Ready = ptr(true)
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect(
		"endpoint/shop/web/web-2:8080=10.244.2.8:8080",
		"endpoint/shop/web/web-3:8080=10.244.3.9:8080",
	)
	// A second slice of the same service adds endpoints; deleting the first removes its own.
	if _, err := client.DiscoveryV1().EndpointSlices("shop").Create(ctx,
		slice("shop", "web", "web-def", endpoint("10.244.4.4", "web-4", "node-d", ptr(true))), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect(
		"endpoint/shop/web/web-2:8080=10.244.2.8:8080",
		"endpoint/shop/web/web-3:8080=10.244.3.9:8080",
		"endpoint/shop/web/web-4:8080=10.244.4.4:8080",
	)
	if err := client.DiscoveryV1().EndpointSlices("shop").Delete(ctx, "web-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect("endpoint/shop/web/web-4:8080=10.244.4.4:8080")
}

func pod(ns, name, node, ip string, phase corev1.PodPhase, lbl map[string]string, ports ...int32) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: phase, PodIP: ip},
	}
	for _, port := range ports {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port})
	}
	return p
}

func TestPodsOnThisNode(t *testing.T) {
	ctx := t.Context()
	app := map[string]string{"app": "kafka"}
	client := fake.NewClientset(
		pod("data", "kafka-0", "node-a", "10.244.1.5", corev1.PodRunning, app, 9092),
		pod("data", "kafka-1", "node-b", "10.244.2.5", corev1.PodRunning, app, 9092), // other node
		pod("data", "zk-0", "node-a", "10.244.1.6", corev1.PodRunning, map[string]string{"app": "zk"}, 2181),
		pod("web", "kafka-x", "node-a", "10.244.1.7", corev1.PodRunning, app, 9092), // other namespace
		pod("data", "kafka-2", "node-a", "", corev1.PodPending, app, 9092),
	)
	w := start(t, client, Config{Role: RolePod, Namespaces: []string{"data"}, LabelSelector: "app=kafka", ThisNode: true},
		Options{NodeName: "node-a"})
	ts := w.expect("pod/data/kafka-0:9092=10.244.1.5:9092")
	if ts[0].PodUID != "uid-kafka-0" || ts[0].Node != "node-a" || ts[0].Pod != "kafka-0" {
		t.Errorf("pod identity = %+v", ts[0])
	}
	// The pending pod starts running and gets its IP.
	pods := client.CoreV1().Pods("data")
	p, _ := pods.Get(ctx, "kafka-2", metav1.GetOptions{})
	p.Status.Phase, p.Status.PodIP = corev1.PodRunning, "10.244.1.9"
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect("pod/data/kafka-0:9092=10.244.1.5:9092", "pod/data/kafka-2:9092=10.244.1.9:9092")
	// A terminating pod leaves at once; a deleted one too.
	p, _ = pods.Get(ctx, "kafka-0", metav1.GetOptions{})
	p.DeletionTimestamp = ptr(metav1.Now())
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect("pod/data/kafka-2:9092=10.244.1.9:9092")
	if err := pods.Delete(ctx, "kafka-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect()
}

func TestSeveralNamespaces(t *testing.T) {
	client := fake.NewClientset(
		service("a", "s", nil, []string{"10.96.0.1"}, corev1.ServicePort{Port: 80}),
		service("b", "s", nil, []string{"10.96.0.2"}, corev1.ServicePort{Port: 80}),
		service("c", "s", nil, []string{"10.96.0.3"}, corev1.ServicePort{Port: 80}),
	)
	w := start(t, client, Config{Role: RoleService, Namespaces: []string{"b", "a", "a"}}, Options{})
	w.expect("service/a/s:80=10.96.0.1:80", "service/b/s:80=10.96.0.2:80")
}

func TestResyncAndNoOpUpdatesHandOnNothing(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(service("shop", "web", nil, []string{"10.96.0.10"}, corev1.ServicePort{Port: 80}))
	// A 1 s resync (client-go's minimum) replays the cache during quiet.
	w := start(t, client, Config{Role: RoleService}, Options{Resync: time.Second})
	w.expect("service/shop/web:80=10.96.0.10:80")
	// An update that changes nothing probed (an annotation) is not handed on.
	svcs := client.CoreV1().Services("shop")
	web, _ := svcs.Get(ctx, "web", metav1.GetOptions{})
	web.Annotations = map[string]string{"note": "x"}
	if _, err := svcs.Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.quiet(2500 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.calls != 1 {
		t.Errorf("update called %d times, want 1", w.calls)
	}
}

func node(name, ip string, lbl map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
	}
}

// agentPod is a connprobe agent pod on node (label of deploy/daemonset.yaml).
func agentPod(node string, ready bool) *corev1.Pod {
	p := pod("connprobe", "connprobe-agent-"+node, node, "10.9.0.1", corev1.PodRunning,
		map[string]string{"app.kubernetes.io/name": "connprobe-agent"})
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	return p
}

// meshWant is what the agent on self should hand on: the lines of all whose
// target self is among the mesh.Choose probers of.
func meshWant(self string, all map[string]Target, agents []string, k int) []string {
	var out []string
	for name, t := range all {
		if slices.Contains(mesh.Choose(name, t.Node, agents, k), self) {
			out = append(out, fmt.Sprintf("%s=%s", name, t.HostPort()))
		}
	}
	slices.Sort(out)
	return out
}

func TestNodeMeshProbersAreRunningAgents(t *testing.T) {
	ctx := t.Context()
	const k = 2
	var nodes []string
	client := fake.NewClientset()
	all := map[string]Target{}
	for i := range 12 {
		n := fmt.Sprintf("node-%02d", i)
		nodes = append(nodes, n)
		ip := fmt.Sprintf("192.0.2.%d", i+1)
		if _, err := client.CoreV1().Nodes().Create(ctx, node(n, ip, map[string]string{"pool": "a"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		all["node/"+n+":9100"] = Target{Target: probe.Target{Host: ip, Port: 9100}, Node: n}
	}
	// A node outside the selector is no target.
	if _, err := client.CoreV1().Nodes().Create(ctx, node("gpu-0", "192.0.2.100", map[string]string{"pool": "gpu"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Agents run on node-00..node-08; node-09's agent is not ready yet;
	// node-10 and node-11 have none. Only the nine count as probers.
	agents := nodes[:9]
	for i, n := range nodes[:10] {
		if _, err := client.CoreV1().Pods("connprobe").Create(ctx, agentPod(n, i < 9), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Role: RoleNode, LabelSelector: "pool=a", Ports: []string{"9100"}, Mesh: Mesh{PeersPerNode: k}}
	ws := map[string]*watcher{}
	got := map[string][]Target{}
	for _, n := range nodes {
		ws[n] = start(t, client, cfg, Options{NodeName: n})
		got[n] = ws[n].expect(meshWant(n, all, agents, k)...)
	}
	// Every node, with an agent or without, is probed by exactly k running
	// agents; nodes without a (ready) agent probe nothing.
	cover := map[string][]string{}
	for n, ts := range got {
		if !slices.Contains(agents, n) && len(ts) != 0 {
			t.Fatalf("%s runs no ready agent but probes %v", n, names(ts))
		}
		for _, tg := range ts {
			if tg.Node == n {
				t.Fatalf("%s probes itself though %d other agents run", n, len(agents)-1)
			}
			cover[tg.Name] = append(cover[tg.Name], n)
		}
	}
	for name := range all {
		if len(cover[name]) != k {
			t.Fatalf("%s probed by %v, want %d agents", name, cover[name], k)
		}
	}

	// An agent going away: the targets it probed move to other agents, the
	// others stay put.
	gone := agents[3]
	if len(got[gone]) == 0 {
		t.Fatalf("%s probes nothing in this mesh; pick other names", gone)
	}
	if err := client.CoreV1().Pods("connprobe").Delete(ctx, "connprobe-agent-"+gone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(slices.Clone(agents), func(n string) bool { return n == gone })
	follow := func(agents []string) {
		t.Helper()
		for _, n := range nodes {
			// An agent whose list does not change is handed nothing new.
			if want := meshWant(n, all, agents, k); !slices.Equal(names(got[n]), append([]string{}, want...)) {
				got[n] = ws[n].expect(want...)
			}
		}
	}
	follow(rest)
	// node-09's agent becomes ready: it joins as a prober.
	if _, err := client.CoreV1().Pods("connprobe").Update(ctx, agentPod("node-09", true), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	joined := append(slices.Clone(rest), "node-09")
	slices.Sort(joined)
	if meshWant("node-09", all, joined, k) == nil {
		t.Fatal("node-09 probes nothing after joining; pick other names")
	}
	follow(joined)
}

func TestEndpointMeshBackendsAllOnOneNode(t *testing.T) {
	// A Service whose backends all sit on node-0: before, only node-0 was
	// a "prober" for them and it never probes itself, so nobody probed them.
	ctx := t.Context()
	client := fake.NewClientset(
		slice("shop", "cart", "cart-1",
			endpoint("10.1.0.10", "cart-a", "node-0", nil),
			endpoint("10.1.0.11", "cart-b", "node-0", nil),
			endpoint("10.1.0.12", "cart-c", "node-0", nil)),
	)
	for _, n := range []string{"node-0", "node-1", "node-2"} {
		if _, err := client.CoreV1().Pods("connprobe").Create(ctx, agentPod(n, true), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	everything := []string{
		"endpoint/shop/cart/cart-a:8080=10.1.0.10:8080",
		"endpoint/shop/cart/cart-b:8080=10.1.0.11:8080",
		"endpoint/shop/cart/cart-c:8080=10.1.0.12:8080",
	}
	// k=2 with two other agents: both probe every backend, node-0 none.
	cfg := Config{Role: RoleEndpoints, Ports: []string{"8080"}, Mesh: Mesh{PeersPerNode: 2}}
	start(t, client, cfg, Options{NodeName: "node-1"}).expect(everything...)
	start(t, client, cfg, Options{NodeName: "node-2"}).expect(everything...)
	start(t, client, cfg, Options{NodeName: "node-0"}).expect()
	// k=3 with two other agents: node-0 fills the third place itself.
	cfg.Mesh.PeersPerNode = 3
	start(t, client, cfg, Options{NodeName: "node-0"}).expect(everything...)
}

func TestMeshAgentSelector(t *testing.T) {
	// A custom agent label: pods with the default label do not count.
	ctx := t.Context()
	client := fake.NewClientset(node("n1", "192.0.2.1", nil), node("n2", "192.0.2.2", nil))
	for _, n := range []string{"n1", "n2"} {
		p := agentPod(n, true)
		p.Namespace, p.Labels = "mon", map[string]string{"app": "my-prober"}
		if _, err := client.CoreV1().Pods("mon").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Role: RoleNode, Ports: []string{"9100"}, Mesh: Mesh{PeersPerNode: 1}}
	start(t, client, cfg, Options{NodeName: "n1"}).expect() // default label: no agents
	cfg.Mesh.AgentSelector = "app=my-prober"
	start(t, client, cfg, Options{NodeName: "n1"}).expect("node/n2:9100=192.0.2.2:9100")
}

func TestWatchNeedsNodeFacts(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Role: "pod", ThisNode: true}, "NODE_NAME"},
		{Config{Role: "node", Ports: []string{"9100"}, Mesh: Mesh{PeersPerNode: 3}}, "NODE_NAME"},
		{Config{Role: "service", NodePorts: true}, "HOST_IP"},
	} {
		s, err := New(fake.NewClientset(), tc.cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Watch(t.Context(), func([]Target) { t.Error("update called") })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestNoClusterNoKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	s, err := New(nil, Config{Role: "service"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Watch(t.Context(), func([]Target) { t.Error("update called") })
	if err == nil || !strings.Contains(err.Error(), "no kubeconfig") {
		t.Errorf("got %v, want the no-kubeconfig error", err)
	}
}

func TestKubeconfigOutsideACluster(t *testing.T) {
	// A kubeconfig pointing at a loopback API server that does not exist:
	// the client is built (nothing is contacted until Watch lists).
	path := t.TempDir() + "/kubeconfig"
	if err := os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(path); err != nil {
		t.Fatalf("NewClient(%s): %v", path, err)
	}
	if _, err := NewClient(path + ".missing"); err == nil {
		t.Error("a missing kubeconfig gave no error")
	}
}

func TestRunHandsOnProbeTargets(t *testing.T) {
	client := fake.NewClientset(service("shop", "web", nil, []string{"10.96.0.10"}, corev1.ServicePort{Port: 80}))
	s, err := New(client, Config{Role: RoleService}, Options{NetNS: "/run/netns/x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan []probe.Target, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(ts []probe.Target) { got <- ts; cancel() }) }()
	defer func() {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case ts := <-got:
		want := probe.Target{Name: "service/shop/web:80", Scheme: "tcp", Host: "10.96.0.10", Port: 80, NetNS: "/run/netns/x"}
		if len(ts) != 1 || ts[0] != want {
			t.Fatalf("got %+v, want [%+v]", ts, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no targets")
	}
}
