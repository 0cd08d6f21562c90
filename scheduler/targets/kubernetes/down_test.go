package kubernetes

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/connprobe/connprobe/internal/testlisten"
	"github.com/connprobe/connprobe/scheduler/targets"
)

// lockedLog is a slog text log tests can read while it is written.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Started while the API server is unreachable (a loopback port nobody
// listens on: every request is refused at once), a Source warns after
// BlindAfter that it has not synced, counts every failed request, is not
// ready, and still stops within a bounded time of its ctx ending. With
// client-go's informer factory it logged nothing and its stop waited out
// the watch-list backoff (0.8 s doubling to 30 s, ×1–2 jitter), which
// ignores the stop channel.
func TestAPIDownAtStart(t *testing.T) {
	addr := testlisten.ClosedAddr(t) // refused
	c, err := clientset.NewForConfig(&rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	h := &targets.Health{Log: slog.New(slog.NewTextHandler(logs, nil)), BlindAfter: 3 * time.Second}
	h.Expect(map[string]int{"web": 1})
	src, err := New(c, Config{Role: RoleService}, Options{Health: h, Job: "web"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func([]Target) { t.Error("targets from an unreachable API") }) }()

	// Long enough for the backoff to grow past the 5 s a stop may take.
	time.Sleep(20 * time.Second)
	out := logs.String()
	if n := strings.Count(out, `level=WARN msg="discovery: source has not synced; its job has no targets from it" job=web source=kubernetes`); n != 1 {
		t.Errorf("want one not-synced WARN, got:\n%s", out)
	}
	if !strings.Contains(out, "connection refused") {
		t.Errorf("the WARN does not give the error:\n%s", out)
	}
	if js := h.Jobs(); len(js) != 1 || js[0].Synced || js[0].Errors["kubernetes"] < 3 {
		t.Errorf("health %+v, want web unsynced with several errors", js)
	}
	if h.Ready() == nil {
		t.Error("ready without ever syncing")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Watch did not return within a minute of cancel")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Watch took %s to return after cancel, want < 2 s", d)
	} else {
		t.Logf("stopped in %s", d)
	}
}
