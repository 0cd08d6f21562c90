package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connprobe/connprobe/internal/lab"
	"github.com/connprobe/connprobe/internal/responder"
)

// sumMetric adds up the samples of name whose labels contain every one of
// with ("job=\"web\"", …).
func sumMetric(body, name string, with ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		ok := true
		for _, w := range with {
			ok = ok && strings.Contains(l, w)
		}
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// startResponder serves the idle probes' protocol on loopback.
func startResponder(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := responder.New(responder.Config{}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, ln) })
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// slowPong answers "ping" with "pong" after d: a healthy server whose
// attempts last long enough for a stop to land inside one.
func slowPong(t *testing.T, d time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 64)
				if _, err := c.Read(buf); err != nil {
					return
				}
				time.Sleep(d)
				c.Write([]byte("pong\n"))
			})
		}
	})
	return ln.Addr().String()
}

// stallConfig probes healthy loopback targets with the three kinds a stall
// misleads: connect (a request answered after 200 ms, 1 s timeout), syn
// (raw SYN, 1 s) and idle (a connection held 1 s idle, then used).
func stallConfig(up, pong, echo string) string {
	return `
probes:
  - name: connect
    interval: 250ms
    timeout: 1s
    concurrency: 5
    connect: {send: "ping\\n", expect: pong}
    targets: {static: ["` + pong + `"]}
  - name: syn
    kind: syn
    interval: 250ms
    timeout: 1s
    concurrency: 5
    targets: {static: ["` + up + `"]}
  - name: idle
    kind: idle
    interval: 1s
    timeout: 6s
    concurrency: 7
    idle: {idle: 1s, reply_timeout: 500ms, connect_timeout: 1s}
    targets: {static: ["` + echo + `"]}
`
}

var stallJobs = []string{"connect", "syn", "idle"}

// spoilable are the jobs whose attempts last long enough (200 ms, 1 s) that
// a 3 s stop lands in one every time; a loopback SYN takes microseconds, so
// a stop rarely catches one in flight (then there is nothing to discard).
var spoilable = []string{"connect", "idle"}

// TestServeSIGSTOPIsNotATargetFailure: a `probe serve` stopped for 3 s
// (what a CPU-throttled container, a GC pause on an overloaded node or a VM
// steal spike does) reports no target failure for healthy targets: the
// attempts the stop spoiled are discarded and counted as prober faults,
// cause stalled. Five stops in a row.
func TestServeSIGSTOPIsNotATargetFailure(t *testing.T) {
	lab.RequirePriv(t) // kind syn: raw sockets
	up := listen(t).Addr().String()
	echo := startResponder(t)
	sp := startServeProcess(t, stallConfig(up, slowPong(t, 200*time.Millisecond), echo))
	body := sp.waitForMetric(t, "every job probing successfully", time.Minute, func(b string) bool {
		for _, j := range stallJobs {
			if sumMetric(b, "connprobe_probe_results_total", `job="`+j+`"`, `reason="ok"`) < 1 {
				return false
			}
		}
		return true
	})
	stalledBefore := map[string]float64{}
	for _, j := range stallJobs {
		stalledBefore[j] = sumMetric(body, "connprobe_prober_faults_total", `job="`+j+`"`, `cause="stalled"`)
	}
	const reps = 5
	for i := range reps {
		before := sp.metrics(t)
		if err := sp.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := sp.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		// The attempts in flight during the stop end within their timeout.
		time.Sleep(3500 * time.Millisecond)
		after := sp.metrics(t)
		for _, j := range stallJobs {
			f0 := sumMetric(before, "connprobe_probe_failures_total", `job="`+j+`"`)
			f1 := sumMetric(after, "connprobe_probe_failures_total", `job="`+j+`"`)
			if f1 != f0 {
				t.Errorf("stop %d: job %s: %v target failure(s) of a healthy target; results:\n%s", i+1, j, f1-f0,
					grepAll(grepLines(after, `job="`+j+`"`), "results_total"))
			}
			if ok := sumMetric(after, "connprobe_probe_results_total", `job="`+j+`"`, `reason="ok"`) -
				sumMetric(before, "connprobe_probe_results_total", `job="`+j+`"`, `reason="ok"`); ok < 1 {
				t.Errorf("stop %d: job %s: no ok result around the stop", i+1, j)
			}
		}
		if s := sumMetric(after, "connprobe_prober_faults_total", `cause="stalled"`) -
			sumMetric(before, "connprobe_prober_faults_total", `cause="stalled"`); s < 1 {
			t.Errorf("stop %d: no attempt counted as stalled", i+1)
		}
	}
	final := sp.metrics(t)
	for _, j := range stallJobs {
		s := sumMetric(final, "connprobe_prober_faults_total", `job="`+j+`"`, `cause="stalled"`) - stalledBefore[j]
		t.Logf("job %s: %v attempts discarded as stalled over %d stops", j, s, reps)
		if s < 1 && slices.Contains(spoilable, j) {
			t.Errorf("job %s: no attempt counted as stalled over %d stops of 3 s", j, reps)
		}
	}
	if strings.Contains(final, `reason="prober_stalled"`) {
		t.Error("prober_stalled appears as a results_total reason: it must count only as a prober fault")
	}
}

