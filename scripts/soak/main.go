// Command soak runs `probe serve` for a long time under what an agent on a
// busy node meets, and checks that it stays flat and honest:
//
//   - N healthy loopback targets through file_sd, churned: a share of them
//     is swapped for others every -churn, so loops start and stop and series
//     are forgotten all along;
//   - hostile application servers among the jobs: a MySQL whose greeting
//     crashes go-sql-driver, a Kafka broker that announces arrays of two
//     billion elements, a PostgreSQL that announces a 1 GiB message;
//   - good reloads (a job comes and goes), bad reloads (the old config must
//     keep running) and reload requests aborted mid-flight;
//   - -idle-clients HTTP connections to the agent's listener that never send
//     a request, reopened as soon as the agent closes them.
//
// Every -sample it records the agent's RSS, open fds and goroutines, whether
// a scrape got through and how long it took, and the failures of the healthy
// targets (which must stay 0) and the prober's own faults. At the end it
// stops the agent with SIGTERM (it must exit within 5 s), prints a markdown
// section (written into -out's "## Soak" section) and exits non-zero when the
// agent died, a healthy target failed, a scrape failed or RSS, fds or
// goroutines grew between the first and the last quarter of the run.
//
// Usage: go run ./scripts/soak -probe bin/probe -duration 20m   (make soak)
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/connprobe/connprobe/scripts/internal/benchkit"
)

const sectionTitle = "## Soak"

type sample struct {
	at          time.Duration
	rssKiB      int64
	fds         int
	goroutines  float64
	scrapeOK    bool
	scrapeTime  time.Duration
	healthyFail float64 // failures of healthy targets so far (all series ever seen)
	proberFault float64
	hostileFail float64
	reloadOK    float64
}

type soak struct {
	bin, dir, cfg, sd, addr string
	n                       int
	pool                    []string // healthy target addresses; the first n are in file_sd
	hostile                 []string
	extra                   atomic.Bool // the good config's second job is in
	goodReloads, badReloads atomic.Int64
	aborted                 atomic.Int64
	idleOpen                atomic.Int64
	idleReopened            atomic.Int64
	// seen keeps the last value of every healthy failures series ever seen,
	// so a failure of a target churned out since still counts.
	seen map[string]float64
}

func main() {
	bin := flag.String("probe", "bin/probe", "probe binary")
	n := flag.Int("n", 1000, "healthy targets")
	duration := flag.Duration("duration", 20*time.Minute, "how long to run")
	every := flag.Duration("sample", 30*time.Second, "sample period")
	churn := flag.Duration("churn", 20*time.Second, "swap 5% of the healthy targets this often")
	reloadEvery := flag.Duration("reload", time.Minute, "a good and a bad reload this often")
	idleClients := flag.Int("idle-clients", 5000, "HTTP connections that never send a request")
	out := flag.String("out", "", "markdown file to write the Soak section into")
	flag.Parse()

	s := &soak{bin: *bin, n: *n, seen: map[string]float64{}}
	var err error
	if s.dir, err = os.MkdirTemp("", "soak"); err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(s.dir)
	s.cfg, s.sd = filepath.Join(s.dir, "config.yaml"), filepath.Join(s.dir, "targets.json")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	pool := s.n + s.n/10
	for range pool {
		ln := listen()
		s.pool = append(s.pool, ln.Addr().String())
		wg.Go(func() { acceptClose(ctx, ln) })
	}
	for _, srv := range []func(net.Conn){mysqlCrash, kafkaHuge, postgresHuge} {
		ln := listen()
		s.hostile = append(s.hostile, ln.Addr().String())
		wg.Go(func() { serveEach(ctx, ln, srv) })
	}
	if err := s.writeTargets(); err != nil {
		log.Fatal(err)
	}
	if err := s.writeConfig(true); err != nil {
		log.Fatal(err)
	}
	s.addr = freeAddr()
	cmd := exec.Command(s.bin, "serve", "--config", s.cfg, "--web.listen-address", s.addr,
		"--web.enable-lifecycle", "--log.level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := s.waitUp(exited); err != nil {
		log.Fatal(err)
	}

	load0 := benchkit.LoadAvg()
	start := time.Now()
	wg.Go(func() { s.idle(ctx, *idleClients) })
	wg.Go(func() { s.every(ctx, *churn, s.churn) })
	wg.Go(func() { s.every(ctx, *reloadEvery, func() { s.reloads(cmd.Process) }) })
	wg.Go(func() { s.every(ctx, 10*time.Second, s.abortReloads) })

	var samples []sample
	var died error
	tick := time.NewTicker(*every)
	deadline := time.NewTimer(*duration)
loop:
	for {
		select {
		case err := <-exited:
			died = fmt.Errorf("probe serve exited: %v", err)
			break loop
		case <-deadline.C:
			break loop
		case <-tick.C:
			smp := s.sample(cmd.Process.Pid)
			smp.at = time.Since(start)
			samples = append(samples, smp)
			log.Printf("%s rss=%.1fMiB fds=%d goroutines=%.0f scrape=%v/%s healthy_failures=%.0f prober_faults=%.0f idle_open=%d",
				smp.at.Round(time.Second), float64(smp.rssKiB)/1024, smp.fds, smp.goroutines, smp.scrapeOK,
				smp.scrapeTime.Round(time.Millisecond), smp.healthyFail, smp.proberFault, s.idleOpen.Load())
		}
	}
	tick.Stop()
	cancel()
	var stopTime time.Duration
	if died == nil {
		t0 := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			stopTime = time.Since(t0)
		case <-time.After(5 * time.Second):
			died = errors.New("probe serve did not exit within 5s of SIGTERM")
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	md, verdict := s.render(samples, died, stopTime, load0, *duration, *every, *churn, *reloadEvery, *idleClients)
	fmt.Print(md)
	if *out != "" && len(samples) > 0 {
		if err := benchkit.WriteSection(*out, sectionTitle, md); err != nil {
			log.Fatal(err)
		}
	}
	if verdict != nil {
		log.Fatalf("soak: %v", verdict)
	}
}

// writeTargets writes the first n of the pool as one file_sd group,
// atomically (a rename, as a ConfigMap update does).
func (s *soak) writeTargets() error {
	b, err := json.Marshal([]map[string][]string{{"targets": s.pool[:s.n]}})
	if err != nil {
		return err
	}
	tmp := s.sd + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.sd)
}

