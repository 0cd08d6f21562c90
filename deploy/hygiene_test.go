package deploy

import (
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workloads are the pod templates deploy/ ships.
func workloads(t *testing.T, objs []object) map[string]*corev1.PodTemplateSpec {
	t.Helper()
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.DaemonSet:
			out["DaemonSet "+v.Name] = &v.Spec.Template
		case *appsv1.Deployment:
			out["Deployment "+v.Name] = &v.Spec.Template
		}
	}
	if len(out) < 2 {
		t.Fatalf("%d workloads", len(out))
	}
	return out
}

var releaseTag = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// Every image is the release's, by tag, in the manifests and after
// kustomize (whose images: entry is what an overlay changes): never
// :latest or untagged, which a node resolves to whatever it pulled last.
func TestImagesArePinnedToTheRelease(t *testing.T) {
	k := readKustomization(t)
	if len(k.Images) != 1 || k.Images[0].Name != "ghcr.io/connprobe/connprobe" || !releaseTag.MatchString(k.Images[0].NewTag) {
		t.Fatalf("kustomization images: %+v, want one entry for ghcr.io/connprobe/connprobe with newTag vX.Y.Z", k.Images)
	}
	want := "ghcr.io/connprobe/connprobe:" + k.Images[0].NewTag
	for name, pt := range workloads(t, manifests(t)) {
		for _, c := range pt.Spec.Containers {
			if c.Image != want {
				t.Errorf("%s container %s: image %q, want %q (kustomization.yaml images:)", name, c.Name, c.Image, want)
			}
		}
	}
	out, err := exec.Command("kubectl", "kustomize", ".").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	built, err := decodeAll("kustomize output", out)
	if err != nil {
		t.Fatal(err)
	}
	for name, pt := range workloads(t, built) {
		for _, c := range pt.Spec.Containers {
			if c.Image != want {
				t.Errorf("kustomize output: %s container %s: image %q, want %q", name, c.Name, c.Image, want)
			}
		}
	}
}

// goMemLimit parses GOMEMLIMIT the way the Go runtime does (a number of
// bytes with an optional B, KiB, MiB, GiB or TiB suffix).
func goMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("GOMEMLIMIT %q: not a positive size", s)
	}
	return n * mult, nil
}

// GOMEMLIMIT leaves the cgroup headroom: the Go soft limit at most 90% of
// the container's memory limit (stacks, binary pages and socket buffers
// count against the limit too), and a literal, not the limit itself.
func TestGOMEMLIMITLeavesHeadroom(t *testing.T) {
	ds := find[*appsv1.DaemonSet](t, manifests(t), "connprobe-agent")
	c := ds.Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 {
		t.Fatal("no GOMEMLIMIT")
	}
	if c.Env[i].ValueFrom != nil {
		t.Fatalf("GOMEMLIMIT from %+v: the downward API gives the limit itself, leaving the GC no headroom", c.Env[i].ValueFrom)
	}
	soft, err := goMemLimit(c.Env[i].Value)
	if err != nil {
		t.Fatal(err)
	}
	hard := c.Resources.Limits[corev1.ResourceMemory]
	if soft*10 > hard.Value()*9 || soft*10 < hard.Value()*7 {
		t.Errorf("GOMEMLIMIT %s is %.0f%% of limits.memory %s: want 70-90%%", c.Env[i].Value, 100*float64(soft)/float64(hard.Value()), hard.String())
	}
	if got, _ := goMemLimit("256Mi"); got != 0 {
		t.Error("goMemLimit accepted a Kubernetes quantity the Go runtime rejects")
	}
}

// Both workloads run on Linux nodes only (a Windows node in the cluster
// would otherwise get an agent pod that can never start).
func TestWorkloadsSelectLinuxNodes(t *testing.T) {
	for name, pt := range workloads(t, manifests(t)) {
		if pt.Spec.NodeSelector[corev1.LabelOSStable] != "linux" {
			t.Errorf("%s: nodeSelector %v, want kubernetes.io/os: linux", name, pt.Spec.NodeSelector)
		}
	}
}

// A drain never takes every responder at once.
func TestResponderHasADisruptionBudget(t *testing.T) {
	objs := manifests(t)
	d := find[*appsv1.Deployment](t, objs, "connprobe-responder")
	pdb := find[*policyv1.PodDisruptionBudget](t, objs, "connprobe-responder")
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Fatalf("PodDisruptionBudget selector %v does not select the responder's pods (%v)", pdb.Spec.Selector, err)
	}
	replicas := int(*d.Spec.Replicas)
	var allowed int
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		allowed, err = intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, replicas, true)
	case pdb.Spec.MinAvailable != nil:
		var minAvail int
		minAvail, err = intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, replicas, true)
		allowed = replicas - minAvail
	}
	if err != nil || allowed < 1 || allowed >= replicas {
		t.Errorf("PodDisruptionBudget allows %d of %d responders down (%v): want at least 1 (drains must proceed) and fewer than all", allowed, replicas, err)
	}
}

// The ServiceMonitor and the PrometheusRule carry the label a default
// kube-prometheus-stack Prometheus selects them by.
func TestMonitoringObjectsCarryTheReleaseLabel(t *testing.T) {
	objs := manifests(t)
	sm := find[*ServiceMonitor](t, objs, "connprobe")
	pr := find[*PrometheusRule](t, objs, "connprobe")
	for kind, l := range map[string]map[string]string{"ServiceMonitor": sm.Labels, "PrometheusRule": pr.Labels} {
		if l["release"] == "" {
			t.Errorf("%s has no release label: kube-prometheus-stack's default selector ignores it", kind)
		}
	}
	if sm.Labels["release"] != pr.Labels["release"] {
		t.Errorf("release labels differ: ServiceMonitor %q, PrometheusRule %q", sm.Labels["release"], pr.Labels["release"])
	}
}

// The kubelet's probes reach /healthz and /-/ready on the health
// listener (--web.health-listen-address), which needs no TLS or auth.
func TestAgentProbesUseTheHealthListener(t *testing.T) {
	ds := find[*appsv1.DaemonSet](t, manifests(t), "connprobe-agent")
	c := ds.Spec.Template.Spec.Containers[0]
	var addr string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--web.health-listen-address="); ok {
			addr = v
		}
	}
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("no --web.health-listen-address in %v", c.Args)
	}
	i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return strconv.Itoa(int(p.ContainerPort)) == port })
	if i < 0 {
		t.Fatalf("no container port for the health listener %s", addr)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/-/ready"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want {
			t.Errorf("%s probe %+v: want httpGet %s", name, p, want)
			continue
		}
		if hp := p.HTTPGet.Port; hp.StrVal != c.Ports[i].Name && hp.IntValue() != int(c.Ports[i].ContainerPort) {
			t.Errorf("%s probe on port %s, want the health listener's (%s)", name, hp.String(), c.Ports[i].Name)
		}
		if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s probe scheme %s: the health listener is plain HTTP", name, p.HTTPGet.Scheme)
		}
	}
}
