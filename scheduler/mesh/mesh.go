// Package mesh chooses which peers each node probes in mesh mode, so that a
// cluster of N nodes is probed with O(N·k) series instead of O(N²).
//
// The model is rendezvous (highest-random-weight) hashing done per target:
// every node t is probed by the k other nodes p with the highest weight
// w(p, t). Each node computes, from the same list of node names, which
// targets chose it, and probes exactly those. Hence:
//
//   - every node is covered by exactly min(k, N-1) probers;
//   - no coordination is needed: every agent derives the same assignment
//     from the node list alone;
//   - when a node leaves, only the targets it probed get one new prober each
//     (the next-highest weight) and nothing else moves; when a node joins,
//     each target for which it outranks one of the current k probers swaps
//     exactly that prober for it, and the new node gets its own k probers.
//
// The obvious alternative, "each prober picks its top-k peers", bounds what a
// node probes but not how often it is probed: some nodes would be covered
// by many probers and others by none.
//
// A prober's own load (how many targets chose it) averages k but varies
// (roughly Poisson with mean k); Stats reports it.
//
// Probers, Targets and Assignment are the model where the nodes are both the
// probers and the targets. Choose and Mine are what agents use: the probers
// are the running agents, which need not be all the nodes, and each target
// has a home node whose agent probes it only when fewer than k others run.
package mesh

import (
	"cmp"
	"fmt"
	"slices"
)

// Weight is the rendezvous weight of prober for target: the splitmix64
// finalizer over the 64-bit FNV-1a hash of the prober's name xor-ed with the
// mixed hash of the target's name. It depends only on the two names, so it is
// the same on every machine and architecture, which is what lets agents agree
// without talking; hashing each name once makes a weight a few nanoseconds.
func Weight(prober, target string) uint64 {
	return pair(nameHash(prober), nameHash(target))
}

func pair(p, t uint64) uint64 { return mix(p ^ mix(t+0x9e3779b97f4a7c15)) }

// nameHash is 64-bit FNV-1a.
func nameHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finalizer: every input bit affects every output bit.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// better reports whether prober a (weight wa) beats prober b (weight wb) for
// the same target: higher weight, ties broken by name so the order is total.
func better(wa uint64, a string, wb uint64, b string) bool {
	if wa != wb {
		return wa > wb
	}
	return a < b
}

// Probers returns the nodes that probe target: the min(k, N-1) nodes other
// than target with the highest weight, best first. nodes may contain
// duplicates and target itself; both are ignored.
func Probers(target string, nodes []string, k int) []string {
	if k <= 0 {
		return nil
	}
	ht := nameHash(target)
	type cand struct {
		w    uint64
		name string
	}
	top := make([]cand, 0, k+1) // best first
	for _, n := range dedupe(nodes) {
		if n == target {
			continue
		}
		c := cand{pair(nameHash(n), ht), n}
		i := len(top)
		for i > 0 && better(c.w, c.name, top[i-1].w, top[i-1].name) {
			i--
		}
		if i >= k {
			continue
		}
		top = slices.Insert(top, i, c)
		if len(top) > k {
			top = top[:k]
		}
	}
	out := make([]string, len(top))
	for i, c := range top {
		out[i] = c.name
	}
	return out
}

// Targets returns the nodes self probes, sorted: every target among nodes
// (other than self) whose k best probers include self. It returns nil when
// self is not in nodes: a node that is not part of the mesh cannot take a
// share without breaking the exactly-k coverage of the others.
//
// Cost: O(N²) weights in the worst case, a few nanoseconds each (about 3 ms
// for 1000 nodes); it stops counting a target as soon as k probers outrank
// self.
func Targets(self string, nodes []string, k int) []string {
	if k <= 0 {
		return nil
	}
	nodes = dedupe(nodes)
	si, ok := slices.BinarySearch(nodes, self)
	if !ok {
		return nil
	}
	hs := make([]uint64, len(nodes))
	for i, n := range nodes {
		hs[i] = nameHash(n)
	}
	var out []string
	for ti, t := range nodes {
		if ti == si {
			continue
		}
		mt := mix(hs[ti] + 0x9e3779b97f4a7c15)
		w := mix(hs[si] ^ mt)
		n := 0
		for pi, p := range nodes {
			if pi == ti || pi == si {
				continue
			}
			if better(mix(hs[pi]^mt), p, w, self) {
				if n++; n >= k {
					break
				}
			}
		}
		if n < k {
			out = append(out, t)
		}
	}
	return out
}

