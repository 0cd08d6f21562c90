// Package kubernetes discovers probe targets from the Kubernetes API with
// client-go informers: a watch, not polling. A Source keeps a local cache of
// the objects its role needs (Services, EndpointSlices, Pods or Nodes),
// filtered by namespace and label selector, and whenever the cache changes it
// computes the whole target list again and hands it on if it differs from
// the last one. Handing on complete lists (not add/remove events) is what
// makes it resync-safe: a periodic resync, a relist after a dropped watch or
// an update that changes nothing probed yields the same list and is dropped.
//
// Roles:
//
//	service    every TCP port of every Service's ClusterIP(s); with node_ports
//	           also each NodePort on this node's address
//	endpoints  every ready endpoint of every EndpointSlice, per TCP port
//	pod        running pods (optionally only those on this node: the pods
//	           whose network namespaces an agent can enter), per TCP port
//	node       each node's InternalIP at a given port
//
// A Source implements targets.Source (Run); Watch hands on the richer
// Target with the namespace, service, pod and node each target came from.
//
// In mesh mode (peers_per_node k, roles node, pod and endpoints) the probers
// are the running agents: the nodes with a Running, Ready agent pod (label
// selector mesh.agent_selector, any namespace), watched like the targets.
// Each agent keeps only the targets that chose it by rendezvous hashing
// (package scheduler/mesh, Mine): every target is probed by min(k, agents)
// agents, from other nodes than its own when there are enough of them.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	clientset "k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/mesh"
	"github.com/connprobe/connprobe/scheduler/targets"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes/spec"
)

// DefaultResync is how often informers replay their cache; the Source
// ignores replays that change nothing.
const DefaultResync = 10 * time.Minute

// Config says what to discover: the `kubernetes` target block of the config
// file (package spec, which configs imports without client-go).
type Config = spec.Config

// The roles.
const (
	RoleService   = spec.RoleService
	RoleEndpoints = spec.RoleEndpoints
	RolePod       = spec.RolePod
	RoleNode      = spec.RoleNode
)

// Mesh is the mesh-mode block of a Config.
type Mesh = spec.Mesh

// Options are the facts about where the agent runs, from the environment
// (the DaemonSet sets NODE_NAME and HOST_IP with the downward API).
type Options struct {
	// NodeName is the node this agent runs on; needed by this_node and mesh.
	NodeName string
	// NodeIP is this node's address, where NodePorts are probed.
	NodeIP netip.Addr
	// NetNS, when set, is the network namespace every target is probed
	// from (the job's netns).
	NetNS string
	// Resync is the informers' resync period; 0: DefaultResync.
	Resync time.Duration
	// Logger receives watch errors; nil: slog.Default().
	Logger *slog.Logger
	// Health is told the outcome of every list and watch request (as
	// source "kubernetes" of Job); nil: a Health of its own that logs to
	// Logger, so a blind source is always reported.
	Health *targets.Health
	Job    string
}

// Target is a discovered target with the Kubernetes object it came from.
type Target struct {
	probe.Target
	// Namespace, Service, Pod and Node name the object; empty when they do
	// not apply. They are bounded identities, fit for labels.
	Namespace string
	Service   string
	Pod       string
	Node      string
	// PodUID is the pod's UID (role pod, endpoints backed by a pod): what
	// pod-netns discovery matches a network namespace to.
	PodUID string
}

// Source watches the API and produces target lists.
type Source struct {
	client   clientset.Interface
	cfg      Config
	opts     Options
	selector labels.Selector
	agents   labels.Selector // mesh: the agent pods
	port     uint16          // role node
}

// New checks cfg and returns a Source; it does not contact the API. With a
// nil client, Watch makes one from cfg.Kubeconfig (NewClient) when it
// starts, so that a config can be checked (`probe lint`) away from any
// cluster; likewise the node facts opts must carry for this_node, mesh and
// node_ports are checked when Watch starts.
func New(client clientset.Interface, cfg Config, opts Options) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	sel, _ := labels.Parse(cfg.LabelSelector)
	if opts.Resync == 0 {
		opts.Resync = DefaultResync
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Health == nil {
		opts.Health = &targets.Health{Log: opts.Logger}
	}
	agents, _ := labels.Parse(cfg.Mesh.Agents())
	s := &Source{client: client, cfg: cfg, opts: opts, selector: sel, agents: agents}
	if cfg.Role == RoleNode {
		p, _ := strconv.Atoi(cfg.Ports[0])
		s.port = uint16(p)
	}
	return s, nil
}

