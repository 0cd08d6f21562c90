// Command benchserve measures `probe serve` against Debian's
// prometheus-blackbox-exporter at the same probe rate: N loopback listeners,
// each probed once per second by tcp connect, by each tool in turn.
//
// probe serve schedules itself (N static targets, interval 1s); blackbox has
// no scheduler, so this program drives it the way Prometheus would: one
// GET /probe?module=tcp_connect&target=... per target per second, spread over
// the second, at most one in flight per target, 1s timeout.
//
// For each tool it reports CPU seconds per 1000 probes (utime+stime of the
// tool's process from /proc over the measured window), peak RSS (VmHWM),
// p99 scheduling lateness (probe serve: its own
// connprobe_scheduler_lateness_seconds histogram; blackbox: this driver's
// dispatch lateness) and probes completed / expected.
//
// Usage: go run ./scripts/benchserve -probe bin/probe -n 1000,5000,10000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connprobe/connprobe/scripts/internal/benchkit"
	"golang.org/x/sys/unix"
)

// alsoLabel and alsoNote name and explain the -also binary's rows.
var alsoLabel, alsoNote string

type result struct {
	tool      string
	n         int
	syn       bool    // probe serve with kind syn: no floor ratio (the floor is the connect kind's)
	deployed  bool    // probe serve with the DaemonSet's GOMAXPROCS (-deployed-procs)
	cpu       float64 // seconds in the window
	completed int64
	expected  int64
	succeeded int64
	rssKiB    int64 // peak (VmHWM)
	anonKiB   int64 // anonymous resident at the end (heap, stacks): RSS less the binary's mapped pages
	window    time.Duration
	p99       time.Duration
	p99Note   string
	others    float64 // cores other processes used during the window (benchkit.Others)
	// The status page (GET /, the first 100 targets worst first) and
	// GET /api/v1/targets?limit=100, median of 5, after the window; 0 when
	// the build has no status page.
	page, api time.Duration
	pageBytes int
}

func main() {
	probeBin := flag.String("probe", "bin/probe", "probe binary")
	bbBin := flag.String("blackbox", "/usr/bin/prometheus-blackbox-exporter", "blackbox_exporter binary (empty: skip it)")
	also := flag.String("also", "", "another probe binary (another build, an older commit) measured in the same run on the same listeners")
	flag.StringVar(&alsoLabel, "also-label", "probe serve (other build)", "the tool column of the -also binary's rows")
	flag.StringVar(&alsoNote, "also-note", "given with -also", "what the -also binary is, for the notes")
	ns := flag.String("n", "1000,5000,10000", "target counts")
	warmup := flag.Duration("warmup", 5*time.Second, "time before measuring")
	window := flag.Duration("duration", 20*time.Second, "measured window")
	scrape := flag.Duration("scrape", 15*time.Second, "scrape probe serve's /metrics this often (as Prometheus would)")
	basePort := flag.Int("base-port", 20000, "first listener port")
	out := flag.String("out", "", "markdown file to write the results section into (replaces the section)")
	flag.StringVar(&sectionTitle, "section", sectionTitle, "title of the BENCHMARKS.md section to write")
	flag.StringVar(&script, "script", script, "the command that ran this, for the section's first line")
	procs := flag.Int("deployed-procs", 0, "also run probe serve (each kind) with GOMAXPROCS set to this, as deploy/daemonset.yaml sets it from limits.cpu (0: not)")
	syn := flag.Bool("syn", false, "also run probe serve with kind syn on the same targets (global.syn_rate high enough for N), after the connect kind")
	floorN := flag.Int("floor", 0, "internal: be the floor process for this many listeners (see benchFloor)")
	flag.Parse()
	if *floorN > 0 {
		runFloor(*basePort, *floorN)
		return
	}

	load0 := benchkit.LoadAvg()
	var results []result
	for _, s := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			log.Fatalf("-n: %q", s)
		}
		lns, err := listenN(*basePort, n)
		if err != nil {
			log.Fatal(err)
		}
		r, err := benchFloor(*basePort, n, *warmup, *window)
		if err != nil {
			log.Fatalf("floor n=%d: %v", n, err)
		}
		results = append(results, r)
		log.Printf("%+v", r)
		type run struct {
			kind, tool string
			env        []string
		}
		runs := []run{{"connect", "probe serve", nil}}
		if *syn {
			runs = append(runs, run{"syn", synTool, nil})
		}
		if *procs > 0 {
			env := []string{fmt.Sprintf("GOMAXPROCS=%d", *procs)}
			runs = append(runs, run{"connect", fmt.Sprintf("probe serve (GOMAXPROCS=%d, as deployed)", *procs), env})
			if *syn {
				runs = append(runs, run{"syn", fmt.Sprintf("probe serve (kind syn, GOMAXPROCS=%d)", *procs), env})
			}
		}
		for _, rn := range runs {
			r, err = benchServe(*probeBin, rn.kind, *basePort, n, *warmup, *window, *scrape, rn.env...)
			if err != nil {
				log.Fatalf("%s n=%d: %v", rn.tool, n, err)
			}
			r.tool, r.syn, r.deployed = rn.tool, rn.kind == "syn", rn.env != nil
			results = append(results, r)
			log.Printf("%+v", r)
		}
		if *also != "" {
			r, err := benchServe(*also, "connect", *basePort, n, *warmup, *window, *scrape)
			if err != nil {
				log.Fatalf("%s n=%d: %v", alsoLabel, n, err)
			}
			r.tool = alsoLabel
			results = append(results, r)
			log.Printf("%+v", r)
		}
		if *bbBin == "" {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		r, err = benchBlackbox(*bbBin, *basePort, n, *warmup, *window)
		if err != nil {
			log.Fatalf("blackbox n=%d: %v", n, err)
		}
		results = append(results, r)
		log.Printf("%+v", r)
		for _, ln := range lns {
			ln.Close()
		}
	}
	md := render(results, load0, *warmup, *window, *scrape)
	fmt.Print(md)
	if *out != "" {
		if err := benchkit.WriteSection(*out, sectionTitle, md); err != nil {
			log.Fatal(err)
		}
	}
}

