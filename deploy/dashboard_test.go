package deploy

import (
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
	job := &scheduler.Job{Name: "web", Kind: "idle", Objective: 0.99, Latency: 100 * time.Millisecond}
	e.Targets(job, 1)
	ts := e.Target(job, probe.Target{Name: "service/shop/web:80"})
	ts.Scheduled(time.Millisecond)
	ts.Overrun(1)
	ts.Result(&probe.Result{Target: "service/shop/web:80", Kind: "idle", Reason: probe.ReasonOK,
		Duration: time.Second, Retransmits: 1, Local: netip.MustParseAddrPort("10.244.1.2:40000"),
		Timings: probe.Timings{Handshake: time.Millisecond, RTT: time.Millisecond}})
	ts.(interface{ IdleTimeoutSearches() }).IdleTimeoutSearches()
	ts.(interface {
		IdleTimeout(survived, lost time.Duration, failed bool)
	}).IdleTimeout(time.Minute, 2*time.Minute, false)
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
		names = append(names, ScrapeLabels...)
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
	// The kernel evidence (global.kernel) is read on scrape.
	d.Register(&promexp.KernelCollector{})
	for name, ls := range d {
		out[name] = append(ls, ScrapeLabels...)
	}
	return out
}

func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/connprobe.json")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := Dashboard(b)
	if err != nil {
		t.Fatal(err)
	}
	metrics := exported(t)
	rules, err := os.ReadFile("prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := Recorded(rules)
	if err != nil {
		t.Fatal(err)
	}
	for name, ls := range recorded {
		metrics[name] = ls
	}
	seen := map[string]bool{}
	for _, q := range queries {
		for _, p := range Check(q, metrics) {
			t.Error(p)
		}
		for _, m := range Metrics(q.Expr) {
			seen[m] = true
		}
	}
	// The views the dashboard exists for.
	for _, want := range []string{
		"connprobe_probe_failures_total", "connprobe_probe_results_total", "connprobe_probe_handshake_seconds",
		"connprobe_probe_slow_total", "connprobe_job_slo_latency_seconds", // latency SLI
		"connprobe_idle_timeout_boundary_seconds", // the idle-timeout panel
		"connprobe_netns_tcp_events_total",        // kernel evidence
		"connprobe_vantage:probe_error:burning",   // localisation
		"connprobe_build_info",                    // the instance variable
	} {
		if !seen[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
	// The responder's resets of delayed replies are outcome="reset" of
	// delayed_replies_total, not resets_total (which counts the others).
	var resetLine bool
	for _, q := range queries {
		resetLine = resetLine || strings.Contains(q.Expr, `connprobe_responder_delayed_replies_total{outcome="reset"}`)
	}
	if !resetLine {
		t.Error(`the responder panel does not show connprobe_responder_delayed_replies_total{outcome="reset"}`)
	}
	// Every agent query can be narrowed to the selected agents.
	for _, q := range queries {
		for _, m := range Metrics(q.Expr) {
			if strings.HasPrefix(m, "connprobe_") && !strings.HasPrefix(m, "connprobe_responder_") &&
				!strings.HasPrefix(m, "connprobe_job_slo_") && !strings.HasPrefix(q.Where, "variable") &&
				!strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("%s: %s is not filtered by the instance variable", q.Where, m)
			}
		}
	}
}
