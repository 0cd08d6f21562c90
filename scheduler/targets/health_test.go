package targets

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(sub string) int { return strings.Count(l.String(), sub) }

func newHealth() (*Health, *logBuf) {
	var buf logBuf
	return &Health{Log: slog.New(slog.NewTextHandler(&buf, nil)), BlindAfter: 10 * time.Second}, &buf
}

func jobState(t *testing.T, h *Health, job string) JobStatus {
	t.Helper()
	for _, j := range h.Jobs() {
		if j.Job == job {
			return j
		}
	}
	t.Fatalf("job %q not in %+v", job, h.Jobs())
	return JobStatus{}
}

// A source that never syncs is warned about once, after BlindAfter, and
// readiness names it; its first sync logs the recovery and makes it ready.
func TestHealthNeverSynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, logs := newHealth()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		h.Expect(map[string]int{"web": 1})
		if err := h.Ready(); err == nil || !strings.Contains(err.Error(), "0 of 1 target sources started") {
			t.Fatalf("Ready before start = %v", err)
		}
		st := h.Start(ctx, "web", "kubernetes", "role=service")
		st.Error(errors.New("connection refused"))
		if err := h.Ready(); err == nil || !strings.Contains(err.Error(), "has not synced") {
			t.Fatalf("Ready = %v, want not synced", err)
		}
		time.Sleep(9 * time.Second)
		if n := logs.count("level=WARN"); n != 0 {
			t.Fatalf("warned before BlindAfter:\n%s", logs)
		}
		time.Sleep(2 * time.Second)
		if n := logs.count(`level=WARN msg="discovery: source has not synced`); n != 1 {
			t.Fatalf("want one not-synced WARN, got:\n%s", logs)
		}
		if !strings.Contains(logs.String(), `err="connection refused"`) {
			t.Errorf("WARN lacks the last error:\n%s", logs)
		}
		time.Sleep(time.Minute)
		if n := logs.count("level=WARN"); n != 1 {
			t.Fatalf("warned %d times in one spell:\n%s", n, logs)
		}
		st.OK()
		if err := h.Ready(); err != nil {
			t.Fatalf("Ready after sync = %v", err)
		}
		if n := logs.count(`level=INFO msg="discovery: source synced"`); n != 1 {
			t.Fatalf("want one INFO on sync:\n%s", logs)
		}
		j := jobState(t, h, "web")
		if !j.Synced || j.Errors["kubernetes"] != 1 {
			t.Errorf("job state %+v, want synced with 1 error", j)
		}
	})
}

// A synced source that loses its view: a short spell (an API server
// restart) is counted but not logged; a long one is warned about once and
// its end logged; synced follows the current state.
func TestHealthLostView(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, logs := newHealth()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		st := h.Start(ctx, "web", "dns", "A web.example")
		st.OK()
		if logs.String() != "" {
			t.Fatalf("a first sync within BlindAfter logged:\n%s", logs)
		}
		// Short spell: below the threshold.
		st.Error(errors.New("forbidden"))
		if jobState(t, h, "web").Synced {
			t.Error("synced during a failing spell")
		}
		time.Sleep(5 * time.Second)
		st.OK()
		time.Sleep(time.Minute)
		if logs.String() != "" {
			t.Fatalf("a 5 s spell was logged:\n%s", logs)
		}
		// Long spell.
		for range 4 {
			st.Error(errors.New("connection refused"))
			time.Sleep(4 * time.Second)
		}
		if n := logs.count(`level=WARN msg="discovery: source lost its view; probing its last known targets"`); n != 1 {
			t.Fatalf("want one WARN:\n%s", logs)
		}
		st.OK()
		if n := logs.count(`level=INFO msg="discovery: source recovered`); n != 1 {
			t.Fatalf("want one recovery INFO:\n%s", logs)
		}
		if !strings.Contains(logs.String(), "blind_for=16s") {
			t.Errorf("recovery does not say how long:\n%s", logs)
		}
		j := jobState(t, h, "web")
		if !j.Synced || j.Errors["dns"] != 5 {
			t.Errorf("job state %+v, want synced, 5 errors", j)
		}
	})
}

// A job is synced only when all its sources are; a stopped job's state and
// counters go away; Ready ignores jobs no longer expected.
func TestHealthJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newHealth()
		jctx, stopJob := context.WithCancel(t.Context())
		a := h.Start(jctx, "web", "dns", "a")
		b := h.Start(jctx, "web", "file_sd", "b")
		h.Expect(map[string]int{"web": 2})
		a.OK()
		if jobState(t, h, "web").Synced || h.Ready() == nil {
			t.Fatal("synced with one of two sources")
		}
		b.Error(errors.New("bad yaml"))
		b.OK()
		if !jobState(t, h, "web").Synced || h.Ready() != nil {
			t.Fatalf("not synced: %+v %v", h.Jobs(), h.Ready())
		}
		h.Expect(nil)
		stopJob()
		synctest.Wait()
		if js := h.Jobs(); len(js) != 0 {
			t.Fatalf("stopped job still reported: %+v", js)
		}
		a.Error(errors.New("late")) // after stop: ignored
		if js := h.Jobs(); len(js) != 0 {
			t.Fatalf("stopped source counted: %+v", js)
		}
		var nilH *Health
		st := nilH.Start(t.Context(), "x", "dns", "y")
		st.OK()
		st.Error(errors.New("x"))
		if nilH.Ready() != nil || nilH.Jobs() != nil {
			t.Error("a nil Health reported something")
		}
	})
}
