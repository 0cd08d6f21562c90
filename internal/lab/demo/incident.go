package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/exporters/report"
	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/probe"
)

// Incident is the replay of one production incident in a lab of its own.
type Incident struct {
	// Name is the command's argument: probe lab incident NAME.
	Name string
	// Title says what happened, in words a user can look up.
	Title string
	// Seen is what the team saw at the time (the symptom, one line).
	Seen string
	// Change is what to change so it does not happen again.
	Change string
	// Deploy is the probe a user deploys to catch it before users do.
	Deploy string
	// Want is the reason connprobe must give.
	Want probe.Reason
	// Decisive are substrings the decisive evidence must contain, per
	// family ("%s" is replaced by nothing; see check).
	Decisive []string
	replay   func(ctx context.Context, e *env) (finding, error)
}

// finding is what a replay found.
type finding struct {
	result   probe.Result // the decisive probe's result
	probe    string       // the command a user runs for it
	decisive []string     // the evidence lines that decide the reason
	also     []string     // further facts of the replay (other probes, ground truth)
}

// IncidentOptions configure Incident.Run.
type IncidentOptions struct {
	// Prefix of the lab's namespaces (default cpinc<pid>).
	Prefix string
	// V6 replays over the lab's IPv6 twins.
	V6 bool
}

// env is a replay's lab and the servers it started (stopped by close).
type env struct {
	l    *lab.Lab
	v6   bool
	a    lab.Addrs
	stop context.CancelFunc
	ctx  context.Context // the servers' context: ends at teardown
	wg   sync.WaitGroup
}

func (e *env) fam() string {
	if e.v6 {
		return "IPv6"
	}
	return "IPv4"
}

// listen opens a listener in ns closed at teardown.
func (e *env) listen(ns string, port uint16) (net.Listener, error) {
	ln, err := e.l.Listen(ns, fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(e.ctx, func() { ln.Close() })
	return ln, nil
}

// hostPort renders a lab address and port as a target.
func hostPort(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// Run builds the incident's lab, replays it, prints its block to w and tears
// the lab down (also when ctx is canceled). It returns ErrMismatch when
// connprobe did not say what it must.
func (inc *Incident) Run(ctx context.Context, w io.Writer, o IncidentOptions) (err error) {
	t0 := time.Now()
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("cpinc%d", os.Getpid())
	}
	fam := "IPv4"
	if o.V6 {
		fam = "IPv6"
	}
	fmt.Fprintf(w, "── %s (%s): %s\n", inc.Name, fam, inc.Title)
	fmt.Fprintf(w, "  seen at the time:  %s\n", inc.Seen)
	l, err := lab.Up(ctx, lab.Options{Prefix: o.Prefix, Sysctls: incidentSysctls[inc.Name]})
	if err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n", err)
		return err
	}
	sctx, stop := context.WithCancel(context.Background())
	e := &env{l: l, v6: o.V6, a: l.Family(o.V6), ctx: sctx, stop: stop}
	defer func() {
		stop()
		e.wg.Wait()
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	f, err := inc.replay(ctx, e)
	if err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n", err)
		return err
	}
	reason := string(f.result.Reason)
	if f.result.Reason != inc.Want {
		reason += " (WANT " + string(inc.Want) + ")"
		err = ErrMismatch
	}
	fmt.Fprintf(w, "  the probe:         %s\n", f.probe)
	fmt.Fprintf(w, "  connprobe says:    %s\n", reason)
	for i, d := range f.decisive {
		label := "                   "
		if i == 0 {
			label = "  decisive evidence:"
		}
		fmt.Fprintf(w, "%s %s\n", label, d)
	}
	for i, d := range f.also {
		label := "                   "
		if i == 0 {
			label = "  also seen:        "
		}
		fmt.Fprintf(w, "%s %s\n", label, d)
	}
	joined := strings.Join(f.decisive, "\n")
	for _, want := range inc.Decisive {
		if !strings.Contains(joined, want) {
			fmt.Fprintf(w, "  MISSING evidence:  %q\n", want)
			err = ErrMismatch
		}
	}
	fmt.Fprintf(w, "  what to change:    %s\n", inc.Change)
	fmt.Fprintf(w, "  to catch it:       %s\n", inc.Deploy)
	fmt.Fprintf(w, "  (replayed in %s in lab %s)\n", report.FormatDuration(time.Since(t0)), l.Prefix)
	return err
}

// incidentSysctls are the per-namespace sysctls each replay's lab starts
// with.
var incidentSysctls = map[string]map[string]map[string]string{
	"syn-retransmit-30s": {"pod": {
		// The report's node: the ephemeral range overlapping the
		// NodePort range, and classic SYN backoff with 6 retries.
		"net.ipv4.ip_local_port_range":     "1024\t65535",
		"net.ipv4.tcp_syn_retries":         "6",
		"net.ipv4.tcp_syn_linear_timeouts": "0",
	}},
}

// Incidents are the five, in the order the README tells them.
var Incidents = []*Incident{kafkaCloseWait, keepaliveLost, synRetransmit30s, staleIPVS6h, pawsNAT}

// FindIncident returns the incident called name.
func FindIncident(name string) (*Incident, error) {
	var names []string
	for _, inc := range Incidents {
		if inc.Name == name {
			return inc, nil
		}
		names = append(names, inc.Name)
	}
	return nil, fmt.Errorf("unknown incident %q (want one of %s)", name, strings.Join(names, ", "))
}
