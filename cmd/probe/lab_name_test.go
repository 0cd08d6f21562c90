package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A lab name becomes namespace names and a state file path: an empty name,
// one that starts or ends with -, is too long, or is a path is bad usage,
// refused before anything is built or read.
func TestLabRejectsUnsafeNames(t *testing.T) {
	for _, name := range []string{"", "-x", "x-", "-", "Lab", "a_b", "../etc", "a/b", "seventeen-chars-x", "a b"} {
		for _, sub := range []string{"up", "down", "fault", "clear"} {
			args := []string{"lab", sub, "--name", name}
			if sub == "fault" {
				args = append(args, "syn-drop")
			}
			code, stderr := runCaptured(t, args...)
			if code != exitUsage || !strings.Contains(stderr, "--name") {
				t.Errorf("probe %s: exit %d, stderr %q; want exit %d naming --name", strings.Join(args, " "), code, stderr, exitUsage)
			}
		}
	}
	if _, err := labPrefix("web-2"); err != nil {
		t.Errorf("labPrefix(web-2): %v", err)
	}
	if _, err := labPrefix("sixteen-chars-xy"); err != nil {
		t.Errorf("labPrefix(16 characters): %v", err)
	}
}

// runCaptured runs the probe command in-process and returns its exit
// status and what it wrote to stderr.
func runCaptured(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	code := run(t.Context(), args)
	os.Stderr = old
	w.Close()
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, r)
	r.Close()
	return code, buf.String()
}

// probe lint reads file_sd globs as serve does: a pattern that matches no
// file, or a file that is not a regular file, is a warning (exit 0), since
// the files may exist only where serve runs.
func TestLintFileSDWarnings(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "cm"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "cm", "a.json"), []byte(`[{"targets": ["127.0.0.1:1"]}]`), 0o644))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo.json"), 0o644))
	cfg := filepath.Join(dir, "c.yaml")
	must(os.WriteFile(cfg, []byte(`probes:
  - name: files
    targets:
      file_sd:
        files: ["`+dir+`/cm/*.json", "`+dir+`/none/*.yaml", "`+dir+`/fifo.json", "`+dir+`/missing.json"]
`), 0o644))
	code, stderr := runCaptured(t, "lint", "--config", cfg)
	if code != exitOK {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitOK, stderr)
	}
	want := []string{
		`probe lint: warning: probes[0] "files": targets.file_sd.files[1] "` + dir + `/none/*.yaml": pattern matches no file (serve picks up files that appear later)`,
		`probe lint: warning: probes[0] "files": targets.file_sd.files[2] "` + dir + `/fifo.json": file_sd: ` + dir + `/fifo.json is a FIFO: not a regular file`,
		`probe lint: warning: probes[0] "files": targets.file_sd.files[3] "` + dir + `/missing.json": no such file (serve picks it up when it appears)`,
	}
	if got := strings.TrimSpace(stderr); got != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// A config path that is a FIFO or /dev/zero: exit 2 at once, not a hang
// with SIGTERM ignored or a read until the OOM killer.
func TestLintHostileConfigPaths(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "c.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "is a FIFO: not a regular file", "/dev/zero": "is a character device: not a regular file"} {
		code, stderr := runCaptured(t, "lint", "--config", path)
		if code != exitUsage || !strings.Contains(stderr, want) {
			t.Errorf("lint --config %s: exit %d, stderr %q; want exit %d, %q", path, code, stderr, exitUsage, want)
		}
	}
}
