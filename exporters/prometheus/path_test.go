package prometheus

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

func TestPathMetrics(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	e.Path("db", "10.244.2.20:3306", 2, false)
	e.Path("db", "10.244.2.20:3306", 1, true)
	e.Path("web", "10.96.0.10:80", 0, false)
	want := `
# HELP connprobe_path_changes_total Path traces whose responders, hop by hop, differ from the target's previous trace.
# TYPE connprobe_path_changes_total counter
connprobe_path_changes_total{job="db",target="10.244.2.20:3306"} 1
connprobe_path_changes_total{job="web",target="10.96.0.10:80"} 0
# HELP connprobe_path_hops Hops to the last responder of the target's last path trace (the target's own hop when it answered; 0: nothing answered).
# TYPE connprobe_path_hops gauge
connprobe_path_hops{job="db",target="10.244.2.20:3306"} 1
connprobe_path_hops{job="web",target="10.96.0.10:80"} 0
`
	if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want), "connprobe_path_hops", "connprobe_path_changes_total"); err != nil {
		t.Error(err)
	}
	if probs, err := testutil.GatherAndLint(e.Gatherer(), "connprobe_path_hops", "connprobe_path_changes_total"); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", probs, err)
	}
	// A target that goes away leaves no path series.
	e.Forget(&scheduler.Job{Name: "db"}, probe.Target{Name: "10.244.2.20:3306"})
	if n := testutil.CollectAndCount(e.pathHops) + testutil.CollectAndCount(e.pathChanges); n != 2 {
		t.Errorf("%d path series after Forget, want web's 2", n)
	}
}
