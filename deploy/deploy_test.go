// Package deploy holds connprobe's Kubernetes manifests (a kustomize base:
// kubectl apply -k deploy/) and the tests that keep them honest: every
// manifest decodes strictly into the Kubernetes API types, the generated
// ConfigMap and PrometheusRule match their sources, the DaemonSet asks for
// no more than it needs, and the dashboard queries only exported metrics.
package deploy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/connprobe/connprobe/configs"
)

var update = flag.Bool("update", false, "regenerate configmap.yaml and prometheusrule.yaml from their sources")

// The custom resources, as minimal local types (prometheus-operator's Go
// module is not available here). Strict decoding makes any field not below
// an error, so a typo cannot hide.

// ServiceMonitor is monitoring.coreos.com/v1 ServiceMonitor (the fields used).
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
			Relabelings   []struct {
				SourceLabels []string `json:"sourceLabels,omitempty"`
				TargetLabel  string   `json:"targetLabel,omitempty"`
				Regex        string   `json:"regex,omitempty"`
				Replacement  *string  `json:"replacement,omitempty"`
				Action       string   `json:"action,omitempty"`
			} `json:"relabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// RuleGroup is one group of a Prometheus rules file, as both the file and
// the PrometheusRule spell it.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Limit    int    `json:"limit,omitempty"`
	Rules    []struct {
		Record        string            `json:"record,omitempty"`
		Alert         string            `json:"alert,omitempty"`
		Expr          string            `json:"expr"`
		For           string            `json:"for,omitempty"`
		KeepFiringFor string            `json:"keep_firing_for,omitempty"`
		Labels        map[string]string `json:"labels,omitempty"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	} `json:"rules"`
}

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []RuleGroup `json:"groups"`
	} `json:"spec"`
}

// Kustomization is the subset of kustomize.config.k8s.io/v1beta1 used.
type Kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images"`
	ConfigMapGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			Labels                map[string]string `json:"labels"`
		} `json:"options"`
	} `json:"configMapGenerator"`
}

// object is one decoded manifest.
type object struct {
	file string
	kind string // apiVersion/kind
	obj  any
}

// newObject returns an empty value of the API type for apiVersion/kind.
func newObject(gvk string) (any, bool) {
	switch gvk {
	case "v1/Namespace":
		return &corev1.Namespace{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}, true
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &ServiceMonitor{}, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &PrometheusRule{}, true
	}
	return nil, false
}

// decodeAll splits a multi-document YAML stream and decodes each document
// strictly into its API type.
func decodeAll(name string, b []byte) ([]object, error) {
	var out []object
	for i, doc := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		obj, ok := newObject(gvk)
		if !ok {
			return nil, fmt.Errorf("%s: document %d: unknown kind %s", name, i, gvk)
		}
		if err := strictDecode(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", name, i, gvk, err)
		}
		out = append(out, object{file: name, kind: gvk, obj: obj})
	}
	return out, nil
}

// strictDecode decodes YAML the way the API server does: field names are
// case-sensitive (encoding/json, and so yaml.UnmarshalStrict, would accept
// "hostPid" for hostPID), and unknown or duplicate fields are errors.
func strictDecode(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func readKustomization(t *testing.T) Kustomization {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k Kustomization
	if err := strictDecode(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// manifests decodes every resource the kustomization lists.
func manifests(t *testing.T) []object {
	t.Helper()
	var all []object
	for _, r := range readKustomization(t).Resources {
		b, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(r, b)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, objs...)
	}
	return all
}

func find[T any](t *testing.T, objs []object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.obj.(T); ok && reflect.ValueOf(v).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta).Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q in deploy/", zero, name)
	return zero
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	k := readKustomization(t)
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		if !slices.Contains(k.Resources, f) {
			t.Errorf("%s is not listed in kustomization.yaml resources", f)
		}
	}
	objs := manifests(t)
	if len(objs) < 10 {
		t.Fatalf("only %d objects decoded", len(objs))
	}
	for _, o := range objs {
		t.Logf("%s: %s", o.file, o.kind)
	}
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	// The guard itself: a misspelt field must fail, in a built-in type and
	// in a local CRD type alike.
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostPid: true\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  endpoints: [{port: m, honourLabels: true}]\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1}], ports: []}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nbinary: {}\nextra: 1\n",
	} {
		if _, err := decodeAll("doc", []byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl (with its built-in kustomize) is needed to build deploy/: %v", err)
	}
	out, err := exec.Command(kubectl, "kustomize", ".").Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("kubectl kustomize deploy/: %v\n%s", err, stderr)
	}
	objs, err := decodeAll("kustomize output", out)
	if err != nil {
		t.Fatal(err)
	}
	var dashboard *corev1.ConfigMap
	for _, o := range objs {
		meta := reflect.ValueOf(o.obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
		if meta.Labels["app.kubernetes.io/part-of"] != "connprobe" {
			t.Errorf("%s %s lacks the part-of label", o.kind, meta.Name)
		}
		if o.kind != "v1/Namespace" && !strings.HasPrefix(o.kind, "rbac.authorization.k8s.io/v1/Cluster") && meta.Namespace != "connprobe" {
			t.Errorf("%s %s in namespace %q", o.kind, meta.Name, meta.Namespace)
		}
		if cm, ok := o.obj.(*corev1.ConfigMap); ok && cm.Name == "connprobe-dashboard" {
			dashboard = cm
		}
	}
	if dashboard == nil || dashboard.Labels["grafana_dashboard"] != "1" || dashboard.Data["connprobe.json"] == "" {
		t.Fatalf("dashboard ConfigMap missing or unlabelled: %+v", dashboard)
	}
}

