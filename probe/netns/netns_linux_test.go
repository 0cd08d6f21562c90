package netns

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/connprobe/connprobe/probe"
)

// A namespace that never existed is "not found", with a hint; it still
// classifies as netns_gone if a probe meets it.
func TestResolveNotFound(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"connprobe-never-created-ns", `netns "connprobe-never-created-ns": /run/netns/connprobe-never-created-ns: network namespace not found (no such name in /run/netns`},
		{"pid:2147483646", `netns "pid:2147483646": /proc/2147483646/ns/net: network namespace not found (no such process`},
		{filepath.Join(t.TempDir(), "none"), "network namespace not found (no such file)"},
	} {
		_, err := Resolve(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Resolve(%q) = %v, want %q", tt.spec, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "gone") {
			t.Errorf("Resolve(%q) = %v: a namespace that never existed is not gone", tt.spec, err)
		}
		if !errors.Is(err, ErrNotFound) || !errors.Is(err, probe.ErrNetNSGone) || probe.Classify(err) != probe.ReasonNetNSGone {
			t.Errorf("Resolve(%q) = %v: want ErrNotFound, classified netns_gone", tt.spec, err)
		}
	}
	// A file that is not a namespace (what a deleted bind mount leaves) is
	// gone, not missing.
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(plain); err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, probe.ErrNetNSGone) {
		t.Errorf("Resolve(plain file) = %v, want gone, not not-found", err)
	}
	// Our own namespace resolves.
	if p, err := Resolve("pid:" + strconv.Itoa(os.Getpid())); err != nil || p == "" {
		t.Errorf("Resolve(own pid) = %q, %v", p, err)
	}
}
