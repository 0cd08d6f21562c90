package targets

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/connprobe/connprobe/probe"
)

// collector records the sets a source pushes.
type collector struct {
	mu   sync.Mutex
	sets [][]string
	ch   chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 100)} }

func (c *collector) update(ts []probe.Target) {
	var names []string
	for _, t := range ts {
		names = append(names, t.Name)
	}
	c.mu.Lock()
	c.sets = append(c.sets, names)
	c.mu.Unlock()
	c.ch <- struct{}{}
}

// waitFor waits until the latest set equals want.
func (c *collector) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		var last []string
		if n := len(c.sets); n > 0 {
			last = c.sets[n-1]
		}
		c.mu.Unlock()
		if slices.Equal(last, want) {
			return
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("latest target set %q, want %q", last, want)
		}
	}
}

func run(t *testing.T, s Source) *collector {
	t.Helper()
	c := newCollector()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx, c.update) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

func TestStaticAndMerge(t *testing.T) {
	a := Static{{Name: "a:1"}, {Name: "b:1"}}
	b := Static{{Name: "b:1"}, {Name: "c:1"}}
	run(t, Merge{a, b}).waitFor(t, "a:1", "b:1", "c:1")
}

func TestFileSDWatchesChanges(t *testing.T) {
	dir := t.TempDir()
	js := filepath.Join(dir, "t.json")
	ym := filepath.Join(dir, "t.yaml")
	write := func(p, s string) {
		t.Helper()
		// A rename swap, like a ConfigMap update; mtime moves forward.
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	write(js, `[{"targets": ["127.0.0.1:1", "bogus", "127.0.0.1:2"], "labels": {"zone": "a"}}]`)
	write(ym, "- targets: ['[::1]:3']\n")
	c := run(t, &File{Paths: []string{js, ym}, Refresh: 10 * time.Millisecond})
	c.waitFor(t, "127.0.0.1:1", "127.0.0.1:2", "[::1]:3")

	write(js, `[{"targets": ["127.0.0.1:2", "127.0.0.1:4"]}]`)
	c.waitFor(t, "127.0.0.1:2", "127.0.0.1:4", "[::1]:3")

	// A broken file keeps its previous targets.
	write(js, `[{"targets": ["127.0.0.1:9"`)
	time.Sleep(50 * time.Millisecond)
	c.waitFor(t, "127.0.0.1:2", "127.0.0.1:4", "[::1]:3")

	// A removed file drops its targets.
	if err := os.Remove(ym); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "127.0.0.1:2", "127.0.0.1:4")
}

// fakeDNS is a loopback DNS server answering from a table it can change.
type fakeDNS struct {
	mu      sync.Mutex
	a       map[string][]netip.Addr
	aaaa    map[string][]netip.Addr
	srv     map[string][]net.SRV
	queries int
	addr    netip.AddrPort
}

func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{a: map[string][]netip.Addr{}, aaaa: map[string][]netip.Addr{}, srv: map[string][]net.SRV{},
		addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := f.answer(buf[:n]); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return f
}

func (f *fakeDNS) set(fn func(f *fakeDNS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeDNS) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	name := question.Name.String()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 1}
	_, knownA := f.a[name]
	_, knownAAAA := f.aaaa[name]
	_, knownSRV := f.srv[name]
	if !knownA && !knownAAAA && !knownSRV {
		b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
		_ = b.StartQuestions()
		_ = b.Question(question)
		out, _ := b.Finish()
		return out
	}
	switch question.Type {
	case dnsmessage.TypeA:
		for _, a := range f.a[name] {
			_ = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		}
	case dnsmessage.TypeAAAA:
		for _, a := range f.aaaa[name] {
			_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	case dnsmessage.TypeSRV:
		for _, s := range f.srv[name] {
			_ = b.SRVResource(rh, dnsmessage.SRVResource{Priority: s.Priority, Weight: s.Weight, Port: s.Port,
				Target: dnsmessage.MustNewName(s.Target)})
		}
	}
	out, _ := b.Finish()
	return out
}

