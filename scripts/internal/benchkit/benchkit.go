// Package benchkit holds what the benchmark and soak programs under scripts/
// share: reading a process's CPU time and memory from /proc, parsing a
// /metrics scrape, and rewriting one section of BENCHMARKS.md.
package benchkit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

var clkTck = 100.0 // sysconf(_SC_CLK_TCK) on Linux

// CPUSeconds is the utime+stime of process pid.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	// Fields after the command: state is [0]; utime is field 14 overall ([11]), stime [12].
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck, nil
}

// ProcStatus reads a kB field (VmHWM:, VmRSS:, RssAnon:) of /proc/PID/status.
func ProcStatus(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no " + key)
}

// ParseMetrics reads a text-format scrape into series → value.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		m[l[:i]] = v
	}
	return m, sc.Err()
}

// SumPrefix sums the series whose name and labels start with prefix.
func SumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// HistQuantile estimates a quantile of the observations between two
// scrapes from a classic histogram's cumulative buckets (summed over labels).
func HistQuantile(m0, m1 map[string]float64, name string, q float64) time.Duration {
	type bucket struct{ le, n float64 }
	acc := map[float64]float64{}
	for k, v := range m1 {
		if !strings.HasPrefix(k, name+"_bucket{") {
			continue
		}
		i := strings.Index(k, `le="`)
		j := strings.Index(k[i+4:], `"`)
		le, err := strconv.ParseFloat(k[i+4:i+4+j], 64)
		if err != nil {
			continue
		}
		acc[le] += v - m0[k]
	}
	var bs []bucket
	for le, n := range acc {
		bs = append(bs, bucket{le, n})
	}
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0
	}
	total := bs[len(bs)-1].n
	rank := q * total
	prevLe, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return time.Duration(prevLe * float64(time.Second))
			}
			frac := (rank - prevN) / (b.n - prevN)
			return time.Duration((prevLe + (b.le-prevLe)*frac) * float64(time.Second))
		}
		prevLe, prevN = b.le, b.n
	}
	return 0
}

// LoadVerdict judges the 1-minute load averages read before and after a
// run (LoadAvg strings) on this machine: a benchmark measured while other
// work kept more than half the CPUs busy measured the neighbours too. It
// returns "" for a run to trust, else a line that marks the table as not to
// be trusted, with the figures.
func LoadVerdict(before, after string, cpus int) string {
	limit := float64(cpus) / 2
	worst := 0.0
	for _, l := range []string{before, after} {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			worst = max(worst, v)
		}
	}
	if worst <= limit {
		return ""
	}
	return fmt.Sprintf("**Not to be trusted as absolute figures: the 1-minute load average reached %.2f (before: %s; after: %s) on %d CPUs, over the %.1f a quiet run allows; other work shared the machine. Compare rows of this run with each other only, or rerun on a quiet machine.**", worst, before, after, cpus, limit)
}

// BusySeconds is the CPU time the machine's CPUs spent busy since boot
// (/proc/stat: user, nice, system, irq, softirq, steal).
func BusySeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	busy := 0.0
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return busy / clkTck, nil
}

// Others measures the CPU that processes other than ours used over a
// window: Start it, then call the returned func with the CPU seconds our
// measured processes (the tool, and this program itself) used in the
// window and the window's length; it returns the others' average cores.
// Kernel work done for us on other threads (softirq on ksoftirqd) counts
// as others'.
func Others() func(ours float64, window time.Duration) float64 {
	b0, _ := BusySeconds()
	self0, _ := CPUSeconds(os.Getpid())
	return func(ours float64, window time.Duration) float64 {
		b1, err := BusySeconds()
		self1, _ := CPUSeconds(os.Getpid())
		if err != nil || window <= 0 {
			return 0
		}
		return max(0, (b1-b0)-(self1-self0)-ours) / window.Seconds()
	}
}

// OthersLimit is the most other work (in cores, averaged over a window) a
// measurement to trust allows.
const OthersLimit = 0.25

// LoadAvg is the 1, 5 and 15 minute load average.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// Kernel names the running kernel.
func Kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// WriteSection replaces (or appends) the section titled title ("## …") in
// path, leaving other sections alone.
func WriteSection(path, sectionTitle, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	if s == "" {
		s = "# Benchmarks\n\n"
	}
	if i := strings.Index(s, sectionTitle); i >= 0 {
		rest := s[i+len(sectionTitle):]
		end := len(s)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(sectionTitle) + j + 1
		}
		s = s[:i] + section + s[end:]
	} else {
		if !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
