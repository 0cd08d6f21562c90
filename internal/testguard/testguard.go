// Package testguard makes a test binary die loudly when anything in it asks
// the system resolver (the machine's /etc/resolv.conf, whose servers are
// outside the test's network): tests resolve names only through a fake DNS
// server they started (internal/lab's DNS, probe.NewResolver).
//
// Every package with tests imports it for its side effect, from a file of
// its own (resolverguard_test.go):
//
//	import _ "github.com/connprobe/connprobe/internal/testguard"
//
// What it catches, at run time: every lookup that reaches
// net.DefaultResolver — the nil *probe.Resolver (the one place the code
// reads it), net.LookupHost and the other package-level lookups, a
// net.Dialer or net.Dial without a Resolver given a host name, an HTTP
// client dialing a name — in the test process and in the `probe run` /
// `probe serve` processes the tests start from the same binary. Names in
// /etc/hosts (localhost) still resolve: Go's resolver reads that file
// before it dials a server. What it cannot see at run time (a
// net.Resolver built elsewhere without a Dial of its own) is caught by
// TestNoSystemResolverInSource, which checks the non-test sources.
package testguard

import (
	"context"
	"fmt"
	"net"
)

// Message starts the panic a system-resolver lookup causes.
const Message = "testguard: system resolver used"

func init() {
	// PreferGo with a Dial of our own: Go's resolver, never cgo's
	// getaddrinfo (which would read /etc/resolv.conf in C, out of reach),
	// and every query it would send goes to Trap instead.
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: Trap}
}

// Trap is the Dial of the guarded net.DefaultResolver: it panics, which
// ends the test binary with the lookup's stack.
func Trap(_ context.Context, network, address string) (net.Conn, error) {
	panic(fmt.Sprintf("%s: a lookup would have asked %s over %s (/etc/resolv.conf); resolve through a fake DNS server (probe.NewResolver, internal/lab.NewDNS) instead", Message, address, network))
}
