package status

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Page sizes of the status page: a page of targets, never all 10k.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"pct":      pct,
	"dur":      fmtDur,
	"ts":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") },
	"clock":    func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"ago":      func(now, t time.Time) string { return max(now.Sub(t).Round(time.Second), 0).String() },
	"verdicts": func() []Verdict { return Verdicts },
	"reasons":  func() []probe.ReasonDoc { return probe.Reasons },
	"timings": func(t probe.Timings) string {
		var parts []string
		t.Each(func(name string, d time.Duration) { parts = append(parts, name+"="+fmtDur(d)) })
		return strings.Join(parts, " ")
	},
	"addr": func(a interface{ IsValid() bool }) string {
		if !a.IsValid() {
			return ""
		}
		return fmt.Sprint(a)
	},
}).ParseFS(templateFS, "templates/*.html"))

func pct(v float64) string {
	if v != v {
		return "–"
	}
	if v == 1 {
		return "100%"
	}
	return strconv.FormatFloat(100*v, 'f', 2, 64) + "%"
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// cell is one attempt in a strip.
type cell struct {
	Class string // ok, degraded, failure, prober
	Title string // the attempt and its evidence, for hovering
	Href  string // the attempt's anchor on the target's page
}

// spark is an inline SVG chart of handshake (or attempt) times.
type spark struct {
	W, H   int
	Points string    // polyline of the attempts that met the expectation
	Fails  []float64 // x of the failures
	Probs  []float64 // x of the prober faults
	Max    string    // the top of the scale
	What   string    // "handshake" or "attempt"
	Empty  bool
}

type row struct {
	Summary
	URL, APIURL string
	Cells       []cell
	Spark       spark
	LastFailure *Failure
}

type jobRow struct {
	JobSummary
	Failing, Prober, Degraded, OK, Pending int
	URL                                    string
}

type listPage struct {
	Node       string
	At         time.Time
	HistoryOff bool
	N          int
	Q          Query
	State      string
	Jobs       []jobRow
	JobNames   []string
	Rows       []row
	Total      int
	All        int
	From, To   int
	Prev, Next string
	Counts     map[string]int
}

type targetPage struct {
	Node    string
	At      time.Time
	History History
	Row     row
	Rows    []Attempt // newest first
	Fails   []Failure // newest first
	Big     spark
}

// pageQuery reads the filters of / and /api/v1/targets.
func pageQuery(v url.Values, defLimit int) (Query, string, error) {
	q := Query{Job: v.Get("job"), Text: v.Get("q"), Sort: v.Get("sort"), Limit: defLimit}
	if r := v.Get("reason"); r != "" {
		if !probe.Reason(r).Known() {
			return q, "", fmt.Errorf("reason %q: not a reason (see the README's list)", r)
		}
		q.Reason = probe.Reason(r)
	}
	state := v.Get("state")
	switch state {
	case "", "all":
		state = ""
	case "not_ok":
		q.NotOK = true
	default:
		if !slices.Contains(Verdicts, Verdict(state)) {
			return q, "", fmt.Errorf("state %q: want all, not_ok, failing, prober_fault, degraded, pending or ok", state)
		}
		q.Verdict = Verdict(state)
	}
	if q.Sort != "" && q.Sort != "worst" && q.Sort != "name" {
		return q, "", fmt.Errorf("sort %q: want worst or name", q.Sort)
	}
	for _, p := range []struct {
		name string
		dst  *int
		max  int
	}{{"offset", &q.Offset, 1 << 30}, {"limit", &q.Limit, MaxPageSize}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, "", fmt.Errorf("%s %q: want a number >= 0", p.name, s)
		}
		*p.dst = min(n, p.max)
	}
	if q.Limit == 0 {
		q.Limit = defLimit
	}
	return q, state, nil
}

// targetURL is the target's page, relative to /.
func targetURL(job, name string) string {
	return "target?" + url.Values{"job": {job}, "target": {name}}.Encode()
}

// AttemptsURL is the API path of a target's attempts, relative to /.
func AttemptsURL(job, name string) string {
	return "api/v1/targets/" + url.PathEscape(job) + "/" + url.PathEscape(name) + "/attempts"
}

func listURL(q Query, state string, offset int) string {
	v := url.Values{}
	for k, s := range map[string]string{"job": q.Job, "reason": string(q.Reason), "state": state, "q": q.Text, "sort": q.Sort} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != DefaultPageSize {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if offset > 0 {
		v.Set("offset", strconv.Itoa(offset))
	}
	if len(v) == 0 {
		return "./"
	}
	return "?" + v.Encode()
}

func makeRow(h History, w, hgt int) row {
	r := row{Summary: h.Summary, URL: targetURL(h.Job, h.Target), APIURL: AttemptsURL(h.Job, h.Target)}
	r.Cells = make([]cell, len(h.Attempts))
	for i, a := range h.Attempts {
		r.Cells[i] = cell{Class: string(a.Class), Title: attemptTitle(a), Href: "#a" + strconv.FormatUint(a.Seq, 10)}
	}
	r.Spark = makeSpark(h.Attempts, w, hgt)
	if n := len(h.Failures); n > 0 {
		f := h.Failures[n-1]
		r.LastFailure = &f
	}
	return r
}

func attemptTitle(a Attempt) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s", a.Seq, a.Start.UTC().Format("15:04:05.000"), a.Reason)
	if a.Phase != "" {
		fmt.Fprintf(&b, " in %s", a.Phase)
	}
	fmt.Fprintf(&b, ", %s", fmtDur(a.Duration))
	if a.Handshake > 0 {
		fmt.Fprintf(&b, ", handshake %s", fmtDur(a.Handshake))
	}
	if a.Retransmits > 0 {
		fmt.Fprintf(&b, ", %d SYN retransmits", a.Retransmits)
	}
	for _, e := range a.Evidence {
		b.WriteString("\n")
		b.WriteString(e)
	}
	if a.EvidenceEvicted {
		b.WriteString("\n(evidence rolled over: see the last failures)")
	}
	return b.String()
}

