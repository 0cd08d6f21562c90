package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// goBuild runs go build in dir for goos/goarch, without cgo, and returns its
// combined output.
func goBuild(t *testing.T, dir, goos, goarch string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPlatformLinuxOnly: connprobe is Linux only (README.md, Code layout).
// Building the command for another system fails with one clear message, not
// with whatever Linux-only symbol the compiler meets first; building the
// binary for another Linux architecture works.
func TestPlatformLinuxOnly(t *testing.T) {
	for _, goos := range []string{"darwin", "windows"} {
		out, err := goBuild(t, ".", goos, "amd64", "-o", os.DevNull, ".")
		if err == nil {
			t.Errorf("GOOS=%s go build ./cmd/probe worked, want it to fail: connprobe runs on Linux only", goos)
			continue
		}
		if !strings.Contains(out, `"connprobe runs on Linux only"`) || !strings.Contains(out, "linux_only.go") {
			t.Errorf("GOOS=%s go build ./cmd/probe: want the one error of linux_only.go, got:\n%s", goos, out)
		}
		if n := strings.Count(out, ".go:"); n != 1 {
			t.Errorf("GOOS=%s go build ./cmd/probe: %d errors, want exactly one:\n%s", goos, n, out)
		}
	}
	// Linux on another architecture builds: the binary, with everything it
	// links (the Kubernetes client's packages are left out: compiling them
	// for a second architecture costs minutes of make test, and they hold
	// no architecture-specific code of ours).
	if out, err := goBuild(t, "../..", "linux", "arm64", "-o", os.DevNull, "./cmd/probe"); err != nil {
		t.Errorf("GOOS=linux GOARCH=arm64 go build ./cmd/probe: %v\n%s", err, out)
	}
}
