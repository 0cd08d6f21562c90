package targets

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// DefaultVantageRefresh is how often a Vantage looks for new and vanished
// namespaces when nothing asks it to look sooner.
const DefaultVantageRefresh = 10 * time.Second

// Vantage is a Source that fans every target of Source out over the network
// namespaces of this node that Match accepts: one copy per (target,
// namespace), named "DEST from LABEL" (Namespace.Label: "pod:shop/web-1",
// "netns:blue"), with NetNS set to the namespace. The scheduler thus runs
// one loop per (job, vantage, target), and the target label stays bounded by
// the job's destinations times the node's matching namespaces.
//
// Namespaces are rediscovered every Refresh and at once after Recheck (a
// probe that reported netns_gone calls it), so a vanished namespace costs
// one netns_gone result per target before its targets are dropped.
type Vantage struct {
	// Source yields the destinations; its NetNS fields are replaced.
	Source    Source
	Discovery Discovery
	// Match selects namespaces; nil takes all (except the host's), or
	// none when Pods is set.
	Match func(Namespace) bool
	// Pods, when set, selects namespaces too: those whose pod UID (from
	// the cgroup) is in the latest set it hands on, named as it names them.
	// If it fails, the failure is logged and its last set kept.
	Pods    PodSource
	Refresh time.Duration
	Log     *slog.Logger

	recheck chan struct{}
}

// Pod is a pod as the Kubernetes API knows it.
type Pod struct{ UID, Namespace, Name string }

// PodSource hands on the complete set of selected pods whenever it changes
// (kubernetes.Pods: the pods of this node matching a label selector).
type PodSource interface {
	Run(ctx context.Context, update func([]Pod)) error
}

// NewVantage returns a Vantage over src; Match, Refresh and Log may be set
// before Run.
func NewVantage(src Source, match func(Namespace) bool) *Vantage {
	return &Vantage{Source: src, Match: match, recheck: make(chan struct{}, 1)}
}

// Recheck asks a running Vantage to rediscover the namespaces now. It never
// blocks; requests made while one is pending are merged.
func (v *Vantage) Recheck() {
	if v.recheck == nil {
		return
	}
	select {
	case v.recheck <- struct{}{}:
	default:
	}
}

// Run implements Source. It fails only when the first discovery fails (an
// unreadable /proc) or when Source fails.
func (v *Vantage) Run(ctx context.Context, update func([]probe.Target)) error {
	log := newLimitedLog(v.Log)
	refresh := v.Refresh
	if refresh <= 0 {
		refresh = DefaultVantageRefresh
	}
	recheck := v.recheck // nil (never fires) when not made by NewVantage
	var pods map[string]Pod
	nss, err := v.discover(ctx, pods)
	if ctx.Err() != nil {
		return nil // stopped while discovering: not a failure
	}
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var podSets chan []Pod
	var podsDone chan error
	if v.Pods != nil {
		podSets, podsDone = make(chan []Pod, 1), make(chan error, 1)
		go func() { // owned: waited for before Run returns
			podsDone <- v.Pods.Run(ctx, func(ps []Pod) { latest(podSets, ps) })
		}()
		defer func() {
			cancel()
			if podsDone != nil {
				<-podsDone
			}
		}()
	}
	dests := make(chan []probe.Target, 1)
	srcDone := make(chan error, 1)
	go func() { // owned: waited for before Run returns
		srcDone <- v.Source.Run(ctx, func(ts []probe.Target) { latest(dests, ts) })
	}()
	defer func() {
		cancel()
		if srcDone != nil {
			<-srcDone
		}
	}()

	var cur, last []probe.Target
	known, pushed := false, false
	push := func() {
		if !known {
			return // no destinations yet
		}
		ts := fanOut(cur, nss)
		if !pushed || !slices.EqualFunc(ts, last, sameTarget) {
			update(ts)
			last, pushed = ts, true
		}
	}
	tick := time.NewTicker(refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcDone:
			srcDone = nil
			if err != nil {
				return err
			}
			if ctx.Err() == nil {
				continue // the source is done; keep its last set
			}
			return nil
		case cur = <-dests:
			known = true
			push()
			continue
		case err := <-podsDone:
			podsDone = nil
			if err != nil && ctx.Err() == nil {
				log.Warn("vantage pods_selector failed; keeping its last set of pods", "err", err)
			}
			continue
		case ps := <-podSets:
			pods = make(map[string]Pod, len(ps))
			for _, p := range ps {
				pods[p.UID] = p
			}
		case <-tick.C:
		case <-recheck:
		}
		next, err := v.discover(ctx, pods)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("netns discovery failed; keeping the previous vantage points", "err", err)
			continue
		}
		for _, n := range nss {
			if !slices.ContainsFunc(next, func(m Namespace) bool { return m.Inode == n.Inode }) {
				log.Info("vantage point gone; its targets are dropped", "vantage", n.Label())
			}
		}
		nss = next
		push()
	}
}

// latest hands v on through a channel of capacity 1, replacing a value not
// yet received: the latest set wins.
func latest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// discover lists the namespaces Match accepts and those of pods, the
// latter named by pods (the API) rather than by discovery.
func (v *Vantage) discover(ctx context.Context, pods map[string]Pod) ([]Namespace, error) {
	all, err := v.Discovery.Discover(ctx)
	if err != nil {
		return nil, err
	}
	if v.Match == nil && v.Pods == nil {
		return all, nil
	}
	out := all[:0]
	for _, n := range all {
		if p, ok := pods[n.PodUID]; ok && n.PodUID != "" {
			n.PodNamespace, n.PodName = p.Namespace, p.Name
			out = append(out, n)
		} else if v.Match != nil && v.Match(n) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b Namespace) int { return strings.Compare(a.Label(), b.Label()) })
	return out, nil
}

// fanOut copies every destination into every namespace.
func fanOut(dests []probe.Target, nss []Namespace) []probe.Target {
	out := make([]probe.Target, 0, len(dests)*len(nss))
	for _, n := range nss {
		label := n.Label()
		for _, t := range dests {
			t.Name = t.Name + " from " + label
			t.NetNS = n.Path
			out = append(out, t)
		}
	}
	return out
}

// MatchNamed returns a Match for named namespaces (/run/netns) whose name
// matches one of the globs (path.Match syntax, "cpl-*").
func MatchNamed(patterns ...string) (func(Namespace) bool, error) {
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("netns pattern %q: %w", p, err)
		}
	}
	return func(n Namespace) bool {
		if n.Name == "" {
			return false
		}
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, n.Name); ok {
				return true
			}
		}
		return false
	}, nil
}

// MatchAny returns a Match accepting what any of ms accepts.
func MatchAny(ms ...func(Namespace) bool) func(Namespace) bool {
	return func(n Namespace) bool {
		for _, m := range ms {
			if m(n) {
				return true
			}
		}
		return false
	}
}
