package stall

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// beats feeds a detector heartbeats every tick from..to (ms).
func beats(d *Detector, from, to int) {
	for ms := from; ms <= to; ms += int(d.tick / time.Millisecond) {
		d.beat(at(ms))
	}
}

func newTest(cpuStat string) *Detector {
	d := New(Options{Tick: 50 * time.Millisecond, Threshold: 100 * time.Millisecond, CPUStat: cpuStat})
	d.running, d.last = true, at(0)
	return d
}

func TestHeartbeatGapSpoilsOverlappingAttempts(t *testing.T) {
	d := newTest("none")
	beats(d, 50, 1000)
	d.beat(at(4000)) // stopped from ~1000 to 4000 ms
	beats(d, 4050, 5000)
	for _, tt := range []struct {
		name       string
		start, end int
		want       bool
	}{
		{"before the stall", 100, 900, false},
		{"after the stall", 4100, 4900, false},
		{"spans the stall", 900, 4100, true},
		{"ends inside it", 500, 2000, true},
		{"starts inside it", 3000, 4500, true},
		// Begun when the process resumed, a moment before the heartbeat
		// ran again and closed the window: it ran whole.
		{"starts as it resumes", 3998, 5000, false},
	} {
		s, got := d.Check(at(tt.start), at(tt.end))
		if got != tt.want {
			t.Errorf("%s [%d,%d] ms: stalled %v (%+v), want %v", tt.name, tt.start, tt.end, got, s, tt.want)
		}
		if got && (s.Paused < 2900*time.Millisecond || s.Cause() != "paused") {
			t.Errorf("%s: paused %s cause %s, want ~2.95s paused", tt.name, s.Paused, s.Cause())
		}
	}
	if tot := d.Totals(); tot.Stalls != 1 {
		t.Errorf("totals %+v, want one stall", tot)
	}
}

// The attempt's goroutine may finish before the heartbeat runs after the
// process resumes: the open gap counts.
func TestOpenGapCounts(t *testing.T) {
	d := newTest("none")
	beats(d, 50, 1000)
	if s, ok := d.Check(at(500), at(3000)); !ok || s.Paused < 1900*time.Millisecond {
		t.Errorf("open gap: %v %+v, want a ~2s pause", ok, s)
	}
	if _, ok := d.Check(at(500), at(1100)); ok {
		t.Error("a gap of one tick is not a stall")
	}
	d.running = false // Run returned: its last beat is old, not a stall
	if _, ok := d.Check(at(500), at(3000)); ok {
		t.Error("a stopped detector reported an open gap")
	}
}

// Small scheduling jitter is not a stall.
func TestJitterBelowThreshold(t *testing.T) {
	d := newTest("none")
	ms := 0
	for range 100 {
		ms += 50 + 90 // each beat 90 ms late: below the 100 ms threshold
		d.beat(at(ms))
	}
	if _, ok := d.Check(at(0), at(ms)); ok {
		t.Error("jitter under the threshold was reported as a stall")
	}
}

func writeStat(t *testing.T, path string, nr int, usec int) {
	t.Helper()
	s := "usage_usec 1\nnr_periods 100\nnr_throttled " + strconv.Itoa(nr) + "\nthrottled_usec " + strconv.Itoa(usec) + "\n"
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Throttling in slices shorter than a heartbeat tick adds up to a stall,
// and is attributed to the cgroup's CPU limit.
func TestCgroupThrottlingAddsUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.stat")
	writeStat(t, path, 0, 0)
	d := newTest(path)
	d.stat, d.statOK = cpuStat{}, true
	beats(d, 50, 500)
	// 40 ms throttled per beat from 550 to 700 ms: 160 ms in all.
	nr, us := 0, 0
	for ms := 550; ms <= 700; ms += 50 {
		nr, us = nr+1, us+40_000
		writeStat(t, path, nr, us)
		d.beat(at(ms))
	}
	beats(d, 750, 2000) // no more throttling
	s, ok := d.Check(at(520), at(800))
	if !ok || s.Cause() != "throttled" || s.Throttled < 100*time.Millisecond {
		t.Fatalf("got %v %+v, want a throttling stall of >= 100ms", ok, s)
	}
	if !strings.Contains(s.String(), "CPU-throttled for") {
		t.Errorf("evidence %q does not name the throttling", s.String())
	}
	if _, ok := d.Check(at(900), at(1900)); ok {
		t.Error("an attempt after the throttling was judged stalled")
	}
	// Isolated small throttles do not add up across unthrottled beats.
	d2 := newTest(path)
	writeStat(t, path, 0, 0)
	d2.stat, d2.statOK = cpuStat{}, true
	nr, us = 0, 0
	for ms := 50; ms <= 2000; ms += 50 {
		if ms%100 == 0 {
			nr, us = nr+1, us+30_000
			writeStat(t, path, nr, us)
		}
		d2.beat(at(ms))
	}
	if _, ok := d2.Check(at(0), at(2000)); ok {
		t.Error("30 ms throttles separated by free beats were reported as a stall")
	}
}

