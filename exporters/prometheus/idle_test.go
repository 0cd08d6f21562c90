package prometheus

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

func TestIdleTimeoutBoundary(t *testing.T) {
	e := New(Options{NoRuntimeMetrics: true})
	j := &scheduler.Job{Name: "vip", Kind: "idle"}
	tg := probe.Target{Name: "10.96.0.10:7700"}
	rec := e.Target(j, tg).(*recorder)
	names := []string{"connprobe_idle_timeout_boundary_seconds", "connprobe_idle_timeout_searches_total"}
	check := func(step, want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(e.Gatherer(), strings.NewReader(want), names...); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	head := `
# HELP connprobe_idle_timeout_boundary_seconds Idle-timeout search: the longest idle time a connection survived (bound=survived) and the shortest after which one was lost (bound=lost; absent when none was lost up to max_idle).
# TYPE connprobe_idle_timeout_boundary_seconds gauge
`
	counters := func(found, none, failed int) string {
		return strings.NewReplacer("F", itoa(found), "N", itoa(none), "X", itoa(failed)).Replace(`
# HELP connprobe_idle_timeout_searches_total Idle-timeout searches by result: found, not_found (survived up to max_idle), failed.
# TYPE connprobe_idle_timeout_searches_total counter
connprobe_idle_timeout_searches_total{job="vip",result="failed",target="10.96.0.10:7700"} X
connprobe_idle_timeout_searches_total{job="vip",result="found",target="10.96.0.10:7700"} F
connprobe_idle_timeout_searches_total{job="vip",result="not_found",target="10.96.0.10:7700"} N
`)
	}
	rec.IdleTimeoutSearches()
	check("before a search", counters(0, 0, 0))

	rec.IdleTimeout(7*time.Second, 7500*time.Millisecond, false)
	found := head + `connprobe_idle_timeout_boundary_seconds{bound="lost",job="vip",target="10.96.0.10:7700"} 7.5
connprobe_idle_timeout_boundary_seconds{bound="survived",job="vip",target="10.96.0.10:7700"} 7
`
	check("found", found+counters(1, 0, 0))
	rec.IdleTimeout(0, 0, true)
	check("failed keeps the last boundary", found+counters(1, 0, 1))
	rec.IdleTimeout(20*time.Minute, 0, false)
	check("none lost", head+`connprobe_idle_timeout_boundary_seconds{bound="survived",job="vip",target="10.96.0.10:7700"} 1200
`+counters(1, 1, 1))
	if probs, err := testutil.GatherAndLint(e.Gatherer(), names...); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", probs, err)
	}

	e.Forget(j, tg)
	if n, err := testutil.GatherAndCount(e.Gatherer(), names...); err != nil || n != 0 {
		t.Errorf("after Forget: %d series (%v), want 0", n, err)
	}
	rec = e.Target(j, tg).(*recorder)
	rec.IdleTimeout(time.Second, 2*time.Second, false)
	e.Targets(j, -1)
	if n, _ := testutil.GatherAndCount(e.Gatherer(), names...); n != 0 {
		t.Errorf("after the job went: %d series, want 0", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
