package scheduler

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/connprobe/connprobe/probe"
)

// logSink records the calls it gets, prefixed with its name.
type logSink struct {
	name  string
	calls *[]string
}

func (s logSink) Target(job *Job, t probe.Target) TargetSink {
	*s.calls = append(*s.calls, s.name+" target "+job.Name+"/"+t.Name)
	return s
}
func (s logSink) Forget(job *Job, t probe.Target) {
	*s.calls = append(*s.calls, s.name+" forget "+job.Name+"/"+t.Name)
}
func (s logSink) Targets(job *Job, n int) {
	*s.calls = append(*s.calls, s.name+" targets "+job.Name)
}
func (s logSink) Scheduled(time.Duration) { *s.calls = append(*s.calls, s.name+" scheduled") }
func (s logSink) Overrun(int)             { *s.calls = append(*s.calls, s.name+" overrun") }
func (s logSink) Result(r *probe.Result) {
	*s.calls = append(*s.calls, s.name+" result "+string(r.Reason))
}

func TestTeeFeedsEverySinkInOrder(t *testing.T) {
	var calls []string
	sink := Tee(logSink{"a", &calls}, logSink{"b", &calls})
	job := &Job{Name: "j"}
	tg := probe.Target{Name: "x:1"}
	ts := sink.Target(job, tg)
	ts.Scheduled(0)
	ts.Overrun(1)
	ts.Result(&probe.Result{Reason: probe.ReasonRefused})
	sink.Targets(job, 1)
	sink.Forget(job, tg)
	want := []string{
		"a target j/x:1", "b target j/x:1", "a scheduled", "b scheduled", "a overrun", "b overrun",
		"a result refused", "b result refused", "a targets j", "b targets j", "a forget j/x:1", "b forget j/x:1",
	}
	if d := cmp.Diff(want, calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if one := Tee(logSink{"a", &calls}); one != (logSink{"a", &calls}) {
		t.Error("Tee of one sink should be that sink")
	}
}

type special struct{ logSink }

func (special) Special() {}

func (s special) Target(job *Job, t probe.Target) TargetSink {
	s.logSink.Target(job, t)
	return s
}

func TestSinkAsLooksThroughTee(t *testing.T) {
	var calls []string
	sink := Tee(logSink{"a", &calls}, special{logSink{"b", &calls}})
	ts := sink.Target(&Job{Name: "j"}, probe.Target{Name: "x:1"})
	sp, ok := SinkAs[interface{ Special() }](ts)
	if !ok || sp.(special).name != "b" {
		t.Fatalf("SinkAs through a Tee = %v, %v; want the b recorder", sp, ok)
	}
	if _, ok := SinkAs[interface{ Special() }](logSink{"a", &calls}); ok {
		t.Error("SinkAs found an interface a sink lacks")
	}
}
