// Package stall tells whether the prober itself was not running during an
// attempt: a stopped process (SIGSTOP, a debugger), a container throttled by
// its CPU limit, a GC or VM pause, steal on an overloaded node. While the
// prober does not run, the kernel keeps going: the SYN/ACK arrives, the
// reply sits in the socket buffer, but the deadline timer fires first when
// the process resumes, and a healthy target gets syn_timeout, a healthy idle
// connection stale_session, a 1 ms handshake is "measured" at 2.46 s. Such an
// attempt says nothing about the network and is discarded.
//
// A Detector sees stalls two ways. A heartbeat goroutine ticks every Tick on
// the monotonic clock: a gap between two beats longer than Tick+Threshold is
// a pause of the whole process. And when the process's cgroup has a CPU
// controller, its cpu.stat (cgroup v2 nr_throttled/throttled_usec, v1
// nr_throttled/throttled_time) is read at every beat: throttling that adds up
// to Threshold over consecutive beats is a stall too, even when it comes in
// slices shorter than the heartbeat can see. Both are recorded as windows of
// monotonic time; Check says whether one overlapped an attempt's [start,
// end] (a pause, by more than Threshold), including a pause still open (the
// attempt's goroutine ran before the heartbeat's after the process resumed).
package stall

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Defaults of Options.
const (
	DefaultTick      = 50 * time.Millisecond
	DefaultThreshold = 100 * time.Millisecond
)

// history is how many stall windows a Detector keeps; adjacent windows are
// merged, and an attempt older than an evicted window is judged stalled.
const history = 128

// Options tune a Detector.
type Options struct {
	// Tick is the heartbeat period (default 50ms).
	Tick time.Duration
	// Threshold is the shortest pause or throttling that spoils an attempt
	// (default 100ms).
	Threshold time.Duration
	// CPUStat is the cgroup cpu.stat file to watch for throttling: "" finds
	// the process's own (v2, else v1 cpu controller), "none" watches none.
	CPUStat string
	// Now is the clock (tests); default time.Now, whose readings carry the
	// monotonic clock.
	Now func() time.Time
	// Log, when set, gets one WARN line per stall (at most one per
	// LogEvery, with the count of those not logged): the one place a
	// stall is logged, however many attempts it spoiled.
	Log *slog.Logger
}

// LogEvery is the least time between two of a Detector's log lines.
const LogEvery = 10 * time.Second

// Stall describes the stalls that overlapped an attempt.
type Stall struct {
	From, To time.Time // the stalled span, windows joined
	// Paused is the longest heartbeat gap (beyond its tick) in the span.
	Paused time.Duration
	// Throttled is the CPU throttling the cgroup reported in the span.
	Throttled time.Duration
}

// Cause is "throttled" when the cgroup's CPU limit accounts for the stall,
// else "paused".
func (s Stall) Cause() string {
	if s.Throttled > 0 && s.Throttled >= s.Paused {
		return "throttled"
	}
	return "paused"
}

// String is one line of evidence.
func (s Stall) String() string {
	var parts []string
	if s.Paused > 0 {
		parts = append(parts, fmt.Sprintf("not scheduled for %s (heartbeat gap)", round(s.Paused)))
	}
	if s.Throttled > 0 {
		parts = append(parts, fmt.Sprintf("CPU-throttled for %s by its cgroup's limit (cpu.stat)", round(s.Throttled)))
	}
	return "the prober itself stalled during the attempt: " + strings.Join(parts, ", ") +
		"; its timings and verdict would be the prober's, not the network's"
}

func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}

type window struct {
	from, to  time.Time
	paused    time.Duration
	throttled time.Duration
}

// Detector records when the process was not running. Its methods are safe
// for concurrent use; Run must be running for it to see anything.
type Detector struct {
	tick, threshold time.Duration
	now             func() time.Time
	statPath        string

	mu      sync.Mutex
	running bool
	last    time.Time // last heartbeat
	wins    []window  // oldest first, at most history
	evicted time.Time // latest end of a window dropped from wins
	// throttling seen over consecutive beats, not yet a window
	stat         cpuStat
	statOK       bool
	pendFrom     time.Time
	pendThrottle time.Duration
	total        Totals
	log          *slog.Logger
	lastLog      time.Time
	unlogged     int // stalls since the last line
}

// Totals are what a Detector has seen since it started.
type Totals struct {
	Stalls    uint64        // windows recorded (adjacent ones merged)
	Paused    time.Duration // sum of heartbeat gaps beyond the tick
	Throttled time.Duration // sum of throttling over the threshold
}

