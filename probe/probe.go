// Package probe holds the vocabulary every connprobe probe speaks: a Target to
// probe, a Prober that probes it, and a Result that says not only whether the
// attempt worked but why it did not, as a bounded Reason with the facts behind
// it as Evidence.
//
// A failed probe is data, not a Go error: Probe never returns an error, it
// returns a Result whose Reason classifies the failure. Errors are reserved for
// construction problems (a bad address, a missing capability), which the
// constructors of the probe packages return.
package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Target is what a probe is pointed at.
type Target struct {
	// Name is the stable identity of the target, used as the "target" label;
	// it is the target as the user wrote it ("db:3306", "tcp://10.96.0.10:80").
	Name string
	// Scheme is "tcp" for plain TCP targets; application probes use their
	// protocol's scheme ("mysql", "redis", ...).
	Scheme string
	// Host is a host name or an IP address literal (without brackets).
	Host string
	// Port is the TCP port, never 0.
	Port uint16
	// NetNS, when set, is the path of a network namespace file
	// (/run/netns/x, /proc/PID/ns/net) in which the probe opens its sockets.
	NetNS string
	// URL is the parsed target when it was given as a URL; it carries the
	// user information and path application probes need. Nil for host:port.
	URL *url.URL
	// Resolver, when set, resolves Host instead of the job's resolver: a
	// DNS SRV source sets its server, which named the host (Resolve).
	Resolver *Resolver
}

// HostPort returns Host and Port joined for net.Dial-like APIs.
func (t Target) HostPort() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// Addr returns the target's address when Host is an IP literal.
func (t Target) Addr() (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(t.Host)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), t.Port), true
}

// ParseTarget parses "host:port", "[v6]:port" or "scheme://host:port[/...]".
// A URL scheme other than tcp is kept in Scheme for application probes; a URL
// without a port takes defaultPorts[scheme] when there is one.
func ParseTarget(s string) (Target, error) {
	if s == "" {
		return Target{}, fmt.Errorf("target: empty")
	}
	// Every message names the target by its redacted form: errors reach
	// lint output, logs and HTTP bodies, and must never carry a password.
	q := RedactTarget(s)
	t := Target{Name: q, Scheme: "tcp"}
	hostport := s
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its text repeats the raw URL
			}
			return Target{}, fmt.Errorf("target %q: %w", q, err)
		}
		if u.Scheme == "" || u.Host == "" {
			return Target{}, fmt.Errorf("target %q: want scheme://host:port", q)
		}
		t.Scheme = strings.ToLower(u.Scheme)
		t.URL = u
		if _, ok := u.User.Password(); ok {
			// Name is a label and is printed: never the password.
			t.Name = u.Redacted()
		}
		hostport = u.Host
		if u.Port() == "" {
			p, ok := defaultPorts[t.Scheme]
			if !ok {
				return Target{}, fmt.Errorf("target %q: missing port", q)
			}
			hostport = net.JoinHostPort(u.Hostname(), strconv.Itoa(p))
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err) // its text repeats the address
		}
		return Target{}, fmt.Errorf("target %q: want host:port: %w", q, err)
	}
	if host == "" {
		return Target{}, fmt.Errorf("target %q: missing host", q)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Target{}, fmt.Errorf("target %q: port %q is not a number in 1-65535", q, port)
	}
	if p == 0 {
		return Target{}, fmt.Errorf("target %q: port 0 cannot be probed", q)
	}
	if i := strings.IndexByte(host, '%'); i >= 0 && !strings.Contains(host, ":") {
		return Target{}, fmt.Errorf("target %q: zone only allowed on IPv6 addresses", q)
	}
	t.Host = host
	t.Port = uint16(p)
	return t, nil
}

// RedactTarget returns s with the password of a URL's user information
// replaced by "xxxxx", as url.URL.Redacted does, but also for a string that
// does not parse as a URL: it is what error messages and logs may show.
func RedactTarget(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 {
		return s
	}
	return s[:i+3] + rest[:colon+1] + "xxxxx" + rest[at:]
}

// defaultPorts are the well-known ports of URL schemes, used when a URL
// target names no port.
var defaultPorts = map[string]int{
	"http":     80,
	"https":    443,
	"mysql":    3306,
	"postgres": 5432,
	"redis":    6379,
	"kafka":    9092,
}

// Prober probes one target. One instance exists per (job, target), so state
// that must survive between attempts (the last TSval sent, a pool of idle
// connections) is a plain field.
type Prober interface {
	// Probe makes one attempt and classifies it. It never returns a Go error:
	// failures are Results. It returns promptly when ctx is done.
	Probe(ctx context.Context) Result
	// Close releases what the prober holds (sockets, pools).
	Close() error
}

// Phase names where an attempt ended (or the last phase it completed, on
// success).
type Phase string

// The phases of a probe, in the order an attempt goes through them.
const (
	PhaseSetup     Phase = "setup"     // entering the netns, creating the socket
	PhaseResolve   Phase = "resolve"   // DNS lookup
	PhaseHandshake Phase = "handshake" // SYN, SYN/ACK, ACK
	PhaseSend      Phase = "send"      // writing the request
	PhaseReply     Phase = "reply"     // waiting for the answer
	PhaseApp       Phase = "app"       // application protocol greeting
	PhaseIdle      Phase = "idle"      // holding an established connection idle
	PhaseKeepalive Phase = "keepalive" // watching a connection with TCP keep-alive
	PhaseDone      Phase = "done"      // everything asked for happened
)

