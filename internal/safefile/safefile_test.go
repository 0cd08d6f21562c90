package safefile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileRoot builds a fake pod root: a directory used as "/" holding a
// FIFO, a symlink to /dev/zero, a huge (sparse) file and symlinks that try
// to escape to a host file. It returns the root and the host file's path.
func hostileRoot(t *testing.T) (root, host string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	host = filepath.Join(dir, "host-secret")
	must(t, os.WriteFile(host, []byte("HOST"), 0o600))
	sa := filepath.Join(root, "var/run/secrets")
	must(t, os.MkdirAll(sa, 0o755))
	must(t, syscall.Mkfifo(filepath.Join(sa, "fifo"), 0o644))
	must(t, os.Symlink("/dev/zero", filepath.Join(sa, "zero")))
	f, err := os.Create(filepath.Join(sa, "huge"))
	must(t, err)
	must(t, f.Truncate(1<<40)) // 1 TiB, sparse
	must(t, f.Close())
	must(t, os.WriteFile(filepath.Join(sa, "ok"), []byte("shop\n"), 0o644))
	// Absolute and relative escapes to the host file.
	must(t, os.Symlink(host, filepath.Join(sa, "abs")))
	must(t, os.Symlink("../../../../../../../../.."+host, filepath.Join(sa, "rel")))
	return root, host
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadInRootHostileFiles(t *testing.T) {
	root, host := hostileRoot(t)
	tests := []struct {
		name, path string
		want       error  // errors.Is
		wantText   string // in the message
	}{
		{"fifo", "/var/run/secrets/fifo", ErrNotRegular, "is a FIFO"},
		{"symlink to /dev/zero", "/var/run/secrets/zero", os.ErrNotExist, "no such file"}, // the pod has no /dev/zero
		{"huge file", "/var/run/secrets/huge", ErrTooLarge, "size cap of 4 KiB"},
		{"directory", "/var/run/secrets", ErrNotRegular, "is a directory"},
		{"absolute symlink to a host file", "/var/run/secrets/abs", os.ErrNotExist, "no such file"},
		{"relative ../ escape", "/var/run/secrets/rel", os.ErrNotExist, "no such file"},
		{"../ in the path itself", "../../../../../../../.." + host, os.ErrNotExist, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			b, err := ReadInRoot(ctx, root, tt.path, 4<<10)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s", took)
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("ReadInRoot(%s) = %q, %v; want %v (%q)", tt.path, b, err, tt.want, tt.wantText)
			}
		})
	}
	b, err := ReadInRoot(t.Context(), root, "/var/run/secrets/ok", 4<<10)
	if err != nil || string(b) != "shop\n" {
		t.Errorf("regular file: got %q, %v", b, err)
	}
	// Magic links (/proc/PID/root, /proc/self/fd/N) are refused below the
	// root: with the real / as root, /proc/self/root is one.
	b, err = ReadInRoot(t.Context(), "/", "/proc/self/root"+host, 4<<10)
	if !errors.Is(err, syscall.ELOOP) {
		t.Errorf("magic link: got %q, %v; want ELOOP", b, err)
	}
}

// An escaping symlink reads the file of the same name inside the root, as
// a process chrooted there would: never the host's.
func TestReadInRootEscapeStaysInside(t *testing.T) {
	root, host := hostileRoot(t)
	inside := filepath.Join(root, host)
	must(t, os.MkdirAll(filepath.Dir(inside), 0o755))
	must(t, os.WriteFile(inside, []byte("POD"), 0o644))
	for _, p := range []string{"/var/run/secrets/abs", "/var/run/secrets/rel", "../../../../../.." + host} {
		b, err := ReadInRoot(t.Context(), root, p, 4<<10)
		if err != nil || string(b) != "POD" {
			t.Errorf("ReadInRoot(%s) = %q, %v; want the pod's file POD", p, b, err)
		}
	}
	// The same through /proc/self/root, a magic link like /proc/PID/root.
	b, err := ReadInRoot(t.Context(), "/proc/self/root"+root, "/var/run/secrets/abs", 4<<10)
	if err != nil || string(b) != "POD" {
		t.Errorf("through /proc/self/root: %q, %v", b, err)
	}
}

func TestReadFileHostile(t *testing.T) {
	root, _ := hostileRoot(t)
	sa := filepath.Join(root, "var/run/secrets")
	tests := []struct {
		path     string
		want     error
		wantText string
	}{
		{filepath.Join(sa, "fifo"), ErrNotRegular, "is a FIFO"},
		{filepath.Join(sa, "zero"), ErrNotRegular, "is a character device"},
		{"/dev/zero", ErrNotRegular, "is a character device"},
		{filepath.Join(sa, "huge"), ErrTooLarge, "size cap of 16 MiB (it has 1099511627776 bytes)"},
		{sa, ErrNotRegular, "is a directory"},
		{filepath.Join(sa, "nope"), os.ErrNotExist, "no such file"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			b, err := ReadFile(ctx, tt.path, 16<<20)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("ReadFile(%s) = %d bytes, %v; want %v (%q)", tt.path, len(b), err, tt.want, tt.wantText)
			}
		})
	}
	// Symlinks are followed for plain paths (ConfigMap mounts are symlinks).
	b, err := ReadFile(t.Context(), filepath.Join(sa, "abs"), 100)
	if err != nil || string(b) != "HOST" {
		t.Errorf("symlink: %q, %v", b, err)
	}
}

// procfs files report size 0: the cap is enforced while reading.
func TestReadFileCapWhileReading(t *testing.T) {
	b, err := ReadFile(t.Context(), "/proc/self/status", 64)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %d bytes, %v; want ErrTooLarge", len(b), err)
	}
	b, err = ReadFile(t.Context(), "/proc/self/status", 1<<20)
	if err != nil || !strings.Contains(string(b), "Name:") {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestReadFileExactCap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, []byte("12345"), 0o644))
	if b, err := ReadFile(t.Context(), p, 5); err != nil || string(b) != "12345" {
		t.Errorf("at the cap: %q, %v", b, err)
	}
	if _, err := ReadFile(t.Context(), p, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the cap: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "e")
	must(t, os.WriteFile(empty, nil, 0o644))
	if b, err := ReadFile(t.Context(), empty, 5); err != nil || len(b) != 0 {
		t.Errorf("empty: %q, %v", b, err)
	}
}

// A read that cannot get a slot (every slot held by reads stuck in the
// kernel) ends with its ctx, and a canceled ctx ends a read at once.
func TestReadHonoursCtx(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, []byte("x"), 0o644))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ReadFile(ctx, p, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: %v", err)
	}
	for range maxPending {
		pending <- struct{}{}
	}
	t.Cleanup(func() {
		for range maxPending {
			<-pending
		}
	})
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ReadFile(ctx, p, 10)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("all slots stuck: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{16 << 20: "16 MiB", 4 << 10: "4 KiB", 300: "300 B", 1500: "1500 B"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
