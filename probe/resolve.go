package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// DefaultDNSPort is the port of a resolver given without one.
const DefaultDNSPort = 53

// Resolver is the DNS client of every probe kind and of DNS target
// discovery: either one DNS server the user named (`resolver:` in serve's
// config, `--resolver` in probe run, a DNS source's `server`), or, as the
// nil *Resolver, the prober's system resolver (/etc/resolv.conf of the
// prober's own network namespace, also when a probe runs in another one).
//
// With a server, every query goes to that server and only there (UDP, TCP
// when the answer is truncated); Go's resolver still answers names from
// /etc/hosts first and applies /etc/resolv.conf's search list and ndots,
// so the server sees what an application's stub resolver would send. A
// lookup error names the server that was actually asked.
//
// The nil *Resolver is the one place the code reads net.DefaultResolver.
type Resolver struct {
	server netip.AddrPort
	r      *net.Resolver

	// A stub resolver (NewStubResolver): its own search list and ndots,
	// and each of servers (resolvers all, in step) in turn.
	stub    bool
	search  []string
	ndots   int
	servers []netip.AddrPort
	all     []*net.Resolver
}

// NewResolver returns a Resolver that asks server.
func NewResolver(server netip.AddrPort) *Resolver {
	addr := server.String()
	return &Resolver{server: server, r: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// network is "udp" or "tcp" (a truncated answer); the address
			// Go's resolver took from /etc/resolv.conf is ignored.
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// ParseResolver parses a DNS server address: "10.96.0.10", "10.96.0.10:53",
// "fd00::a" or "[fd00::a]:5353" (port 53 when left out). The empty string
// is the system resolver (nil). A host name is refused: it would have to be
// resolved by the system resolver the option is there to avoid.
func ParseResolver(s string) (*Resolver, error) {
	if s == "" {
		return nil, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return nil, fmt.Errorf("resolver %q: zones are not supported", s)
		}
		return NewResolver(netip.AddrPortFrom(a.Unmap(), DefaultDNSPort)), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("resolver %q: want an IP address with an optional port (10.96.0.10, 10.96.0.10:53, [fd00::a]:53), not a name", s)
	}
	if ap.Port() == 0 {
		return nil, fmt.Errorf("resolver %q: port 0", s)
	}
	if ap.Addr().Zone() != "" {
		return nil, fmt.Errorf("resolver %q: zones are not supported", s)
	}
	return NewResolver(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// Server is the DNS server r asks; invalid for the system resolver.
func (r *Resolver) Server() netip.AddrPort {
	if r == nil {
		return netip.AddrPort{}
	}
	return r.server
}

// String is the server's address, or "system".
func (r *Resolver) String() string {
	if r == nil {
		return "system"
	}
	return r.server.String()
}

func (r *Resolver) resolver() *net.Resolver {
	if r == nil {
		return net.DefaultResolver
	}
	return r.r
}

// named makes a *net.DNSError name the server that was asked: Go's
// resolver reports the /etc/resolv.conf server it would have dialed.
func (r *Resolver) named(err error) error {
	var de *net.DNSError
	if r == nil || !errors.As(err, &de) {
		return err
	}
	c := *de
	c.Server = r.server.String()
	return &c
}

// LookupNetIP looks host up for network "ip", "ip4" or "ip6".
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if r != nil && r.stub {
		return r.stubLookup(ctx, network, host)
	}
	ips, err := r.resolver().LookupNetIP(ctx, network, host)
	return ips, r.named(err)
}

// LookupSRV looks up the SRV records of name (no service/proto prefixing).
func (r *Resolver) LookupSRV(ctx context.Context, name string) ([]*net.SRV, error) {
	_, srvs, err := r.resolver().LookupSRV(ctx, "", "", name)
	return srvs, r.named(err)
}

// Resolve returns the address to probe for t: its IP literal, else t.Host
// looked up through t.Resolver when the target carries one (a DNS SRV
// source's server, which named the host), else through r.
//
// The one address-pick rule of every kind: with a valid source, only
// addresses of the source's family are asked for (a v4 source cannot reach
// a v6 address); otherwise the first address in the resolver's order (RFC
// 6724 destination selection, which prefers what this host can route).
func Resolve(ctx context.Context, r *Resolver, t Target, source netip.Addr) (netip.AddrPort, error) {
	if a, ok := t.Addr(); ok {
		return a, nil
	}
	if t.Resolver != nil {
		r = t.Resolver
	}
	network := "ip"
	if source.IsValid() {
		network = "ip6"
		if source.Unmap().Is4() {
			network = "ip4"
		}
	}
	ips, err := r.LookupNetIP(ctx, network, t.Host)
	if err == nil && len(ips) == 0 {
		err = r.named(&net.DNSError{Err: "no addresses", Name: t.Host, IsNotFound: true})
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ips[0].Unmap(), t.Port), nil
}

// ResolveFor is Resolve for one attempt: the lookup is bounded by deadline
// (zero: ctx alone) and recorded in res — Timings.Resolve, then either the
// failure (phase resolve, dns_error, the server asked) or a line of
// evidence. An IP literal target records nothing.
func ResolveFor(ctx context.Context, res *Result, r *Resolver, t Target, source netip.Addr, deadline time.Time) (netip.AddrPort, bool) {
	if a, ok := t.Addr(); ok {
		return a, true
	}
	t0 := time.Now()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	addr, err := Resolve(ctx, r, t, source)
	res.Timings.Resolve = time.Since(t0)
	if err != nil {
		res.Fail(PhaseResolve, err)
		if source.IsValid() {
			fam := "IPv6"
			if source.Unmap().Is4() {
				fam = "IPv4"
			}
			res.Evidencef("only %s addresses were asked for: the family of source %s", fam, source)
		}
		return netip.AddrPort{}, false
	}
	res.Evidencef("resolved %s to %s in %s", t.Host, addr.Addr(), Round(res.Timings.Resolve))
	return addr, true
}