// generated is a file deploy/ derives from another: the test fails when
// they drift, and -update rewrites it.
func checkGenerated(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date: run go test ./deploy -update", path)
	}
}

// indent indents every non-empty line by n spaces.
func indent(b []byte, n int) []byte {
	pad := strings.Repeat(" ", n)
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out.WriteString(pad)
		}
		out.WriteString(l)
	}
	return out.Bytes()
}

func TestConfigMapIsTheExampleConfig(t *testing.T) {
	src, err := os.ReadFile("../configs/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(`# Generated from configs/kubernetes.yaml by `+"`go test ./deploy -update`"+`; edit
# that file, not this one (a test keeps them identical).
apiVersion: v1
kind: ConfigMap
metadata:
  name: connprobe-config
  namespace: connprobe
data:
  config.yaml: |
`), indent(src, 4)...)
	checkGenerated(t, "configmap.yaml", want)

	cm := find[*corev1.ConfigMap](t, manifests(t), "connprobe-config")
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := configs.Load(t.Context(), path)
	if err != nil {
		t.Fatalf("the ConfigMap's config does not load: %v", err)
	}
	var k8s int
	for _, j := range c.Probes {
		k8s += len(j.Targets.Kubernetes)
	}
	if k8s == 0 {
		t.Error("the shipped config discovers nothing from Kubernetes")
	}
}

func rulesGroups(t *testing.T) ([]byte, []RuleGroup) {
	t.Helper()
	b, err := os.ReadFile("prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []RuleGroup `json:"groups"`
	}
	if err := strictDecode(b, &f); err != nil {
		t.Fatalf("prometheus/rules.yml: %v", err)
	}
	return b, f.Groups
}

func TestPrometheusRuleEqualsRulesFile(t *testing.T) {
	src, groups := rulesGroups(t)
	i := bytes.Index(src, []byte("\ngroups:"))
	if i < 0 {
		t.Fatal("prometheus/rules.yml: no top-level groups:")
	}
	want := append([]byte(`# Generated from deploy/prometheus/rules.yml by `+"`go test ./deploy -update`"+`;
# edit that file, not this one (a test keeps the groups identical).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: connprobe
  namespace: connprobe
  labels:
    app.kubernetes.io/name: connprobe
    # kube-prometheus-stack selects rules labelled release=<Helm release>
    # (docs/kubernetes.md): set it to yours.
    release: kube-prometheus-stack
spec:
`), indent(src[i+1:], 2)...)
	checkGenerated(t, "prometheusrule.yaml", want)

	pr := find[*PrometheusRule](t, manifests(t), "connprobe")
	if len(groups) == 0 || !reflect.DeepEqual(pr.Spec.Groups, groups) {
		t.Fatalf("PrometheusRule groups differ from prometheus/rules.yml")
	}
	// promtool checks the groups as the operator hands them to Prometheus.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool (Debian package prometheus, .ci/packages.txt): %v", err)
	}
	spec, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the PrometheusRule's groups: %v\n%s", err, out)
	}
}

func TestDaemonSetAsksForNoMoreThanItNeeds(t *testing.T) {
	objs := manifests(t)
	ds := find[*appsv1.DaemonSet](t, objs, "connprobe-agent")
	ps := ds.Spec.Template.Spec
	if !ps.HostPID {
		t.Error("hostPID is off: pod network namespaces under /proc/PID/ns/net are out of reach")
	}
	if ps.HostNetwork {
		t.Error("hostNetwork is on: the agent should probe from the pod network")
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	sort.Strings(add)
	if want := []string{"NET_ADMIN", "NET_RAW", "SYS_ADMIN"}; !slices.Equal(add, want) {
		t.Errorf("capabilities add %v, want exactly %v", add, want)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	// /run/netns from the host, read-only, seeing later mounts.
	var netnsVol string
	for _, v := range ps.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/run/netns" {
			netnsVol = v.Name
		}
	}
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == netnsVol })
	if netnsVol == "" || i < 0 || c.VolumeMounts[i].MountPath != "/run/netns" || !c.VolumeMounts[i].ReadOnly ||
		c.VolumeMounts[i].MountPropagation == nil || *c.VolumeMounts[i].MountPropagation != corev1.MountPropagationHostToContainer {
		t.Error("the host's /run/netns is not mounted read-only at /run/netns with HostToContainer propagation")
	}
	// serve --config points into the mounted ConfigMap, at a key it has.
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %v: want serve ...", c.Args)
	}
	var config string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			config = v
		}
	}
	cm := find[*corev1.ConfigMap](t, objs, "connprobe-config")
	var cfgVol string
	for _, v := range ps.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			cfgVol = v.Name
		}
	}
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == cfgVol })
	if j < 0 || filepath.Dir(config) != c.VolumeMounts[j].MountPath || cm.Data[filepath.Base(config)] == "" {
		t.Errorf("--config=%s is not a key of ConfigMap %s mounted in the container", config, cm.Name)
	}
	// The downward API facts discovery needs.
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["NODE_NAME"] != "spec.nodeName" || env["HOST_IP"] != "status.hostIP" {
		t.Errorf("env NODE_NAME/HOST_IP from the downward API: got %v", env)
	}
	if ps.ServiceAccountName != "connprobe-agent" {
		t.Errorf("serviceAccountName %q", ps.ServiceAccountName)
	}
}

func TestResponderRunsUnprivileged(t *testing.T) {
	objs := manifests(t)
	d := find[*appsv1.Deployment](t, objs, "connprobe-responder")
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Error("responder must run as non-root")
	}
	c := ps.Containers[0]
	if c.Args[0] != "responder" {
		t.Errorf("args %v: want responder ...", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("responder: drop ALL, add nothing, read-only root")
	}
}

func TestServicesReachTheirPods(t *testing.T) {
	objs := manifests(t)
	type workload struct {
		labels map[string]string
		ports  []corev1.ContainerPort
	}
	var ws []workload
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.DaemonSet:
			ws = append(ws, workload{v.Spec.Template.Labels, v.Spec.Template.Spec.Containers[0].Ports})
			if !labels.SelectorFromSet(v.Spec.Selector.MatchLabels).Matches(labels.Set(v.Spec.Template.Labels)) {
				t.Errorf("DaemonSet %s selector does not match its template", v.Name)
			}
		case *appsv1.Deployment:
			ws = append(ws, workload{v.Spec.Template.Labels, v.Spec.Template.Spec.Containers[0].Ports})
			if !labels.SelectorFromSet(v.Spec.Selector.MatchLabels).Matches(labels.Set(v.Spec.Template.Labels)) {
				t.Errorf("Deployment %s selector does not match its template", v.Name)
			}
		}
	}
	var svcs []*corev1.Service
	for _, o := range objs {
		svc, ok := o.obj.(*corev1.Service)
		if !ok {
			continue
		}
		svcs = append(svcs, svc)
		i := slices.IndexFunc(ws, func(w workload) bool {
			return labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.labels))
		})
		if i < 0 {
			t.Errorf("Service %s selects no workload", svc.Name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !slices.ContainsFunc(ws[i].ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
				t.Errorf("Service %s port %s: targetPort %q is no container port", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	sm := find[*ServiceMonitor](t, objs, "connprobe")
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	scraped := 0
	for _, svc := range svcs {
		if sel.Matches(labels.Set(svc.Labels)) {
			scraped++
			for _, ep := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					t.Errorf("ServiceMonitor port %q missing on Service %s", ep.Port, svc.Name)
				}
				if !ep.HonorLabels {
					t.Errorf("ServiceMonitor endpoint %q: honorLabels must be true (the series' job label is the probe job; deploy/prometheus/rules.yml)", ep.Port)
				}
			}
		}
	}
	if scraped != 2 {
		t.Errorf("ServiceMonitor selects %d services, want the agents' and the responder's", scraped)
	}
}

func TestRBACIsReadOnlyAndMinimal(t *testing.T) {
	cr := find[*rbacv1.ClusterRole](t, manifests(t), "connprobe-agent")
	got := map[string]bool{}
	for _, r := range cr.Rules {
		if !slices.Equal(r.Verbs, []string{"list", "watch"}) {
			t.Errorf("rule %v: verbs %v, want exactly list, watch (informers never get one object)", r.Resources, r.Verbs)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = true
			}
		}
	}
	want := map[string]bool{"/services": true, "/pods": true, "/nodes": true, "discovery.k8s.io/endpointslices": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ClusterRole grants %v, want %v", got, want)
	}
}
