package testlisten

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readEnd reads until EOF, an error or 2 s; it returns the error (io.EOF
// for a FIN) or nil when the deadline passed with the connection open.
func readEnd(c net.Conn, wait time.Duration) error {
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
	}
}

func TestClose(t *testing.T) {
	c := dial(t, Loopback(t, Close).Addr().String())
	if err := readEnd(c, 2*time.Second); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read: %v, want EOF or a reset: the server closes at once", err)
	}
}

func TestHoldAndSilentNeverAnswerNorClose(t *testing.T) {
	for _, b := range []Behaviour{Hold, Silent} {
		t.Run(b.String(), func(t *testing.T) {
			var c net.Conn
			t.Run("serve", func(t *testing.T) {
				ln := Loopback(t, b)
				c = dial(t, ln.Addr().String())
				// Untracked by the inner test: it outlives its cleanup.
				c2, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c = c2
				if _, err := c.Write([]byte("hello\n")); err != nil {
					t.Fatal(err)
				}
				if err := readEnd(c, 300*time.Millisecond); err != nil {
					t.Errorf("read: %v, want nothing: the server holds the connection without answering", err)
				}
			})
			defer c.Close()
			// The test ended: its server closed the connection.
			if err := readEnd(c, 2*time.Second); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read after the test ended: %v, want EOF or reset", err)
			}
		})
	}
}

func TestEcho(t *testing.T) {
	c := dial(t, Loopback(t, Echo).Addr().String())
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Errorf("echo: %q, %v, want ping", buf, err)
	}
}

// TestFunc: fn runs per connection; the connection closes when fn returns;
// ctx ends when the test does.
func TestFunc(t *testing.T) {
	ended := make(chan struct{})
	t.Run("serve", func(t *testing.T) {
		ln := Loopback(t, Func(func(ctx context.Context, c net.Conn) {
			if _, err := c.Write([]byte("hi")); err != nil {
				return
			}
			buf := make([]byte, 1)
			if _, err := c.Read(buf); err != nil || buf[0] != 'q' {
				<-ctx.Done() // hold the others
				close(ended)
				return
			}
		}))
		quit := dial(t, ln.Addr().String())
		hold := dial(t, ln.Addr().String())
		buf := make([]byte, 2)
		quit.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(quit, buf); err != nil {
			t.Fatal(err)
		}
		quit.Write([]byte("q"))
		if err := readEnd(quit, 2*time.Second); err != io.EOF {
			t.Errorf("after fn returned: %v, want EOF", err)
		}
		hold.Write([]byte("x"))
		if err := readEnd(hold, 300*time.Millisecond); err != nil {
			t.Errorf("held: %v, want no answer and no close", err)
		}
		select {
		case <-ended:
			t.Error("ctx done before the test ended")
		default:
		}
	})
	select {
	case <-ended:
	default:
		t.Error("the test ended and fn still waits on ctx")
	}
}

// TestNoLeak: once a test that used every behaviour with connections left
// open has ended, no goroutine and no file descriptor of it remains.
func TestNoLeak(t *testing.T) {
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	// Warm up what the runtime keeps for good (the network poller).
	if c, err := net.DialTimeout("tcp", ClosedAddr(t), 2*time.Second); err == nil {
		c.Close()
	}
	goroutines, before := runtime.NumGoroutine(), fds()
	t.Run("serve", func(t *testing.T) {
		block := Func(func(ctx context.Context, c net.Conn) { <-ctx.Done() })
		for _, b := range []Behaviour{Close, Hold, Silent, Echo, block} {
			ln := Loopback(t, b)
			for range 3 {
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
		}
		time.Sleep(100 * time.Millisecond) // let the server accept them
		if n := runtime.NumGoroutine(); n < goroutines+5+4*3 {
			t.Errorf("%d goroutines while serving, want at least %d: the test sees nothing", n, goroutines+5+4*3)
		}
	})
	for _, c := range clients {
		c.Close()
	}
	clients = nil
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > goroutines || fds() > before {
		if time.Now().After(deadline) {
			t.Fatalf("after the test: %d goroutines (was %d), %d fds (was %d)", runtime.NumGoroutine(), goroutines, fds(), before)
		}
		// Echo's io.Copy splices through pipes the runtime pools and
		// closes only when a GC drops the pool.
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClosedAddr(t *testing.T) {
	_, err := net.DialTimeout("tcp", ClosedAddr(t), 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial: %v, want connection refused", err)
	}
}