// New returns a Detector; call Run.
func New(o Options) *Detector {
	d := &Detector{tick: o.Tick, threshold: o.Threshold, now: o.Now, statPath: o.CPUStat, log: o.Log}
	if d.tick <= 0 {
		d.tick = DefaultTick
	}
	if d.threshold <= 0 {
		d.threshold = DefaultThreshold
	}
	if d.now == nil {
		d.now = time.Now
	}
	switch d.statPath {
	case "none":
		d.statPath = ""
	case "":
		d.statPath = FindCPUStat()
	}
	return d
}

// CPUStatPath is the cpu.stat file the Detector watches ("" for none).
func (d *Detector) CPUStatPath() string { return d.statPath }

// Now reads the Detector's clock: attempts take their start and end from it.
func (d *Detector) Now() time.Time { return d.now() }

// Threshold is the shortest stall that spoils an attempt.
func (d *Detector) Threshold() time.Duration { return d.threshold }

// Run beats until ctx is done.
func (d *Detector) Run(ctx context.Context) error {
	d.mu.Lock()
	d.running = true
	d.last = d.now()
	if st, err := readCPUStat(d.statPath); err == nil {
		d.stat, d.statOK = st, true
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()
	t := time.NewTicker(d.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.beat(d.now())
		}
	}
}

// beat records one heartbeat at now.
func (d *Detector) beat(now time.Time) {
	var st cpuStat
	var stErr error = errNoStat
	if d.statPath != "" {
		st, stErr = readCPUStat(d.statPath)
	}
	d.mu.Lock()
	stalls := d.total.Stalls
	defer func() {
		var line *Stall
		if d.total.Stalls > stalls && d.log != nil {
			d.unlogged++
			if w := d.wins[len(d.wins)-1]; d.lastLog.IsZero() || now.Sub(d.lastLog) >= LogEvery {
				line = &Stall{From: w.from, To: w.to, Paused: w.paused, Throttled: w.throttled}
			}
		}
		n := d.unlogged
		if line != nil {
			d.lastLog, d.unlogged = now, 0
		}
		d.mu.Unlock()
		if line != nil {
			d.log.Warn("the prober itself stalled: attempts in flight are discarded as prober_stalled, not blamed on their targets",
				"stall", line.String(), "cause", line.Cause(), "stalls_since_last_line", n)
		}
	}()
	prev := d.last
	d.last = now
	if gap := now.Sub(prev) - d.tick; gap > d.threshold {
		d.record(window{from: prev, to: now, paused: gap})
		d.total.Paused += gap
	}
	if stErr != nil {
		d.statOK = false
		return
	}
	if d.statOK && st.nrThrottled > d.stat.nrThrottled && st.throttled > d.stat.throttled {
		if d.pendFrom.IsZero() {
			d.pendFrom = prev
		}
		d.pendThrottle += st.throttled - d.stat.throttled
		if d.pendThrottle >= d.threshold {
			d.record(window{from: d.pendFrom, to: now, throttled: d.pendThrottle})
			d.total.Throttled += d.pendThrottle
			d.pendFrom, d.pendThrottle = time.Time{}, 0
		}
	} else {
		d.pendFrom, d.pendThrottle = time.Time{}, 0
	}
	d.stat, d.statOK = st, true
}

// record adds w, merged with the newest window when they touch.
func (d *Detector) record(w window) {
	if n := len(d.wins); n > 0 {
		last := &d.wins[n-1]
		if !w.from.After(last.to.Add(d.tick)) {
			if w.to.After(last.to) {
				last.to = w.to
			}
			if w.from.Before(last.from) {
				last.from = w.from
			}
			last.paused = max(last.paused, w.paused)
			last.throttled += w.throttled
			return
		}
	}
	d.total.Stalls++
	if len(d.wins) == history {
		if d.wins[0].to.After(d.evicted) {
			d.evicted = d.wins[0].to
		}
		d.wins = append(d.wins[:0], d.wins[1:]...)
	}
	d.wins = append(d.wins, w)
}

