//go:build kubernetes

package deploy

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kubectl apply (client-side, as the README says: kubectl apply -k
// deploy/) twice: the second apply must report every object "unchanged".
// A field the manifests leave out but the API server defaults inside a list
// (a ServiceMonitor relabeling's action: replace) makes kubectl's three-way
// merge send the list again, and every apply says "configured" — an
// apply-in-CI loop then never settles. And the second apply changes no
// object at all (every resourceVersion stays).
//
// One exception in kubectl's reporting, not in the objects: a
// PodDisruptionBudget's selector has patchStrategy replace, and kubectl's
// strategic-merge patch re-sends it on every apply, so kubectl says
// "configured" for the PDB although the object stays the same (its
// resourceVersion is checked like every other).
func TestRealAPIApplyTwiceUnchanged(t *testing.T) {
	cluster := kube.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := cluster.InstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cluster.AdminKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s\n%s", args, err, out, stderr.String())
		}
		return string(out)
	}
	versions := func() string {
		t.Helper()
		return kubectl("get", "-k", ".", "-o", `jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{"\n"}{end}`)
	}
	first := kubectl("apply", "-k", ".")
	if n := strings.Count(first, "\n"); n < 10 {
		t.Fatalf("first apply touched %d objects:\n%s", n, first)
	}
	before := versions()
	second := kubectl("apply", "-k", ".")
	if after := versions(); after != before {
		t.Errorf("the second apply changed objects: resourceVersions before\n%s\nafter\n%s", before, after)
	}
	var changed []string
	for _, l := range strings.Split(strings.TrimSpace(second), "\n") {
		if !strings.HasSuffix(l, " unchanged") && !strings.HasPrefix(l, "poddisruptionbudget.policy/") {
			changed = append(changed, l)
		}
	}
	if len(changed) > 0 {
		t.Errorf("second apply reported changes (want every object unchanged):\n%s", strings.Join(changed, "\n"))
	}
}
