package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connprobe/connprobe/probe/syn"
)

func TestSynOptions(t *testing.T) {
	var o SynOptions
	if err := yaml.Unmarshal([]byte("source: 10.0.0.1\nretransmit: [200ms, 400ms]\npaws: true\npaws_wait: 1s\n"), &o); err != nil {
		t.Fatal(err)
	}
	cfg, err := o.Config(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.PAWS || cfg.PAWSWait != time.Second || len(cfg.Schedule) != 2 || cfg.Schedule[1] != 400*time.Millisecond || cfg.Source.String() != "10.0.0.1" || cfg.Timeout != 2*time.Second {
		t.Errorf("got %+v", cfg)
	}
	bad := SynOptions{Source: "x", Retransmit: []Duration{{D: time.Second}, {D: time.Second}}, PAWSWait: Duration{Err: errBadDur}}
	_, err = bad.Config(time.Second)
	for _, want := range []string{`syn.source "x"`, "syn.paws_wait", "retransmit[1] 1s must come after"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to mention %q", err, want)
		}
	}
}

var errBadDur = errorString("bad duration")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestSynRate(t *testing.T) {
	c, err := Load(t.Context(), "testdata/good-syn-rate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Global.SynBudget(); got != 250 {
		t.Errorf("syn_rate 250: got %d", got)
	}
	c, err = Load(t.Context(), "testdata/good-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Global.SynBudget(); got != syn.DefaultRate {
		t.Errorf("unset: got %d, want the default %d", got, syn.DefaultRate)
	}

	_, err = Load(t.Context(), "testdata/bad-syn-rate.yaml")
	if want := "global: syn_rate 0 must be positive (packets/s for all raw SYNs of the prober; unset: 1000)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("syn_rate 0: got %v, want %q", err, want)
	}
	for _, tt := range []struct{ value, want string }{
		{"-5", "global: syn_rate -5 must be positive"},
		{"fast", "line 2"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		body := "global:\n  syn_rate: " + tt.value + "\nprobes:\n  - name: s\n    kind: syn\n    targets: {static: [\"127.0.0.1:1\"]}\n"
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(t.Context(), path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("syn_rate %s: got %v, want it to mention %q", tt.value, err, tt.want)
		}
	}
}
