// Package lab builds a small Kubernetes-like network out of network
// namespaces, for tests and for `probe lab`, and injects faults into it.
//
// Topology (all addresses fixed: every lab lives in its own namespaces, so
// parallel labs never collide; only the namespace names carry a unique
// prefix):
//
//	<p>-pod   eth0 10.244.1.2/24, default via 10.244.1.1
//	   |      (veth pair created straight into both namespaces)
//	<p>-node  veth-pod 10.244.1.1/24        the "node": routes, kube-proxy-style
//	          br0      10.244.2.1/24        Service VIP 10.96.0.10 (nft DNAT to
//	            ├ veth-b1                   backend1/backend2 with conntrack,
//	            ├ veth-b2                   numgen random balancing), fault
//	            └ veth-db                   injection; no default route
//	<p>-b1    eth0 10.244.2.11/24, default via 10.244.2.1
//	<p>-b2    eth0 10.244.2.12/24, default via 10.244.2.1
//	<p>-db    eth0 10.244.2.20/24, default via 10.244.2.1
//
// Every address has an IPv6 twin in the ULA prefix fd00:10::/32 (the same
// last digits: 10.244.2.11 is fd00:10:244:2::11, the VIP 10.96.0.10 is
// fd00:10:96::10), so every path, the Service VIP and every fault exist in
// both families. IPv6 addresses skip duplicate address detection (nodad):
// they are usable at once.
//
// The VIP keeps the destination port: VIP:P is DNATed to backendN:P for any
// TCP port P, so a test listens on the backends' port P and probes VIP:P.
// Nothing is created in the root namespace and no namespace has a route out
// of the machine: the node namespace only knows the two lab subnets, so the
// lab can never send a packet anywhere else.
//
// Faults (see Fault) are nftables rules in a dedicated table of the node
// namespace, plus conntrack actions and sysctls there; ClearFaults removes
// them all at once.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe/netns"
)

// Addresses of every lab.
var (
	PodIP      = netip.MustParseAddr("10.244.1.2")
	GatewayIP  = netip.MustParseAddr("10.244.1.1") // the node's address on the pod link
	BridgeIP   = netip.MustParseAddr("10.244.2.1") // the node's address on the backend bridge
	Backend1IP = netip.MustParseAddr("10.244.2.11")
	Backend2IP = netip.MustParseAddr("10.244.2.12")
	DBIP       = netip.MustParseAddr("10.244.2.20")
	VIP        = netip.MustParseAddr("10.96.0.10")
	// The IPv6 twins (ULA).
	PodIP6      = netip.MustParseAddr("fd00:10:244:1::2")
	GatewayIP6  = netip.MustParseAddr("fd00:10:244:1::1")
	BridgeIP6   = netip.MustParseAddr("fd00:10:244:2::1")
	Backend1IP6 = netip.MustParseAddr("fd00:10:244:2::11")
	Backend2IP6 = netip.MustParseAddr("fd00:10:244:2::12")
	DBIP6       = netip.MustParseAddr("fd00:10:244:2::20")
	VIP6        = netip.MustParseAddr("fd00:10:96::10")
	podNet      = "10.244.1.0/24"
	backendNet  = "10.244.2.0/24"
	podLinkName = "veth-pod" // the node's end of the pod link
)

// DefaultEstablishedTimeout is the kernel's default
// nf_conntrack_tcp_timeout_established (5 days), restored by ClearFaults.
const DefaultEstablishedTimeout = 432000 * time.Second

// TestPrefix starts the prefix of every lab made by New; Sweep removes such
// labs whose process died without cleaning up.
const TestPrefix = "cpt"

