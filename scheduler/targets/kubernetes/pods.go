package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

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
	return &Pods{client: client, sel: sel, opts: opts, selector: ls}, nil
}

// Run implements targets.PodSource: it watches until ctx is done, calling
// update with the complete set (sorted by UID) once the caches have synced
// and whenever it changes. Without a node name or a client it fails at once.
func (p *Pods) Run(ctx context.Context, update func([]targets.Pod)) error {
	if p.opts.NodeName == "" {
		return errors.New("kubernetes: pods_selector needs the node name (set NODE_NAME from spec.nodeName, see deploy/daemonset.yaml)")
	}
	if p.client == nil {
		c, err := NewClient(p.sel.Kubeconfig)
		if err != nil {
			return err
		}
		p.client = c
	}
	changed, handler := changeSignal()
	namespaces := p.sel.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	type nsLister struct {
		ns     string
		lister listersv1.PodLister
	}
	var factories []informers.SharedInformerFactory
	var listers []nsLister
	defer func() {
		for _, f := range factories {
			f.Shutdown() // informers stop with ctx; this waits for them
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before Shutdown: stop the informers
	for _, ns := range dedupe(namespaces) {
		opts := []informers.SharedInformerOption{
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.LabelSelector = p.sel.LabelSelector
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", p.opts.NodeName).String()
			}),
		}
		if ns != metav1.NamespaceAll {
			opts = append(opts, informers.WithNamespace(ns))
		}
		f := informers.NewSharedInformerFactoryWithOptions(p.client, p.opts.Resync, opts...)
		pi := f.Core().V1().Pods()
		inf := pi.Informer()
		log := p.opts.Logger.With("source", "vantage pods_selector", "namespace", ns)
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			if apierrors.IsForbidden(err) {
				log.Error("kubernetes: watch forbidden: the service account needs get/list/watch on pods (deploy/rbac.yaml)", "err", err)
				return
			}
			log.Warn("kubernetes: watch failed, retrying", "err", err)
		}); err != nil {
			return fmt.Errorf("kubernetes: %w", err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("kubernetes: %w", err)
		}
		factories = append(factories, f)
		listers = append(listers, nsLister{ns, pi.Lister()})
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	for _, f := range factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("kubernetes: %s cache did not sync", typ)
			}
		}
	}
	var last []targets.Pod
	first := true
	for {
		var set []targets.Pod
		for _, l := range listers {
			objs, err := l.lister.Pods(l.ns).List(p.selector)
			if err != nil {
				return fmt.Errorf("kubernetes: list pods: %w", err)
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
		set = slices.Compact(set)
		if first || !slices.Equal(set, last) {
			update(set)
			last, first = set, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}
