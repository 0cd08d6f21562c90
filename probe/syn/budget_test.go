package syn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	now := time.Unix(0, 0)
	b, err := NewBudget(1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	b.now = func() time.Time { return now }
	// The burst goes out at once, then one packet per millisecond.
	for i := range 3 {
		if d := b.reserve(); d != 0 {
			t.Fatalf("packet %d of the burst waits %s", i, d)
		}
	}
	if d := b.reserve(); d != time.Millisecond {
		t.Errorf("4th packet waits %s, want 1ms", d)
	}
	if d := b.reserve(); d != 2*time.Millisecond {
		t.Errorf("5th packet waits %s, want 2ms", d)
	}
	now = now.Add(time.Second) // refills to the burst, not beyond
	for i := range 3 {
		if d := b.reserve(); d != 0 {
			t.Fatalf("after a pause, packet %d waits %s", i, d)
		}
	}
	if d := b.reserve(); d <= 0 {
		t.Error("the bucket refilled beyond its burst")
	}
	if _, err := NewBudget(0, 1); err == nil {
		t.Error("rate 0: want an error")
	}
}

func TestBudgetWaitDeadline(t *testing.T) {
	b, err := NewBudget(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	err = b.Wait(ctx)
	if !errors.Is(err, ErrBudget) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want ErrBudget and DeadlineExceeded", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{Timeout: -1, Schedule: []time.Duration{time.Second, time.Second, 0}, WScale: 15, PAWSRegress: 1 << 31}.Validate()
	for _, want := range []string{"timeout -1ns must not be negative", "retransmit[1] 1s must come after retransmit[0] 1s", "retransmit[2] 0s must be positive", "window scale 15", "paws_regress"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to mention %q", err, want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}
