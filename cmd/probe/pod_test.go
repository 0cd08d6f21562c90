package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe/netns"
)

// podWithEtc starts a pod-like process in its own network namespace, in a
// kubepods-like cgroup slice, with HOSTNAME=name in its environment and
// the service account's namespace file naming podNS in its root (a private
// mount over /var); with etc set, etc is also its /etc (so
// etc/resolv.conf is the pod's resolv.conf). It returns the process and
// the pod UID in its cgroup; t.Cleanup kills it and removes the cgroup.
func podWithEtc(t *testing.T, podNS, name, etc string) (*exec.Cmd, string) {
	t.Helper()
	root := t.TempDir()
	sa := filepath.Join(root, "run/secrets/kubernetes.io/serviceaccount")
	if err := os.MkdirAll(sa, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sa, "namespace"), []byte(podNS+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cgRoot := "/sys/fs/cgroup/systemd" // cgroup v1 named hierarchy
	if _, err := os.Stat(cgRoot); err != nil {
		cgRoot = "/sys/fs/cgroup" // v2
	}
	uid := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rand.Uint32(), rand.N(1<<16), rand.N(1<<16), rand.N(1<<16), rand.N(uint64(1)<<48))
	cg := filepath.Join(cgRoot, podNS+"-kubepods-pod"+uid+".slice")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `ip link set lo up && mount --bind "$1" /var && exec /usr/bin/env HOSTNAME="$2" /bin/sleep 300`
	if etc != "" {
		script = `ip link set lo up && mount --bind "$1" /var && mount --bind "$3" /etc && exec /usr/bin/env HOSTNAME="$2" /bin/sleep 300`
	}
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, name, etc)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for range 50 { // rmdir fails while the cgroup still lists the process
			if err := os.Remove(cg); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", cg)
	})
	pid := strconv.Itoa(cmd.Process.Pid)
	for range 300 {
		env, _ := os.ReadFile("/proc/" + pid + "/environ")
		if bytes.Contains(env, []byte("HOSTNAME="+name+"\x00")) {
			if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(pid), 0o644); err != nil {
				t.Fatal(err)
			}
			return cmd, uid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pod-like process %s/%s never started", podNS, name)
	return nil, ""
}

// podTestNS is a pod namespace no other test on the machine uses.
func podTestNS() string { return fmt.Sprintf("podt-%06x", rand.N(1<<24)) }

