//go:build kubernetes

package deploy

// deploy/ against a real kube-apiserver (internal/kubetest): the kustomize
// output is accepted by server-side apply (with the prometheus-operator
// CRDs generated from the operator's Go types), and the agent's
// ServiceAccount, with its real token, can do exactly what discovery
// needs.

import (
	"context"
	"os/exec"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"

	"github.com/connprobe/connprobe/internal/kubetest"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { kubetest.Main(m, &kube) }

func TestRealAPIServerSideApply(t *testing.T) {
	cluster := kube.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.Command("kubectl", "kustomize", ".").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/: %v", err)
	}
	if err := cluster.InstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	applied, err := cluster.Apply(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range applied {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
		"DaemonSet", "Deployment", "Service", "ServiceMonitor", "PrometheusRule"} {
		if kinds[k] == 0 {
			t.Errorf("no %s applied (applied: %v)", k, kinds)
		}
	}
	// Applying again is a no-op the server accepts (SSA is idempotent).
	if _, err := cluster.Apply(ctx, out); err != nil {
		t.Errorf("second apply: %v", err)
	}
}

// The agent's real token: allowed exactly list/watch on services, pods,
// nodes and endpointslices; everything else (get included: informers
// never use it) denied.
func TestRealAPIAgentLeastPrivilege(t *testing.T) {
	cluster := kube.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	token, err := cluster.Agent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := clientset.NewForConfig(cluster.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	can := func(group, resource, sub, verb string) bool {
		t.Helper()
		r, err := agent.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Group: group, Resource: resource, Subresource: sub, Verb: verb, Namespace: "default",
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review %s %s/%s: %v", verb, resource, sub, err)
		}
		return r.Status.Allowed
	}
	read := []string{"list", "watch"}
	writes := []string{"get", "create", "update", "patch", "delete", "deletecollection"}
	for _, r := range []struct{ group, resource string }{{"", "services"}, {"", "pods"}, {"", "nodes"}, {"discovery.k8s.io", "endpointslices"}} {
		for _, v := range read {
			if !can(r.group, r.resource, "", v) {
				t.Errorf("agent may not %s %s: discovery needs it", v, r.resource)
			}
		}
		for _, v := range writes {
			if can(r.group, r.resource, "", v) {
				t.Errorf("agent may %s %s", v, r.resource)
			}
		}
	}
	for _, d := range []struct{ group, resource, sub, verb string }{
		{"", "secrets", "", "get"}, {"", "secrets", "", "list"}, {"", "secrets", "", "watch"},
		{"", "configmaps", "", "list"}, {"", "endpoints", "", "list"},
		{"", "pods", "exec", "create"}, {"", "pods", "log", "get"}, {"", "pods", "status", "update"},
		{"", "nodes", "proxy", "get"}, {"", "services", "proxy", "get"}, {"", "serviceaccounts", "token", "create"},
		{"apps", "daemonsets", "", "list"}, {"rbac.authorization.k8s.io", "clusterroles", "", "list"},
		{"", "namespaces", "", "create"}, {"", "pods", "eviction", "create"},
	} {
		if can(d.group, d.resource, d.sub, d.verb) {
			t.Errorf("agent may %s %s/%s", d.verb, d.resource, d.sub)
		}
	}
	// And the real requests: discovery's list works, a secret is refused.
	if _, err := agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("list pods as the agent: %v", err)
	}
	if _, err := agent.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("list endpointslices as the agent: %v", err)
	}
	if _, err := agent.CoreV1().Secrets("connprobe").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the agent listed secrets")
	}
}
