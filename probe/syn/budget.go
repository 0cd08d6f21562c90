package syn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultRate is the default process-wide budget for raw sends, in packets
// per second, and DefaultBurst how many may go out back to back.
const (
	DefaultRate  = 1000
	DefaultBurst = 100
)

// ErrBudget marks a SYN that could not be sent before the attempt's deadline
// because the process-wide packet budget had no room.
var ErrBudget = errors.New("packet budget exhausted")

// Budget is a token bucket: at most Rate packets per second on average, at
// most Burst at once. One Budget guards every raw send of the process.
type Budget struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

// NewBudget returns a full bucket of rate packets per second and the given
// burst (at least 1).
func NewBudget(rate, burst int) (*Budget, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("syn: rate %d packets/s must be positive", rate)
	}
	if burst < 1 {
		burst = 1
	}
	return &Budget{rate: float64(rate), burst: float64(burst), tokens: float64(burst), now: time.Now}, nil
}

// Rate returns the configured packets per second.
func (b *Budget) Rate() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.rate)
}

// reserve takes one token and returns how long the caller must wait before
// sending (0: send now). A reservation is never given back: a probe that
// gives up while waiting still counts, which errs on the safe side.
func (b *Budget) reserve() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// Wait blocks until one packet may be sent, or ctx is done.
func (b *Budget) Wait(ctx context.Context) error {
	d, _ := ctx.Deadline()
	return b.waitUntil(ctx, d)
}

// waitUntil blocks until one packet may be sent, ctx is done or the
// deadline (zero: none) passes. The common case, a token at hand, takes no
// timer.
func (b *Budget) waitUntil(ctx context.Context, deadline time.Time) error {
	d := b.reserve()
	if d <= 0 {
		return ctx.Err()
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		if left := time.Until(deadline); left < d {
			dt := time.NewTimer(left)
			defer dt.Stop()
			expired = dt.C
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("syn: %w (%d packets/s): %w", ErrBudget, b.Rate(), ctx.Err())
	case <-expired:
		return fmt.Errorf("syn: %w (%d packets/s): %w", ErrBudget, b.Rate(), context.DeadlineExceeded)
	case <-t.C:
		return nil
	}
}

var (
	budgetMu sync.Mutex
	budget   = mustBudget(DefaultRate, DefaultBurst)
)

func mustBudget(rate, burst int) *Budget {
	b, err := NewBudget(rate, burst)
	if err != nil {
		panic(err)
	}
	return b
}

// SetRate sets the process-wide budget for raw sends: every SYN of every
// prober, retransmits and PAWS checks included, waits for a token. It exists
// so a misconfigured prober (thousands of targets, a short interval) slows
// down instead of flooding its targets. Call it once at start-up.
func SetRate(rate, burst int) error {
	b, err := NewBudget(rate, burst)
	if err != nil {
		return err
	}
	budgetMu.Lock()
	budget = b
	budgetMu.Unlock()
	return nil
}

// CurrentRate returns the packets per second of the process-wide budget.
func CurrentRate() int { return currentBudget().Rate() }

func currentBudget() *Budget {
	budgetMu.Lock()
	defer budgetMu.Unlock()
	return budget
}
