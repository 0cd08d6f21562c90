package targets

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// swapKeepingMtime replaces p's content with s, of the same size, and puts
// the old mtime back: what cp -p, rsync -t and tar do. inPlace rewrites
// the same inode (cp -p); otherwise a new file is renamed over it.
func swapKeepingMtime(t *testing.T, p, s string, inPlace bool) {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	if fi.Size() != int64(len(s)) {
		t.Fatalf("test bug: %q is not %d bytes", s, fi.Size())
	}
	dst := p
	if !inPlace {
		dst = p + ".tmp"
	}
	must(t, os.WriteFile(dst, []byte(s), 0o644))
	must(t, os.Chtimes(dst, fi.ModTime(), fi.ModTime()))
	if !inPlace {
		must(t, os.Rename(dst, p))
	}
	if got, _ := os.Stat(p); got.Size() != fi.Size() || !got.ModTime().Equal(fi.ModTime()) {
		t.Fatal("test bug: size or mtime changed")
	}
}

func TestFileSDSeesSameSizeSameMtimeSwaps(t *testing.T) {
	for _, inPlace := range []bool{true, false} {
		t.Run(map[bool]string{true: "cp -p in place", false: "rsync -t rename"}[inPlace], func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "t.json")
			must(t, os.WriteFile(p, []byte(`[{"targets": ["127.0.0.1:1"]}]`), 0o644))
			c := run(t, &File{Paths: []string{p}, Refresh: 10 * time.Millisecond})
			c.waitFor(t, "127.0.0.1:1")
			swapKeepingMtime(t, p, `[{"targets": ["127.0.0.1:2"]}]`, inPlace)
			c.waitFor(t, "127.0.0.1:2")
		})
	}
}

// A ConfigMap volume: targets.json -> ..data/targets.json, ..data ->
// ..TIMESTAMP; an update writes a new ..TIMESTAMP dir and renames a new
// ..data symlink over the old one. Same size, same mtime here.
func TestFileSDFollowsConfigMapSwaps(t *testing.T) {
	dir := t.TempDir()
	ts := time.Now().Add(-time.Hour).Truncate(time.Second)
	version := func(name, content string) {
		must(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		f := filepath.Join(dir, name, "targets.json")
		must(t, os.WriteFile(f, []byte(content), 0o644))
		must(t, os.Chtimes(f, ts, ts))
	}
	version("..2024_01", `[{"targets": ["127.0.0.1:1"]}]`)
	must(t, os.Symlink("..2024_01", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/targets.json", filepath.Join(dir, "targets.json")))

	c := run(t, &File{Paths: []string{filepath.Join(dir, "*.json")}, Refresh: 10 * time.Millisecond})
	c.waitFor(t, "127.0.0.1:1")
	for i, want := range []string{"127.0.0.1:2", "127.0.0.1:3"} {
		name := "..2024_0" + string(rune('2'+i))
		version(name, `[{"targets": ["`+want+`"]}]`)
		must(t, os.Symlink(name, filepath.Join(dir, "..data_tmp")))
		must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
		c.waitFor(t, want)
	}
}

func TestFileSDGlobs(t *testing.T) {
	dir := t.TempDir()
	cm := filepath.Join(dir, "cm")
	must(t, os.Mkdir(cm, 0o755))
	must(t, os.WriteFile(filepath.Join(cm, "b.json"), []byte(`[{"targets": ["127.0.0.1:2"]}]`), 0o644))
	must(t, os.WriteFile(filepath.Join(cm, "a.json"), []byte(`[{"targets": ["127.0.0.1:1"]}]`), 0o644))
	must(t, os.WriteFile(filepath.Join(cm, "c.yaml"), []byte(`- targets: ["127.0.0.1:9"]`), 0o644))
	must(t, os.Mkdir(filepath.Join(cm, "d.json"), 0o755)) // a directory: skipped
	static := filepath.Join(dir, "s.yaml")
	must(t, os.WriteFile(static, []byte(`- targets: ["127.0.0.1:5"]`), 0o644))

	c := run(t, &File{Paths: []string{filepath.Join(cm, "*.json"), static, filepath.Join(cm, "a.json")}, Refresh: 10 * time.Millisecond})
	c.waitFor(t, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:5")

	// A file that appears is picked up; one that goes is dropped.
	must(t, os.WriteFile(filepath.Join(cm, "c.json"), []byte(`[{"targets": ["127.0.0.1:3"]}]`), 0o644))
	c.waitFor(t, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:5")
	must(t, os.Remove(filepath.Join(cm, "b.json")))
	c.waitFor(t, "127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:5")
}

func TestExpandFileSD(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.json"), nil, 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "d.json"), 0o755))
	files, problems := ExpandFileSD([]string{
		filepath.Join(dir, "*.json"),
		filepath.Join(dir, "none-*.json"),
		filepath.Join(dir, "d*.json"),
		filepath.Join(dir, "[x.json"),
		filepath.Join(dir, "literal.json"),
	})
	if want := []string{filepath.Join(dir, "a.json"), filepath.Join(dir, "literal.json")}; !slicesEqual(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	want := []PatternProblem{
		{filepath.Join(dir, "none-*.json"), "pattern matches no file"},
		{filepath.Join(dir, "d*.json"), "pattern matches no file, only directories or files already listed"},
		{filepath.Join(dir, "[x.json"), "bad glob: syntax error in pattern"},
	}
	if len(problems) != len(want) {
		t.Fatalf("problems = %q, want %q", problems, want)
	}
	for i := range want {
		if problems[i] != want[i] {
			t.Errorf("problems[%d] = %q, want %q", i, problems[i], want[i])
		}
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// A file_sd path that is a FIFO or /dev/zero neither hangs the source
// (it stops when asked) nor reads without end; a huge file is refused.
func TestFileSDHostilePaths(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	must(t, syscall.Mkfifo(fifo, 0o644))
	zero := filepath.Join(dir, "zero.yaml")
	must(t, os.Symlink("/dev/zero", zero))
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	must(t, err)
	must(t, f.Truncate(MaxFileSDYAML+1))
	must(t, f.Close())
	good := filepath.Join(dir, "good.json")
	must(t, os.WriteFile(good, []byte(`[{"targets": ["127.0.0.1:1"]}]`), 0o644))

	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(t.Context())
	c := newCollector()
	done := make(chan error, 1)
	go func() {
		done <- (&File{Paths: []string{fifo, zero, huge, good}, Refresh: 10 * time.Millisecond, Log: log}).Run(ctx, c.update)
	}()
	c.waitFor(t, "127.0.0.1:1")
	time.Sleep(100 * time.Millisecond) // several polls
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("File.Run did not stop when its ctx ended")
	}
	out := buf.String()
	for _, want := range []string{"is a FIFO: not a regular file", "is a character device: not a regular file", "file exceeds the size cap of 1 MiB"} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q logged %d times, want once (rate-limited):\n%s", want, n, out)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A glob matching nothing at a 1s refresh for an hour: the warning is
// logged once per WarnEvery, not 3600 times.
func TestFileSDWarningsRateLimited(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		var buf syncBuffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- (&File{Paths: []string{filepath.Join(dir, "*.json")}, Refresh: time.Second, Log: log}).Run(ctx, func([]probe.Target) {})
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		cancel()
		<-done
		out := buf.String()
		n := strings.Count(out, "pattern matches no file")
		if want := int(time.Hour/WarnEvery) + 1; n != want {
			t.Errorf("warning logged %d times in an hour, want %d", n, want)
		}
		if !strings.Contains(out, "repeats_not_logged=299") {
			t.Errorf("no count of held-back repeats:\n%s", out)
		}
	})
}