// Check reports the stalls that overlapped an attempt that ran from start
// to end (readings of the same monotonic clock), including a pause still
// open at end: after the process resumes, the attempt's goroutine may run
// before the heartbeat's does.
func (d *Detector) Check(start, end time.Time) (Stall, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s Stall
	found := false
	add := func(w window) {
		if !found || w.from.Before(s.From) {
			s.From = w.from
		}
		if !found || w.to.After(s.To) {
			s.To = w.to
		}
		found = true
		s.Paused = max(s.Paused, w.paused)
		s.Throttled += w.throttled
	}
	if d.evicted.After(start) {
		add(window{from: start, to: d.evicted})
	}
	for i := len(d.wins) - 1; i >= 0; i-- {
		w := d.wins[i]
		if !w.to.After(start) {
			break
		}
		if !w.from.Before(end) {
			continue
		}
		// A pause window runs from the last beat before the process stopped
		// to the first after it resumed; an attempt begun as it resumed, a
		// moment before the heartbeat's goroutine ran again, shares only
		// that moment with it and ran whole. A pause spoils an attempt it
		// overlaps by more than the threshold.
		if w.throttled == 0 && minTime(w.to, end).Sub(maxTime(w.from, start)) <= d.threshold {
			continue
		}
		add(w)
	}
	if d.running {
		if gap := end.Sub(d.last) - d.tick; gap > d.threshold && d.last.Before(end) {
			add(window{from: d.last, to: end, paused: gap})
		}
	}
	return s, found
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Totals returns what the Detector has seen so far.
func (d *Detector) Totals() Totals {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// cpuStat is the throttling part of a cgroup's cpu.stat.
type cpuStat struct {
	nrThrottled uint64
	throttled   time.Duration
}

var errNoStat = errors.New("stall: no cpu.stat")

// maxStatSize bounds the read of cpu.stat (a dozen short lines).
const maxStatSize = 4 << 10

func readCPUStat(path string) (cpuStat, error) {
	if path == "" {
		return cpuStat{}, errNoStat
	}
	f, err := os.Open(path)
	if err != nil {
		return cpuStat{}, fmt.Errorf("stall: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStatSize))
	if err != nil {
		return cpuStat{}, fmt.Errorf("stall: read %s: %w", path, err)
	}
	return parseCPUStat(b)
}

// parseCPUStat reads nr_throttled and throttled_usec (cgroup v2) or
// throttled_time in ns (v1).
func parseCPUStat(b []byte) (cpuStat, error) {
	var st cpuStat
	var haveNr, haveTime bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "nr_throttled":
			st.nrThrottled, haveNr = n, true
		case "throttled_usec":
			if n > uint64(1<<62)/1000 {
				n = uint64(1<<62) / 1000
			}
			st.throttled, haveTime = time.Duration(n)*time.Microsecond, true
		case "throttled_time":
			if n > 1<<62 {
				n = 1 << 62
			}
			st.throttled, haveTime = time.Duration(n), true
		}
	}
	if !haveNr || !haveTime {
		return cpuStat{}, errors.New("stall: cpu.stat has no nr_throttled and throttled_usec/throttled_time (no CPU controller)")
	}
	return st, nil
}

// FindCPUStat returns the cpu.stat of the process's own cgroup that reports
// throttling: cgroup v2 (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
// hybrid host) when its cpu controller is on, else the v1 cpu controller's.
// "" when there is none.
func FindCPUStat() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return findCPUStat(b, "/sys/fs/cgroup")
}

func findCPUStat(procCgroup []byte, root string) string {
	var cands []string
	var v1 []string
	for _, line := range strings.Split(string(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		id, ctrls, p := parts[0], parts[1], filepath.Clean(parts[2])
		if id == "0" && ctrls == "" {
			cands = append(cands, filepath.Join(root, p, "cpu.stat"), filepath.Join(root, "unified", p, "cpu.stat"))
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == "cpu" {
				v1 = append(v1, filepath.Join(root, ctrls, p, "cpu.stat"), filepath.Join(root, "cpu", p, "cpu.stat"))
			}
		}
	}
	for _, c := range append(cands, v1...) {
		if _, err := readCPUStat(c); err == nil {
			return c
		}
	}
	return ""
}

// Mark turns r into a discarded attempt: reason prober_stalled, no timings,
// with what was seen and what the verdict would have been as evidence. A
// result that already is a prober fault keeps its reason.
func Mark(r *probe.Result, s Stall) {
	if r.Reason.ProberFault() {
		return
	}
	r.Evidence = append(r.Evidence, fmt.Sprintf("%s (discarded: it would have read %s after %s)", s, r.Reason, round(r.Duration)))
	r.Reason = probe.ReasonProberStalled
	r.Timings = probe.Timings{}
	r.Retransmits = 0
}
