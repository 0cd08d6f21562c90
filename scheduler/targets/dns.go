package targets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// DNS resolves a name every Refresh: each A/AAAA address (with Port) or
// each SRV record (its target and port) is a target. A lookup that fails
// keeps the previous set, except "no such name", which empties it (the
// Service or its records were deleted).
//
// An SRV record's target is a host name: the targets carry the resolver
// that named it, so the probes resolve it through the same server.
type DNS struct {
	Name    string
	Type    string // A, AAAA or SRV
	Port    uint16 // for A and AAAA
	Refresh time.Duration
	// Server, when valid, is the DNS server to ask; otherwise Resolver.
	Server netip.AddrPort
	// Resolver is asked when Server is not set (nil: the system resolver).
	Resolver *probe.Resolver
	NetNS    string // set on every target (a path), may be empty
	Log      *slog.Logger
	// Health, when set, is told how each lookup went (as source "dns" of
	// Job); a name that does not exist is an answer, not a failure.
	Health *Health
	Job    string
}

// Run implements Source.
func (d *DNS) Run(ctx context.Context, update func([]probe.Target)) error {
	log := newLimitedLog(d.Log)
	st := d.Health.Start(ctx, d.Job, "dns", d.Type+" "+d.Name)
	r := d.resolver()
	var last []probe.Target
	first := true
	t := time.NewTicker(d.Refresh)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, min(d.Refresh, 10*time.Second))
		ts, err := d.lookup(lctx, r)
		cancel()
		var dnsErr *net.DNSError
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			ts, err = nil, nil
			log.Warn("dns: name not found; no targets", "name", d.Name, "type", d.Type)
		case err != nil:
			log.Warn("dns: lookup failed; keeping the previous targets", "name", d.Name, "type", d.Type, "err", err)
			st.Error(err)
		}
		if err == nil {
			st.OK()
		}
		if err == nil && (first || !sameTargets(ts, last)) {
			update(ts)
			last, first = ts, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *DNS) resolver() *probe.Resolver {
	if d.Server.IsValid() {
		return probe.NewResolver(d.Server)
	}
	return d.Resolver
}

func (d *DNS) lookup(ctx context.Context, r *probe.Resolver) ([]probe.Target, error) {
	var out []probe.Target
	switch d.Type {
	case "A", "AAAA":
		network := "ip4"
		if d.Type == "AAAA" {
			network = "ip6"
		}
		ips, err := r.LookupNetIP(ctx, network, d.Name)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		for _, ip := range ips {
			ip = ip.Unmap()
			out = append(out, probe.Target{
				Name:   netip.AddrPortFrom(ip, d.Port).String(),
				Scheme: "tcp",
				Host:   ip.String(),
				Port:   d.Port,
				NetNS:  d.NetNS,
			})
		}
	case "SRV":
		srvs, err := r.LookupSRV(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		for _, s := range srvs {
			host := strings.TrimSuffix(s.Target, ".")
			if s.Port == 0 || host == "" {
				continue
			}
			out = append(out, probe.Target{
				Name:   net.JoinHostPort(host, strconv.Itoa(int(s.Port))),
				Scheme: "tcp",
				Host:   host,
				Port:   s.Port,
				NetNS:  d.NetNS,
				// The probe resolves the host through the server that
				// named it, not through the job's or the system's.
				Resolver: r,
			})
		}
	default:
		return nil, fmt.Errorf("dns: type %q: want A, AAAA or SRV", d.Type)
	}
	slices.SortFunc(out, func(a, b probe.Target) int { return strings.Compare(a.Name, b.Name) })
	out = slices.CompactFunc(out, func(a, b probe.Target) bool { return a.Name == b.Name })
	return out, nil
}