// writeConfig writes a good config, with or without the second job.
func (s *soak) writeConfig(extra bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, `probes:
  - name: healthy
    interval: 1s
    timeout: 800ms
    targets:
      file_sd: {files: [%q], refresh_interval: 5s}
  - name: hostile
    kind: app
    interval: 2s
    timeout: 1s
    targets:
      static: ["mysql://u:p@%s/x", "kafka://%s", "postgres://u:p@%s/db"]
`, s.sd, s.hostile[0], s.hostile[1], s.hostile[2])
	if extra {
		fmt.Fprintf(&b, `  - name: extra
    interval: 1s
    timeout: 800ms
    targets:
      static: [%q]
`, s.pool[0])
	}
	s.extra.Store(extra)
	return os.WriteFile(s.cfg, []byte(b.String()), 0o644)
}

func (s *soak) waitUp(exited <-chan error) error {
	for range 200 {
		select {
		case err := <-exited:
			return fmt.Errorf("probe serve exited at start: %v", err)
		default:
		}
		if resp, err := http.Get("http://" + s.addr + "/metrics"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("probe serve did not come up in 10s")
}

func (s *soak) every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// churn swaps 5% of the file_sd targets for ones from the rest of the pool.
func (s *soak) churn() {
	k := max(1, s.n/20)
	for range k {
		i, j := rand.N(s.n), s.n+rand.N(len(s.pool)-s.n)
		s.pool[i], s.pool[j] = s.pool[j], s.pool[i]
	}
	if err := s.writeTargets(); err != nil {
		log.Printf("churn: %v", err)
	}
}

// reloads makes one bad reload (the old config must keep running), then a
// good one that adds or removes the extra job.
func (s *soak) reloads(p *os.Process) {
	good, err := os.ReadFile(s.cfg)
	if err != nil {
		log.Printf("reload: %v", err)
		return
	}
	if err := os.WriteFile(s.cfg, append(slices.Clone(good), "  - name: broken\n    interval: 1s\n    timeout: 5s\n    bogus_field: 1\n"...), 0o644); err != nil {
		log.Printf("reload: %v", err)
		return
	}
	_ = p.Signal(syscall.SIGHUP)
	s.badReloads.Add(1)
	time.Sleep(2 * time.Second)
	if err := s.writeConfig(!s.extra.Load()); err != nil {
		log.Printf("reload: %v", err)
		return
	}
	_ = p.Signal(syscall.SIGHUP)
	s.goodReloads.Add(1)
}

// abortReloads sends POST /-/reload requests and hangs up before the answer.
func (s *soak) abortReloads() {
	for range 20 {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			continue
		}
		_, _ = io.WriteString(c, "POST /-/reload HTTP/1.1\r\nHost: "+s.addr+"\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		s.aborted.Add(1)
	}
}

// idle keeps n connections open to the agent that never send a byte, and
// reopens each one the agent closes, after a second.
func (s *soak) idle(ctx context.Context, n int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Millisecond) // no thundering start
			for ctx.Err() == nil {
				d := net.Dialer{Timeout: 5 * time.Second}
				c, err := d.DialContext(ctx, "tcp", s.addr)
				if err != nil {
					sleep(ctx, time.Second)
					continue
				}
				s.idleOpen.Add(1)
				stop := context.AfterFunc(ctx, func() { c.Close() })
				_, _ = c.Read(make([]byte, 1)) // until the agent (or we) close it
				stop()
				c.Close()
				s.idleOpen.Add(-1)
				s.idleReopened.Add(1)
				sleep(ctx, time.Second)
			}
		})
	}
}

