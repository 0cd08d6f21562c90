package kernel

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe/netns"
)

// Sysctls are the values lint looks at, keyed like sysctl(8)
// ("net.ipv4.tcp_syn_retries"); a key the kernel does not have is absent.
type Sysctls map[string]string

// LintKeys are the sysctls ReadSysctls reads.
var LintKeys = []string{
	"net.ipv4.ip_local_port_range",
	"net.ipv4.ip_local_reserved_ports",
	"net.ipv4.tcp_syn_retries",
	"net.ipv4.tcp_synack_retries",
	"net.ipv4.tcp_syn_linear_timeouts",
	"net.ipv4.tcp_keepalive_time",
	"net.ipv4.tcp_keepalive_intvl",
	"net.ipv4.tcp_keepalive_probes",
	"net.ipv4.tcp_tw_reuse",
	"net.ipv4.tcp_tw_recycle", // removed in Linux 4.12; linted when present
	"net.ipv4.tcp_timestamps",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.tcp_max_syn_backlog",
	"net.core.somaxconn",
}

// ReadSysctls reads LintKeys inside the namespace at nsPath ("" = here).
// /proc/sys/net resolves against the opening thread's namespace. Keys the
// kernel lacks are left out.
func ReadSysctls(nsPath string) (Sysctls, error) {
	s := Sysctls{}
	err := netns.Do(nsPath, func() error {
		for _, k := range LintKeys {
			b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			s[k] = strings.Join(strings.Fields(string(b)), " ")
		}
		// /proc/net/ip_vs lists virtual services after a 3-line header.
		if b, err := os.ReadFile("/proc/thread-self/net/ip_vs"); err == nil && strings.Count(string(b), "\n") > 3 {
			s[IPVSKey] = "1"
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel: sysctls: %w", err)
	}
	return s, nil
}

// LintConfig is what lint compares the sysctls with.
type LintConfig struct {
	// NodePortLow..NodePortHigh is the cluster's NodePort range
	// (kube-apiserver --service-node-port-range), default 30000-32767.
	NodePortLow, NodePortHigh int
	// MaxConnect is the longest a connect to a dead peer may hang before it
	// is a finding; default 60 s.
	MaxConnect time.Duration
	// PathIdleTimeout is the shortest idle timeout of a NAT on the path
	// (IPVS TCP default 900 s; conntrack established default 5 days).
	// Zero means unknown: tcp_keepalive_time is then checked against
	// IPVSIdleTimeout only when the namespace has IPVS services
	// (Sysctls key IPVSKey).
	PathIdleTimeout time.Duration
	// NAT says connections from here are source-NATed (pods behind a node
	// IP), which makes tcp_timestamps interact with PAWS on the server.
	NAT bool
}

// DefaultLintConfig is a Kubernetes node: NodePorts 30000-32767, connects
// that may hang 60 s, the path's idle timeout unknown.
var DefaultLintConfig = LintConfig{NodePortLow: 30000, NodePortHigh: 32767, MaxConnect: 60 * time.Second}

// IPVSIdleTimeout is IPVS's default TCP session timeout (ipvsadm --timeout).
const IPVSIdleTimeout = 900 * time.Second

// IPVSKey is a pseudo-sysctl ReadSysctls sets to "1" when the namespace has
// IPVS virtual services (kube-proxy in IPVS mode): then the path's idle
// timeout is IPVSIdleTimeout unless LintConfig says otherwise.
const IPVSKey = "ipvs.services"

func (c LintConfig) withDefaults() LintConfig {
	if c.NodePortLow == 0 && c.NodePortHigh == 0 {
		c.NodePortLow, c.NodePortHigh = DefaultLintConfig.NodePortLow, DefaultLintConfig.NodePortHigh
	}
	if c.MaxConnect == 0 {
		c.MaxConnect = DefaultLintConfig.MaxConnect
	}
	return c
}

// Severity of a finding.
type Severity string

// Severities.
const (
	Warning Severity = "warning" // breaks connections in a known way
	Notice  Severity = "notice"  // worth knowing, depends on the setup
)

// Finding is one lint result.
type Finding struct {
	Key      string // the sysctl
	Value    string // its current value
	Severity Severity
	Problem  string // what is wrong, with numbers
	Why      string // why it matters (the failure it causes)
	Fix      string // what to set
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s = %s: %s\n  why: %s\n  fix: %s", f.Severity, f.Key, f.Value, f.Problem, f.Why, f.Fix)
}

// Lint checks s against cfg. A missing key is not a finding; a malformed
// value is one (it cannot be checked). The defaults of a current kernel
// produce no finding.
func Lint(s Sysctls, cfg LintConfig) []Finding {
	cfg = cfg.withDefaults()
	var out []Finding
	bad := func(k, v string) {
		out = append(out, Finding{Key: k, Value: v, Severity: Notice, Problem: "value not understood", Why: "lint cannot check it", Fix: "check the value by hand"})
	}

	if v, ok := s["net.ipv4.ip_local_port_range"]; ok {
		lo, hi, err := parseRange(v)
		reserved, rerr := parsePortList(s["net.ipv4.ip_local_reserved_ports"])
		switch {
		case err != nil:
			bad("net.ipv4.ip_local_port_range", v)
		case rerr != nil:
			bad("net.ipv4.ip_local_reserved_ports", s["net.ipv4.ip_local_reserved_ports"])
		case lo <= cfg.NodePortHigh && hi >= cfg.NodePortLow:
			// The kernel never picks a reserved port as an ephemeral one
			// (ip_local_reserved_ports): only the part left over overlaps.
			left := subtract(portRange{max(lo, cfg.NodePortLow), min(hi, cfg.NodePortHigh)}, reserved)
			if len(left) == 0 {
				break
			}
			problem := fmt.Sprintf("ephemeral ports %d-%d overlap the NodePort range %d-%d", lo, hi, cfg.NodePortLow, cfg.NodePortHigh)
			if len(reserved) > 0 {
				problem += fmt.Sprintf("; ip_local_reserved_ports leaves %s of it unreserved", formatRanges(left))
			}
			out = append(out, Finding{
				Key: "net.ipv4.ip_local_port_range", Value: v, Severity: Warning,
				Problem: problem,
				Why: "a connection can get a source port that is also a NodePort; since Kubernetes 1.24 kube-proxy no longer holds NodePorts open, " +
					"so replies to that port can be caught by the NodePort rule and the handshake hangs in SYN/ACK retransmission (30 s requests, then a 502)",
				Fix: fmt.Sprintf("sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\" (the kernel default), or reserve the range with net.ipv4.ip_local_reserved_ports=%d-%d", cfg.NodePortLow, cfg.NodePortHigh),
			})
		}
	}

	linear := 4 // kernel ≥ 6.x default; 0 on kernels without the sysctl
	if v, ok := s["net.ipv4.tcp_syn_linear_timeouts"]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			linear = n
		}
	} else {
		linear = 0
	}
	for _, k := range []string{"net.ipv4.tcp_syn_retries", "net.ipv4.tcp_synack_retries"} {
		v, ok := s[k]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad(k, v)
			continue
		}
		budget := func(n int) time.Duration { return SynBudget(n, linear) }
		if k == "net.ipv4.tcp_synack_retries" {
			budget = SynAckBudget // the linear phase applies to active opens only
		}
		if d := budget(n); d > cfg.MaxConnect {
			want := retriesFor(budget, cfg.MaxConnect)
			f := Finding{Key: k, Value: v, Severity: Warning,
				Fix: fmt.Sprintf("sysctl -w %s=%d (gives up after %s) and use application connect timeouts", k, want, budget(want).Round(time.Second))}
			if k == "net.ipv4.tcp_synack_retries" {
				f.Problem = fmt.Sprintf("a server keeps retransmitting an unacknowledged SYN/ACK for %s before the kernel gives up (over %s)", d.Round(time.Second), cfg.MaxConnect)
				f.Why = fmt.Sprintf("a client whose ACK (or the SYN/ACK itself) was lost only gets a connection when a retransmitted SYN/ACK gets through: "+
					"tcp_synack_retries=%d retransmits at %s after the first SYN/ACK, so such a handshake takes up to %s", n, ladder(n, 0), d.Round(time.Second))
			} else {
				f.Problem = fmt.Sprintf("a connect() to a dead or blackholed peer hangs %s before the kernel gives up (over %s)", d.Round(time.Second), cfg.MaxConnect)
				f.Why = fmt.Sprintf("clients wait that long on a lost SYN or SYN/ACK: tcp_syn_retries=%d sends SYNs at %s and gives up at %s; "+
					"an application with no connect timeout of its own hangs as long (an 85 s connect, 30 s requests)", n, ladder(n, linear), d.Round(time.Second))
			}
			out = append(out, f)
		}
	}

	idle := cfg.PathIdleTimeout
	if idle == 0 && s[IPVSKey] == "1" {
		idle = IPVSIdleTimeout
	}
	if v, ok := s["net.ipv4.tcp_keepalive_time"]; ok && idle > 0 {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			bad("net.ipv4.tcp_keepalive_time", v)
		case time.Duration(n)*time.Second >= idle:
			out = append(out, Finding{
				Key: "net.ipv4.tcp_keepalive_time", Value: v, Severity: Warning,
				Problem: fmt.Sprintf("first keep-alive after %s idle, not shorter than the path's idle timeout %s", time.Duration(n)*time.Second, idle),
				Why: "an idle connection's NAT/IPVS session expires before the first keep-alive could refresh it; the next packet is then " +
					"dropped or reset and a client waiting for a reply hangs (a 6 h hang after IPVS dropped its 900 s session)",
				Fix: fmt.Sprintf("sysctl -w net.ipv4.tcp_keepalive_time=%d (below the idle timeout), and SO_KEEPALIVE in the application", int((idle*2/3)/time.Second)),
			})
		}
	}

	if v, ok := s["net.ipv4.tcp_tw_recycle"]; ok && v != "0" {
		out = append(out, Finding{
			Key: "net.ipv4.tcp_tw_recycle", Value: v, Severity: Warning,
			Problem: "TIME-WAIT recycling is on",
			Why: "with tcp_timestamps it enforces per-host PAWS: SYNs from many clients behind one NAT address carry unordered timestamps " +
				"and are silently dropped (netstat -s: SYNs to LISTEN sockets dropped; removed from Linux in 4.12 for this reason)",
			Fix: "sysctl -w net.ipv4.tcp_tw_recycle=0",
		})
	}
	if v, ok := s["net.ipv4.tcp_tw_reuse"]; ok && v == "1" {
		out = append(out, Finding{
			Key: "net.ipv4.tcp_tw_reuse", Value: v, Severity: Notice,
			Problem: "TIME-WAIT ports are reused for all outgoing connections, not only loopback",
			Why: "reuse depends on the peer's timestamps; behind NAT or toward servers with timestamps off a reused 4-tuple can meet a stale " +
				"TIME-WAIT on the server (PAWSTimewait, RST) — a fix for port exhaustion that hides the real problem",
			Fix: "sysctl -w net.ipv4.tcp_tw_reuse=2 (loopback only, the default) and widen ip_local_port_range or pool connections instead",
		})
	}
	if v, ok := s["net.ipv4.tcp_timestamps"]; ok && v != "0" && cfg.NAT {
		if rv, ok := s["net.ipv4.tcp_tw_recycle"]; ok && rv != "0" {
			// Already the warning above.
		} else {
			out = append(out, Finding{
				Key: "net.ipv4.tcp_timestamps", Value: v, Severity: Notice,
				Problem: "timestamps on for connections that leave through a shared NAT address",
				Why: "a server or middlebox that applies PAWS per address (tcp_tw_recycle on old kernels, some load balancers) drops SYNs " +
					"from different pods behind the same NAT IP whose clocks differ; check ListenDrops/PAWS* on the server",
				Fix: "keep timestamps on (they protect against wrapped sequence numbers) and make sure no server on the path runs tcp_tw_recycle=1; " +
					"tcp_timestamps=0 only as a last resort",
			})
		}
	}
	return out
}

