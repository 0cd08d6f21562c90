package configs

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A trace must fit in the interval beside the attempt's timeout; a disabled
// block is still checked for bad values.
func TestTraceValidate(t *testing.T) {
	tests := []struct {
		name string
		job  Job
		want []string
	}{
		{"fits", Job{Interval: Duration{D: 30 * time.Second}, Timeout: Duration{D: 5 * time.Second}, Trace: &TraceOptions{Enabled: true}}, nil},
		{"too long for the interval", Job{Interval: Duration{D: 10 * time.Second}, Timeout: Duration{D: 5 * time.Second}, Trace: &TraceOptions{Enabled: true}},
			[]string{"trace: a trace takes up to 17s (max_hops × queries × hop_timeout = 16 × 2 × 500ms, plus 2 × hop_timeout); with timeout 5s that is not shorter than interval 10s"}},
		{"bad values, disabled", Job{Interval: Duration{D: 10 * time.Second}, Trace: &TraceOptions{MaxHops: 99, Queries: -1, MinInterval: Duration{D: -time.Second}}},
			[]string{"trace: max hops 99: want 1-64", "trace: queries -1 per hop: want 1-10", "trace: min_interval -1s must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			tt.job.Trace.validate(&tt.job, func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) })
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("got %q, want %q", got[i], tt.want[i])
				}
			}
		})
	}
}