func (s *soak) sample(pid int) sample {
	var smp sample
	smp.rssKiB, _ = benchkit.ProcStatus(pid, "VmRSS:")
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		smp.fds = len(ents)
	}
	client := http.Client{Timeout: 10 * time.Second}
	t0 := time.Now()
	resp, err := client.Get("http://" + s.addr + "/metrics")
	if err != nil {
		log.Printf("scrape: %v", err)
		return smp
	}
	m, err := benchkit.ParseMetrics(resp.Body)
	resp.Body.Close()
	smp.scrapeTime = time.Since(t0)
	if err != nil || resp.StatusCode != 200 {
		log.Printf("scrape: %d %v", resp.StatusCode, err)
		return smp
	}
	smp.scrapeOK = true
	smp.goroutines = m["go_goroutines"]
	for k, v := range m {
		if strings.HasPrefix(k, `connprobe_probe_failures_total{job="healthy"`) {
			s.seen[k] = v
		}
	}
	for _, v := range s.seen {
		smp.healthyFail += v
	}
	smp.proberFault = benchkit.SumPrefix(m, "connprobe_prober_faults_total{")
	smp.hostileFail = benchkit.SumPrefix(m, `connprobe_probe_failures_total{job="hostile"`)
	smp.reloadOK = m["connprobe_config_last_reload_successful"]
	return smp
}

