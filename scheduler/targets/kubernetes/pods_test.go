package kubernetes

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler/targets"
	"github.com/connprobe/connprobe/scheduler/targets/kubernetes/spec"
)

// fixtureProc is a fake /proc for targets.Discovery: each "process" is a
// directory with a kubepods cgroup (systemd driver, the pod UID with
// underscores) and an ns/net link. Discovery only needs each link to be a
// distinct nsfs file, so the links point at this process's own namespaces
// of other types (uts, ipc, …): distinct inodes, no privilege needed.
type fixtureProc struct {
	t    *testing.T
	root string
	free []string // unused namespace types
}

func newFixtureProc(t *testing.T) *fixtureProc {
	return &fixtureProc{t: t, root: t.TempDir(), free: []string{"uts", "ipc", "mnt", "cgroup", "pid", "user", "time"}}
}

// add makes process pid, in its own namespace, of pod uid; environ sets a
// HOSTNAME that must NOT be the name the vantage uses.
func (f *fixtureProc) add(pid int, uid string) {
	f.t.Helper()
	if len(f.free) == 0 {
		f.t.Fatal("fixture: out of namespace types")
	}
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprintf("/proc/%d/ns/%s", os.Getpid(), f.free[0]), filepath.Join(dir, "ns/net")); err != nil {
		f.t.Fatal(err)
	}
	f.free = f.free[1:]
	cg := "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
		strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-0123abcd.scope\n"
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "environ"), []byte("HOSTNAME=from-environ\x00"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixtureProc) remove(pid int) {
	f.t.Helper()
	if err := os.RemoveAll(filepath.Join(f.root, fmt.Sprint(pid))); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixtureProc) discovery() targets.Discovery {
	return targets.Discovery{ProcRoot: f.root, NamedDir: filepath.Join(f.root, "no-netns")}
}

const (
	uidWeb1  = "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e51"
	uidDB1   = "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e52"
	uidWeb2  = "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e53"
	uidWeb3  = "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e54"
	uidOther = "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e55"
	uidHost  = "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e56"
)

func vpod(ns, name, uid, node string, lbl map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// vantageWatch runs a Vantage with one destination and records the target
// names it hands on.
type vantageWatch struct {
	t       *testing.T
	v       *targets.Vantage
	updates chan []probe.Target
}

func runVantage(t *testing.T, v *targets.Vantage) *vantageWatch {
	t.Helper()
	w := &vantageWatch{t: t, v: v, updates: make(chan []probe.Target, 100)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx, func(ts []probe.Target) { w.updates <- ts }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return w
}

func (w *vantageWatch) expect(want ...string) {
	w.t.Helper()
	if want == nil {
		want = []string{}
	}
	var last []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ts := <-w.updates:
			last = last[:0]
			for _, t := range ts {
				last = append(last, t.Name+" @"+filepath.Base(filepath.Dir(filepath.Dir(t.NetNS))))
			}
			if slices.Equal(last, want) {
				return
			}
		case <-deadline:
			w.t.Fatalf("vantage set never became\n  %s\nlast:\n  %s", strings.Join(want, "\n  "), strings.Join(last, "\n  "))
		}
	}
}

