package targets

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/connprobe/connprobe/internal/safefile"
	"github.com/connprobe/connprobe/probe"
)

// Namespace is one network namespace found on this machine.
type Namespace struct {
	// Path is the namespace file probes enter: /run/netns/NAME for named
	// namespaces, else /proc/PID/ns/net of the namespace's oldest process.
	Path  string
	Inode uint64 // the nsfs inode: the namespace's identity
	Name  string // ip netns name, when it has one
	PID   int    // a process inside (the lowest pid), 0 when none
	// PodUID is the Kubernetes pod the namespace belongs to, from the
	// cgroup of a process inside; PodName and PodNamespace when known.
	PodUID, PodName, PodNamespace string
}

// Label is the namespace's bounded identity for target names and metric
// labels: "pod:NAMESPACE/NAME", "pod:UID", "netns:NAME" or "netns:INODE".
// It is stable for the namespace's life and never a pid (pids are reused).
func (n Namespace) Label() string {
	switch {
	case n.PodName != "" && n.PodNamespace != "":
		return "pod:" + n.PodNamespace + "/" + n.PodName
	case n.PodUID != "":
		return "pod:" + n.PodUID
	case n.Name != "":
		return "netns:" + n.Name
	}
	return "netns:" + strconv.FormatUint(n.Inode, 10)
}

// Discovery finds network namespaces: every name under NamedDir and every
// distinct /proc/PID/ns/net, deduplicated by inode, each mapped to its pod
// when its processes live in a kubepods cgroup.
//
// Reading /proc/PID/ns/net of other processes needs CAP_SYS_PTRACE (root)
// and, in a pod, hostPID: true; entering them later needs CAP_SYS_ADMIN.
type Discovery struct {
	ProcRoot    string // default /proc
	NamedDir    string // default /run/netns
	IncludeHost bool   // include the namespace this process runs in
}

func (d Discovery) procRoot() string {
	if d.ProcRoot == "" {
		return "/proc"
	}
	return d.ProcRoot
}

func (d Discovery) namedDir() string {
	if d.NamedDir == "" {
		return "/run/netns"
	}
	return d.NamedDir
}

// Discover lists the namespaces now, sorted by Label. Processes that exit
// while it scans are skipped; only an unreadable /proc is an error. The
// files it reads inside pods are hostile (safefile): each read is bounded
// in size and time, and ctx ends the scan.
func (d Discovery) Discover(ctx context.Context) ([]Namespace, error) {
	proc := d.procRoot()
	var self uint64
	if !d.IncludeHost {
		if ino, err := nsInode(filepath.Join(proc, "self/ns/net")); err == nil {
			self = ino
		}
	}
	byIno := map[uint64]*Namespace{}
	var order []uint64
	add := func(ino uint64) *Namespace {
		n, ok := byIno[ino]
		if !ok {
			n = &Namespace{Inode: ino}
			byIno[ino] = n
			order = append(order, ino)
		}
		return n
	}

	named, _ := os.ReadDir(d.namedDir()) // no /run/netns: no named namespaces
	for _, e := range named {
		p := filepath.Join(d.namedDir(), e.Name())
		ino, err := nsInode(p)
		if err != nil || ino == self {
			continue // a dead mount point (namespace deleted) is a plain file
		}
		n := add(ino)
		if n.Name == "" {
			n.Name, n.Path = e.Name(), p
		}
	}

	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("netns discovery: %w", err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("netns discovery: %w", context.Cause(ctx))
		}
		ino, err := nsInode(filepath.Join(proc, strconv.Itoa(pid), "ns/net"))
		if err != nil || ino == self {
			continue // exited, kernel thread, or the host
		}
		n := add(ino)
		if n.PID == 0 {
			n.PID = pid
			if n.Path == "" {
				n.Path = filepath.Join(proc, strconv.Itoa(pid), "ns/net")
			}
		}
		if n.PodUID == "" || n.PodName == "" {
			d.podOf(ctx, pid, n)
		}
	}

	out := make([]Namespace, 0, len(order))
	for _, ino := range order {
		out = append(out, *byIno[ino])
	}
	slices.SortFunc(out, func(a, b Namespace) int { return strings.Compare(a.Label(), b.Label()) })
	return out, nil
}