// Lab is one running lab. Its fields are what `probe lab up` stores in its
// state file.
type Lab struct {
	// Prefix starts every namespace name of this lab.
	Prefix string `json:"prefix"`
	// Namespace names (ip netns names, files under /run/netns).
	Pod      string `json:"pod"`
	Router   string `json:"router"`
	Backend1 string `json:"backend1"`
	Backend2 string `json:"backend2"`
	DB       string `json:"db"`
	// Addresses.
	PodIP      netip.Addr `json:"pod_ip"`
	GatewayIP  netip.Addr `json:"gateway_ip"`
	VIP        netip.Addr `json:"vip"`
	Backend1IP netip.Addr `json:"backend1_ip"`
	Backend2IP netip.Addr `json:"backend2_ip"`
	DBIP       netip.Addr `json:"db_ip"`
	// The IPv6 twins of the addresses above.
	PodIP6      netip.Addr `json:"pod_ip6,omitzero"`
	GatewayIP6  netip.Addr `json:"gateway_ip6,omitzero"`
	VIP6        netip.Addr `json:"vip6,omitzero"`
	Backend1IP6 netip.Addr `json:"backend1_ip6,omitzero"`
	Backend2IP6 netip.Addr `json:"backend2_ip6,omitzero"`
	DBIP6       netip.Addr `json:"db_ip6,omitzero"`
	// PAWS lists the PAWS-emulation queue rules Fault installed (see
	// PAWS), so ClearFaults can remove them, also from another process.
	PAWS []PAWSRule `json:"paws,omitempty"`
}

// Addrs are a lab's addresses in one family.
type Addrs struct {
	Pod, Gateway, VIP, Backend1, Backend2, DB netip.Addr
}

// Family returns the lab's IPv4 addresses, or their IPv6 twins when v6.
func (l *Lab) Family(v6 bool) Addrs {
	if v6 {
		return Addrs{l.PodIP6, l.GatewayIP6, l.VIP6, l.Backend1IP6, l.Backend2IP6, l.DBIP6}
	}
	return Addrs{l.PodIP, l.GatewayIP, l.VIP, l.Backend1IP, l.Backend2IP, l.DBIP}
}

// Owner returns the namespace that has address a ("" for the VIP or an
// address outside the lab).
func (l *Lab) Owner(a netip.Addr) string {
	switch a.Unmap() {
	case l.PodIP, l.PodIP6:
		return l.Pod
	case l.GatewayIP, l.GatewayIP6, BridgeIP, BridgeIP6:
		return l.Router
	case l.Backend1IP, l.Backend1IP6:
		return l.Backend1
	case l.Backend2IP, l.Backend2IP6:
		return l.Backend2
	case l.DBIP, l.DBIP6:
		return l.DB
	}
	return ""
}

// Options configure Up.
type Options struct {
	// Prefix for the namespace names; empty picks a unique one
	// (TestPrefix, the process id and random hex). At most 20 characters
	// of [a-z0-9-].
	Prefix string
	// Sysctls are set per namespace after the lab is up: namespace role
	// ("pod", "node", "b1", "b2", "db") → key → value.
	Sysctls map[string]map[string]string
}

// Option changes Options, for New.
type Option func(*Options)

// WithPrefix sets the namespace name prefix.
func WithPrefix(p string) Option { return func(o *Options) { o.Prefix = p } }

// WithSysctl sets a sysctl in the namespace with role ("pod", "node", "b1",
// "b2", "db") once the lab is up.
func WithSysctl(role, key, value string) Option {
	return func(o *Options) {
		if o.Sysctls == nil {
			o.Sysctls = map[string]map[string]string{}
		}
		if o.Sysctls[role] == nil {
			o.Sysctls[role] = map[string]string{}
		}
		o.Sysctls[role][key] = value
	}
}

// Roles lists the namespace roles, in creation order.
var Roles = []string{"pod", "node", "b1", "b2", "db"}

// NS returns the namespace name of a role ("pod", "node", "b1", "b2", "db").
func (l *Lab) NS(role string) (string, error) {
	switch role {
	case "pod":
		return l.Pod, nil
	case "node", "router":
		return l.Router, nil
	case "b1", "backend1":
		return l.Backend1, nil
	case "b2", "backend2":
		return l.Backend2, nil
	case "db":
		return l.DB, nil
	}
	return "", fmt.Errorf("lab: unknown namespace role %q (want pod, node, b1, b2 or db)", role)
}