func makeSpark(as []Attempt, w, h int) spark {
	s := spark{W: w, H: h, What: "handshake"}
	if len(as) == 0 {
		s.Empty = true
		return s
	}
	val := func(a Attempt) time.Duration { return a.Handshake }
	if !slices.ContainsFunc(as, func(a Attempt) bool { return a.Handshake > 0 }) {
		s.What = "attempt"
		val = func(a Attempt) time.Duration { return a.Duration }
	}
	var top time.Duration
	for _, a := range as {
		if a.Met && a.Class != probe.ClassProber {
			top = max(top, val(a))
		}
	}
	step := float64(w-2) / float64(max(len(as)-1, 1))
	var pts []string
	for i, a := range as {
		x := 1 + float64(i)*step
		switch {
		case a.Class == probe.ClassProber:
			s.Probs = append(s.Probs, x)
		case !a.Met:
			s.Fails = append(s.Fails, x)
		case val(a) > 0 && top > 0:
			y := float64(h-2) - float64(h-4)*float64(val(a))/float64(top)
			pts = append(pts, strconv.FormatFloat(x, 'f', 1, 64)+","+strconv.FormatFloat(y, 'f', 1, 64))
		}
	}
	if len(pts) == 1 {
		pts = append(pts, pts[0]) // a single point still draws
	}
	s.Points = strings.Join(pts, " ")
	s.Max = fmtDur(top)
	return s
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func render(w http.ResponseWriter, name string, data any) {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	defer bufPool.Put(b)
	if err := templates.ExecuteTemplate(b, name, data); err != nil {
		http.Error(w, "status: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b.Bytes())
}

func (s *Status) servePage(w http.ResponseWriter, r *http.Request) {
	q, state, err := pageQuery(r.URL.Query(), DefaultPageSize)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	snap := s.Query(q)
	p := listPage{Node: s.o.Node, At: snap.At, HistoryOff: !s.HistoryEnabled(), N: s.o.Attempts, Q: q, State: state,
		Total: snap.Total, Counts: map[string]int{}}
	for _, j := range snap.Jobs {
		jr := jobRow{JobSummary: j, Failing: j.ByVerdict[VerdictFailing], Prober: j.ByVerdict[VerdictProberFault],
			Degraded: j.ByVerdict[VerdictDegraded], OK: j.ByVerdict[VerdictOK], Pending: j.ByVerdict[VerdictPending],
			URL: listURL(Query{Job: j.Name, Limit: DefaultPageSize}, "", 0)}
		p.Jobs = append(p.Jobs, jr)
		p.JobNames = append(p.JobNames, j.Name)
		p.All += j.Targets
		for v, n := range j.ByVerdict {
			p.Counts[string(v)] += n
		}
	}
	// Worst jobs first, like the targets.
	slices.SortStableFunc(p.Jobs, func(a, b jobRow) int {
		if c := (b.Failing + b.Prober) - (a.Failing + a.Prober); c != 0 {
			return c
		}
		return b.Degraded - a.Degraded
	})
	for _, sum := range snap.Targets {
		h, ok := s.History(sum.Job, sum.Target)
		if !ok {
			continue // went away since the query
		}
		p.Rows = append(p.Rows, makeRow(h, 160, 24))
	}
	p.From = min(q.Offset+1, snap.Total)
	p.To = q.Offset + len(snap.Targets)
	if q.Offset > 0 {
		p.Prev = listURL(q, state, max(q.Offset-q.Limit, 0))
	}
	if p.To < snap.Total {
		p.Next = listURL(q, state, p.To)
	}
	render(w, "list.html", p)
}

func (s *Status) serveTarget(w http.ResponseWriter, r *http.Request) {
	job, name := r.URL.Query().Get("job"), r.URL.Query().Get("target")
	h, ok := s.History(job, name)
	if !ok {
		http.Error(w, fmt.Sprintf("no target %q in job %q (it may have gone away)", name, job), http.StatusNotFound)
		return
	}
	p := targetPage{Node: s.o.Node, At: s.o.Now(), History: h, Row: makeRow(h, 160, 24), Big: makeSpark(h.Attempts, 720, 120)}
	for i := len(h.Attempts) - 1; i >= 0; i-- {
		p.Rows = append(p.Rows, h.Attempts[i])
	}
	for i := len(h.Failures) - 1; i >= 0; i-- {
		p.Fails = append(p.Fails, h.Failures[i])
	}
	render(w, "target.html", p)
}
