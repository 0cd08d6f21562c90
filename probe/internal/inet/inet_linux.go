// Package inet holds the small socket-address and TCP_INFO helpers every
// kernel-facing probe needs, so that they are written once.
package inet

import (
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sockaddr converts ap for connect(2)/bind(2); an IPv4-mapped address
// becomes AF_INET.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

// AddrPort converts an AF_INET/AF_INET6 sockaddr; anything else is invalid.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// LocalAddr is getsockname(2) of the socket behind rc.
func LocalAddr(rc syscall.RawConn) netip.AddrPort {
	var sa unix.Sockaddr
	var err error
	if cerr := rc.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) }); cerr != nil || err != nil {
		return netip.AddrPort{}
	}
	return AddrPort(sa)
}

// LocalAddrOf is LocalAddr of a connection that exposes its RawConn.
func LocalAddrOf(c syscall.Conn) netip.AddrPort {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}
	}
	return LocalAddr(rc)
}

var tcpStates = [...]string{"", "ESTABLISHED", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSE", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING"}

// TCPState names a tcpi_state value as ss(8) does.
func TCPState(s uint8) string {
	if int(s) < len(tcpStates) && s != 0 {
		return tcpStates[s]
	}
	return fmt.Sprintf("state %d", s)
}

// Snippet is the first 64 bytes of b, for evidence.
func Snippet(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
