package scheduler

import (
	"time"

	"github.com/connprobe/connprobe/probe"
)

// Tee returns a Sink that hands everything to each of sinks in order (the
// Prometheus exporter and the status history, in probe serve). Like every
// Sink it must not block, so neither may any of sinks.
func Tee(sinks ...Sink) Sink {
	if len(sinks) == 1 {
		return sinks[0]
	}
	return tee(sinks)
}

type tee []Sink

func (t tee) Target(job *Job, tg probe.Target) TargetSink {
	ts := make(teeTarget, len(t))
	for i, s := range t {
		ts[i] = s.Target(job, tg)
	}
	return ts
}

func (t tee) Forget(job *Job, tg probe.Target) {
	for _, s := range t {
		s.Forget(job, tg)
	}
}

func (t tee) Targets(job *Job, n int) {
	for _, s := range t {
		s.Targets(job, n)
	}
}

type teeTarget []TargetSink

func (t teeTarget) Scheduled(late time.Duration) {
	for _, s := range t {
		s.Scheduled(late)
	}
}

func (t teeTarget) Overrun(n int) {
	for _, s := range t {
		s.Overrun(n)
	}
}

func (t teeTarget) Result(r *probe.Result) {
	for _, s := range t {
		s.Result(r)
	}
}
