package targets

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
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
	// Match selects namespaces; nil takes all (except the host's).
	Match   func(Namespace) bool
	Refresh time.Duration
	Log     *slog.Logger

	recheck chan struct{}
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
	log := v.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	refresh := v.Refresh
	if refresh <= 0 {
		refresh = DefaultVantageRefresh
	}
	recheck := v.recheck // nil (never fires) when not made by NewVantage
	nss, err := v.discover()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dests := make(chan []probe.Target, 1)
	srcDone := make(chan error, 1)
	go func() { // owned: waited for before Run returns
		srcDone <- v.Source.Run(ctx, func(ts []probe.Target) {
			for { // latest set wins
				select {
				case dests <- ts:
					return
				default:
				}
				select {
				case <-dests:
				default:
				}
			}
		})
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
		case <-tick.C:
		case <-recheck:
		}
		next, err := v.discover()
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

func (v *Vantage) discover() ([]Namespace, error) {
	all, err := v.Discovery.Discover()
	if err != nil {
		return nil, err
	}
	if v.Match == nil {
		return all, nil
	}
	return slices.DeleteFunc(all, func(n Namespace) bool { return !v.Match(n) }), nil
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
