// Package promrules checks connprobe's Prometheus rules with the real
// promtool: syntax (promtool check rules) and behaviour (promtool test rules
// rules_test.yml: burn-rate pairs, never-normal reasons, expect: fail jobs).
package promrules

import (
	"os/exec"
	"testing"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus, listed in .ci/packages.txt): %v", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
}

func TestRulesCheck(t *testing.T) { promtool(t, "check", "rules", "rules.yml") }

func TestRulesUnit(t *testing.T) { promtool(t, "test", "rules", "rules_test.yml") }
