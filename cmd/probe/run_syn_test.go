package main

import (
	"strings"
	"testing"
	"time"
)

func TestPlanRunSYNFlags(t *testing.T) {
	base := runFlags{kind: "connect", count: 1, interval: time.Second, timeout: time.Second, output: "text", synRate: 1000}
	tests := []struct {
		name    string
		f       func(runFlags) runFlags
		wantErr string
	}{
		{"paws with an explicit connect kind", func(f runFlags) runFlags { f.paws, f.kindSet = true, true; return f }, `--paws needs --kind syn, not "connect"`},
		{"zero syn rate", func(f runFlags) runFlags { f.kind, f.kindSet, f.synRate = "syn", true, 0; return f }, "--syn-rate"},
		{"syn with --send", func(f runFlags) runFlags { f.kind, f.kindSet, f.send = "syn", true, "x"; return f }, "kind syn sends only a SYN"},
	}
	for _, tt := range tests {
		_, err := planRun(tt.f(base), []string{"127.0.0.1:1"})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	plan, err := planRun(func(f runFlags) runFlags { f.kind, f.kindSet, f.paws = "syn", true, true; return f }(base), []string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.probers {
		p.Close()
	}
}
