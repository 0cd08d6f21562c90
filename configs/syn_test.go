package configs

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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
