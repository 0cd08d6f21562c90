// Package deploy holds connprobe's Kubernetes manifests, its Prometheus
// rules (prometheus/rules.yml) and its Grafana dashboard
// (grafana/connprobe.json). Its code reads the dashboard's queries and the
// rules' recorded series, so that tests can check every query against the
// series an agent really exports, label names included.
package deploy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Query is one PromQL expression of the dashboard and where it is.
type Query struct {
	Where string // panel title, or "variable NAME"
	Expr  string
}

// Dashboard returns every query of a Grafana dashboard: each panel
// target's expr and each variable's definition.
func Dashboard(b []byte) ([]Query, error) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
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
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var qs []Query
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, Query{p.Title, tg.Expr})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			qs = append(qs, Query{"variable " + v.Name, v.Definition})
		}
	}
	return qs, nil
}

// ScrapeLabels are the labels Prometheus adds to every series it scrapes
// from an agent: instance, and node from deploy/servicemonitor.yaml's
// relabelling. (job is the probe job's own: honor_labels.)
var ScrapeLabels = []string{"instance", "node"}

var (
	selectorRE = regexp.MustCompile(`\b(connprobe[_:][a-zA-Z0-9_:]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	byRE       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	replaceRE  = regexp.MustCompile(`label_replace\([^"]*"([a-zA-Z_][a-zA-Z0-9_]*)"`)
)

// Metrics returns the connprobe series an expression selects, in order.
func Metrics(expr string) []string {
	var out []string
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		out = append(out, m[1])
	}
	return out
}

// Check reports each selector of q whose metric is not in metrics (name →
// label names), or that matches on or aggregates by a label the metric
// does not carry.
func Check(q Query, metrics map[string][]string) []string {
	var problems []string
	used := map[string]bool{}
	for _, m := range byRE.FindAllStringSubmatch(q.Expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				used[l] = true
			}
		}
	}
	for _, m := range selectorRE.FindAllStringSubmatch(q.Expr, -1) {
		name := m[1]
		labels, ok := metrics[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: queries %s, which connprobe does not export", q.Where, name))
			continue
		}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, mm[1]) {
				problems = append(problems, fmt.Sprintf("%s: %s has no label %q (it has %v)", q.Where, name, mm[1], labels))
			}
		}
		for l := range used {
			if !slices.Contains(labels, l) && l != "le" && !strings.HasPrefix(name, "connprobe_responder_") {
				problems = append(problems, fmt.Sprintf("%s: aggregates %s by %q, a label it does not have (%v)", q.Where, name, l, labels))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// Recorded returns the series a Prometheus rules file records, each with
// the labels it carries: those of the expression's first by (...) (plus
// the target label a label_replace sets), else those of the first recorded
// series it uses.
func Recorded(rules []byte) (map[string][]string, error) {
	var f struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rules, &f); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	out := map[string][]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record == "" {
				continue
			}
			var labels []string
			if m := byRE.FindStringSubmatch(r.Expr); m != nil {
				for _, l := range strings.Split(m[1], ",") {
					labels = append(labels, strings.TrimSpace(l))
				}
				for _, m := range replaceRE.FindAllStringSubmatch(r.Expr, -1) {
					if !slices.Contains(labels, m[1]) {
						labels = append(labels, m[1])
					}
				}
			} else {
				for _, name := range Metrics(r.Expr) {
					if ls, ok := out[name]; ok {
						labels = ls
						break
					}
				}
			}
			if labels == nil {
				return nil, fmt.Errorf("rules: record %s: cannot tell its labels", r.Record)
			}
			slices.Sort(labels)
			out[r.Record] = labels
		}
	}
	return out, nil
}