// Caps of the files podOf reads: the pod's own files, so hostile
// (safefile). cgroup and environ are procfs files the kernel writes, but
// a process chooses its environment's size.
const (
	podFileTimeout = 2 * time.Second
	maxCgroupFile  = 64 << 10
	maxEnvironFile = 256 << 10
	maxNSFile      = 4 << 10
)

// serviceAccountNamespace is the file, inside the container's root, that
// names the pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// podOf fills n's pod fields from process pid: the UID from its cgroup, the
// name from the HOSTNAME the runtime sets in a container's environment, the
// namespace from the service-account mount in its root. Each is optional.
// The root and the environment belong to the pod: the namespace file is
// read inside the pod's root (safefile.ReadInRoot: a FIFO, a symlink to
// /dev/zero or to a host file yields nothing), and a name or namespace that
// is not a DNS name is ignored (it would become a label value).
func (d Discovery) podOf(ctx context.Context, pid int, n *Namespace) {
	ctx, cancel := context.WithTimeout(ctx, podFileTimeout)
	defer cancel()
	dir := filepath.Join(d.procRoot(), strconv.Itoa(pid))
	cg, err := safefile.ReadFile(ctx, filepath.Join(dir, "cgroup"), maxCgroupFile)
	if err != nil {
		return
	}
	uid, ok := ParsePodUID(cg)
	if !ok || (n.PodUID != "" && n.PodUID != uid) {
		return
	}
	n.PodUID = uid
	if n.PodName == "" {
		if env, err := safefile.ReadFile(ctx, filepath.Join(dir, "environ"), maxEnvironFile); err == nil {
			if name := envValue(env, "HOSTNAME"); dnsName(name, 253) {
				n.PodName = name
			}
		}
	}
	if n.PodNamespace == "" {
		if b, err := safefile.ReadInRoot(ctx, filepath.Join(dir, "root"), serviceAccountNamespace, maxNSFile); err == nil {
			if ns := strings.TrimSpace(string(b)); dnsName(ns, 63) {
				n.PodNamespace = ns
			}
		}
	}
}

// dnsName reports whether s is a lowercase DNS name (RFC 1123 labels joined
// by dots) of at most max characters: what Kubernetes allows for pod
// names (253) and namespaces (63, one label).
func dnsName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return max > 63 || !strings.Contains(s, ".")
}

func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	// A namespace file (nsfs) is what we want; anything else is a
	// leftover mount point or not a namespace.
	var fs syscall.Statfs_t
	if err := syscall.Statfs(path, &fs); err != nil {
		return 0, err
	}
	const nsfsMagic = 0x6e736673
	if fs.Type != nsfsMagic {
		return 0, fmt.Errorf("%s: %w", path, probe.ErrNetNSGone)
	}
	return st.Ino, nil
}

// podUIDRe finds a pod UID in a cgroup path: cgroupfs driver
// ".../kubepods/burstable/pod1b4e…-…/CONTAINER" (dashes) or systemd driver
// ".../kubepods-burstable-pod1b4e…_…_….slice/…" (underscores).
var podUIDRe = regexp.MustCompile(`(?:^|[/-])pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})(?:\.slice)?(?:/|$)`)

// ParsePodUID extracts the Kubernetes pod UID from the contents of
// /proc/PID/cgroup (v1 or v2), normalised to dashes. Only paths under a
// kubepods hierarchy count.
func ParsePodUID(cgroup []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(cgroup))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.Contains(parts[2], "kubepods") {
			continue
		}
		if m := podUIDRe.FindStringSubmatch(parts[2]); m != nil {
			return strings.ToLower(strings.ReplaceAll(m[1], "_", "-")), true
		}
	}
	return "", false
}