// Namespaces returns the lab's namespace names.
func (l *Lab) Namespaces() []string {
	return []string{l.Pod, l.Router, l.Backend1, l.Backend2, l.DB}
}

// Path returns the namespace file of ns (a name of this lab, or any name
// under /run/netns).
func (l *Lab) Path(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return filepath.Join(netns.NamedDir, ns)
}

// Attach returns the lab with prefix that an earlier Up (maybe in another
// process) built. It fails when the lab's namespaces are not there.
func Attach(prefix string) (*Lab, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	l := newLab(prefix)
	for _, ns := range l.Namespaces() {
		if err := netns.Check(l.Path(ns)); err != nil {
			return nil, fmt.Errorf("lab %s: %w", prefix, err)
		}
	}
	return l, nil
}

// Remove deletes whatever namespaces of the lab with prefix still exist,
// for cleaning up after a process that could not run Down.
func Remove(prefix string) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	return newLab(prefix).Down()
}

// newLab fills in the names and addresses for prefix.
func newLab(prefix string) *Lab {
	return &Lab{
		Prefix:     prefix,
		Pod:        prefix + "-pod",
		Router:     prefix + "-node",
		Backend1:   prefix + "-b1",
		Backend2:   prefix + "-b2",
		DB:         prefix + "-db",
		PodIP:      PodIP,
		GatewayIP:  GatewayIP,
		VIP:        VIP,
		Backend1IP: Backend1IP,
		Backend2IP: Backend2IP,
		DBIP:       DBIP,

		PodIP6:      PodIP6,
		GatewayIP6:  GatewayIP6,
		VIP6:        VIP6,
		Backend1IP6: Backend1IP6,
		Backend2IP6: Backend2IP6,
		DBIP6:       DBIP6,
	}
}

// uniquePrefix is TestPrefix, the pid (so Sweep can tell a dead owner) and
// 16 random bits.
func uniquePrefix() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%d-%s", TestPrefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// ValidPrefix reports whether p can prefix namespace names.
func ValidPrefix(p string) error {
	if p == "" || len(p) > 20 {
		return fmt.Errorf("lab: prefix %q: want 1-20 characters", p)
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("lab: prefix %q: only a-z, 0-9 and - allowed", p)
		}
	}
	return nil
}

// Tools the lab runs, with the Debian package that has each.
var Tools = []struct{ Name, Package string }{
	{"ip", "iproute2"},
	{"nft", "nftables"},
}

// CheckTools reports every missing tool the lab needs, naming its package.
func CheckTools() error {
	var missing, pkgs []string
	for _, t := range Tools {
		if _, err := exec.LookPath(t.Name); err != nil {
			missing = append(missing, t.Name)
			pkgs = append(pkgs, t.Package)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: missing %s: install the Debian package(s) %s (make deps, or apt-get install %s)",
			strings.Join(missing, ", "), strings.Join(pkgs, " "), strings.Join(pkgs, " "))
	}
	return nil
}