// cpuCgroup is a child cgroup with the CPU controller: cgroup v2 when the
// unified hierarchy has it (cpu.max), else the v1 cpu controller
// (cpu.cfs_quota_us). Removed at cleanup.
type cpuCgroup struct {
	dir string
	v2  bool
}

func newCPUCgroup(t *testing.T) *cpuCgroup {
	t.Helper()
	name := fmt.Sprintf("connprobe-test-%d", os.Getpid())
	var cg *cpuCgroup
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(" "+string(b)+" ", " cpu ") {
		if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0o644); err != nil {
			t.Logf("enabling cpu in the root's subtree_control: %v (may already be on)", err)
		}
		cg = &cpuCgroup{dir: filepath.Join("/sys/fs/cgroup", name), v2: true}
	} else if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		cg = &cpuCgroup{dir: filepath.Join("/sys/fs/cgroup/cpu", name)}
	} else {
		t.Fatalf("no cgroup CPU controller: neither cgroup v2 with cpu in /sys/fs/cgroup/cgroup.controllers nor v1 /sys/fs/cgroup/cpu")
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its processes have exited by now (cleanups run last-in first-out).
		for range 50 {
			if err := os.Remove(cg.dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", cg.dir)
	})
	return cg
}

// limit caps the cgroup at quota CPU time per period; quota 0 lifts it.
func (cg *cpuCgroup) limit(t *testing.T, quota, period time.Duration) {
	t.Helper()
	var err error
	if cg.v2 {
		v := "max " + strconv.FormatInt(period.Microseconds(), 10)
		if quota > 0 {
			v = strconv.FormatInt(quota.Microseconds(), 10) + " " + strconv.FormatInt(period.Microseconds(), 10)
		}
		err = os.WriteFile(filepath.Join(cg.dir, "cpu.max"), []byte(v), 0o644)
	} else {
		if err = os.WriteFile(filepath.Join(cg.dir, "cpu.cfs_period_us"), []byte(strconv.FormatInt(period.Microseconds(), 10)), 0o644); err == nil {
			q := "-1"
			if quota > 0 {
				q = strconv.FormatInt(quota.Microseconds(), 10)
			}
			err = os.WriteFile(filepath.Join(cg.dir, "cpu.cfs_quota_us"), []byte(q), 0o644)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestServeCPUThrottledIsNotATargetFailure: `probe serve` in a cgroup whose
// CPU limit throttles it (1% of a CPU, in 500 ms periods: frozen up to
// ~495 ms at a time) reports no target failure for healthy targets; the
// throttling is seen (heartbeat gaps, the cgroup's cpu.stat) and the spoiled
// attempts are counted as stalled.
func TestServeCPUThrottledIsNotATargetFailure(t *testing.T) {
	lab.RequirePriv(t) // cgroups, raw sockets
	cg := newCPUCgroup(t)
	up := listen(t).Addr().String()
	echo := startResponder(t)
	pong := slowPong(t, 200*time.Millisecond)
	// The shell joins the cgroup and execs serve: serve finds its cgroup's
	// cpu.stat at start, as in a container.
	sp := startServeProcessIn(t, stallConfig(up, pong, echo), []string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg.dir})
	if want := "cpu_stat=" + filepath.Join(cg.dir, "cpu.stat"); !strings.Contains(sp.logs.String(), want) {
		t.Errorf("serve does not watch its cgroup's cpu.stat: logs lack %q", want)
	}
	sp.waitForMetric(t, "every job probing successfully", time.Minute, func(b string) bool {
		for _, j := range stallJobs {
			if sumMetric(b, "connprobe_probe_results_total", `job="`+j+`"`, `reason="ok"`) < 1 {
				return false
			}
		}
		return true
	})
	before := sp.metrics(t)
	cg.limit(t, 5*time.Millisecond, 500*time.Millisecond)
	time.Sleep(8 * time.Second)
	cg.limit(t, 0, 100*time.Millisecond)
	time.Sleep(3500 * time.Millisecond) // attempts spoiled by the last throttle end
	after := sp.metrics(t)
	stat, _ := os.ReadFile(filepath.Join(cg.dir, "cpu.stat"))
	t.Logf("cgroup cpu.stat after the test:\n%s", stat)
	if !bytes.Contains(stat, []byte("nr_throttled")) || bytes.Contains(stat, []byte("nr_throttled 0\n")) {
		t.Fatalf("the cgroup was never throttled: the test proves nothing")
	}
	for _, j := range stallJobs {
		if f := sumMetric(after, "connprobe_probe_failures_total", `job="`+j+`"`) -
			sumMetric(before, "connprobe_probe_failures_total", `job="`+j+`"`); f != 0 {
			t.Errorf("job %s: %v target failure(s) of a healthy target while throttled; results:\n%s", j, f,
				grepAll(grepLines(after, `job="`+j+`"`), "results_total"))
		}
	}
	s := sumMetric(after, "connprobe_prober_faults_total", `cause="stalled"`) - sumMetric(before, "connprobe_prober_faults_total", `cause="stalled"`)
	t.Logf("%v attempts discarded as stalled while throttled", s)
	if s < 1 {
		t.Error("no attempt counted as stalled while throttled")
	}
}
