package main

import (
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	old := revision
	revision = "0123abcd"
	t.Cleanup(func() { revision = old })
	stdout, stderr, code := probeCmd(t, "version")
	if code != exitOK {
		t.Fatalf("probe version: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"probe " + version + "\n", "revision: ", "go: go1.", "kubernetes client: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("probe version output lacks %q:\n%s", want, stdout)
		}
	}
	if got := buildRevision(); got != "0123abcd" {
		t.Errorf("buildRevision() = %q, want the -X value", got)
	}
	if _, _, code := probeCmd(t, "version", "extra"); code != exitUsage {
		t.Errorf("probe version extra: exit %d, want %d", code, exitUsage)
	}
}