// TestRunPodResolvesAsThePod (issue 17 item 5): `probe run --pod NS/NAME
// db:PORT` finds the pod's namespace by its name, resolves the short name
// with the pod's search domain through the pod's nameserver (a loopback
// address that exists only inside the pod's namespace) and probes from
// there (the listener, too, exists only there).
func TestRunPodResolvesAsThePod(t *testing.T) {
	podNS := podTestNS()
	etc := t.TempDir()
	conf := "# written by the kubelet\nnameserver 127.0.0.1\nsearch " + podNS + ".svc.lab.invalid svc.lab.invalid\noptions ndots:5\n"
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	pod, _ := podWithEtc(t, podNS, "web-1", etc)
	nsPath := "/proc/" + strconv.Itoa(pod.Process.Pid) + "/ns/net"

	var dnsConn net.PacketConn
	var db net.Listener
	if err := netns.Do(nsPath, func() error {
		var err error
		if dnsConn, err = net.ListenPacket("udp4", "127.0.0.1:53"); err != nil {
			return err
		}
		db, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dns := lab.ServeDNS(dnsConn, map[string][]netip.Addr{"db." + podNS + ".svc.lab.invalid": {netip.MustParseAddr("127.0.0.1")}})
	defer dns.Close()
	port := strconv.Itoa(db.Addr().(*net.TCPAddr).Port)

	err, out, stderr := runCmd(t.Context(), "--pod", podNS+"/web-1", "--timeout", "5s", "db:"+port)
	if err != nil {
		t.Fatalf("probe run --pod: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(out, "resolved db to 127.0.0.1") || !strings.Contains(out, " ok") {
		t.Errorf("output does not show db resolved through the pod's search list and answered:\n%s", out)
	}
	if !strings.Contains(stderr, "from pod "+podNS+"/web-1: netns "+nsPath) || !strings.Contains(stderr, "resolver 127.0.0.1:53") {
		t.Errorf("stderr does not name the pod's namespace and resolver:\n%s", stderr)
	}

	// A name outside the search list fails as in the pod: dns_error naming
	// the search list, not the machine's resolver.
	err, out, _ = runCmd(t.Context(), "--pod", podNS+"/web-1", "--timeout", "5s", "nope:"+port)
	if !errors.Is(err, errFailed) || !strings.Contains(out, "dns_error") || !strings.Contains(out, "search "+podNS+".svc.lab.invalid") {
		t.Errorf("unknown name: err %v, output:\n%s", err, out)
	}

	// --resolver replaces the pod's nameserver, not its search list: a
	// second server, also only inside the pod's namespace, knows "alt".
	var altConn net.PacketConn
	if err := netns.Do(nsPath, func() (err error) {
		altConn, err = net.ListenPacket("udp4", "127.0.0.1:5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	alt := lab.ServeDNS(altConn, map[string][]netip.Addr{"alt.svc.lab.invalid": {netip.MustParseAddr("127.0.0.1")}})
	defer alt.Close()
	err, out, stderr = runCmd(t.Context(), "--pod", podNS+"/web-1", "--resolver", "127.0.0.1:5353", "--timeout", "5s", "alt:"+port)
	if err != nil || !strings.Contains(out, "resolved alt to 127.0.0.1") || !strings.Contains(stderr, "resolver 127.0.0.1:5353 (--resolver)") {
		t.Errorf("--resolver override: err %v, output:\n%s\n%s", err, out, stderr)
	}

	// Misuse.
	err, _, _ = runCmd(t.Context(), "--pod", podNS+"/web-1", "--netns", nsPath, "db:"+port)
	if _, ok := errors.AsType[usageError](err); !ok || !strings.Contains(err.Error(), "mutually exclusive") {
		t.Errorf("--pod with --netns: %v, want a usage error", err)
	}
	err, _, _ = runCmd(t.Context(), "--pod", "web-1", "db:"+port)
	if _, ok := errors.AsType[usageError](err); !ok || !strings.Contains(err.Error(), "NAMESPACE/NAME") {
		t.Errorf("--pod web-1: %v, want a usage error", err)
	}
}

// TestRunPodNotFoundOrAmbiguous: a pod not on this node, and a name two
// namespaces claim, are clear errors.
func TestRunPodNotFoundOrAmbiguous(t *testing.T) {
	podNS := podTestNS()
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	podWithEtc(t, podNS, "twin", etc)
	podWithEtc(t, podNS, "twin", etc)
	err, _, _ := runCmd(t.Context(), "--pod", podNS+"/absent", "10.0.0.1:80")
	if err == nil || !strings.Contains(err.Error(), "pod "+podNS+"/absent: no such network namespace on this node") {
		t.Errorf("absent pod: %v", err)
	}
	err, _, _ = runCmd(t.Context(), "--pod", podNS+"/twin", "10.0.0.1:80")
	if err == nil || !strings.Contains(err.Error(), "more than one network namespace") || strings.Count(err.Error(), "/ns/net") != 2 {
		t.Errorf("ambiguous pod: %v", err)
	}
	cmd := newTraceCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs([]string{"--pod", podNS + "/absent", "10.0.0.1:80"})
	if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "no such network namespace on this node") {
		t.Errorf("probe trace --pod absent: %v", err)
	}
}

// TestRunPodHostileResolvConf: a resolv.conf that is a FIFO (a read would
// block forever) or far larger than any real one is a clear error, quickly.
func TestRunPodHostileResolvConf(t *testing.T) {
	podNS := podTestNS()
	fifo, huge := t.TempDir(), t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifo, "resolv.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("search a.example\n"), 1<<20/17+1) // 1 MiB
	if err := os.WriteFile(filepath.Join(huge, "resolv.conf"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	podWithEtc(t, podNS, "fifo", fifo)
	podWithEtc(t, podNS, "huge", huge)
	for name, want := range map[string]string{"fifo": "resolv.conf", "huge": "size cap of 64 KiB"} {
		t0 := time.Now()
		err, _, _ := runCmd(t.Context(), "--pod", podNS+"/"+name, "db:80")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s resolv.conf: %v, want an error with %q", name, err, want)
		}
		t.Logf("%s: %v", name, err)
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("%s resolv.conf: took %s", name, d)
		}
	}
}