func envValue(environ []byte, key string) string {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && string(k) == key {
			return string(v)
		}
	}
	return ""
}

// MatchPods returns a Match for `namespace/name` globs (path.Match syntax,
// "default/web-*"); pods whose names are unknown match on "*/UID".
func MatchPods(patterns ...string) (func(Namespace) bool, error) {
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("pod pattern %q: %w", p, err)
		}
	}
	return func(n Namespace) bool {
		if n.PodUID == "" {
			return false
		}
		id := n.PodNamespace + "/" + n.PodName
		if n.PodName == "" {
			id = "*/" + n.PodUID
		}
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, id); ok {
				return true
			}
		}
		return false
	}, nil
}

func sameTarget(a, b probe.Target) bool {
	return a.Name == b.Name && a.NetNS == b.NetNS && a.Host == b.Host && a.Port == b.Port
}

// ErrNoNamespace is returned by Find when no namespace matches.
var ErrNoNamespace = errors.New("no such network namespace")

// Find returns the namespace whose Label, Name or pod name matches spec
// ("pod:default/web-1", "web-1", "netns:blue").
func (d Discovery) Find(ctx context.Context, spec string) (Namespace, error) {
	nss, err := d.Discover(ctx)
	if err != nil {
		return Namespace{}, err
	}
	for _, n := range nss {
		if n.Label() == spec || n.Name == spec || (n.PodName != "" && (n.PodName == spec || n.PodNamespace+"/"+n.PodName == spec)) {
			return n, nil
		}
	}
	return Namespace{}, fmt.Errorf("netns %q: %w", spec, ErrNoNamespace)
}

// ErrAmbiguous is returned by FindPod when more than one namespace on this
// machine claims the pod.
var ErrAmbiguous = errors.New("more than one network namespace")

// FindPod returns the namespace of pod id ("NAMESPACE/NAME") on this
// machine: with uid (the pod's UID, from the Kubernetes API), the one whose
// processes' cgroup names that UID (its pod fields set to id); without, the
// one whose processes name it (service-account namespace and HOSTNAME, see
// Discover). None is ErrNoNamespace, several ErrAmbiguous (each path
// listed).
func (d Discovery) FindPod(ctx context.Context, id, uid string) (Namespace, error) {
	nss, err := d.Discover(ctx)
	if err != nil {
		return Namespace{}, err
	}
	var found []Namespace
	for _, n := range nss {
		switch {
		case uid != "" && n.PodUID == uid:
			n.PodNamespace, n.PodName, _ = strings.Cut(id, "/")
			found = append(found, n)
		case uid == "" && n.PodName != "" && n.PodNamespace+"/"+n.PodName == id:
			found = append(found, n)
		}
	}
	if len(found) == 0 && uid != "" {
		return Namespace{}, fmt.Errorf("pod %s (uid %s): %w on this node (`probe netns ls` lists the pods here)", id, uid, ErrNoNamespace)
	}
	switch len(found) {
	case 0:
		return Namespace{}, fmt.Errorf("pod %s: %w on this node (`probe netns ls` lists the pods here)", id, ErrNoNamespace)
	case 1:
		return found[0], nil
	}
	paths := make([]string, len(found))
	for i, n := range found {
		paths[i] = n.Path
	}
	return Namespace{}, fmt.Errorf("pod %s: %w (%s): name one with --netns", id, ErrAmbiguous, strings.Join(paths, ", "))
}

// PIDs lists up to max processes in n (lowest pid first): a pod's
// namespace holds its sandbox (pause, with an empty root) and its
// containers, whose roots hold the pod's files.
func (d Discovery) PIDs(ctx context.Context, n Namespace, max int) ([]int, error) {
	proc := d.procRoot()
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("netns pids: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	var out []int
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("netns pids: %w", context.Cause(ctx))
		}
		if ino, err := nsInode(filepath.Join(proc, strconv.Itoa(pid), "ns/net")); err == nil && ino == n.Inode {
			if out = append(out, pid); len(out) >= max {
				break
			}
		}
	}
	return out, nil
}
