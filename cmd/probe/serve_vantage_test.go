package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/nstest"
	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/netns"
	"github.com/connprobe/connprobe/scheduler"
)

// podLike starts a process that looks to netns discovery like a pod's:
// its own network namespace (lo up), a cgroup under a kubepods-pod<uid>
// slice, HOSTNAME=name in its environment and the service account's
// namespace file in its root (a private mount over /var). It returns the
// process; t.Cleanup kills it and removes the cgroup.
func podLike(t *testing.T, podNS, name string) *exec.Cmd {
	t.Helper()
	cmd, _ := podWithEtc(t, podNS, name, "")
	return cmd
}

// recordSink records every result per target and which targets come and go.
type recordSink struct {
	mu      sync.Mutex
	results map[string][]probe.Reason
	starts  map[string][]time.Time // Start of each result, in step with results
	live    map[string]bool
}

func (s *recordSink) Target(_ *scheduler.Job, t probe.Target) scheduler.TargetSink {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live[t.Name] = true
	return recordTarget{s, t.Name}
}

func (s *recordSink) Forget(_ *scheduler.Job, t probe.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.live, t.Name)
}

func (s *recordSink) Targets(*scheduler.Job, int) {}

func (s *recordSink) snapshot() (map[string][]probe.Reason, map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, l := map[string][]probe.Reason{}, map[string]bool{}
	for k, v := range s.results {
		r[k] = append([]probe.Reason(nil), v...)
	}
	for k := range s.live {
		l[k] = true
	}
	return r, l
}

type recordTarget struct {
	s    *recordSink
	name string
}

func (r recordTarget) Scheduled(time.Duration) {}
func (r recordTarget) Overrun(int)             {}
func (r recordTarget) Result(res *probe.Result) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.results[r.name] = append(r.s.results[r.name], res.Reason)
	r.s.starts[r.name] = append(r.s.starts[r.name], res.Start)
}

// startsOf returns when each recorded attempt against name began.
func (s *recordSink) startsOf(name string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.starts[name]...)
}

// A vantage job runs from two pod-like namespaces and a named one: each
// (target, vantage) is its own loop whose probes really run inside that
// namespace; a pod that goes away mid-run yields netns_gone once, its target
// is dropped at once (well before the 1m refresh), the others keep going,
// and no fd or goroutine is left behind.
func TestServeVantageFromPodNamespaces(t *testing.T) {
	lab.RequirePriv(t)
	prefix := fmt.Sprintf("cpv%04d", rand.N(10000))
	web1 := podLike(t, prefix, "web-1")
	web2 := podLike(t, prefix, "web-2")
	named := nstest.Named(t, prefix+"-n1")
	// A server on 127.0.0.1 inside web-1 only: from web-1 the probe
	// succeeds, from web-2 and the named namespace it is refused; from the
	// host nothing listens there either way.
	var ln net.Listener
	err := netns.Do("/proc/"+strconv.Itoa(web1.Process.Pid)+"/ns/net", func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	testlisten.Serve(t, ln, testlisten.Close)
	dest := ln.Addr().String()
	config := fmt.Sprintf(`
probes:
  - name: vantage
    interval: 300ms
    timeout: 200ms
    vantage:
      pods: ["%s/web-*"]
      netns: ["%s-*"]
      refresh_interval: 1m
    targets:
      static: ["%s"]
`, prefix, prefix, dest)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	_, jobs, err := loadJobs(t.Context(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordSink{results: map[string][]probe.Reason{}, starts: map[string][]time.Time{}, live: map[string]bool{}}
	sched := scheduler.New(sink, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	}()
	if err := sched.Update(ctx, jobs); err != nil {
		t.Fatal(err)
	}

	from1, from2, fromN := dest+" from pod:"+prefix+"/web-1", dest+" from pod:"+prefix+"/web-2", dest+" from netns:"+named
	want := map[string]probe.Reason{from1: probe.ReasonOK, from2: probe.ReasonRefused, fromN: probe.ReasonRefused}
	waitFor(t, 5*time.Second, "three results per vantage", func() bool {
		res, _ := sink.snapshot()
		for name := range want {
			if len(res[name]) < 3 {
				return false
			}
		}
		return true
	})
	res, live := sink.snapshot()
	if len(live) != 3 {
		t.Errorf("targets %v, want exactly %v", keys(live), keys(want))
	}
	for name, reason := range want {
		for _, got := range res[name] {
			if got != reason {
				t.Errorf("%s: %s, want %s (results %v)", name, got, reason, res[name])
				break
			}
		}
	}

	baseFDs, baseG := countFDs(t), runtime.NumGoroutine()
	res, _ = sink.snapshot()
	before := len(res[from2])
	killed := time.Now()
	_ = web2.Process.Kill()
	_ = web2.Wait()
	waitFor(t, 5*time.Second, "the vanished pod's target dropped", func() bool {
		_, live := sink.snapshot()
		return !live[from2]
	})
	res, live = sink.snapshot()
	// An attempt already under way when the pod died may end as it would
	// have (its socket was made in the live namespace); every attempt that
	// began after must be netns_gone, and there is exactly one.
	starts := sink.startsOf(from2)
	gone := 0
	for i, r := range res[from2][before:] {
		if r == probe.ReasonNetNSGone {
			gone++
		} else if !starts[before+i].Before(killed) {
			t.Errorf("%s after its pod died: %s, want netns_gone", from2, r)
		}
	}
	if gone != 1 {
		t.Errorf("netns_gone %d times after the pod died, want once (results %v)", gone, res[from2])
	}
	if !live[from1] || !live[fromN] {
		t.Errorf("live targets %v: the other vantages must stay", keys(live))
	}
	n1 := len(res[from1])
	waitFor(t, 5*time.Second, "web-1 keeps probing", func() bool {
		res, _ := sink.snapshot()
		return len(res[from1]) >= n1+2
	})
	// One loop fewer: no more fds or goroutines than before the pod died.
	waitFor(t, 5*time.Second, "fds and goroutines back to the baseline", func() bool {
		return countFDs(t) <= baseFDs && runtime.NumGoroutine() <= baseG
	})
	if r, _ := sink.snapshot(); len(r[from2]) != len(res[from2]) {
		t.Errorf("%s probed after it was dropped: %v", from2, r[from2])
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func keys[V any](m map[string]V) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(ks, ", ")
}
