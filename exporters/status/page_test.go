package status

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

func server(t testing.TB, s *Status) *httptest.Server {
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t testing.TB, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

const hostile = `<script>alert("x")</script>`

// fleet is one healthy target, one failing with evidence and a hostile
// target whose name and evidence are markup.
func fleet(t testing.TB) *Status {
	s := New(Options{Attempts: 16, Node: "node-a"})
	ok := newTarget(s, "web", "10.0.0.1:80", false)
	bad := newTarget(s, "db", "10.96.20.5:5432", false)
	evil := newTarget(s, "db", "tcp://"+hostile+":1", false)
	deny := newTarget(s, "deny", "10.0.0.2:5432", true)
	for i := range 20 {
		ok.Result(res(i, probe.ReasonOK, "connected"))
		if i < 15 {
			bad.Result(res(i, probe.ReasonOK, "connected"))
		} else {
			bad.Result(res(i, probe.ReasonSynTimeout, "3 SYNs at 0s,1.0s,2.0s; no SYN/ACK, no RST", "conntrack: no entry for the flow"))
		}
		evil.Result(res(i, probe.ReasonAppError, `"><img src=x onerror=alert(1)>`, hostile))
		deny.Result(res(i, probe.ReasonRefused, "RST"))
	}
	return s
}

func TestPageShowsVerdictsEvidenceAndEscapesEverything(t *testing.T) {
	srv := server(t, fleet(t))
	code, h, body := get(t, srv.URL+"/")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", code, h.Get("Content-Type"))
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("no CSP: %q", h.Get("Content-Security-Policy"))
	}
	for _, want := range []string{
		"connprobe on node-a", "10.96.20.5:5432", "10.0.0.1:80",
		`class="v v-failing">failing</span>`, `class="v v-ok">ok</span>`,
		"3 SYNs at 0s,1.0s,2.0s; no SYN/ACK, no RST", // the failing target's evidence
		`class="c-failure"`, `class="c-ok"`, "<svg",
		"68.75%", // 11 of the 16 attempts kept met the expectation
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Error("hostile markup reached the page unescaped")
	}
	if !strings.Contains(body, "&lt;script&gt;") {
		t.Error("hostile target name not shown escaped")
	}
	// Worst first: failing targets come before the ok one.
	if strings.Index(body, "10.96.20.5:5432") > strings.Index(body, "10.0.0.1:80") {
		t.Error("the failing target is not listed before the healthy one")
	}
	// The expect: fail job's refusals are what it wants.
	if strings.Count(body, `<tr class="t-ok">`) != 2 {
		t.Errorf("want 2 ok rows (web and the deny job), got %d", strings.Count(body, `<tr class="t-ok">`))
	}

	// Filters.
	_, _, body = get(t, srv.URL+"/?state=failing")
	if strings.Contains(body, "10.0.0.1:80") || !strings.Contains(body, "10.96.20.5:5432") {
		t.Error("state=failing shows the healthy target or misses the failing one")
	}
	_, _, body = get(t, srv.URL+"/?job=web")
	if !strings.Contains(body, "targets 1–1 of 1 (of 4)") {
		t.Errorf("job filter numbers missing")
	}
	_, _, body = get(t, srv.URL+"/?reason=app_error")
	if !strings.Contains(body, "&lt;script&gt;") || strings.Contains(body, "10.0.0.1:80</a>") {
		t.Error("reason filter")
	}
	if code, _, _ := get(t, srv.URL+"/?state=bogus"); code != 400 {
		t.Errorf("bad state: %d, want 400", code)
	}
	if code, _, _ := get(t, srv.URL+"/?limit=x"); code != 400 {
		t.Errorf("bad limit: %d, want 400", code)
	}

	// The target page: every attempt and the failures kept whole.
	code, _, body = get(t, srv.URL+"/"+targetURL("db", "10.96.20.5:5432"))
	if code != 200 || !strings.Contains(body, "conntrack: no entry for the flow") || !strings.Contains(body, `id="a20"`) ||
		!strings.Contains(body, "Last failures") {
		t.Errorf("target page: %d\n%s", code, body)
	}
	code, _, body = get(t, srv.URL+"/"+targetURL("db", "tcp://"+hostile+":1"))
	if code != 200 || strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Errorf("hostile target page: %d, unescaped markup", code)
	}
	if code, _, _ := get(t, srv.URL+"/"+targetURL("db", "nope:1")); code != 404 {
		t.Errorf("unknown target: %d, want 404", code)
	}
}