// listenN opens n loopback listeners that accept and close.
func listenN(base, n int) ([]net.Listener, error) {
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	return lns, nil
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// synTool names the rows of probe serve with kind syn.
const synTool = "probe serve (kind syn)"

func benchServe(bin, kind string, base, n int, warmup, window, scrapeEvery time.Duration, env ...string) (result, error) {
	r := result{tool: "probe serve", n: n}
	dir, err := os.MkdirTemp("", "benchserve")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	var b strings.Builder
	if kind == "syn" {
		// The budget is for every raw SYN of the prober: room for N a
		// second and the PAWS checks' extra SYNs, so none is skipped.
		fmt.Fprintf(&b, "global:\n  syn_rate: %d\n", 3*n)
	}
	fmt.Fprintf(&b, "probes:\n  - name: bench\n    kind: %s\n    interval: 1s\n    timeout: 800ms\n    targets:\n      static:\n", kind)
	for i := range n {
		fmt.Fprintf(&b, "        - 127.0.0.1:%d\n", base+i)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return r, err
	}
	addr := freePort()
	cmd := exec.Command(bin, "serve", "--config", cfg, "--web.listen-address", addr, "--log.level", "warn")
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	metrics := func() (map[string]float64, error) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return benchkit.ParseMetrics(resp.Body)
	}
	for i := 0; ; i++ {
		if _, err := metrics(); err == nil {
			break
		}
		if i > 100 {
			return r, errors.New("probe serve did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(warmup)
	// Each scrape streams the counters as it goes, and a 20 MB scrape of 10k
	// targets can take a while on a loaded machine: the counters are taken
	// to be read at the middle of each scrape.
	s0 := time.Now()
	m0, err := metrics()
	if err != nil {
		return r, err
	}
	t0 := s0.Add(time.Since(s0) / 2)
	cpu0, err := benchkit.CPUSeconds(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	others, w0 := benchkit.Others(), time.Now()
	end := time.Now().Add(window)
	for time.Until(end) > scrapeEvery {
		time.Sleep(scrapeEvery)
		if _, err := metrics(); err != nil {
			return r, err
		}
	}
	time.Sleep(time.Until(end))
	cpu1, err := benchkit.CPUSeconds(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	r.others = others(cpu1-cpu0, time.Since(w0))
	s1 := time.Now()
	m1, err := metrics()
	if err != nil {
		return r, err
	}
	t1 := s1.Add(time.Since(s1) / 2)
	// The counters were read while each scrape streamed: the probes counted
	// fall between the two scrapes, so expected uses that time.
	r.window = t1.Sub(t0)
	r.cpu = cpu1 - cpu0
	r.completed = int64(benchkit.SumPrefix(m1, "connprobe_probe_results_total{") - benchkit.SumPrefix(m0, "connprobe_probe_results_total{"))
	ok := `connprobe_probe_results_total{job="bench",kind="` + kind + `",reason="ok"`
	r.succeeded = int64(benchkit.SumPrefix(m1, ok) - benchkit.SumPrefix(m0, ok))
	r.expected = int64(float64(n) * r.window.Seconds())
	r.rssKiB, _ = benchkit.ProcStatus(cmd.Process.Pid, "VmHWM:")
	r.anonKiB, _ = benchkit.ProcStatus(cmd.Process.Pid, "RssAnon:")
	r.p99 = benchkit.HistQuantile(m0, m1, "connprobe_scheduler_lateness_seconds", 0.99)
	r.p99Note = "own histogram"
	r.page, r.pageBytes = timeGet("http://"+addr+"/", `id="targets"`)
	r.api, _ = timeGet("http://"+addr+"/api/v1/targets?limit=100", `"targets":[`)
	return r, nil
}

// floorTool names the floor's rows.
const floorTool = "floor (socket, connect, close)"

// benchFloor measures the floor: this program run again as a process of
// its own (-floor N) that does exactly the kernel work of N connect probes
// a second and nothing else, against the same listeners.
func benchFloor(base, n int, warmup, window time.Duration) (result, error) {
	r := result{tool: floorTool, n: n}
	self, err := os.Executable()
	if err != nil {
		return r, err
	}
	cmd := exec.Command(self, "-floor", strconv.Itoa(n), "-base-port", strconv.Itoa(base))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// It prints its count of connects made, one line per second.
	var made atomic.Int64
	go func() {
		buf := make([]byte, 64)
		var line []byte
		for {
			k, err := out.Read(buf)
			for _, c := range buf[:k] {
				if c != '\n' {
					line = append(line, c)
					continue
				}
				if v, err := strconv.ParseInt(string(line), 10, 64); err == nil {
					made.Store(v)
				}
				line = line[:0]
			}
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(warmup)
	cpu0, err := benchkit.CPUSeconds(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	m0, t0 := made.Load(), time.Now()
	others := benchkit.Others()
	time.Sleep(window)
	cpu1, err := benchkit.CPUSeconds(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	r.window = time.Since(t0)
	r.cpu = cpu1 - cpu0
	r.others = others(r.cpu, r.window)
	r.completed = made.Load() - m0
	r.succeeded = r.completed
	r.expected = int64(float64(n) * r.window.Seconds())
	r.rssKiB, _ = benchkit.ProcStatus(cmd.Process.Pid, "VmHWM:")
	r.anonKiB, _ = benchkit.ProcStatus(cmd.Process.Pid, "RssAnon:")
	r.p99Note = "n/a"
	return r, nil
}

// runFloor is the floor process: every millisecond it makes a thousandth
// of the n connections a second (socket, a blocking connect over loopback,
// close; raw system calls, no runtime poller, no allocation), round robin
// over the listeners, and prints how many it made (the count lags by at
// most a second).
func runFloor(base, n int) {
	runtime.LockOSThread()
	sa := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	var made, ms int64
	next, i := time.Now(), 0
	lastPrint := next
	for {
		next = next.Add(time.Millisecond)
		ms++
		for range int64(n)*ms/1000 - int64(n)*(ms-1)/1000 {
			sa.Port = base + i
			i = (i + 1) % n
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				log.Fatalf("floor: socket: %v", err)
			}
			if err := unix.Connect(fd, sa); err != nil {
				log.Fatalf("floor: connect 127.0.0.1:%d: %v", sa.Port, err)
			}
			unix.Close(fd)
			made++
		}
		if now := time.Now(); now.Sub(lastPrint) >= time.Second {
			fmt.Println(made)
			lastPrint = now
		}
		time.Sleep(time.Until(next))
	}
}

// timeGet returns the median time of 5 GETs of u and the body's size; 0
// when the body lacks marker (a build without the status page).
func timeGet(u, marker string) (time.Duration, int) {
	var ds []time.Duration
	n := 0
	for range 5 {
		t0 := time.Now()
		resp, err := http.Get(u)
		if err != nil {
			return 0, 0
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), marker) {
			return 0, 0
		}
		ds = append(ds, time.Since(t0))
		n = len(b)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], n
}

func benchBlackbox(bin string, base, n int, warmup, window time.Duration) (result, error) {
	r := result{tool: "blackbox_exporter", n: n}
	dir, err := os.MkdirTemp("", "benchbb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "bb.yml")
	if err := os.WriteFile(cfg, []byte("modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 1s\n"), 0o644); err != nil {
		return r, err
	}
	addr := freePort()
	cmd := exec.Command(bin, "--config.file="+cfg, "--web.listen-address="+addr, "--log.level=error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	client := &http.Client{
		Timeout: time.Second,
		// A bounded connection pool, as the fd limit is shared with the
		// listeners; waiting for a connection counts against the 1s timeout.
		Transport: &http.Transport{MaxConnsPerHost: 2048, MaxIdleConnsPerHost: 2048, MaxIdleConns: 2048, IdleConnTimeout: time.Minute},
	}
	for i := 0; ; i++ {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		if i > 100 {
			return r, errors.New("blackbox_exporter did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var measuring atomic.Bool
	var completed, succeeded atomic.Int64
	var lmu sync.Mutex
	var late []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		target := fmt.Sprintf("127.0.0.1:%d", base+i)
		u := "http://" + addr + "/probe?module=tcp_connect&target=" + target
		wg.Go(func() {
			// One loop per target, like a Prometheus scrape loop: random
			// offset, fixed 1s period, at most one request in flight.
			next := time.Now().Add(rand.N(time.Second))
			t := time.NewTimer(time.Until(next))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				now := time.Now()
				if measuring.Load() {
					lmu.Lock()
					late = append(late, now.Sub(next))
					lmu.Unlock()
				}
				for !next.After(now) {
					next = next.Add(time.Second)
				}
				resp, err := client.Get(u)
				ok := false
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == 200
					if ok && measuring.Load() {
						completed.Add(1)
						if strings.Contains(string(body), "\nprobe_success 1") {
							succeeded.Add(1)
						}
					}
				}
				_ = ok
				now = time.Now()
				for !next.After(now) {
					next = next.Add(time.Second)
				}
				t.Reset(time.Until(next))
			}
		})
	}
	time.Sleep(warmup)
	cpu0, err := benchkit.CPUSeconds(cmd.Process.Pid)
	if err != nil {
		cancel()
		wg.Wait()
		return r, err
	}
	measuring.Store(true)
	t0 := time.Now()
	others := benchkit.Others()
	time.Sleep(window)
	measuring.Store(false)
	cpu1, err := benchkit.CPUSeconds(cmd.Process.Pid)
	r.window = time.Since(t0)
	if err == nil {
		r.others = others(cpu1-cpu0, r.window)
	}
	cancel()
	wg.Wait()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	r.completed = completed.Load()
	r.succeeded = succeeded.Load()
	r.expected = int64(float64(n) * r.window.Seconds())
	r.rssKiB, _ = benchkit.ProcStatus(cmd.Process.Pid, "VmHWM:")
	r.anonKiB, _ = benchkit.ProcStatus(cmd.Process.Pid, "RssAnon:")
	slices.Sort(late)
	if len(late) > 0 {
		r.p99 = late[len(late)*99/100]
	}
	r.p99Note = "driver dispatch"
	return r, nil
}

var sectionTitle = "## probe serve vs blackbox_exporter"

// script names the command that wrote the section.
var script = "scripts/bench-serve.sh"

func render(rs []result, load0 string, warmup, window, scrape time.Duration) string {
	var b strings.Builder
	host, _ := os.Hostname()
	_ = host
	fmt.Fprintf(&b, "%s\n\n", sectionTitle)
	bb := slices.ContainsFunc(rs, func(r result) bool { return r.tool == "blackbox_exporter" })
	fmt.Fprintf(&b, "Measured by `%s` on %s (%d CPUs, shared with other work), %s.\n",
		script, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), benchkit.Kernel())
	fmt.Fprintf(&b, "N loopback listeners, each probed by TCP connect once per second; %s warm-up, then a %s window.\n", warmup, window)
	fmt.Fprintf(&b, "probe serve: N static targets, interval 1s, timeout 800ms, /metrics scraped every %s during the window.\n", scrape)
	if bb {
		b.WriteString("blackbox_exporter (Debian): driven by a per-target loop like a Prometheus scrape loop: `GET /probe?module=tcp_connect&target=...`\n")
		b.WriteString("once per second per target, 1s timeout, at most one in flight per target. Its lateness column is the driver's dispatch\n")
		b.WriteString("lateness (blackbox has no scheduler); its CPU is the blackbox process only (not the driver's HTTP client).\n")
	}
	b.WriteString("\n")
	for _, r := range rs {
		if r.tool == alsoLabel {
			fmt.Fprintf(&b, "%s: %s, measured right after probe serve on the same listeners.\n\n", alsoLabel, alsoNote)
			break
		}
	}
	load1 := benchkit.LoadAvg()
	fmt.Fprintf(&b, "Load average before the run: %s, after: %s.\n\n", load0, load1)
	noisy := 0
	for _, r := range rs {
		if r.others > benchkit.OthersLimit {
			noisy++
		}
	}
	if noisy > 0 {
		fmt.Fprintf(&b, "**%d of %d rows are marked \"noisy\": while they were measured, other processes used more than %.2f of a core on average (the \"other work\" column, from /proc/stat less this program and the tool). Their absolute figures measured the neighbours too; compare rows of this run with each other only, or rerun on a quiet machine.**\n\n", noisy, len(rs), benchkit.OthersLimit)
	}
	pages := slices.ContainsFunc(rs, func(r result) bool { return r.page > 0 })
	floor := map[int]float64{} // CPU s per probe of the floor, by N
	for _, r := range rs {
		if r.tool == floorTool && r.completed > 0 {
			floor[r.n] = r.cpu / float64(r.completed)
		}
	}
	b.WriteString("| tool | N | CPU s / 1000 probes | × floor | other work (cores) | CPU cores used | peak RSS | anon RSS at end | p99 lateness | completed / expected | ok |")
	if pages {
		b.WriteString(" status page (GET /) | GET /api/v1/targets?limit=100 |")
	}
	b.WriteString("\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	if pages {
		b.WriteString("---:|---:|")
	}
	b.WriteString("\n")
	for _, r := range rs {
		per, ratio := "n/a (none completed)", "n/a"
		if r.completed > 0 {
			per = fmt.Sprintf("%.3f", r.cpu/float64(r.completed)*1000)
			if f := floor[r.n]; f > 0 && !r.syn {
				ratio = fmt.Sprintf("%.2f", r.cpu/float64(r.completed)/f)
			}
		}
		late := fmt.Sprintf("%s (%s)", r.p99.Round(10*time.Microsecond), r.p99Note)
		if r.tool == floorTool {
			late = "n/a"
		}
		oth := fmt.Sprintf("%.2f", r.others)
		if r.others > benchkit.OthersLimit {
			oth += " (noisy)"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.2f | %.1f MiB | %.1f MiB | %s | %d / %d (%.1f%%) | %d |",
			r.tool, r.n, per, ratio, oth, r.cpu/r.window.Seconds(), float64(r.rssKiB)/1024, float64(r.anonKiB)/1024, late,
			r.completed, r.expected, 100*float64(r.completed)/float64(r.expected), r.succeeded)
		if pages {
			if r.page > 0 {
				fmt.Fprintf(&b, " %s (%.0f KiB) | %s |", r.page.Round(time.Millisecond), float64(r.pageBytes)/1024, r.api.Round(time.Millisecond))
			} else {
				b.WriteString(" none | none |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	writeCloudprober(&b, rs)
	b.WriteString(notes)
	if slices.ContainsFunc(rs, func(r result) bool { return r.syn }) {
		b.WriteString(notesSyn)
	}
	if slices.ContainsFunc(rs, func(r result) bool { return r.deployed }) {
		b.WriteString(notesDeployed)
	}
	if bb {
		b.WriteString(notesBlackbox)
	}
	if pages {
		b.WriteString(notesPages)
	}
	return b.String()
}

// cloudprober's figures cannot be measured here (it cannot be fetched on
// this machine): they are quoted from the project's performance issue,
// measured on this kind of machine (2 cores) in December 2026 with the same
// method (N loopback listeners, TCP connect every 1 s, 60 s windows, CPU =
// utime+stime), cloudprober built from its source, with and without its
// latency histogram.
var cloudprober = map[int]struct{ lo, hi, rssLo, rssHi float64 }{
	1000:  {0.032, 0.039, 81, 91},
	5000:  {0.031, 0.037, 156, 208},
	10000: {0.031, 0.034, 251, 354},
}

// writeCloudprober sets probe serve's CPU per probe of this run next to
// cloudprober's quoted figures, for the N both have.
func writeCloudprober(b *strings.Builder, rs []result) {
	var lines []string
	for _, r := range rs {
		c, ok := cloudprober[r.n]
		connect := r.tool == "probe serve" || r.deployed && !r.syn // this commit's default build, kind connect
		if !connect || !ok || r.completed == 0 {
			continue
		}
		per := r.cpu / float64(r.completed) * 1000
		lines = append(lines, fmt.Sprintf("| %s | %d | %.3f | %.3f–%.3f | %.2f–%.2f | %.0f / %.0f–%.0f MB |",
			r.tool, r.n, per, c.lo, c.hi, per/c.hi, per/c.lo, float64(r.rssKiB)/1024*1.048576, c.rssLo, c.rssHi))
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("cloudprober, quoted (it cannot be fetched here): its figures were measured on this kind of machine in\n")
	b.WriteString("December 2026 and reported in the project's performance issue (same method, 60 s windows, built from its\n")
	b.WriteString("source, with and without its latency histogram); probe serve's are this run's. The goal is a ratio ≤ 0.5.\n\n")
	b.WriteString("| build | N | probe serve ms CPU / probe | cloudprober ms CPU / probe (quoted) | ratio | peak RSS serve / cloudprober (quoted) |\n|---|---:|---:|---:|---:|---:|\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
}

// notes explain the columns; they hold no numbers.
const notes = "- The floor row is this program run as a process of its own doing exactly the kernel work of N connect\n" +
	"  probes a second and nothing else (socket, a blocking connect, close; raw system calls, one thread), against\n" +
	"  the same listeners; × floor is each tool's CPU per probe over the floor's, measured in the same run.\n" + `- CPU is utime+stime of the tool's process over the window, so it includes the kernel's work for the
  connections it makes (socket, connect, close); loopback softirq work that runs on ksoftirqd is not counted,
  for either tool. The listeners run in this program, outside both.
- Peak RSS (VmHWM) includes the binary's file-backed pages that the process touched (the Kubernetes client's
  package initialisation alone touches about 20 MiB of them); anon RSS (RssAnon) is heap and stacks.
- probe serve's lateness is from its own connprobe_scheduler_lateness_seconds histogram (bucket-interpolated);
  a firing more than a tenth of the interval late is skipped and counted as an overrun, so completed /
  expected also shows when the machine could not keep up.
`

const notesSyn = `- probe serve (kind syn): the same N targets probed by raw SYN (a SYN per attempt, the listener's SYN/ACK
  matched, our kernel's RST), global.syn_rate 3N; the floor above is the connect kind's, so no ratio is given.
`

const notesDeployed = `- The GOMAXPROCS rows run the same binary with the Go runtime limited to the processors
  deploy/daemonset.yaml gives it (GOMAXPROCS from limits.cpu), as it runs in a cluster; the other probe serve
  rows use every CPU of the machine. With one processor, an attempt's goroutine, the timers and the raw
  socket's reader never hand work to another CPU.
`

const notesBlackbox = `- blackbox_exporter has no scheduler: when it cannot answer within the 1s timeout, the request is
  abandoned and counts as not completed.
`

const notesPages = `- The status page columns: GET / (every target's verdict computed, the first 100 rendered worst first, with
  their strips and charts) and GET /api/v1/targets?limit=100, timed by this program over loopback after the
  window, median of 5, while the probes keep running; "none" for a build without them.
`
