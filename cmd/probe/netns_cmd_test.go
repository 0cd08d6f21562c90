package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/connprobe/connprobe/internal/nstest"
)

// probe netns ls lists a namespace the test created, by name, with a
// command that probes from it; and that command's --netns resolves.
func TestNetnsLs(t *testing.T) {
	p := nstest.NewPair(t)
	stdout, stderr, code := probeCmd(t, "netns", "ls")
	if code != exitOK {
		t.Fatalf("netns ls: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if !strings.HasPrefix(lines[0], "NAMESPACE") || !strings.Contains(lines[0], "COMMAND") {
		t.Fatalf("no header:\n%s", stdout)
	}
	re := regexp.MustCompile(`(?m)^netns:` + p.Client + `\s+-\s+\S+\s+probe run --netns (/run/netns/` + p.Client + `) HOST:PORT$`)
	m := re.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("netns:%s not listed with its command:\n%s", p.Client, stdout)
	}
	// The listed command works: a refused connect inside the namespace
	// (nothing listens) is exit 1, not a usage error.
	out, errOut, code := probeCmd(t, "run", "--netns", m[1], "--timeout", "2s", p.ServerIP.String()+":9")
	if code != exitFailed || !strings.Contains(out, "refused") {
		t.Errorf("run --netns %s: exit %d\n%s\n%s", m[1], code, out, errOut)
	}
}
