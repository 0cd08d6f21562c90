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

// TargetSinks returns the recorders a Tee's recorder hands results to.
func (t teeTarget) TargetSinks() []TargetSink { return t }

// SinkAs finds the recorder in ts that implements T: ts itself, or one of
// the recorders of a Tee. Code that needs more than TargetSink of one sink
// (the idle-timeout search records into the Prometheus exporter) looks it up
// this way, so that a Tee does not hide it.
func SinkAs[T any](ts TargetSink) (T, bool) {
	if v, ok := ts.(T); ok {
		return v, true
	}
	if m, ok := ts.(interface{ TargetSinks() []TargetSink }); ok {
		for _, s := range m.TargetSinks() {
			if v, ok := SinkAs[T](s); ok {
				return v, true
			}
		}
	}
	var zero T
	return zero, false
}