// The pods_selector picks the namespaces of this node's pods that the API
// selects, joined by pod UID, named as the API names them; pods that start
// or stop matching, appear or disappear change the set.
func TestVantagePodsSelectorFollowsTheAPI(t *testing.T) {
	ctx := t.Context()
	web := map[string]string{"app": "web"}
	hostNet := vpod("shop", "web-host", uidHost, "node-a", web)
	hostNet.Spec.HostNetwork = true // no namespace of its own: never a vantage
	client := fake.NewClientset(
		vpod("shop", "web-1", uidWeb1, "node-a", web),
		vpod("shop", "db-1", uidDB1, "node-a", map[string]string{"app": "db"}),
		vpod("shop", "web-2", uidWeb2, "node-b", web),   // another node
		vpod("other", "web-9", uidOther, "node-a", web), // another namespace
		hostNet,
	)
	proc := newFixtureProc(t)
	proc.add(101, uidWeb1)
	proc.add(102, uidDB1)
	proc.add(103, uidWeb2) // its namespace is here, but the API says node-b
	proc.add(104, uidOther)
	proc.add(106, uidHost)
	pods, err := NewPods(client, spec.PodSelector{Namespaces: []string{"shop"}, LabelSelector: "app=web"}, Options{NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	v := targets.NewVantage(targets.Static([]probe.Target{{Name: "10.0.0.1:80", Scheme: "tcp", Host: "10.0.0.1", Port: 80}}), nil)
	v.Discovery, v.Pods, v.Refresh = proc.discovery(), pods, time.Hour
	w := runVantage(t, v)
	w.expect("10.0.0.1:80 from pod:shop/web-1 @101")

	// db-1 starts matching; web-1 stops.
	relabel := func(name string, lbl map[string]string) {
		t.Helper()
		p, err := client.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Labels = lbl
		if _, err := client.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	relabel("db-1", web)
	w.expect("10.0.0.1:80 from pod:shop/db-1 @102", "10.0.0.1:80 from pod:shop/web-1 @101")
	relabel("web-1", map[string]string{"app": "old"})
	w.expect("10.0.0.1:80 from pod:shop/db-1 @102")

	// A new pod: in the API first, its namespace a moment later (found at
	// the next rediscovery, here forced by Recheck as after netns_gone).
	if _, err := client.CoreV1().Pods("shop").Create(ctx, vpod("shop", "web-3", uidWeb3, "node-a", web), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	proc.add(105, uidWeb3)
	v.Recheck()
	w.expect("10.0.0.1:80 from pod:shop/db-1 @102", "10.0.0.1:80 from pod:shop/web-3 @105")

	// A pod deleted from the API leaves, though its namespace lingers; a
	// namespace that vanishes leaves though the API still lists its pod.
	if err := client.CoreV1().Pods("shop").Delete(ctx, "db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.expect("10.0.0.1:80 from pod:shop/web-3 @105")
	proc.remove(105)
	v.Recheck()
	w.expect()
}

// Without NODE_NAME the selector logs why and selects nothing, while the
// block's globs keep working.
func TestVantagePodsSelectorWithoutNodeName(t *testing.T) {
	proc := newFixtureProc(t)
	proc.add(101, uidWeb1)
	pods, err := NewPods(fake.NewClientset(vpod("shop", "web-1", uidWeb1, "node-a", nil)), spec.PodSelector{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	all, err := targets.MatchPods("*/*") // pod namespace unknown: matches as */UID
	if err != nil {
		t.Fatal(err)
	}
	v := targets.NewVantage(targets.Static([]probe.Target{{Name: "10.0.0.1:80", Scheme: "tcp", Host: "10.0.0.1", Port: 80}}), all)
	v.Discovery, v.Pods, v.Refresh = proc.discovery(), pods, time.Hour
	v.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	w := runVantage(t, v)
	w.expect("10.0.0.1:80 from pod:" + uidWeb1 + " @101")
	want := `msg="vantage pods_selector failed; keeping its last set of pods" err="kubernetes: pods_selector needs the node name (set NODE_NAME from spec.nodeName, see deploy/daemonset.yaml)"`
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := buf.String()
		mu.Unlock()
		if strings.Contains(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q lacks %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestNewPodsRejectsABadSelector(t *testing.T) {
	_, err := NewPods(nil, spec.PodSelector{LabelSelector: "app in (a"}, Options{})
	want := `kubernetes: pods_selector: label_selector "app in (a": unable to parse requirement: found '', expected: ',' or ')'`
	if err == nil || err.Error() != want {
		t.Errorf("NewPods: %v, want %s", err, want)
	}
}
