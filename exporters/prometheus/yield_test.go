package prometheus

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

// TestScrapeLetsFiringsRun: with one processor (GOMAXPROCS=1, as the
// DaemonSet runs), a scrape of 10,000 targets lets other goroutines run
// every yieldEvery targets, in both formats, instead of holding the
// processor until the runtime preempts it every 10 ms. A goroutine that
// only wants the processor counts its turns during the scrape: hundreds
// with the yields, one per 10 ms of scrape without them.
func TestScrapeLetsFiringsRun(t *testing.T) {
	const n = 10000
	e := New(Options{Version: "v1", NoRuntimeMetrics: true})
	job := &scheduler.Job{Name: "web", Kind: "connect"}
	for i := range n {
		e.Target(job, probe.Target{Name: fmt.Sprintf("10.%d.%d.%d:8080", i/62500, i/250%250, i%250)}).Result(okResult())
	}
	e.Targets(job, n)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, accept := range []string{"", string(expfmt.NewFormat(expfmt.TypeProtoDelim))} {
		name := "text"
		if accept != "" {
			name = "protobuf"
		}
		t.Run(name, func(t *testing.T) {
			var stop atomic.Bool
			var turns atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				for !stop.Load() {
					turns.Add(1)
					runtime.Gosched()
				}
			})
			runtime.Gosched() // let it start
			turns.Store(0)
			req := httptest.NewRequest("GET", "/metrics", nil)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			w := &countingWriter{h: make(http.Header)}
			e.Handler().ServeHTTP(w, req)
			got := turns.Load()
			stop.Store(true)
			wg.Wait()
			// Each family's series are written in chunks of yieldEvery
			// targets: at least n/yieldEvery turns for the first family alone.
			if want := int64(n / yieldEvery); got < want {
				t.Errorf("another goroutine ran %d times during a %d-byte scrape of %d targets, want at least %d (one per %d targets)", got, w.n, n, want, yieldEvery)
			}
		})
	}
}
