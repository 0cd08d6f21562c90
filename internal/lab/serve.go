package lab

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
)

// Behaviour is what a lab server does with each accepted connection.
type Behaviour string

const (
	// Echo answers every line it reads with "pong\n".
	Echo Behaviour = "echo"
	// FIN closes its side (FIN) at once, as a server's idle timeout would,
	// then reads and discards what the client sends until the client
	// closes: draining keeps the kernel from answering the client's data
	// with a RST, so the client sees exactly the FIN.
	FIN Behaviour = "fin"
)

// ParseBehaviour checks a behaviour name.
func ParseBehaviour(s string) (Behaviour, error) {
	switch b := Behaviour(s); b {
	case Echo, FIN:
		return b, nil
	}
	return "", fmt.Errorf("lab: server behaviour %q: want echo or fin", s)
}

// Serve accepts connections on ln and handles each as b says, until ln is
// closed; then it closes the connections still open and returns once their
// goroutines are done. A connection lives as long as its client keeps it:
// the servers never close an idle connection on their own (a keep-alive or
// idle probe against the lab sees only the faults injected), so a
// connection the client forgets lasts until the lab goes down.
func Serve(ln net.Listener, b Behaviour) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				c.Close()
			}()
			handle(c, b)
		})
	}
}

func handle(c net.Conn, b Behaviour) {
	switch b {
	case Echo:
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			if _, err := io.WriteString(c, "pong\n"); err != nil {
				return
			}
		}
	case FIN:
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, c)
	}
}
