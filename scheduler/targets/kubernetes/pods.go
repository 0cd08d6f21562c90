package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	clientset "k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"

	"github.com/connprobe/connprobe/scheduler/targets"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes/spec"
)

// Pods is a targets.PodSource for a vantage block's pods_selector: it
// watches the pods scheduled on this node (field selector spec.nodeName,
// label selector applied by the server) and hands on their UIDs, namespaces
// and names, which the Vantage joins by UID with the network namespaces it
// discovers. Host-network pods and pods that have finished are left out:
// they have no namespace of their own to probe from.
type Pods struct {
	client   clientset.Interface
	sel      spec.PodSelector
	opts     Options
	selector labels.Selector
}

var _ targets.PodSource = (*Pods)(nil)

var errNoNodeName = errors.New("kubernetes: pods_selector needs the node name (set NODE_NAME from spec.nodeName, see deploy/daemonset.yaml)")

// NewPods checks sel and returns a Pods; it does not contact the API. With
// a nil client, Run makes one from sel.Kubeconfig (NewClient); opts.NodeName
// is checked when Run starts.
func NewPods(client clientset.Interface, sel spec.PodSelector, opts Options) (*Pods, error) {
	if err := sel.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes: pods_selector: %w", err)
	}
	ls, _ := labels.Parse(sel.LabelSelector)
	if opts.Resync == 0 {
		opts.Resync = DefaultResync
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Health == nil {
		opts.Health = &targets.Health{Log: opts.Logger}
	}
	return &Pods{client: client, sel: sel, opts: opts, selector: ls}, nil
}

// Run implements targets.PodSource: it watches until ctx is done, calling
// update with the complete set (sorted by UID) once the caches have synced
// and whenever it changes. Without a node name or a client it fails at once.
func (p *Pods) Run(ctx context.Context, update func([]targets.Pod)) error {
	st := p.opts.Health.Start(ctx, p.opts.Job, "kubernetes", "vantage pods_selector")
	if p.opts.NodeName == "" {
		st.Error(errNoNodeName)
		return errNoNodeName
	}
	if p.client == nil {
		c, err := NewClient(p.sel.Kubeconfig)
		if err != nil {
			st.Error(err)
			return err
		}
		p.client = c
	}
	namespaces := p.sel.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	type nsLister struct {
		ns     string
		lister listersv1.PodLister
	}
	tweak := func(o *metav1.ListOptions) {
		o.LabelSelector = p.sel.LabelSelector
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", p.opts.NodeName).String()
	}
	set := newInformerSet(st)
	var listers []nsLister
	for _, ns := range dedupe(namespaces) {
		c := p.client.CoreV1().Pods(ns)
		inf := newInformer(newListWatch("pods", c.List, c.Watch, tweak, set.report()), &corev1.Pod{}, p.opts.Resync)
		if err := set.add(inf, p.opts.Logger.With("source", "vantage pods_selector", "namespace", ns)); err != nil {
			return err
		}
		listers = append(listers, nsLister{ns, listersv1.NewPodLister(inf.GetIndexer())})
	}
	pods := func() ([]targets.Pod, error) {
		var set []targets.Pod
		for _, l := range listers {
			objs, err := l.lister.Pods(l.ns).List(p.selector)
			if err != nil {
				return nil, fmt.Errorf("kubernetes: list pods: %w", err)
			}
			for _, o := range objs {
				if o.Spec.NodeName != p.opts.NodeName || o.Spec.HostNetwork || o.UID == "" ||
					o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
					continue // (the field selector did the node server-side)
				}
				set = append(set, targets.Pod{UID: strings.ToLower(string(o.UID)), Namespace: o.Namespace, Name: o.Name})
			}
		}
		slices.SortFunc(set, func(a, b targets.Pod) int { return strings.Compare(a.UID, b.UID) })
		return slices.Compact(set), nil
	}
	return follow(ctx, set, pods, func(a, b targets.Pod) bool { return a == b }, update)
}
