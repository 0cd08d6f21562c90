//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gdamore/tcell/v2"
	"golang.org/x/term"

	"github.com/connprobe/connprobe/exporters/report"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/probe/trace"
)

// stripLen is how many recent outcomes a target's strip shows.
const stripLen = 40

// liveView is `probe run --live`: a table redrawn in place, like mtr's, one
// row per target (last reason, a strip of recent outcomes, loss, handshake
// min/avg/p90/max) with, for a traced target, its last trace's hops. It is a
// report.Writer: every result also goes to the plain text writer, whose
// summary is printed after the screen is closed.
type liveView struct {
	mu      sync.Mutex
	screen  tcell.Screen
	final   report.Writer
	sw      *switchWriter // final's output: discarded until the summary
	out     io.Writer
	title   string
	order   []string
	targets map[string]*liveTarget
	done    chan struct{} // closed when the event loop ends
}

type liveTarget struct {
	last     probe.Result
	strip    []byte
	sent, ok int
	hs       []time.Duration
	trace    *trace.Trace
}

// outcome marks of the strip: like mtr's, one character an attempt.
func outcomeMark(r probe.Result) byte {
	switch r.Reason.Class() {
	case probe.ClassOK:
		return '.'
	case probe.ClassDegraded:
		return '!'
	case probe.ClassProber:
		return '?'
	}
	return 'x'
}

// startLive replaces the run's writer with the live view when --live is set
// and stdout is a terminal; cancel, called on 'q' or Ctrl-C, ends the run.
// Otherwise it says once on stderr that it falls back to plain lines.
func startLive(f runFlags, out report.Writer, cancel context.CancelFunc, title string) (report.Writer, *liveView) {
	if !f.live {
		return out, nil
	}
	if fd, ok := f.stdoutW().(*os.File); !ok || !term.IsTerminal(int(fd.Fd())) {
		fmt.Fprintln(f.stderrW(), "probe: --live needs a terminal on stdout: printing plain lines")
		return out, nil
	}
	if f.output == "json" {
		fmt.Fprintln(f.stderrW(), "probe: --live draws a table: -o json prints plain JSON lines instead")
		return out, nil
	}
	// The text writer keeps the statistics; its per-attempt lines would
	// scribble over the screen, so they go nowhere until the summary.
	sw := &switchWriter{}
	final, err := report.New("text", sw)
	if err != nil {
		return out, nil
	}
	s, err := tcell.NewScreen()
	if err == nil {
		err = s.Init()
	}
	if err != nil {
		fmt.Fprintf(f.stderrW(), "probe: --live: no terminal screen (%v): printing plain lines\n", err)
		return out, nil
	}
	v := &liveView{screen: s, final: final, sw: sw, out: f.stdoutW(), title: title, targets: map[string]*liveTarget{}, done: make(chan struct{})}
	go v.events(cancel)
	v.draw()
	return v, v
}

// events runs until the screen is finalized: q, Q, Esc or Ctrl-C end the
// run; a resize redraws.
func (v *liveView) events(cancel context.CancelFunc) {
	defer close(v.done)
	for {
		ev := v.screen.PollEvent()
		switch ev := ev.(type) {
		case nil:
			return // Fini
		case *tcell.EventKey:
			if ev.Key() == tcell.KeyCtrlC || ev.Key() == tcell.KeyEscape || (ev.Key() == tcell.KeyRune && (ev.Rune() == 'q' || ev.Rune() == 'Q')) {
				cancel()
			}
		case *tcell.EventResize:
			v.screen.Sync()
			v.draw()
		}
	}
}

// Result implements report.Writer.
func (v *liveView) Result(r probe.Result) error {
	v.mu.Lock()
	t := v.target(r.Target)
	t.last = r
	t.strip = append(t.strip, outcomeMark(r))
	if len(t.strip) > stripLen {
		t.strip = t.strip[len(t.strip)-stripLen:]
	}
	if r.Reason.Class() != probe.ClassProber {
		t.sent++
		if r.Success() {
			t.ok++
			if r.Timings.Handshake > 0 {
				t.hs = append(t.hs, r.Timings.Handshake)
			}
		}
	}
	v.mu.Unlock()
	v.draw()
	return v.final.Result(r)
}

// traced records a target's latest trace (runTracer's hook).
func (v *liveView) traced(name string, tr *trace.Trace) {
	v.mu.Lock()
	v.target(name).trace = tr
	v.mu.Unlock()
}

