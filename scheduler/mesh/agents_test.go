package mesh

import (
	"fmt"
	"slices"
	"testing"
)

// agentTarget is one discovered target: its mesh key and its home node.
type agentTarget struct{ key, home string }

// assignAgents builds the assignment the way agents do, each asking Mine
// for every target: prober -> keys it probes.
func assignAgents(ts []agentTarget, agents []string, k int) map[string][]string {
	ps := Dedupe(agents)
	out := make(map[string][]string, len(ps))
	for _, a := range ps {
		for _, t := range ts {
			if Mine(a, t.key, t.home, ps, k) {
				out[a] = append(out[a], t.key)
			}
		}
	}
	return out
}

// probersOf inverts an assignment: key -> its probers, sorted.
func probersOf(a map[string][]string) map[string][]string { return coverage(a) }

func TestBackendsAllOnOneNodeGetKProbers(t *testing.T) {
	// A Service whose three backends all sit on node-0: with "the target
	// nodes are the probers" nobody probed them (node-0 never probes itself).
	agents := []string{"node-0", "node-1", "node-2", "node-3", "node-4"}
	var ts []agentTarget
	for i := range 3 {
		ts = append(ts, agentTarget{fmt.Sprintf("endpoint/shop/cart/cart-%d:8080", i), "node-0"})
	}
	for _, k := range []int{1, 3, 4} {
		c := probersOf(assignAgents(ts, agents, k))
		for _, tg := range ts {
			got := c[tg.key]
			if len(got) != k {
				t.Fatalf("k=%d: %s probed by %v, want %d probers", k, tg.key, got, k)
			}
			if slices.Contains(got, "node-0") {
				t.Fatalf("k=%d: %s probed from its own node %v though %d others exist", k, tg.key, got, len(agents)-1)
			}
			want := Choose(tg.key, tg.home, agents, k)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("k=%d: agents chose %v, Choose says %v", k, got, want)
			}
		}
	}
}

func TestSameNodeProbesWhenTooFewOthers(t *testing.T) {
	// One agent in the cluster and the backends on its node: it probes them
	// (from its own node) rather than nobody.
	ts := []agentTarget{{"pod/a/x:80", "node-0"}, {"pod/a/y:80", "node-1"}}
	c := probersOf(assignAgents(ts, []string{"node-0"}, 3))
	if !slices.Equal(c["pod/a/x:80"], []string{"node-0"}) || !slices.Equal(c["pod/a/y:80"], []string{"node-0"}) {
		t.Fatalf("single agent: coverage %v, want node-0 probing both", c)
	}
	// Two agents, k=3: each target gets both, its home included.
	c = probersOf(assignAgents(ts, []string{"node-0", "node-1"}, 3))
	for _, tg := range ts {
		if !slices.Equal(c[tg.key], []string{"node-0", "node-1"}) {
			t.Fatalf("two agents, k=3: %s probed by %v, want both", tg.key, c[tg.key])
		}
	}
	// No agents: nobody, and no panic.
	if got := Choose("pod/a/x:80", "node-0", nil, 3); len(got) != 0 {
		t.Fatalf("no agents: Choose = %v", got)
	}
}

func TestNodeWithoutAgentIsNoProber(t *testing.T) {
	// 20 nodes, agents on 15: the 5 without an agent get no work, and every
	// node (with an agent or not) is still probed by exactly k agents.
	const k = 3
	nodes := syntheticNodes(20)
	agents := nodes[:15]
	var ts []agentTarget
	for _, n := range nodes {
		ts = append(ts, agentTarget{"node/" + n + ":9100", n})
	}
	a := assignAgents(ts, agents, k)
	for _, n := range nodes[15:] {
		if len(a[n]) != 0 {
			t.Fatalf("node %s has no agent but was given %v", n, a[n])
		}
	}
	c := probersOf(a)
	for _, tg := range ts {
		got := c[tg.key]
		if len(got) != k {
			t.Fatalf("%s probed by %v, want %d running agents", tg.key, got, k)
		}
		for _, p := range got {
			if !slices.Contains(agents, p) {
				t.Fatalf("%s probed by %s, which runs no agent", tg.key, p)
			}
			if p == tg.home {
				t.Fatalf("%s probed from its own node", tg.key)
			}
		}
	}
	// A self that is not a running agent probes nothing.
	if Mine(nodes[19], ts[0].key, ts[0].home, Dedupe(agents), k) {
		t.Fatal("Mine: a node without an agent was chosen")
	}
}

func TestAgentGoingAwayMovesOnlyItsTargets(t *testing.T) {
	const k = 3
	nodes := syntheticNodes(60)
	var ts []agentTarget
	for i := range 600 { // ten pods per node
		h := nodes[i%len(nodes)]
		ts = append(ts, agentTarget{fmt.Sprintf("pod/ns/p-%d:80", i), h})
	}
	before := probersOf(assignAgents(ts, nodes, k))
	gone := nodes[7]
	after := probersOf(assignAgents(ts, slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == gone }), k))
	moved := 0
	for _, tg := range ts {
		b, a := before[tg.key], after[tg.key]
		if len(a) != k || slices.Contains(a, gone) {
			t.Fatalf("%s after %s left: probers %v", tg.key, gone, a)
		}
		if !slices.Contains(b, gone) {
			if !slices.Equal(a, b) {
				t.Fatalf("%s was not probed by %s but its probers moved: %v -> %v", tg.key, gone, b, a)
			}
			continue
		}
		moved++
		kept := 0
		for _, p := range b {
			if slices.Contains(a, p) {
				kept++
			}
		}
		if kept != k-1 {
			t.Fatalf("%s: %v -> %v, want exactly one prober replaced", tg.key, b, a)
		}
	}
	if moved == 0 {
		t.Fatalf("%s probed nothing; the test proves nothing", gone)
	}
	t.Logf("%s left: %d of %d targets got a new prober", gone, moved, len(ts))
}

func TestChooseLoadSpreadsOverAgents(t *testing.T) {
	// 100 pods all on one node, 10 agents, k=2: the work spreads over the
	// other nine agents, not onto two of them.
	var ts []agentTarget
	for i := range 100 {
		ts = append(ts, agentTarget{fmt.Sprintf("pod/ns/p-%d:80", i), "node-0"})
	}
	agents := syntheticNodes(10)
	for i := range ts {
		ts[i].home = agents[0]
	}
	a := assignAgents(ts, agents, 2)
	if len(a[agents[0]]) != 0 {
		t.Fatalf("home agent probes %d of its own pods though 9 others exist", len(a[agents[0]]))
	}
	for _, p := range agents[1:] {
		if n := len(a[p]); n < 5 || n > 45 { // mean 22: margins for hashing
			t.Fatalf("agent %s probes %d of 100 targets, want about 22", p, n)
		}
	}
}

// BenchmarkMine is one agent's share of a node mesh: Mine for every node
// of the cluster, every node running an agent.
func BenchmarkMine(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		nodes := Dedupe(syntheticNodes(n))
		keys := make([]string, n)
		for i, nd := range nodes {
			keys[i] = "node/" + nd + ":9100"
		}
		self := nodes[n/2]
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) {
			for b.Loop() {
				for i, nd := range nodes {
					Mine(self, keys[i], nd, nodes, 3)
				}
			}
		})
	}
}
