package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// RepoRoot is the directory of the module's go.mod, found upwards from
// the working directory (a test's package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// script runs one of the repository's scripts and returns the last line
// it printed (a path).
func script(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", name))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: scripts/%s: %w\n%s", name, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// APIServerBinary returns the kube-apiserver to run: $CONNPROBE_KUBE_APISERVER
// when set, else the one scripts/kube-apiserver.sh builds (or has cached).
func APIServerBinary() (string, error) {
	binOnce.Do(func() {
		if p := os.Getenv("CONNPROBE_KUBE_APISERVER"); p != "" {
			binPath = p
			return
		}
		binPath, binErr = script("kube-apiserver.sh")
	})
	return binPath, binErr
}

// CRDDir returns the directory of the prometheus-operator CRDs that
// scripts/kube-crds.sh generates from the operator's Go types (cached).
func CRDDir() (string, error) {
	if p := os.Getenv("CONNPROBE_KUBE_CRDS"); p != "" {
		return p, nil
	}
	return script("kube-crds.sh")
}

// Shared is a cluster started on first use and shared by a package's
// tests; Main stops it after them.
type Shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Get returns the cluster, starting it on the first call; a cluster that
// does not start fails t (it never skips).
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(func() { s.c, s.err = Start() })
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.c
}

// Main runs a package's tests and then stops the shared cluster, if one
// was started: TestMain(m) { kubetest.Main(m, &shared) }.
func Main(m *testing.M, s *Shared) {
	code := m.Run()
	if s.c != nil {
		s.c.Stop()
	}
	os.Exit(code)
}

// Apply applies every object of a multi-document YAML stream with
// server-side apply (field manager "connprobe-test", force), as `kubectl
// apply --server-side` would, mapping kinds to resources through the
// server's discovery (so CRDs applied earlier are known).
func (c *Cluster) Apply(ctx context.Context, manifests []byte) ([]*unstructured.Unstructured, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(c.AdminConfig)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var applied []*unstructured.Unstructured
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return applied, nil
			}
			return applied, fmt.Errorf("kubetest: decode: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return applied, fmt.Errorf("kubetest: %s %s: %w", gvk, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		data, err := obj.MarshalJSON()
		if err != nil {
			return applied, fmt.Errorf("kubetest: %w", err)
		}
		out, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: "connprobe-test", Force: new(true)})
		if err != nil {
			return applied, fmt.Errorf("kubetest: apply %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
		applied = append(applied, out)
	}
}

// InstallCRDs applies the prometheus-operator CRDs (CRDDir) and waits
// until the API serves them.
func (c *Cluster) InstallCRDs(ctx context.Context) error {
	dir, err := CRDDir()
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("kubetest: no CRDs in %s", dir)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if _, err := c.Apply(ctx, b); err != nil {
			return err
		}
	}
	// Established: the API serves the new kinds.
	dc, err := discovery.NewDiscoveryClientForConfig(c.AdminConfig)
	if err != nil {
		return err
	}
	for {
		_, err := dc.ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("kubetest: CRDs: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: CRDs not served: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Agent applies deploy/namespace.yaml and deploy/rbac.yaml (the agent's
// ServiceAccount, ClusterRole and binding, as shipped) and returns a token
// of ServiceAccount connprobe/connprobe-agent: what the DaemonSet's pods
// authenticate with.
func (c *Cluster) Agent(ctx context.Context) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	for _, f := range []string{"namespace.yaml", "rbac.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", f))
		if err != nil {
			return "", err
		}
		if _, err := c.Apply(ctx, b); err != nil {
			return "", err
		}
	}
	return c.Token(ctx, "connprobe", "connprobe-agent")
}