// Up builds a lab. On any error it removes what it had built.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if o.Prefix == "" {
		o.Prefix = uniquePrefix()
	}
	if err := ValidPrefix(o.Prefix); err != nil {
		return nil, err
	}
	if err := CheckTools(); err != nil {
		return nil, err
	}
	l = newLab(o.Prefix)
	for _, ns := range l.Namespaces() {
		if _, err := os.Stat(l.Path(ns)); err == nil {
			return nil, fmt.Errorf("lab: namespace %s already exists (a lab with prefix %q is up; probe lab down, or pick another prefix)", ns, o.Prefix)
		}
	}
	// "return nil, err" has set l to nil by the time this runs: remove
	// what was built through its own copy.
	built := l
	defer func() {
		if err != nil {
			_ = built.Down()
			l = nil
		}
	}()
	for _, ns := range l.Namespaces() {
		if err := run(ctx, nil, "ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		// Links created from now on skip DAD (their link-local
		// addresses are usable at once, like the nodad global ones).
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := l.Sysctl(ns, k, "0"); err != nil {
				return nil, err
			}
		}
	}
	ipn := func(ns string, args ...string) error {
		return run(ctx, nil, "ip", append([]string{"-n", ns}, args...)...)
	}
	steps := [][]string{
		{l.Router, "link", "add", "br0", "type", "bridge"},
		{l.Router, "addr", "add", BridgeIP.String() + "/24", "dev", "br0"},
		{l.Router, "link", "set", "br0", "up"},
		{l.Router, "link", "set", "lo", "up"},
		// The pod link, created straight into both namespaces.
		{l.Pod, "link", "add", "eth0", "type", "veth", "peer", "name", podLinkName, "netns", l.Router},
		{l.Pod, "addr", "add", PodIP.String() + "/24", "dev", "eth0"},
		{l.Pod, "link", "set", "lo", "up"},
		{l.Pod, "link", "set", "eth0", "up"},
		{l.Pod, "route", "add", "default", "via", GatewayIP.String()},
		{l.Router, "addr", "add", GatewayIP.String() + "/24", "dev", podLinkName},
		{l.Router, "link", "set", podLinkName, "up"},
		// The IPv6 twins.
		{l.Router, "-6", "addr", "add", BridgeIP6.String() + "/64", "dev", "br0", "nodad"},
		{l.Pod, "-6", "addr", "add", PodIP6.String() + "/64", "dev", "eth0", "nodad"},
		{l.Pod, "-6", "route", "add", "default", "via", GatewayIP6.String()},
		{l.Router, "-6", "addr", "add", GatewayIP6.String() + "/64", "dev", podLinkName, "nodad"},
	}
	for _, b := range []struct {
		ns, link string
		ip, ip6  netip.Addr
	}{{l.Backend1, "veth-b1", Backend1IP, Backend1IP6}, {l.Backend2, "veth-b2", Backend2IP, Backend2IP6}, {l.DB, "veth-db", DBIP, DBIP6}} {
		steps = append(steps,
			[]string{b.ns, "link", "add", "eth0", "type", "veth", "peer", "name", b.link, "netns", l.Router},
			[]string{b.ns, "addr", "add", b.ip.String() + "/24", "dev", "eth0"},
			[]string{b.ns, "-6", "addr", "add", b.ip6.String() + "/64", "dev", "eth0", "nodad"},
			[]string{b.ns, "link", "set", "lo", "up"},
			[]string{b.ns, "link", "set", "eth0", "up"},
			[]string{b.ns, "route", "add", "default", "via", BridgeIP.String()},
			[]string{b.ns, "-6", "route", "add", "default", "via", BridgeIP6.String()},
			[]string{l.Router, "link", "set", b.link, "master", "br0", "up"},
		)
	}
	for _, s := range steps {
		if err := ipn(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	// The node forwards; ICMP errors are never rate-limited (the kernel
	// would otherwise turn the 7th reject in a second into a silent drop and
	// an ICMP test into a flaky syn_timeout); conntrack counts packets so
	// "after N packets" faults can match.
	for k, v := range map[string]string{
		"net.ipv4.ip_forward":                                "1",
		"net.ipv4.icmp_ratemask":                             "0",
		"net.ipv6.conf.all.forwarding":                       "1",
		"net.ipv6.icmp.ratelimit":                            "0",
		"net.netfilter.nf_conntrack_acct":                    "1",
		"net.netfilter.nf_conntrack_tcp_timeout_established": strconv.Itoa(int(DefaultEstablishedTimeout.Seconds())),
	} {
		if err := l.Sysctl(l.Router, k, v); err != nil {
			return nil, err
		}
	}
	for role, kv := range o.Sysctls {
		ns, err := l.NS(role)
		if err != nil {
			return nil, err
		}
		for k, v := range kv {
			if err := l.Sysctl(ns, k, v); err != nil {
				return nil, err
			}
		}
	}
	if err := l.nft(ctx, serviceRules(l)+faultTable+faultTable6); err != nil {
		return nil, err
	}
	return l, nil
}

// serviceRules is the kube-proxy-style Service: DNAT of the VIP (any TCP
// port, each family to its twin) to one of the two backends, chosen at random per connection, with
// conntrack remembering the choice (and reversing it on replies). Like
// kube-proxy, no SNAT: backends see the pod's own address.
func serviceRules(l *Lab) string {
	return fmt.Sprintf(`table ip svc {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s meta l4proto tcp dnat to numgen random mod 2 map { 0 : %s, 1 : %s }
	}
}
table ip6 svc6 {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip6 daddr %s meta l4proto tcp dnat to numgen random mod 2 map { 0 : %s, 1 : %s }
	}
}
`, l.VIP, l.Backend1IP, l.Backend2IP, l.VIP6, l.Backend1IP6, l.Backend2IP6)
}

// Down removes every namespace of the lab (and with them every link, rule
// and conntrack entry in them). Missing namespaces are not an error, so Down
// may run twice.
func (l *Lab) Down() error {
	var errs []error
	for _, ns := range l.Namespaces() {
		if _, err := os.Stat(l.Path(ns)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, nil, "ip", "netns", "delete", ns)
		cancel()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Exec runs argv inside namespace ns (ip netns exec) and returns its
// combined output.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("lab: exec: empty command")
	}
	return output(ctx, nil, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Sysctl sets key (dotted, "net.ipv4.tcp_syn_retries") to value inside
// namespace ns. Net sysctls are per namespace: /proc/sys/net is resolved
// against the network namespace of the thread that opens it, so the write
// happens inside netns.Do.
func (l *Lab) Sysctl(ns, key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	err = netns.Do(l.Path(ns), func() error {
		return os.WriteFile(p, []byte(value), 0)
	})
	if err != nil {
		return fmt.Errorf("lab: sysctl %s=%s in %s: %w", key, value, ns, err)
	}
	return nil
}

// ReadSysctl reads key inside namespace ns.
func (l *Lab) ReadSysctl(ns, key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = netns.Do(l.Path(ns), func() error {
		var err error
		b, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("lab: sysctl %s in %s: %w", key, ns, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func sysctlPath(key string) (string, error) {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "/") || strings.Contains(key, "..") {
		return "", fmt.Errorf("lab: sysctl %q: only net.* keys are per namespace", key)
	}
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/"), nil
}

// Listen creates a TCP listener inside namespace ns (a name or a path). Go's
// default 15 s keep-alive on accepted connections is turned off: its probes
// would refresh NAT entries and hide stale-session faults.
func (l *Lab) Listen(ns, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	var ln net.Listener
	err := netns.Do(l.Path(ns), func() error {
		var err error
		// Listen does not block on the network; the context only satisfies the API.
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: listen %s in %s: %w", addr, ns, err)
	}
	return ln, nil
}

func (l *Lab) nft(ctx context.Context, script string) error {
	if _, err := output(ctx, strings.NewReader(script), "ip", "netns", "exec", l.Router, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("%w\nscript:\n%s", err, script)
	}
	return nil
}

// Ruleset returns the node namespace's nftables ruleset, for evidence and
// debugging.
func (l *Lab) Ruleset(ctx context.Context) (string, error) {
	return l.Exec(ctx, l.Router, "nft", "list", "ruleset")
}

func run(ctx context.Context, stdin *strings.Reader, name string, args ...string) error {
	_, err := output(ctx, stdin, name, args...)
	return err
}

func output(ctx context.Context, stdin *strings.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
