package deploy

import (
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	promexp "github.com/connprobe/connprobe/exporters/prometheus"
	"github.com/connprobe/connprobe/internal/responder"
	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

// describer is a Registerer that records what collectors describe: every
// metric a package would register, with its label names, series or not.
type describer map[string][]string

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

func (d describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := descRE.FindStringSubmatch(desc.String()); m != nil {
			d[m[1]] = strings.FieldsFunc(m[2], func(r rune) bool { return r == ',' })
		}
	}
	return nil
}

func (d describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d describer) Unregister(prometheus.Collector) bool { return false }

// exported returns every series name connprobe exports (histograms with
// their _bucket, _sum and _count) and the label names each carries.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	// The agent: drive the exporter through the scheduler's Sink so every
	// family has a series, then gather its registry.
	e := promexp.New(promexp.Options{Version: "test", NoRuntimeMetrics: true})
	job := &scheduler.Job{Name: "web", Kind: "idle"}
	e.Targets(job, 1)
	ts := e.Target(job, probe.Target{Name: "service/shop/web:80"})
	ts.Scheduled(time.Millisecond)
	ts.Overrun(1)
	ts.Result(&probe.Result{Target: "service/shop/web:80", Kind: "idle", Reason: probe.ReasonOK, Success: true,
		Duration: time.Second, Retransmits: 1, Local: netip.MustParseAddrPort("10.244.1.2:40000"),
		Timings: probe.Timings{Handshake: time.Millisecond, RTT: time.Millisecond}})
	e.ConfigLoaded(true, time.Now())
	mfs, err := e.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		var names []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			names = append(names, lp.GetName())
		}
		out[mf.GetName()] = names
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			out[mf.GetName()+"_bucket"] = append(slices.Clone(names), "le")
			out[mf.GetName()+"_sum"] = names
			out[mf.GetName()+"_count"] = names
		}
	}
	// The responder registers on the registry it is given.
	d := describer{}
	if _, err := responder.New(responder.Config{}, d, nil); err != nil {
		t.Fatal(err)
	}
	for name, ls := range d {
		out[name] = ls
	}
	return out
}

// selectorRE finds a metric name and its optional {matchers}.
var (
	selectorRE = regexp.MustCompile(`\b(connprobe_[a-zA-Z0-9_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	byRE       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/connprobe.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/connprobe.json: %v", err)
	}
	metrics := exported(t)
	type query struct{ where, expr string }
	var queries []query
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries = append(queries, query{p.Title, tg.Expr})
		}
	}
	for _, v := range dash.Templating.List {
		queries = append(queries, query{"variable " + v.Name, v.Definition})
	}
	seen := map[string]bool{}
	for _, q := range queries {
		where, expr := q.where, q.expr
		used := map[string]bool{} // labels the query relies on
		for _, m := range byRE.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(m[1], ",") {
				used[strings.TrimSpace(l)] = true
			}
		}
		for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
			name := m[1]
			labels, ok := metrics[name]
			if !ok {
				t.Errorf("panel %q queries %s, which connprobe does not export", where, name)
				continue
			}
			seen[name] = true
			for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if !slices.Contains(labels, mm[1]) {
					t.Errorf("panel %q: %s has no label %q (it has %v)", where, name, mm[1], labels)
				}
			}
			for l := range used {
				if l != "" && !slices.Contains(labels, l) && !strings.HasPrefix(name, "connprobe_responder_") {
					t.Errorf("panel %q aggregates %s by %q, a label it does not have (%v)", where, name, l, labels)
				}
			}
		}
	}
	// The four views the dashboard exists for.
	for _, want := range []string{"connprobe_probe_failures_total", "connprobe_probe_results_total", "connprobe_probe_handshake_seconds"} {
		if !seen[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
	var heatmap, idle bool
	for _, p := range dash.Panels {
		heatmap = heatmap || p.Type == "heatmap" && strings.Contains(p.Title, "Handshake")
		for _, tg := range p.Targets {
			idle = idle || strings.Contains(tg.Expr, `kind="idle"`)
		}
	}
	if !heatmap || !idle {
		t.Errorf("want a handshake latency heatmap (%v) and an idle-timeout panel (%v)", heatmap, idle)
	}
}
