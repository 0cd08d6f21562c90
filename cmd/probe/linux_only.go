//go:build !linux

// connprobe runs on Linux only: its probes read TCP_INFO and the IP_RECVERR
// error queue, switch network namespaces, send raw SYNs and read sock_diag
// and conntrack over netlink. Every other file of this command is built
// only on Linux, so that building it elsewhere stops here, at the one error
// below, instead of at whatever Linux-only symbol the compiler meets first.

package main

var _ int = "connprobe runs on Linux only"

func main() {}
