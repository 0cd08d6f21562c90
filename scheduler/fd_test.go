package scheduler

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/connect"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

type countSink struct{ results chan struct{} }

func (s countSink) Target(*Job, probe.Target) TargetSink { return s }
func (countSink) Forget(*Job, probe.Target)              {}
func (countSink) Targets(*Job, int)                      {}
func (countSink) Scheduled(time.Duration)                {}
func (countSink) Overrun(int)                            {}
func (s countSink) Result(*probe.Result) {
	select {
	case s.results <- struct{}{}:
	default:
	}
}

// TestRealProbesLeakNoFDs: real connect probes against loopback listeners
// while targets come and go; afterwards no socket is left open and no
// goroutine is left running.
func TestRealProbesLeakNoFDs(t *testing.T) {
	var addrs []string
	for range 6 {
		addrs = append(addrs, testlisten.Loopback(t, testlisten.Close).Addr().String())
	}
	before := openFDs(t)
	goroutines := runtime.NumGoroutine()
	src := make(pushSource)
	sink := countSink{results: make(chan struct{}, 1)}
	s := New(sink, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	job := &Job{Name: "fd", Kind: connect.Kind, Interval: 20 * time.Millisecond, Timeout: 15 * time.Millisecond,
		Concurrency: 2, Source: src, Fingerprint: "fd",
		New: func(tg probe.Target) (probe.Prober, error) {
			return connect.New(tg, connect.Config{Timeout: time.Second})
		}}
	if err := s.Update(ctx, []*Job{job}); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		var set []probe.Target
		for i, a := range addrs {
			if (i+round)%3 != 0 {
				tg, err := probe.ParseTarget(a)
				if err != nil {
					t.Fatal(err)
				}
				set = append(set, tg)
			}
		}
		src <- set
		<-sink.results // at least one real attempt per round
		time.Sleep(15 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Accepted server sides close asynchronously: give them a moment.
	deadline := time.Now().Add(2 * time.Second)
	for openFDs(t) > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after the scheduler stopped, %d before", n, goroutines)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d fds open after the scheduler stopped, %d before: %s leaked", after, before, strconv.Itoa(after-before))
	}
}