func TestPagePagesLargeFleets(t *testing.T) {
	s := New(Options{Attempts: 4})
	j := &scheduler.Job{Name: "big", Kind: "connect"}
	for i := range 250 {
		s.Target(j, probe.Target{Name: fmt.Sprintf("10.1.%d.%d:80", i/250, i%250)}).Result(res(i, probe.ReasonOK))
	}
	s.Targets(j, 250)
	srv := server(t, s)
	_, _, body := get(t, srv.URL+"/")
	if n := strings.Count(body, `<tr class="t-`); n != DefaultPageSize {
		t.Errorf("first page has %d rows, want %d", n, DefaultPageSize)
	}
	if !strings.Contains(body, "targets 1–100 of 250") || !strings.Contains(body, `href="?offset=100"`) {
		t.Error("no numbers or next link on the first page")
	}
	_, _, body = get(t, srv.URL+"/?offset=200")
	if n := strings.Count(body, `<tr class="t-`); n != 50 || !strings.Contains(body, "targets 201–250 of 250") {
		t.Errorf("last page has %d rows", n)
	}
}

func compileSchemas(t testing.TB) (targets, attempts *jsonschema.Schema) {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	dir := "../../docs/api"
	for _, f := range []string{"common", "targets", "attempts"} {
		b, err := os.ReadFile(filepath.Join(dir, f+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := c.AddResource("https://connprobe.dev/api/v1/"+f+".schema.json", doc); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if targets, err = c.Compile("https://connprobe.dev/api/v1/targets.schema.json"); err != nil {
		t.Fatal(err)
	}
	if attempts, err = c.Compile("https://connprobe.dev/api/v1/attempts.schema.json"); err != nil {
		t.Fatal(err)
	}
	return targets, attempts
}

// validate checks body against schema and returns it decoded.
func validate(t testing.TB, schema *jsonschema.Schema, body string) map[string]any {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("response does not match its schema: %v\n%s", err, body)
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	return m
}

func TestAPIMatchesItsSchema(t *testing.T) {
	targets, attempts := compileSchemas(t)
	s := fleet(t)
	// A target with no attempt yet and a prober fault: nulls must validate.
	newTarget(s, "web", "10.0.0.3:80", false)
	newTarget(s, "web", "10.0.0.4:80", false).Result(res(1, probe.ReasonProberStalled, "stalled 2s"))
	srv := server(t, s)

	code, h, body := get(t, srv.URL+"/api/v1/targets")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", code, h.Get("Content-Type"))
	}
	m := validate(t, targets, body)
	data := m["data"].(map[string]any)
	if data["total"].(float64) != 6 {
		t.Errorf("total %v, want 6", data["total"])
	}
	first := data["targets"].([]any)[0].(map[string]any)
	if first["verdict"] != "failing" {
		t.Errorf("worst first: first is %v", first["verdict"])
	}

	_, _, body = get(t, srv.URL+"/api/v1/targets?state=failing&job=db&limit=1")
	m = validate(t, targets, body)
	ts := m["data"].(map[string]any)["targets"].([]any)
	if len(ts) != 1 {
		t.Fatalf("limit=1 gave %d targets", len(ts))
	}

	// Every target's attempts URL works, whatever its name holds (slashes,
	// colons, markup): the name is one escaped path segment.
	_, _, body = get(t, srv.URL+"/api/v1/targets?limit=1000")
	for _, x := range validate(t, targets, body)["data"].(map[string]any)["targets"].([]any) {
		tg := x.(map[string]any)
		code, _, ab := get(t, srv.URL+"/"+tg["attempts_url"].(string))
		if code != 200 {
			t.Errorf("%s: %d %s", tg["attempts_url"], code, ab)
			continue
		}
		am := validate(t, attempts, ab)["data"].(map[string]any)
		if am["target"] != tg["target"] || am["job"] != tg["job"] {
			t.Errorf("%s answered for %v/%v", tg["attempts_url"], am["job"], am["target"])
		}
	}
	_, _, ab := get(t, srv.URL+"/"+AttemptsURL("db", "10.96.20.5:5432"))
	am := validate(t, attempts, ab)["data"].(map[string]any)
	hist := am["history"].([]any)
	last := hist[len(hist)-1].(map[string]any)
	if last["reason"] != "syn_timeout" || len(last["evidence"].([]any)) != 2 || len(am["failures"].([]any)) != 5 {
		t.Errorf("attempts: last %v, %d failures", last, len(am["failures"].([]any)))
	}

	for _, u := range []string{"/api/v1/targets?reason=nope", "/api/v1/targets?offset=-1", "/api/v1/targets/db/" + url.PathEscape("nope:1") + "/attempts"} {
		code, _, body := get(t, srv.URL+u)
		if code != 400 && code != 404 {
			t.Errorf("%s: %d", u, code)
		}
		schema := targets
		if strings.HasSuffix(u, "/attempts") {
			schema = attempts
		}
		if validate(t, schema, body)["status"] != "error" {
			t.Errorf("%s: not an error response", u)
		}
	}
}

// BenchmarkPage10k renders the status page (first page, worst first) and
// the API's full list over 10,000 targets with full rings.
func BenchmarkPage10k(b *testing.B) {
	s := New(Options{Attempts: DefaultAttempts})
	j := &scheduler.Job{Name: "bench", Kind: "connect"}
	r := res(0, probe.ReasonOK)
	for i := range 10000 {
		ts := s.Target(j, probe.Target{Name: fmt.Sprintf("127.0.0.1:%d", 20000+i)})
		for k := range DefaultAttempts {
			r.Start = t0.Add(time.Duration(k) * time.Second)
			if i%100 == 0 && k > 50 {
				ts.Result(res(k, probe.ReasonSynTimeout, "3 SYNs at 0s,1.0s,2.0s; no reply"))
				continue
			}
			ts.Result(r)
		}
	}
	s.Targets(j, 10000)
	srv := server(b, s)
	for _, p := range []string{"/", "/?state=failing", "/api/v1/targets?limit=100"} {
		b.Run(strings.NewReplacer("/", "_", "?", "_").Replace(p), func(b *testing.B) {
			var n int
			for b.Loop() {
				_, _, body := get(b, srv.URL+p)
				n = len(body)
			}
			b.ReportMetric(float64(n), "bytes/page")
		})
	}
}

func TestHistoryOffStillHasVerdictsAndAPage(t *testing.T) {
	s := New(Options{Attempts: 0})
	ok := newTarget(s, "j", "ok:1", false)
	bad := newTarget(s, "j", "bad:1", false)
	for i := range 5 {
		ok.Result(res(i, probe.ReasonOK))
		bad.Result(res(i, probe.ReasonRefused, "RST"))
	}
	v := map[string]Verdict{}
	for _, sum := range s.Query(Query{}).Targets {
		v[sum.Target] = sum.Verdict
	}
	if v["ok:1"] != VerdictOK || v["bad:1"] != VerdictFailing {
		t.Errorf("verdicts without history: %v", v)
	}
	srv := server(t, s)
	code, _, body := get(t, srv.URL+"/")
	if code != 200 || !strings.Contains(body, "History is off") || !strings.Contains(body, "bad:1") {
		t.Errorf("page without history: %d", code)
	}
	if h, _ := s.History("j", "bad:1"); len(h.Failures) != DefaultFailures-3 || len(h.Attempts) != 0 {
		t.Errorf("without history: %d attempts, %d failures kept", len(h.Attempts), len(h.Failures))
	}
}