func TestDNSReResolves(t *testing.T) {
	f := startFakeDNS(t)
	f.set(func(f *fakeDNS) {
		f.a["web.connprobe.test."] = []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}
		f.aaaa["web.connprobe.test."] = []netip.Addr{netip.MustParseAddr("::1")}
		f.srv["_kafka._tcp.connprobe.test."] = []net.SRV{{Target: "kafka-0.connprobe.test.", Port: 9092, Priority: 1, Weight: 1}}
	})
	a := run(t, &DNS{Name: "web.connprobe.test.", Type: "A", Port: 80, Refresh: 20 * time.Millisecond, Server: f.addr})
	aaaa := run(t, &DNS{Name: "web.connprobe.test.", Type: "AAAA", Port: 80, Refresh: 20 * time.Millisecond, Server: f.addr})
	srv := run(t, &DNS{Name: "_kafka._tcp.connprobe.test.", Type: "SRV", Refresh: 20 * time.Millisecond, Server: f.addr})
	a.waitFor(t, "127.0.0.1:80", "127.0.0.2:80")
	aaaa.waitFor(t, "[::1]:80")
	srv.waitFor(t, "kafka-0.connprobe.test:9092")

	// A record set changes: the next resolution shows it.
	f.set(func(f *fakeDNS) {
		f.a["web.connprobe.test."] = []netip.Addr{netip.MustParseAddr("127.0.0.3")}
		f.srv["_kafka._tcp.connprobe.test."] = append(f.srv["_kafka._tcp.connprobe.test."],
			net.SRV{Target: "kafka-1.connprobe.test.", Port: 9093, Priority: 1, Weight: 1})
	})
	a.waitFor(t, "127.0.0.3:80")
	srv.waitFor(t, "kafka-0.connprobe.test:9092", "kafka-1.connprobe.test:9093")

	// The name is deleted: no targets.
	f.set(func(f *fakeDNS) { delete(f.a, "web.connprobe.test."); delete(f.aaaa, "web.connprobe.test.") })
	a.waitFor(t)
}

func TestDNSServerDownKeepsTargets(t *testing.T) {
	f := startFakeDNS(t)
	f.set(func(f *fakeDNS) { f.a["db.connprobe.test."] = []netip.Addr{netip.MustParseAddr("127.0.0.1")} })
	// A second server that never answers: lookups time out.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	c := run(t, &DNS{Name: "db.connprobe.test.", Type: "A", Port: 5432, Refresh: 20 * time.Millisecond, Server: f.addr})
	c.waitFor(t, "127.0.0.1:5432")
	c2 := run(t, &DNS{Name: "db.connprobe.test.", Type: "A", Port: 5432, Refresh: 50 * time.Millisecond,
		Server: dead.LocalAddr().(*net.UDPAddr).AddrPort()})
	time.Sleep(120 * time.Millisecond)
	c2.mu.Lock()
	n := len(c2.sets)
	c2.mu.Unlock()
	if n != 0 {
		t.Errorf("a source whose server never answers pushed %d set(s), want none", n)
	}
}

// waitJob polls h until job's state satisfies ok.
func waitJob(t *testing.T, h *Health, job string, what string, ok func(JobStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, j := range h.Jobs() {
			if j.Job == job && ok(j) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never %s: %+v", job, what, h.Jobs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DNS reports to Health: a server that does not answer is counted and
// never synced; a name that does not exist is an answer (synced).
func TestDNSHealth(t *testing.T) {
	f := startFakeDNS(t)
	f.set(func(f *fakeDNS) { f.a["db.connprobe.test."] = []netip.Addr{netip.MustParseAddr("127.0.0.1")} })
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	h := &Health{}
	h.Expect(map[string]int{"up": 1, "gone": 1, "down": 1})
	// (A refresh also bounds each lookup: long enough not to time out here.)
	run(t, &DNS{Name: "db.connprobe.test.", Type: "A", Port: 1, Refresh: time.Second, Server: f.addr, Health: h, Job: "up"})
	run(t, &DNS{Name: "nx.connprobe.test.", Type: "A", Port: 1, Refresh: time.Second, Server: f.addr, Health: h, Job: "gone"})
	run(t, &DNS{Name: "db.connprobe.test.", Type: "A", Port: 1, Refresh: 20 * time.Millisecond,
		Server: dead.LocalAddr().(*net.UDPAddr).AddrPort(), Health: h, Job: "down"})
	waitJob(t, h, "up", "synced", func(j JobStatus) bool { return j.Synced })
	waitJob(t, h, "gone", "synced", func(j JobStatus) bool { return j.Synced })
	waitJob(t, h, "down", "counted its failures", func(j JobStatus) bool { return !j.Synced && j.Errors["dns"] >= 1 })
	if err := h.Ready(); err == nil || !strings.Contains(err.Error(), `job "down": dns A db.connprobe.test. has not synced`) {
		t.Errorf("Ready = %v, want job down not synced", err)
	}
}

// file_sd reports to Health: a broken file is counted and unsynced until
// it is fixed.
func TestFileSDHealth(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(p, []byte("- targets: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Health{}
	run(t, &File{Paths: []string{p}, Refresh: 10 * time.Millisecond, Health: h, Job: "files"})
	waitJob(t, h, "files", "counted the bad file", func(j JobStatus) bool { return !j.Synced && j.Errors["file_sd"] == 1 })
	if err := os.WriteFile(p, []byte("- targets: ['127.0.0.1:80']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitJob(t, h, "files", "synced", func(j JobStatus) bool { return j.Synced && j.Errors["file_sd"] == 1 })
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	waitJob(t, h, "files", "counted the missing file", func(j JobStatus) bool { return !j.Synced && j.Errors["file_sd"] == 2 })
}