func (s *soak) render(smp []sample, died error, stop time.Duration, load0 string, duration, every, churn, reload time.Duration, idle int) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", sectionTitle)
	fmt.Fprintf(&b, "`make soak` (`scripts/soak.sh`, DURATION=%s) on %s, %d CPUs (shared), %s; load average before %s, after %s.\n",
		duration, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), benchkit.Kernel(), load0, benchkit.LoadAvg())
	if v := benchkit.LoadVerdict(load0, benchkit.LoadAvg(), runtime.NumCPU()); v != "" {
		fmt.Fprintf(&b, "%s (The soak's verdict is about growth and failures, which load does not excuse.)\n", v)
	}
	fmt.Fprintf(&b, "probe serve with %d healthy loopback connect targets at 1 s through file_sd (5%% swapped every %s), a job of\n", s.n, churn)
	b.WriteString("hostile app servers (a MySQL greeting that crashes go-sql-driver, a Kafka answer announcing 2^31 array\n")
	fmt.Fprintf(&b, "elements, a PostgreSQL message announcing 1 GiB), a bad and a good reload every %s, 20 reload requests\n", reload)
	fmt.Fprintf(&b, "aborted mid-flight every 10 s, and %d HTTP connections that never send a request (reopened when closed).\n\n", idle)
	b.WriteString("| time | RSS | open fds | goroutines | scrape | healthy-target failures | prober faults | hostile-job failures |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	step := max(1, len(smp)/12)
	for i, x := range smp {
		if i%step != 0 && i != len(smp)-1 {
			continue
		}
		scrape := "failed"
		if x.scrapeOK {
			scrape = x.scrapeTime.Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %.1f MiB | %d | %.0f | %s | %.0f | %.0f | %.0f |\n", x.at.Round(time.Second),
			float64(x.rssKiB)/1024, x.fds, x.goroutines, scrape, x.healthyFail, x.proberFault, x.hostileFail)
	}
	var problems []string
	if died != nil {
		problems = append(problems, died.Error())
	}
	if len(smp) < 4 {
		problems = append(problems, fmt.Sprintf("only %d samples: run longer than 4 sample periods", len(smp)))
	} else {
		q := len(smp) / 4
		early, late := smp[q:2*q], smp[len(smp)-q:]
		med := func(xs []sample, f func(sample) float64) float64 {
			v := make([]float64, len(xs))
			for i, x := range xs {
				v[i] = f(x)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		for _, m := range []struct {
			name  string
			f     func(sample) float64
			slack float64 // absolute growth always allowed
			ratio float64
		}{
			{"RSS (MiB)", func(x sample) float64 { return float64(x.rssKiB) / 1024 }, 4, 1.15},
			{"open fds", func(x sample) float64 { return float64(x.fds) }, 50, 1.10},
			{"goroutines", func(x sample) float64 { return x.goroutines }, 50, 1.10},
		} {
			e, l := med(early, m.f), med(late, m.f)
			fmt.Fprintf(&b, "\n- %s, median of the second quarter → of the last quarter: %.1f → %.1f", m.name, e, l)
			if l > e*m.ratio+m.slack {
				problems = append(problems, fmt.Sprintf("%s grew from %.1f to %.1f", m.name, e, l))
				b.WriteString(" (**grew**)")
			} else {
				b.WriteString(" (flat)")
			}
		}
		last := smp[len(smp)-1]
		fmt.Fprintf(&b, "\n- healthy-target failures over the run: %.0f; prober faults: %.0f; the hostile job failed %.0f times and the agent lived.", last.healthyFail, last.proberFault, last.hostileFail)
		if last.healthyFail > 0 {
			problems = append(problems, fmt.Sprintf("%.0f failures of healthy targets", last.healthyFail))
		}
	}
	bad := 0
	for _, x := range smp {
		if !x.scrapeOK {
			bad++
		}
	}
	fmt.Fprintf(&b, "\n- scrapes that failed: %d of %d; reloads: %d bad (refused, the old config kept), %d good, %d aborted reload requests; idle connections reopened after the agent closed them: %d.",
		bad, len(smp), s.badReloads.Load(), s.goodReloads.Load(), s.aborted.Load(), s.idleReopened.Load())
	if bad > 0 {
		problems = append(problems, fmt.Sprintf("%d scrapes failed", bad))
	}
	if died == nil {
		fmt.Fprintf(&b, "\n- SIGTERM at the end: exited in %s.", stop.Round(time.Millisecond))
	}
	b.WriteString("\n")
	if len(problems) > 0 {
		fmt.Fprintf(&b, "- **Verdict: failed**: %s.\n", strings.Join(problems, "; "))
		return b.String(), errors.New(strings.Join(problems, "; "))
	}
	b.WriteString("- **Verdict: flat and honest** (RSS, fds and goroutines flat; no healthy target failed; every scrape answered).\n")
	return b.String(), nil
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return ln
}

func freeAddr() string {
	ln := listen()
	defer ln.Close()
	return ln.Addr().String()
}

func acceptClose(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// serveEach runs fn on each connection, bounded to 5 s.
func serveEach(ctx context.Context, ln net.Listener, fn func(net.Conn)) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fn(c)
		}()
	}
}

// mysqlCrash sends a 1-byte "greeting" (protocol version '0' and nothing
// else): go-sql-driver's handshake reader slices past its end.
func mysqlCrash(c net.Conn) {
	_, _ = c.Write([]byte{0x01, 0x00, 0x00, 0x00, 0x30})
	_, _ = io.Copy(io.Discard, c)
}

// kafkaHuge answers every request with an ApiVersions-shaped response whose
// array announces 2^31-1 elements.
func kafkaHuge(c net.Conn) {
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < 8 || n > 1<<20 {
			return
		}
		req := make([]byte, n)
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		version := binary.BigEndian.Uint16(req[2:4])
		body := binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(req[4:8])) // correlation id
		body = append(body, 0, 0)                                                     // error code
		if version >= 3 {
			body = binary.AppendUvarint(body, 1<<31) // compact array: N+1
		} else {
			body = binary.BigEndian.AppendUint32(body, 1<<31-1)
		}
		body = append(body, bytes.Repeat([]byte{0}, 64)...)
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err != nil {
			return
		}
	}
}

// postgresHuge refuses TLS, then answers the startup message with an 'R'
// message that announces 1 GiB and sends 64 bytes of it.
func postgresHuge(c net.Conn) {
	buf := make([]byte, 8)
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	if binary.BigEndian.Uint32(buf[4:]) == 80877103 { // SSLRequest
		if _, err := c.Write([]byte{'N'}); err != nil {
			return
		}
		if _, err := io.ReadFull(c, buf[:4]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(buf[:4])
		if n < 8 || n > 1<<16 {
			return
		}
		if _, err := io.ReadFull(c, make([]byte, n-4)); err != nil {
			return
		}
	}
	msg := append([]byte{'R'}, binary.BigEndian.AppendUint32(nil, 1<<30)...)
	_, _ = c.Write(append(msg, make([]byte, 64)...))
	_, _ = io.Copy(io.Discard, c)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
