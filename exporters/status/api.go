package status

import (
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Register adds the status page and the API to mux:
//
//	GET /                                           the status page
//	GET /target?job=J&target=T                      one target's page
//	GET /api/v1/targets                             verdicts (filters: job, reason, state, q, sort, offset, limit)
//	GET /api/v1/targets/{job}/{target}/attempts     one target's history (job and target path-escaped)
func (s *Status) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /target", s.serveTarget)
	mux.HandleFunc("GET /api/v1/targets", s.serveTargets)
	mux.HandleFunc("GET /api/v1/targets/{job}/{target}/attempts", s.serveAttempts)
}

// The API's wire shapes (docs/status.md; schemas in testdata/*.schema.json).
type (
	apiResponse struct {
		Status string `json:"status"` // success or error
		Data   any    `json:"data,omitempty"`
		Error  string `json:"error,omitempty"`
	}
	apiJob struct {
		Job          string         `json:"job"`
		Kind         string         `json:"kind"`
		Expect       string         `json:"expect"`
		Targets      int            `json:"targets"`
		ByVerdict    map[string]int `json:"verdicts"`
		Availability *float64       `json:"availability"`
	}
	apiTargets struct {
		Time     time.Time   `json:"time"`
		Attempts int         `json:"history_attempts"` // N
		Jobs     []apiJob    `json:"jobs"`
		Total    int         `json:"total"`
		Offset   int         `json:"offset"`
		Targets  []apiTarget `json:"targets"`
	}
	apiTarget struct {
		Job            string      `json:"job"`
		Kind           string      `json:"kind"`
		Target         string      `json:"target"`
		Expect         string      `json:"expect"`
		Verdict        Verdict     `json:"verdict"`
		Attempts       int         `json:"attempts"`
		Failed         int         `json:"failed"`
		Degraded       int         `json:"degraded"`
		ProberFaults   int         `json:"prober_faults"`
		Availability   *float64    `json:"availability"`
		Total          uint64      `json:"attempts_total"`
		FailingSince   *time.Time  `json:"failing_since"`
		StreakAttempts int         `json:"streak_attempts"`
		Last           *apiAttempt `json:"last"`
		StatusURL      string      `json:"status_url"`
		AttemptsURL    string      `json:"attempts_url"`
	}
	apiAttempt struct {
		Seq             uint64        `json:"seq"`
		Start           time.Time     `json:"start"`
		DurationSeconds float64       `json:"duration_seconds"`
		Reason          probe.Reason  `json:"reason"`
		Class           probe.Class   `json:"class"`
		Phase           probe.Phase   `json:"phase"`
		Met             bool          `json:"met_expectation"`
		Retransmits     int           `json:"retransmits"`
		Timings         probe.Timings `json:"timings"`
		Evidence        []string      `json:"evidence"`
		EvidenceEvicted bool          `json:"evidence_evicted,omitempty"`
		Local           string        `json:"local,omitempty"`
		Remote          string        `json:"remote,omitempty"`
	}
	apiHistory struct {
		apiTarget
		History  []apiAttempt `json:"history"`  // oldest first
		Failures []apiAttempt `json:"failures"` // oldest first
	}
)

func expect(fail bool) string {
	if fail {
		return "fail"
	}
	return "success"
}

func ratio(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

func toAPIAttempt(a Attempt) apiAttempt {
	ev := a.Evidence
	if ev == nil {
		ev = []string{}
	}
	return apiAttempt{Seq: a.Seq, Start: a.Start.UTC(), DurationSeconds: a.Duration.Seconds(), Reason: a.Reason, Class: a.Class,
		Phase: a.Phase, Met: a.Met, Retransmits: a.Retransmits, Timings: probe.Timings{Handshake: a.Handshake},
		Evidence: ev, EvidenceEvicted: a.EvidenceEvicted}
}

func toAPITarget(s Summary) apiTarget {
	t := apiTarget{Job: s.Job, Kind: s.Kind, Target: s.Target, Expect: expect(s.ExpectFail), Verdict: s.Verdict,
		Attempts: s.Attempts, Failed: s.Failed, Degraded: s.Degraded, ProberFaults: s.ProberFaults,
		Availability: ratio(s.Availability), Total: s.Total, StreakAttempts: s.StreakAttempts,
		StatusURL: targetURL(s.Job, s.Target), AttemptsURL: AttemptsURL(s.Job, s.Target)}
	if !s.FailingSince.IsZero() {
		fs := s.FailingSince.UTC()
		t.FailingSince = &fs
	}
	if s.HasLast {
		a := toAPIAttempt(s.Last)
		t.Last = &a
	}
	return t
}

func writeJSON(w http.ResponseWriter, code int, v apiResponse) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Status) serveTargets(w http.ResponseWriter, r *http.Request) {
	q, _, err := pageQuery(r.URL.Query(), MaxPageSize)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", Error: err.Error()})
		return
	}
	snap := s.Query(q)
	out := apiTargets{Time: snap.At.UTC(), Attempts: s.o.Attempts, Total: snap.Total, Offset: q.Offset,
		Jobs: make([]apiJob, 0, len(snap.Jobs)), Targets: make([]apiTarget, 0, len(snap.Targets))}
	for _, j := range snap.Jobs {
		by := map[string]int{}
		for _, v := range Verdicts {
			by[string(v)] = j.ByVerdict[v]
		}
		out.Jobs = append(out.Jobs, apiJob{Job: j.Name, Kind: j.Kind, Expect: expect(j.ExpectFail), Targets: j.Targets,
			ByVerdict: by, Availability: ratio(j.Availability)})
	}
	for _, t := range snap.Targets {
		out.Targets = append(out.Targets, toAPITarget(t))
	}
	writeJSON(w, http.StatusOK, apiResponse{Status: "success", Data: out})
}

func (s *Status) serveAttempts(w http.ResponseWriter, r *http.Request) {
	job, name := r.PathValue("job"), r.PathValue("target")
	h, ok := s.History(job, name)
	if !ok {
		writeJSON(w, http.StatusNotFound, apiResponse{Status: "error", Error: "no target " + jsonQuote(name) + " in job " + jsonQuote(job)})
		return
	}
	out := apiHistory{apiTarget: toAPITarget(h.Summary), History: make([]apiAttempt, 0, len(h.Attempts)),
		Failures: make([]apiAttempt, 0, len(h.Failures))}
	for _, a := range h.Attempts {
		out.History = append(out.History, toAPIAttempt(a))
	}
	for _, f := range h.Failures {
		a := apiAttempt{Seq: f.Seq, Start: f.Start.UTC(), DurationSeconds: f.Duration.Seconds(), Reason: f.Reason, Class: f.Class,
			Phase: f.Phase, Met: false, Retransmits: f.Retransmits, Timings: f.Timings, Evidence: f.Evidence}
		if a.Evidence == nil {
			a.Evidence = []string{}
		}
		if f.Local.IsValid() {
			a.Local = f.Local.String()
		}
		if f.Remote.IsValid() {
			a.Remote = f.Remote.String()
		}
		out.Failures = append(out.Failures, a)
	}
	writeJSON(w, http.StatusOK, apiResponse{Status: "success", Data: out})
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
