//go:build !linux

package trace

import "net/netip"

// Place is a network namespace on this machine where the traced flow's
// conntrack entry may be.
type Place struct {
	Name  string
	NetNS string
}

// FindNAT needs ctnetlink: Linux only.
func FindNAT(places []Place, local, remote netip.AddrPort) (*NAT, string) {
	return nil, "conntrack lookup needs Linux"
}