// Assignment returns, for every node, the targets it probes (Targets for
// each node, computed in one pass over Probers). O(N²·k); meant for
// tests, `probe` debugging output and capacity planning, not for agents.
func Assignment(nodes []string, k int) map[string][]string {
	nodes = dedupe(nodes)
	out := make(map[string][]string, len(nodes))
	for _, n := range nodes {
		out[n] = nil
	}
	for _, t := range nodes {
		for _, p := range Probers(t, nodes, k) {
			out[p] = append(out[p], t)
		}
	}
	return out
}

// Stats summarises an assignment: how many targets a prober has.
type Stats struct {
	Nodes     int
	Series    int // (prober, target) pairs: the number of probed paths
	MinLoad   int
	MaxLoad   int
	MeanLoad  float64
	Coverage  int // probers per target, the same for every target
	Uncovered int // targets with fewer than Coverage probers (always 0)
}

// String renders the stats on one line.
func (s Stats) String() string {
	return fmt.Sprintf("%d nodes, %d paths, coverage %d, load min %d mean %.2f max %d",
		s.Nodes, s.Series, s.Coverage, s.MinLoad, s.MeanLoad, s.MaxLoad)
}

// Summarize computes Stats for an assignment made with k.
func Summarize(a map[string][]string, k int) Stats {
	s := Stats{Nodes: len(a), Coverage: min(k, max(len(a)-1, 0)), MinLoad: -1}
	covered := make(map[string]int, len(a))
	for _, ts := range a {
		s.Series += len(ts)
		if s.MinLoad < 0 || len(ts) < s.MinLoad {
			s.MinLoad = len(ts)
		}
		s.MaxLoad = max(s.MaxLoad, len(ts))
		for _, t := range ts {
			covered[t]++
		}
	}
	if s.MinLoad < 0 {
		s.MinLoad = 0
	}
	if len(a) > 0 {
		s.MeanLoad = float64(s.Series) / float64(len(a))
	}
	for n := range a {
		if covered[n] < s.Coverage {
			s.Uncovered++
		}
	}
	return s
}

// dedupe returns the names sorted and without duplicates or empty names, in
// a new slice.
func dedupe(nodes []string) []string {
	out := slices.Clone(nodes)
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.SortFunc(out, cmp.Compare[string])
	return slices.Compact(out)
}

// Agents: probers that are not the targets.
//
// In a cluster the probers are the running agents (one per node, named by
// their node) and the targets are whatever a job discovers: nodes, pods,
// endpoints, each living on some node, its home. Choose and Mine cover that
// case without the holes of "the target nodes are the probers": a node
// without an agent never counts as a prober, and a target whose home is the
// only place with backends is still probed.

// Choose returns the probers of one target, best first: the min(k,
// len(probers)) probers with the highest weight for key, taking home (the
// prober on the target's own node) only when fewer than k others exist, so a
// target is probed from elsewhere when it can be and from its own node
// rather than not at all. probers may contain duplicates and empty names;
// both are ignored.
func Choose(key, home string, probers []string, k int) []string {
	if k <= 0 {
		return nil
	}
	probers = dedupe(probers)
	hk := nameHash(key)
	type cand struct {
		w    uint64
		name string
	}
	cs := make([]cand, 0, len(probers))
	hasHome := false
	for _, p := range probers {
		if p == home {
			hasHome = true
			continue
		}
		cs = append(cs, cand{pair(nameHash(p), hk), p})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if better(a.w, a.name, b.w, b.name) {
			return -1
		}
		return 1
	})
	out := make([]string, 0, min(k, len(probers)))
	for _, c := range cs[:min(k, len(cs))] {
		out = append(out, c.name)
	}
	if len(out) < k && hasHome {
		out = append(out, home)
	}
	return out
}

// Mine reports whether self is among Choose(key, home, probers, k) without
// allocating: what an agent asks of each target. probers must be sorted and
// without duplicates or empty names (Dedupe).
func Mine(self, key, home string, probers []string, k int) bool {
	if k <= 0 {
		return false
	}
	if _, ok := slices.BinarySearch(probers, self); !ok {
		return false
	}
	others := len(probers)
	if _, ok := slices.BinarySearch(probers, home); ok {
		others--
	}
	if self == home {
		return others < k // home is taken only to fill up
	}
	if others <= k {
		return true
	}
	hk := nameHash(key)
	w := pair(nameHash(self), hk)
	n := 0
	for _, p := range probers {
		if p == self || p == home {
			continue
		}
		if better(pair(nameHash(p), hk), p, w, self) {
			if n++; n >= k {
				return false
			}
		}
	}
	return true
}

// Dedupe returns names sorted and without duplicates or empty names, in a
// new slice: the form Mine wants its probers in.
func Dedupe(names []string) []string { return dedupe(names) }
