package targets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

func TestParsePodUID(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"systemd-v2", "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e5f"},
		{"cgroupfs-v1", "7a3c0a43-19b2-4e67-9a2b-7c4d55e1f0aa"},
		{"guaranteed-v2", "0d5e8f42-1111-2222-3333-444455556666"},
		{"host-process", ""},
		{"not-kubepods", ""},
		{"malformed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata/cgroup", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ParsePodUID(b)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("ParsePodUID = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func FuzzParsePodUID(f *testing.F) {
	for _, n := range []string{"systemd-v2", "cgroupfs-v1", "malformed"} {
		b, _ := os.ReadFile(filepath.Join("testdata/cgroup", n))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if uid, ok := ParsePodUID(b); ok && len(uid) != 36 {
			t.Errorf("uid %q is not 36 characters", uid)
		}
	})
}

// A fake /proc with a pod's process: cgroup, environ and the service
// account's namespace file give UID, name and namespace.
func TestPodOfFromFixtureProc(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "4242")
	sa := filepath.Join(dir, "root/var/run/secrets/kubernetes.io/serviceaccount")
	if err := os.MkdirAll(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	cg, _ := os.ReadFile("testdata/cgroup/systemd-v2")
	must(t, os.WriteFile(filepath.Join(dir, "cgroup"), cg, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "environ"), []byte("PATH=/bin\x00HOSTNAME=web-7d9f\x00HOME=/\x00"), 0o644))
	must(t, os.WriteFile(filepath.Join(sa, "namespace"), []byte("shop\n"), 0o644))
	var n Namespace
	Discovery{ProcRoot: root}.podOf(t.Context(), 4242, &n)
	want := Namespace{PodUID: "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e5f", PodName: "web-7d9f", PodNamespace: "shop"}
	if n != want {
		t.Errorf("podOf = %+v, want %+v", n, want)
	}
	if got := n.Label(); got != "pod:shop/web-7d9f" {
		t.Errorf("Label() = %q", got)
	}
	match, err := MatchPods("shop/web-*")
	if err != nil {
		t.Fatal(err)
	}
	if !match(n) || match(Namespace{Name: "x"}) {
		t.Error("MatchPods(shop/web-*) matched wrongly")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startUnshared starts `unshare -n sleep` (a namespace no name points to)
// and returns its pid; killed on cleanup.
func startUnshared(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("unshare", "-n", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// unshare execs sleep once the namespace exists: wait for the switch.
	self, _ := nsInode("/proc/self/ns/net")
	for i := 0; i < 100; i++ {
		if ino, err := nsInode("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"); err == nil && ino != self {
			return cmd
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("unshare never entered a new namespace")
	return nil
}

func TestDiscoverFindsLabAndProcessOnlyNamespaces(t *testing.T) {
	l := lab.New(t)
	cmd := startUnshared(t)
	nss, err := Discovery{}.Discover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Namespace{}
	var unnamed *Namespace
	inodes := map[uint64]bool{}
	for i, n := range nss {
		if inodes[n.Inode] {
			t.Errorf("inode %d listed twice", n.Inode)
		}
		inodes[n.Inode] = true
		if n.Name != "" {
			byName[n.Name] = n
		}
		if n.PID == cmd.Process.Pid {
			unnamed = &nss[i]
		}
	}
	for _, name := range l.Namespaces() {
		n, ok := byName[name]
		if !ok {
			t.Errorf("lab namespace %s not found", name)
			continue
		}
		if n.Path != l.Path(name) || n.Label() != "netns:"+name {
			t.Errorf("%s: path %s label %s", name, n.Path, n.Label())
		}
	}
	if unnamed == nil {
		t.Fatalf("the unshare'd namespace of pid %d was not found", cmd.Process.Pid)
	}
	if want := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"; unnamed.Path != want || unnamed.Name != "" {
		t.Errorf("unnamed namespace = %+v, want path %s", *unnamed, want)
	}
	if !strings.HasPrefix(unnamed.Label(), "netns:") {
		t.Errorf("label %q", unnamed.Label())
	}
	self, _ := nsInode("/proc/self/ns/net")
	if inodes[self] {
		t.Error("the host namespace is listed without IncludeHost")
	}
}

// A namespace that goes away mid-run: its probe says netns_gone once, the
// source drops its target at the next refresh, and no fd leaks.
func TestVanishingNamespaceIsNetNSGoneOnceAndDropped(t *testing.T) {
	lab.RequirePriv(t)
	base := fds(t)
	cmd := startUnshared(t)
	pid := cmd.Process.Pid
	dest, _ := probe.ParseTarget("127.0.0.1:9")
	src := NewVantage(Static{dest}, func(n Namespace) bool { return n.PID == pid })
	src.Refresh = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sets := make(chan []probe.Target, 16)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(ts []probe.Target) { sets <- ts }) }()

	// A miniature scheduler: one prober per target, rebuilt on every set.
	probers := map[string]probe.Prober{}
	apply := func(ts []probe.Target) {
		keep := map[string]bool{}
		for _, tg := range ts {
			keep[tg.Name] = true
			if _, ok := probers[tg.Name]; !ok {
				p, err := connect.New(tg, connect.Config{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				probers[tg.Name] = p
			}
		}
		for name, p := range probers {
			if !keep[name] {
				p.Close()
				delete(probers, name)
			}
		}
	}
	apply(<-sets)
	if len(probers) != 1 {
		t.Fatalf("targets %v, want one for the unshare'd namespace", slices.Collect(mapKeys(probers)))
	}
	var name string
	var pr probe.Prober
	for name, pr = range probers {
	}
	if !strings.HasSuffix(name, " from netns:"+strconv.FormatUint(mustIno(t, pid), 10)) {
		t.Errorf("target name %q", name)
	}
	// Inside the fresh namespace lo is down: the probe runs there (it
	// cannot reach the host's loopback) and fails as unreachable.
	if r := pr.Probe(ctx); r.Reason != probe.ReasonUnreachable {
		t.Errorf("probe inside the namespace = %s %q, want unreachable (lo is down there)", r.Reason, r.Evidence)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	gone := 0
	for len(probers) > 0 {
		for _, p := range probers {
			if r := p.Probe(ctx); r.Reason == probe.ReasonNetNSGone {
				gone++
			} else {
				t.Errorf("probe after the namespace died = %s, want netns_gone", r.Reason)
			}
		}
		select {
		case ts := <-sets:
			apply(ts)
		case <-ctx.Done():
			t.Fatal("the source never dropped the target")
		}
	}
	if gone != 1 {
		t.Errorf("netns_gone reported %d times, want once", gone)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if after := fds(t); after != base {
		t.Errorf("fds %d before, %d after: leak", base, after)
	}
}

func mapKeys(m map[string]probe.Prober) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func mustIno(t *testing.T, pid int) uint64 {
	ino, err := nsInode("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func fds(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// A pod controls the files in its root filesystem and its environment:
// discovery must neither hang on them, nor read without bound, nor follow
// them out to the host's files. Each case is a fake /proc whose process
// 4242 is in a real namespace (an unshared sleep's) and belongs to a pod.
func TestDiscoverHostilePodFiles(t *testing.T) {
	victim := startUnshared(t)
	hostFile := filepath.Join(t.TempDir(), "host-namespace")
	must(t, os.WriteFile(hostFile, []byte("kube-system\n"), 0o644))
	tests := []struct {
		name    string
		plant   func(t *testing.T, sa string) // sa: the service-account dir in the pod's root
		environ string
		want    Namespace
	}{
		{"fifo", func(t *testing.T, sa string) { must(t, syscall.Mkfifo(filepath.Join(sa, "namespace"), 0o644)) },
			"HOSTNAME=web-1\x00", Namespace{PodName: "web-1"}},
		{"symlink to /dev/zero", func(t *testing.T, sa string) { must(t, os.Symlink("/dev/zero", filepath.Join(sa, "namespace"))) },
			"HOSTNAME=web-1\x00", Namespace{PodName: "web-1"}},
		{"huge file", func(t *testing.T, sa string) {
			f, err := os.Create(filepath.Join(sa, "namespace"))
			must(t, err)
			must(t, f.Truncate(1<<40))
			must(t, f.Close())
		}, "HOSTNAME=web-1\x00", Namespace{PodName: "web-1"}},
		{"absolute symlink to a host file", func(t *testing.T, sa string) { must(t, os.Symlink(hostFile, filepath.Join(sa, "namespace"))) },
			"HOSTNAME=web-1\x00", Namespace{PodName: "web-1"}},
		{"relative symlink escaping the root", func(t *testing.T, sa string) {
			must(t, os.Symlink("../../../../../../../../../../.."+hostFile, filepath.Join(sa, "namespace")))
		}, "HOSTNAME=web-1\x00", Namespace{PodName: "web-1"}},
		{"names that are not DNS names", func(t *testing.T, sa string) {
			must(t, os.WriteFile(filepath.Join(sa, "namespace"), []byte("Shop/../x\n"), 0o644))
		}, "HOSTNAME=" + strings.Repeat("w", 300) + "\x00", Namespace{}},
		{"a plain pod", func(t *testing.T, sa string) {
			must(t, os.WriteFile(filepath.Join(sa, "namespace"), []byte("shop\n"), 0o644))
		},
			"HOSTNAME=web-1\x00", Namespace{PodName: "web-1", PodNamespace: "shop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := t.TempDir()
			dir := filepath.Join(proc, "4242")
			sa := filepath.Join(dir, "root/var/run/secrets/kubernetes.io/serviceaccount")
			must(t, os.MkdirAll(sa, 0o755))
			must(t, os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
			must(t, os.Symlink("/proc/"+strconv.Itoa(victim.Process.Pid)+"/ns/net", filepath.Join(dir, "ns/net")))
			cg, _ := os.ReadFile("testdata/cgroup/systemd-v2")
			must(t, os.WriteFile(filepath.Join(dir, "cgroup"), cg, 0o644))
			must(t, os.WriteFile(filepath.Join(dir, "environ"), []byte(tt.environ), 0o644))
			tt.plant(t, sa)

			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			type result struct {
				nss []Namespace
				err error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				nss, err := Discovery{ProcRoot: proc, NamedDir: t.TempDir()}.Discover(ctx)
				done <- result{nss, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Discover hung on a pod's file")
			}
			if r.err != nil || len(r.nss) != 1 {
				t.Fatalf("Discover = %+v, %v; want one namespace", r.nss, r.err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("Discover took %s", took)
			}
			got := r.nss[0]
			if got.PodUID != "1b4e2c3d-5f6a-4b7c-8d9e-0a1b2c3d4e5f" || got.PodName != tt.want.PodName || got.PodNamespace != tt.want.PodNamespace {
				t.Errorf("pod = uid %q name %q namespace %q; want name %q namespace %q",
					got.PodUID, got.PodName, got.PodNamespace, tt.want.PodName, tt.want.PodNamespace)
			}
		})
	}
}