// SynBudget is how long connect() waits for a handshake with n SYN
// retransmissions before ETIMEDOUT. The wait after SYN i is 1 s while
// i <= linear (tcp_syn_linear_timeouts, Linux 6.x: SYNs at 0,1,2,3,4,5,7,11 s
// with the default 4), then doubles (2 s, 4 s, … capped at TCP_RTO_MAX
// 120 s); the kernel gives up one full timeout after the last SYN. Classic
// backoff (linear 0) and 6 retries: 1+2+4+8+16+32+64 = 127 s.
func SynBudget(n, linear int) time.Duration {
	var total time.Duration
	for i := 0; i <= n; i++ {
		total += synWait(i, linear)
	}
	return total
}

// SynAckBudget is how long after the first SYN/ACK a server still
// retransmits it with n retries (no linear phase for passive opens): the
// last moment a client's lost ACK can still be repaired; 5 (the default)
// is 1+2+4+8+16 = 31 s.
func SynAckBudget(n int) time.Duration {
	var total time.Duration
	for i := 0; i < n; i++ {
		total += synWait(i, 0)
	}
	return total
}

func synWait(i, linear int) time.Duration {
	if i <= linear {
		return time.Second
	}
	return min(time.Second<<min(i-linear, 8), 120*time.Second)
}