func (v *liveView) target(name string) *liveTarget {
	t, ok := v.targets[name]
	if !ok {
		t = &liveTarget{}
		v.targets[name] = t
		v.order = append(v.order, name)
	}
	return t
}

// Summary implements report.Writer: it closes the screen, prints the last
// table as plain lines and then the usual summary.
func (v *liveView) Summary() error {
	lines := v.lines(0) // unclipped: the terminal wraps
	v.screen.Fini()
	<-v.done
	for _, l := range lines {
		if _, err := fmt.Fprintln(v.out, strings.TrimRight(l, " ")); err != nil {
			return err
		}
	}
	v.sw.set(v.out)
	return v.final.Summary()
}

// switchWriter discards until set.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return len(p), nil
	}
	return s.w.Write(p)
}

func (v *liveView) draw() {
	w, h := v.screen.Size()
	lines := v.lines(w)
	v.screen.Clear()
	bold := tcell.StyleDefault.Bold(true)
	for y, l := range lines {
		if y >= h {
			break
		}
		st := tcell.StyleDefault
		if y <= 1 {
			st = bold
		}
		x := 0
		for _, r := range l {
			if x >= w {
				break
			}
			v.screen.SetContent(x, y, r, nil, st)
			x++
		}
	}
	v.screen.Show()
}

// lines renders the table for a width.
func (v *liveView) lines(width int) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := []string{
		fmt.Sprintf("connprobe live: %s   (q quits)   %s", v.title, time.Now().Format("15:04:05")),
		fmt.Sprintf("%-22s %-18s %-*s %6s %9s %9s %9s %9s", "TARGET", "LAST", stripLen, "RECENT (. ok  ! slow  x failed  ? prober)", "LOSS", "MIN", "AVG", "P90", "MAX"),
	}
	for _, name := range v.order {
		t := v.targets[name]
		loss := "-"
		if t.sent > 0 {
			loss = fmt.Sprintf("%.1f%%", 100*float64(t.sent-t.ok)/float64(t.sent))
		}
		mn, avg, p90, mx := "-", "-", "-", "-"
		if len(t.hs) > 0 {
			d := slices.Clone(t.hs)
			slices.Sort(d)
			var sum time.Duration
			for _, x := range d {
				sum += x
			}
			mn, avg, p90, mx = report.FormatDuration(d[0]), report.FormatDuration(sum/time.Duration(len(d))), report.FormatDuration(report.Quantile(d, 0.9)), report.FormatDuration(d[len(d)-1])
		}
		out = append(out, fmt.Sprintf("%-22s %-18s %-*s %6s %9s %9s %9s %9s", name, t.last.Reason, stripLen, string(t.strip), loss, mn, avg, p90, mx))
		if len(t.last.Evidence) > 0 && !t.last.Success() {
			out = append(out, clip("    "+t.last.Evidence[0], width))
		}
		if tr := t.trace; tr != nil {
			out = append(out, fmt.Sprintf("    %-4s %-40s %6s %5s %9s  %s", "HOP", "ADDRESS", "LOSS", "SENT", "RTT", "REPLY"))
			for _, hp := range tr.Hops {
				addr, rtt, reply := "*", "-", hp.Reply
				if hp.Address.IsValid() {
					addr = hp.Address.String()
				}
				if hp.Answered > 0 {
					rtt = report.FormatDuration(hp.RTT())
				}
				if reply == "" {
					reply = "no answer"
				}
				out = append(out, fmt.Sprintf("    %-4d %-40s %5.0f%% %5d %9s  %s", hp.Hop, addr, 100*hp.Loss(), hp.Sent, rtt, reply))
			}
			out = append(out, clip("    trace: "+tr.Verdict, width))
		}
	}
	return out
}

func clip(s string, width int) string {
	r := []rune(s)
	if width > 1 && len(r) > width {
		return string(r[:width-1]) + "…"
	}
	return s
}

// liveTitle says what runs: kind, interval, count.
func liveTitle(f runFlags) string {
	kind := f.kind
	if f.paws && !f.kindSet {
		kind = "syn"
	}
	n := "until q"
	if f.count > 0 {
		n = fmt.Sprintf("%d attempts", f.count)
	}
	s := fmt.Sprintf("%s every %s, %s", kind, f.interval, n)
	if f.trace {
		s += ", traced on failure"
	}
	return s
}