// ready checks what the environment must provide and makes the client.
func (s *Source) ready() error {
	if (s.cfg.ThisNode || s.cfg.Mesh.PeersPerNode > 0) && s.opts.NodeName == "" {
		return errors.New("kubernetes: this_node and mesh need the node name (set NODE_NAME from spec.nodeName, see deploy/daemonset.yaml)")
	}
	if s.cfg.NodePorts && !s.opts.NodeIP.IsValid() {
		return errors.New("kubernetes: node_ports needs this node's address (set HOST_IP from status.hostIP, see deploy/daemonset.yaml)")
	}
	if s.client == nil {
		c, err := NewClient(s.cfg.Kubeconfig)
		if err != nil {
			return err
		}
		s.client = c
	}
	return nil
}

// NewClient returns a clientset: from the kubeconfig file when one is named,
// else the in-cluster service account, else $KUBECONFIG or ~/.kube/config.
func NewClient(kubeconfig string) (clientset.Interface, error) {
	kubeconfig, err := spec.ExpandHome(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: kubeconfig %w", err)
	}
	var rc *rest.Config
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	}
	if kubeconfig != "" || errors.Is(err, rest.ErrNotInCluster) {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = kubeconfig
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	}
	if clientcmd.IsEmptyConfig(err) {
		return nil, errors.New("kubernetes: not in a cluster and no kubeconfig: set kubeconfig in the block or $KUBECONFIG")
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client config: %w", err)
	}
	rc.UserAgent = "connprobe"
	c, err := clientset.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client: %w", err)
	}
	return c, nil
}

// lister lists the cached objects of one namespace.
type lister struct {
	inf  cache.SharedIndexInformer
	list func() ([]Target, error)
}

// Run implements targets.Source: Watch, handing on the probe targets.
func (s *Source) Run(ctx context.Context, update func([]probe.Target)) error {
	return s.Watch(ctx, func(ts []Target) {
		out := make([]probe.Target, len(ts))
		for i, t := range ts {
			out[i] = t.Target
		}
		update(out)
	})
}

var _ targets.Source = (*Source)(nil)

// describe names the source in logs.
func (s *Source) describe() string {
	d := "role=" + s.cfg.Role
	if len(s.cfg.Namespaces) > 0 {
		d += " namespaces=" + strings.Join(s.cfg.Namespaces, ",")
	}
	if s.cfg.LabelSelector != "" {
		d += " label_selector=" + s.cfg.LabelSelector
	}
	return d
}

// Watch watches until ctx is done, calling update with the complete, sorted
// target list once the caches have synced and again whenever it changes. It
// returns nil when ctx is done, or an error if the source cannot start (no
// client config, a node fact missing). update is called from Watch's
// goroutine, never concurrently. Every list and watch request's outcome
// goes to opts.Health; Watch returns within a bounded time of ctx ending,
// also while the API server is unreachable.
func (s *Source) Watch(ctx context.Context, update func([]Target)) error {
	st := s.opts.Health.Start(ctx, s.opts.Job, "kubernetes", s.describe())
	if err := s.ready(); err != nil {
		st.Error(err)
		return err
	}
	namespaces := s.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	set := newInformerSet(st)
	var listers []lister
	for _, ns := range dedupe(namespaces) {
		l, err := s.newLister(ns, set)
		if err != nil {
			return err
		}
		listers = append(listers, l)
	}
	var agents func() ([]string, error)
	if s.cfg.Mesh.PeersPerNode > 0 {
		list, err := s.agentLister(set)
		if err != nil {
			return err
		}
		agents = list
	}
	return follow(ctx, set, func() ([]Target, error) { return s.targets(listers, agents) }, targetEqual, update)
}

// targets computes the whole list from the caches; in mesh mode agents
// lists the probers.
func (s *Source) targets(listers []lister, agents func() ([]string, error)) ([]Target, error) {
	var all []Target
	for _, l := range listers {
		ts, err := l.list()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: list: %w", err)
		}
		all = append(all, ts...)
	}
	slices.SortFunc(all, func(a, b Target) int { return strings.Compare(a.Name, b.Name) })
	// The same endpoint can appear in two slices while it moves.
	all = slices.CompactFunc(all, func(a, b Target) bool { return a.Name == b.Name })
	if agents != nil {
		probers, err := agents()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: list agents: %w", err)
		}
		k := s.cfg.Mesh.PeersPerNode
		all = slices.DeleteFunc(all, func(t Target) bool {
			return !mesh.Mine(s.opts.NodeName, t.Name, t.Node, probers, k)
		})
	}
	return all, nil
}