// retriesFor is the largest retry count whose budget fits max (at least 1).
func retriesFor(budget func(int) time.Duration, max time.Duration) int {
	n := 1
	for n < 20 && budget(n+1) <= max {
		n++
	}
	return n
}

func parseRange(v string) (int, int, error) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("range %q: want two ports", v)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo < 0 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("range %q: want low high", v)
	}
	return lo, hi, nil
}

// ladder lists when the SYNs (or SYN/ACKs) of a handshake with n
// retransmissions go out: "0,1,2,3,4,5,7 s".
func ladder(n, linear int) string {
	var b strings.Builder
	var at time.Duration
	for i := 0; i <= n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(at / time.Second)))
		at += synWait(i, linear)
	}
	return b.String() + " s"
}

type portRange struct{ lo, hi int }

// parsePortList parses ip_local_reserved_ports: "" or "30000-32767,40000".
func parsePortList(v string) ([]portRange, error) {
	var out []portRange
	for _, f := range strings.Split(strings.TrimSpace(v), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, b, ok := strings.Cut(f, "-")
		if !ok {
			b = a
		}
		lo, hi, err := parseRange(a + " " + b)
		if err != nil {
			return nil, err
		}
		out = append(out, portRange{lo, hi})
	}
	return out, nil
}

// subtract returns the parts of r not covered by any of cut.
func subtract(r portRange, cut []portRange) []portRange {
	left := []portRange{r}
	for _, c := range cut {
		var next []portRange
		for _, l := range left {
			if c.hi < l.lo || c.lo > l.hi {
				next = append(next, l)
				continue
			}
			if c.lo > l.lo {
				next = append(next, portRange{l.lo, c.lo - 1})
			}
			if c.hi < l.hi {
				next = append(next, portRange{c.hi + 1, l.hi})
			}
		}
		left = next
	}
	return left
}

func formatRanges(rs []portRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.Itoa(r.lo)
		if r.hi != r.lo {
			parts[i] += "-" + strconv.Itoa(r.hi)
		}
	}
	return strings.Join(parts, ",")
}

// ParsePortRange parses "30000-32767" (a flag value).
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("port range %q: want LOW-HIGH", s)
	}
	return parseRange(a + " " + b)
}