// Timings are the durations of an attempt's phases; zero means the phase did
// not run or was not measured. JSON renders them as "<name>_seconds".
type Timings struct {
	Resolve   time.Duration // DNS lookup
	Handshake time.Duration // connect() call to established
	SynRTT    time.Duration // raw SYN to first answer, kernel timestamps
	RTT       time.Duration // kernel's smoothed RTT (TCP_INFO tcpi_rtt)
	Send      time.Duration // write of the request
	Reply     time.Duration // request sent to reply complete
	App       time.Duration // application protocol exchange
	Idle      time.Duration // how long the connection was held idle
}

// Each calls fn for every non-zero timing with its metric name
// ("handshake", "syn_rtt", ...), in a fixed order.
func (t Timings) Each(fn func(name string, d time.Duration)) {
	for _, e := range []struct {
		name string
		d    time.Duration
	}{
		{"resolve", t.Resolve},
		{"handshake", t.Handshake},
		{"syn_rtt", t.SynRTT},
		{"rtt", t.RTT},
		{"send", t.Send},
		{"reply", t.Reply},
		{"app", t.App},
		{"idle", t.Idle},
	} {
		if e.d != 0 {
			fn(e.name, e.d)
		}
	}
}

// MarshalJSON renders the non-zero timings as {"handshake_seconds": 0.0012, ...}.
func (t Timings) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	t.Each(func(name string, d time.Duration) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:%s", name+"_seconds", strconv.FormatFloat(d.Seconds(), 'g', -1, 64))
	})
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// Result is the outcome of one attempt.
type Result struct {
	Target   string        // Target.Name
	Kind     string        // probe kind: "connect", "syn", ...
	Start    time.Time     // when the attempt began
	Duration time.Duration // how long the whole attempt took
	// Reason classifies the outcome; it is bounded and is the metric label.
	// Success follows from it.
	Reason Reason
	// Phase is where the attempt ended.
	Phase Phase
	// Retransmits is how many SYN retransmissions the handshake needed.
	Retransmits int
	Timings     Timings
	Local       netip.AddrPort // local end of the connection, when one was made
	Remote      netip.AddrPort // address actually connected to
	// Evidence are the facts behind the Reason, one short sentence each.
	Evidence []string
	// Err is the underlying error, for logs only; never a label.
	Err error
}

// Success says whether the target did what was asked: the reason's class is
// ok or degraded (a syn_retransmitted handshake is still a success).
func (r *Result) Success() bool { return r.Reason.Success() }

// Evidencef appends one formatted line of evidence.
func (r *Result) Evidencef(format string, args ...any) {
	r.Evidence = append(r.Evidence, fmt.Sprintf(format, args...))
}

// Fail sets the result's phase, error and the reason Classify gives err,
// with a line of evidence describing err.
func (r *Result) Fail(phase Phase, err error) {
	r.Phase = phase
	r.Err = err
	r.Reason = Classify(InPhase(phase, err))
	if d := Describe(err); d != "" {
		r.Evidence = append(r.Evidence, d)
	}
}

// jsonResult is the wire shape of a Result (see README "JSON output").
type jsonResult struct {
	Target          string    `json:"target"`
	Kind            string    `json:"kind"`
	Start           time.Time `json:"start"`
	DurationSeconds float64   `json:"duration_seconds"`
	Success         bool      `json:"success"`
	Reason          Reason    `json:"reason"`
	Phase           Phase     `json:"phase"`
	Retransmits     int       `json:"retransmits"`
	Timings         Timings   `json:"timings"`
	Local           string    `json:"local,omitempty"`
	Remote          string    `json:"remote,omitempty"`
	Evidence        []string  `json:"evidence"`
	Error           string    `json:"error,omitempty"`
}

// MarshalJSON renders the documented JSON Lines schema.
func (r Result) MarshalJSON() ([]byte, error) {
	j := jsonResult{
		Target:          r.Target,
		Kind:            r.Kind,
		Start:           r.Start,
		DurationSeconds: r.Duration.Seconds(),
		Success:         r.Success(),
		Reason:          r.Reason,
		Phase:           r.Phase,
		Retransmits:     r.Retransmits,
		Timings:         r.Timings,
		Evidence:        r.Evidence,
	}
	if j.Evidence == nil {
		j.Evidence = []string{}
	}
	if r.Local.IsValid() {
		j.Local = r.Local.String()
	}
	if r.Remote.IsValid() {
		j.Remote = r.Remote.String()
	}
	if r.Err != nil {
		j.Error = r.Err.Error()
	}
	// Evidence reads "10.0.0.2:1 -> 10.96.0.10:80": no HTML escaping of
	// "<", ">" and "&", which only make the JSON harder to read.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Round rounds d for evidence: milliseconds above a second, 10 µs above a
// millisecond, else microseconds.
func Round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