// agentLister watches the agent pods in every namespace and lists the
// probers: the nodes of the Running, Ready agent pods not being deleted,
// sorted and without duplicates (mesh.Dedupe).
func (s *Source) agentLister(set *informerSet) (func() ([]string, error), error) {
	c := s.client.CoreV1().Pods(metav1.NamespaceAll)
	sel := s.cfg.Mesh.Agents()
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = sel }
	inf := newInformer(newListWatch("pods", c.List, c.Watch, tweak, set.report()), &corev1.Pod{}, s.opts.Resync)
	lis := listersv1.NewPodLister(inf.GetIndexer())
	if err := set.add(inf, s.opts.Logger.With("source", "kubernetes", "role", s.cfg.Role, "agents", sel)); err != nil {
		return nil, err
	}
	return func() ([]string, error) {
		objs, err := lis.List(s.agents)
		var nodes []string
		for _, p := range objs {
			if runningAgent(p) {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
		return mesh.Dedupe(nodes), err
	}, nil
}

// runningAgent reports whether an agent pod counts as a prober: scheduled,
// Running, Ready and not being deleted. An agent that is starting, failing
// its readiness probe or shutting down leaves its share to the others.
func runningAgent(p *corev1.Pod) bool {
	if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// tweak sets the server-side selectors of every list and watch.
func (s *Source) tweak(o *metav1.ListOptions) {
	o.LabelSelector = s.cfg.LabelSelector
	if s.cfg.ThisNode {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", s.opts.NodeName).String()
	}
}

func (s *Source) newLister(ns string, set *informerSet) (lister, error) {
	report := set.report()
	var l lister
	switch s.cfg.Role {
	case RoleService:
		c := s.client.CoreV1().Services(ns)
		l.inf = newInformer(newListWatch("services", c.List, c.Watch, s.tweak, report), &corev1.Service{}, s.opts.Resync)
		lis := listersv1.NewServiceLister(l.inf.GetIndexer())
		l.list = func() ([]Target, error) {
			objs, err := lis.Services(ns).List(s.selector)
			var ts []Target
			for _, o := range objs {
				ts = append(ts, s.serviceTargets(o)...)
			}
			return ts, err
		}
	case RoleEndpoints:
		c := s.client.DiscoveryV1().EndpointSlices(ns)
		l.inf = newInformer(newListWatch("endpointslices", c.List, c.Watch, s.tweak, report), &discoveryv1.EndpointSlice{}, s.opts.Resync)
		lis := discoverylisters.NewEndpointSliceLister(l.inf.GetIndexer())
		l.list = func() ([]Target, error) {
			objs, err := lis.EndpointSlices(ns).List(s.selector)
			var ts []Target
			for _, o := range objs {
				ts = append(ts, s.endpointTargets(o)...)
			}
			return ts, err
		}
	case RolePod:
		c := s.client.CoreV1().Pods(ns)
		l.inf = newInformer(newListWatch("pods", c.List, c.Watch, s.tweak, report), &corev1.Pod{}, s.opts.Resync)
		lis := listersv1.NewPodLister(l.inf.GetIndexer())
		l.list = func() ([]Target, error) {
			objs, err := lis.Pods(ns).List(s.selector)
			var ts []Target
			for _, o := range objs {
				if s.cfg.ThisNode && o.Spec.NodeName != s.opts.NodeName {
					continue // the field selector did this server-side
				}
				ts = append(ts, s.podTargets(o)...)
			}
			return ts, err
		}
	case RoleNode:
		c := s.client.CoreV1().Nodes()
		l.inf = newInformer(newListWatch("nodes", c.List, c.Watch, s.tweak, report), &corev1.Node{}, s.opts.Resync)
		lis := listersv1.NewNodeLister(l.inf.GetIndexer())
		l.list = func() ([]Target, error) {
			objs, err := lis.List(s.selector)
			var ts []Target
			for _, o := range objs {
				if t, ok := s.nodeTarget(o); ok {
					ts = append(ts, t)
				}
			}
			return ts, err
		}
	}
	if err := set.add(l.inf, s.opts.Logger.With("source", "kubernetes", "role", s.cfg.Role, "namespace", ns)); err != nil {
		return lister{}, err
	}
	return l, nil
}

// wantPort reports whether a port with this name and number is kept.
func (s *Source) wantPort(name string, number int32, proto corev1.Protocol) bool {
	if proto != "" && proto != corev1.ProtocolTCP {
		return false
	}
	if number < 1 || number > 65535 {
		return false
	}
	if len(s.cfg.Ports) == 0 {
		return true
	}
	n := strconv.Itoa(int(number))
	return slices.ContainsFunc(s.cfg.Ports, func(p string) bool { return p == n || (name != "" && p == name) })
}

func (s *Source) serviceTargets(svc *corev1.Service) []Target {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var ts []Target
	for _, p := range svc.Spec.Ports {
		if !s.wantPort(p.Name, p.Port, p.Protocol) {
			continue
		}
		for i, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil { // "None": headless
				continue
			}
			name := fmt.Sprintf("service/%s/%s:%d", svc.Namespace, svc.Name, p.Port)
			if i > 0 { // dual stack: the secondary family gets its own target
				name += "/" + family(a)
			}
			ts = append(ts, s.target(name, a, p.Port, svc.Namespace, func(t *Target) { t.Service = svc.Name }))
		}
		if s.cfg.NodePorts && p.NodePort != 0 {
			name := fmt.Sprintf("nodeport/%s/%s:%d", svc.Namespace, svc.Name, p.NodePort)
			ts = append(ts, s.target(name, s.opts.NodeIP, p.NodePort, svc.Namespace, func(t *Target) {
				t.Service, t.Node = svc.Name, s.opts.NodeName
			}))
		}
	}
	return ts
}

func (s *Source) endpointTargets(es *discoveryv1.EndpointSlice) []Target {
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return nil // FQDN slices
	}
	svc := es.Labels[discoveryv1.LabelServiceName]
	var ts []Target
	for _, e := range es.Endpoints {
		// A nil ready condition means unknown, to be read as ready (API doc).
		if e.Conditions.Ready != nil && !*e.Conditions.Ready || len(e.Addresses) == 0 {
			continue
		}
		a, err := netip.ParseAddr(e.Addresses[0]) // the others are fungible (API doc)
		if err != nil {
			continue
		}
		var pod, uid, node string
		if r := e.TargetRef; r != nil && r.Kind == "Pod" {
			pod, uid = r.Name, string(r.UID)
		}
		if e.NodeName != nil {
			node = *e.NodeName
		}
		who := pod
		if who == "" {
			who = a.String()
		}
		for _, p := range es.Ports {
			var pname string
			var proto corev1.Protocol
			if p.Name != nil {
				pname = *p.Name
			}
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if p.Port == nil || !s.wantPort(pname, *p.Port, proto) {
				continue
			}
			name := fmt.Sprintf("endpoint/%s/%s/%s:%d", es.Namespace, svc, who, *p.Port)
			ts = append(ts, s.target(name, a, *p.Port, es.Namespace, func(t *Target) {
				t.Service, t.Pod, t.PodUID, t.Node = svc, pod, uid, node
			}))
		}
	}
	return ts
}