// An attempt older than every window kept still learns it was stalled.
func TestHistoryEviction(t *testing.T) {
	d := newTest("none")
	ms := 0
	for range history + 10 {
		ms += 50
		d.beat(at(ms))
		ms += 400
		d.beat(at(ms)) // a 350 ms stall
		beats(d, ms+50, ms+500)
		ms += 500
	}
	if _, ok := d.Check(at(1), at(ms)); !ok {
		t.Error("a long attempt whose stalls were evicted was not judged stalled")
	}
	if len(d.wins) != history {
		t.Errorf("kept %d windows, want %d", len(d.wins), history)
	}
}

// Run beats on its own and returns when ctx is done (fake time).
func TestRunIsCtxOwned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New(Options{CPUStat: "none"})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		time.Sleep(time.Second)
		synctest.Wait()
		start := time.Now()
		time.Sleep(time.Second)
		if _, ok := d.Check(start, time.Now()); ok {
			t.Error("a detector beating on time reported a stall")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestParseCPUStat(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     cpuStat
		ok       bool
	}{
		{"v2", "usage_usec 5\nnr_periods 10\nnr_throttled 3\nthrottled_usec 1500\n", cpuStat{3, 1500 * time.Microsecond}, true},
		{"v1", "nr_periods 16\nnr_throttled 15\nthrottled_time 1127389751\n", cpuStat{15, 1127389751}, true},
		{"v2 without the cpu controller", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n", cpuStat{}, false},
		{"garbage", "nr_throttled x\nthrottled_usec -1\n", cpuStat{}, false},
		{"huge", "nr_throttled 1\nthrottled_usec 18446744073709551615\n", cpuStat{1, time.Duration(uint64(1<<62) / 1000 * 1000)}, true},
	} {
		got, err := parseCPUStat([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseCPUStat(f *testing.F) {
	f.Add([]byte("nr_throttled 3\nthrottled_usec 1500\n"))
	f.Add([]byte("nr_throttled 15\nthrottled_time 1127389751\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseCPUStat(b)
		if err == nil && st.throttled < 0 {
			t.Errorf("negative throttled time %v", st.throttled)
		}
	})
}

func TestFindCPUStat(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("kubepods/pod1/cpu.stat", "usage_usec 1\nnr_throttled 0\nthrottled_usec 0\n")
	mk("unified/cpu.stat", "usage_usec 1\n") // hybrid: no cpu controller in v2
	mk("cpu/docker/abc/cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")
	for _, tt := range []struct{ name, in, want string }{
		{"v2", "0::/kubepods/pod1\n", filepath.Join(root, "kubepods/pod1/cpu.stat")},
		{"hybrid falls back to v1", "4:memory:/x\n1:cpu:/docker/abc\n0::/\n", filepath.Join(root, "cpu/docker/abc/cpu.stat")},
		{"none", "0::/nowhere\n", ""},
		{"hostile", "0::../../etc\n::\n1:cpu:\n", ""},
	} {
		if got := findCPUStat([]byte(tt.in), root); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A stall is logged once, however many attempts it spoils, and stalls
// closer together than LogEvery share one line that counts them.
func TestStallsAreLoggedOnceAndRateLimited(t *testing.T) {
	var buf bytes.Buffer
	d := newTest("none")
	d.log = slog.New(slog.NewTextHandler(&buf, nil))
	beats(d, 50, 1000)
	d.beat(at(1300)) // a 250 ms pause: logged
	beats(d, 1350, 2000)
	d.beat(at(2400)) // another, 1 s later: counted, not logged
	beats(d, 2450, 12000)
	d.beat(at(12500)) // after LogEvery: logged, with the one held back
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"stalls_since_last_line=1", "stalls_since_last_line=2"} {
		if !strings.Contains(lines[i], "the prober itself stalled") || !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "heartbeat gap") {
			t.Errorf("line %d = %q, want the stall, its cause and %s", i, lines[i], want)
		}
	}
	for range 100 { // spoiled attempts do not log
		d.Check(at(1000), at(1400))
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d lines after checking attempts, want still 2", n)
	}
}
