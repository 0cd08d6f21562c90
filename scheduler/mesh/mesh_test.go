package mesh

import (
	"fmt"
	"slices"
	"testing"
)

// syntheticNodes returns n node names shaped like real cloud node names.
func syntheticNodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ip-10-%d-%d-%d.eu-west-1.compute.internal", i/65536, (i/256)%256, i%256)
	}
	return out
}

// coverage inverts an assignment: target -> its probers, sorted.
func coverage(a map[string][]string) map[string][]string {
	c := make(map[string][]string, len(a))
	for p, ts := range a {
		for _, t := range ts {
			c[t] = append(c[t], p)
		}
	}
	for t := range c {
		slices.Sort(c[t])
	}
	return c
}

// assignBySelf builds the assignment the way agents do: each node calls
// Targets for itself, knowing only the node list.
func assignBySelf(nodes []string, k int) map[string][]string {
	a := make(map[string][]string, len(nodes))
	for _, n := range nodes {
		a[n] = Targets(n, nodes, k)
	}
	return a
}

func TestEveryNodeCoveredByExactlyK(t *testing.T) {
	nodes := syntheticNodes(1000)
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprint("k=", k), func(t *testing.T) {
			// k=3 the way agents compute it (each node for itself), k=1 in
			// one pass (Assignment), which the comparison below ties to
			// Probers all the same.
			a := Assignment(nodes, k)
			if k == 3 {
				a = assignBySelf(nodes, k)
			}
			c := coverage(a)
			for _, n := range nodes {
				if got := len(c[n]); got != k {
					t.Fatalf("node %s covered by %d probers %v, want %d", n, got, c[n], k)
				}
				if slices.Contains(c[n], n) {
					t.Fatalf("node %s probes itself", n)
				}
				want := Probers(n, nodes, k)
				slices.Sort(want)
				if !slices.Equal(c[n], want) {
					t.Fatalf("node %s: agents chose probers %v, Probers says %v", n, c[n], want)
				}
			}
			s := Summarize(a, k)
			if s.Series != k*len(nodes) || s.Uncovered != 0 {
				t.Fatalf("stats %v: want %d paths, none uncovered", s, k*len(nodes))
			}
			t.Logf("%v", s)
		})
	}
}

func TestRemovingANodeMovesOnlyWhatItCovered(t *testing.T) {
	const k = 3
	nodes := syntheticNodes(1000)
	before := Assignment(nodes, k)
	for _, gone := range []string{nodes[0], nodes[417], nodes[999]} {
		rest := slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == gone })
		after := Assignment(rest, k)
		cb, ca := coverage(before), coverage(after)
		moved := 0
		for _, tgt := range rest {
			b, a := cb[tgt], ca[tgt]
			if !slices.Contains(b, gone) {
				if !slices.Equal(a, b) {
					t.Errorf("remove %s: target %s was not probed by it, yet its probers changed %v -> %v", gone, tgt, b, a)
				}
				continue
			}
			moved++
			lost := slices.DeleteFunc(slices.Clone(b), func(p string) bool { return slices.Contains(a, p) })
			added := slices.DeleteFunc(slices.Clone(a), func(p string) bool { return slices.Contains(b, p) })
			if !slices.Equal(lost, []string{gone}) || len(added) != 1 {
				t.Errorf("remove %s: target %s probers %v -> %v, want only %s replaced by one node", gone, tgt, b, a, gone)
			}
		}
		if moved != len(before[gone]) {
			t.Errorf("remove %s: %d targets changed prober, it probed %d", gone, moved, len(before[gone]))
		}
		// From the probers' side: each survivor's list changes only by
		// dropping the removed node and picking up targets the removed node
		// used to probe.
		for _, p := range rest {
			for _, tgt := range after[p] {
				if !slices.Contains(before[p], tgt) && !slices.Contains(before[gone], tgt) {
					t.Errorf("remove %s: %s picked up %s, which %s did not probe", gone, p, tgt, gone)
				}
			}
			for _, tgt := range before[p] {
				if !slices.Contains(after[p], tgt) && tgt != gone {
					t.Errorf("remove %s: %s dropped %s", gone, p, tgt)
				}
			}
		}
	}
}

func TestJoiningNodeDisplacesOneProberPerTarget(t *testing.T) {
	const k = 3
	nodes := syntheticNodes(500)
	joined := append(slices.Clone(nodes), "ip-10-9-9-9.eu-west-1.compute.internal")
	cb, ca := coverage(Assignment(nodes, k)), coverage(Assignment(joined, k))
	for _, tgt := range nodes {
		b, a := cb[tgt], ca[tgt]
		if slices.Equal(a, b) {
			continue
		}
		added := slices.DeleteFunc(slices.Clone(a), func(p string) bool { return slices.Contains(b, p) })
		lost := slices.DeleteFunc(slices.Clone(b), func(p string) bool { return slices.Contains(a, p) })
		if !slices.Equal(added, []string{joined[len(joined)-1]}) || len(lost) != 1 {
			t.Errorf("target %s probers %v -> %v, want the new node to displace exactly one", tgt, b, a)
		}
	}
	if got := len(ca[joined[len(joined)-1]]); got != k {
		t.Errorf("new node covered by %d, want %d", got, k)
	}
}

func TestSmallMeshes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []string
		k     int
		want  map[string][]string
	}{
		{"empty", nil, 3, map[string][]string{}},
		{"single node probes nobody", []string{"a"}, 3, map[string][]string{"a": nil}},
		{"k above N-1 is a full mesh", []string{"a", "b", "c"}, 5,
			map[string][]string{"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a", "b"}}},
		{"duplicates and empty names ignored", []string{"b", "a", "", "b"}, 1,
			map[string][]string{"a": {"b"}, "b": {"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := assignBySelf(dedupe(tc.nodes), tc.k)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for n, w := range tc.want {
				if !slices.Equal(got[n], w) {
					t.Errorf("node %s: got %v, want %v", n, got[n], w)
				}
			}
		})
	}
	if got := Targets("stranger", []string{"a", "b"}, 1); got != nil {
		t.Errorf("a node outside the list got targets %v", got)
	}
	if got := Targets("a", []string{"a", "b"}, 0); got != nil {
		t.Errorf("k=0 got targets %v", got)
	}
}

func TestWeightIsStable(t *testing.T) {
	// Agents on different machines and versions must agree: pin values.
	for _, tc := range []struct {
		p, t string
		want uint64
	}{
		{"node-a", "node-b", 0x9428eb9da4836984},
		{"node-b", "node-a", 0xba07374b4090123f},
	} {
		if got := Weight(tc.p, tc.t); got != tc.want {
			t.Errorf("Weight(%q, %q) = %#x, want %#x", tc.p, tc.t, got, tc.want)
		}
	}
	if Weight("ab", "c") == Weight("a", "bc") {
		t.Error(`Weight("ab","c") == Weight("a","bc"): the separator is missing`)
	}
}

func BenchmarkTargets(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		nodes := syntheticNodes(n)
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) {
			for b.Loop() {
				Targets(nodes[n/2], nodes, 3)
			}
		})
	}
}