func (s *Source) podTargets(p *corev1.Pod) []Target {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || p.Spec.HostNetwork {
		return nil // a host-network pod has no namespace of its own
	}
	a, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil {
		return nil
	}
	var ts []Target
	seen := map[int32]bool{}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if seen[cp.ContainerPort] || !s.wantPort(cp.Name, cp.ContainerPort, cp.Protocol) {
				continue
			}
			seen[cp.ContainerPort] = true
			name := fmt.Sprintf("pod/%s/%s:%d", p.Namespace, p.Name, cp.ContainerPort)
			ts = append(ts, s.target(name, a, cp.ContainerPort, p.Namespace, func(t *Target) {
				t.Pod, t.PodUID, t.Node = p.Name, string(p.UID), p.Spec.NodeName
			}))
		}
	}
	return ts
}

func (s *Source) nodeTarget(n *corev1.Node) (Target, bool) {
	for _, na := range n.Status.Addresses {
		if na.Type != corev1.NodeInternalIP {
			continue
		}
		a, err := netip.ParseAddr(na.Address)
		if err != nil {
			continue
		}
		name := fmt.Sprintf("node/%s:%d", n.Name, s.port)
		return s.target(name, a, int32(s.port), "", func(t *Target) { t.Node = n.Name }), true
	}
	return Target{}, false
}

func (s *Source) target(name string, a netip.Addr, port int32, ns string, set func(*Target)) Target {
	t := Target{
		Target:    probe.Target{Name: name, Scheme: "tcp", Host: a.String(), Port: uint16(port), NetNS: s.opts.NetNS},
		Namespace: ns,
	}
	set(&t)
	return t
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

func targetEqual(a, b Target) bool {
	return a.Name == b.Name && a.Host == b.Host && a.Port == b.Port && a.NetNS == b.NetNS &&
		a.Namespace == b.Namespace && a.Service == b.Service && a.Pod == b.Pod &&
		a.Node == b.Node && a.PodUID == b.PodUID
}

func dedupe(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// changeSignal returns a channel that holds one pending "something changed"
// and the informer handler that fills it: adds, deletes and real updates —
// a resync's replay of an unchanged object (same resourceVersion) is skipped.
func changeSignal() (<-chan struct{}, cache.ResourceEventHandlerFuncs) {
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	return changed, cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(metav1.Object)
			n, ok2 := newObj.(metav1.Object)
			if ok1 && ok2 && o.GetResourceVersion() != "" && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			poke()
		},
		DeleteFunc: func(any) { poke() },
	}
}
