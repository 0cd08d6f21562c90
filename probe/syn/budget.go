package syn

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRate is the default process-wide budget for raw sends, in packets
// per second, and DefaultBurst how many may go out back to back.
const (
	DefaultRate  = 1000
	DefaultBurst = 100
)

// ErrBudget marks a SYN that was not sent because the process-wide packet
// budget had no packet for it in time. It is the prober's fault, never the
// target's: the attempt is skipped (probe.ReasonProberBudget).
var ErrBudget = errors.New("packet budget exhausted")

// Budget is the process-wide packet budget: a token bucket (at most Rate
// packets per second on average, at most Burst at once) with a fair queue in
// front of it.
//
// When demand exceeds the rate, senders queue and each new token goes to the
// most deserving waiter: first a SYN of an attempt already under way (a
// retransmit or a PAWS check: its first SYN is spent, abandoning it would
// waste that), then the first SYN of the prober that was served least
// recently, so every target gets its turn (round robin) whatever its phase in
// the interval. A waiter that gives up leaves the queue without a token, and a
// token granted to a waiter that gave up at the same instant is put back: the
// bucket never goes into debt, so under any overload exactly Rate packets per
// second go out and waits stay bounded.
type Budget struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64 // never negative
	last   time.Time
	now    func() time.Time
	queue  ticketQueue
	arrive uint64      // arrival counter, the FIFO tie-break
	timer  *time.Timer // grants the queue's head when its token is due
}

// ticket is one sender's place in the queue. A prober owns one and reuses it
// for every SYN (its sends never overlap); last survives between attempts and
// is what makes the queue round robin.
type ticket struct {
	urgent  bool   // a SYN of an attempt under way
	last    uint64 // grantSeq of this prober's last first-SYN grant; 0: never
	seq     uint64 // arrival order
	idx     int    // index in the queue; -1 when not queued
	granted bool   // a token was handed over and not yet used or returned
	ch      chan struct{}
}

func newTicket() *ticket { return &ticket{idx: -1, ch: make(chan struct{}, 1)} }

// grantSeq numbers first-SYN grants process-wide (across SetRate), so a
// prober's place in the round robin survives a rate change.
var grantSeq atomic.Uint64

// NewBudget returns a full bucket of rate packets per second and the given
// burst (at least 1).
func NewBudget(rate, burst int) (*Budget, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("syn: rate %d packets/s must be positive", rate)
	}
	burst = max(burst, 1)
	return &Budget{rate: float64(rate), burst: float64(burst), tokens: float64(burst), now: time.Now}, nil
}

// Rate returns the configured packets per second.
func (b *Budget) Rate() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.rate)
}

// Waiting returns how many senders are queued for a packet.
func (b *Budget) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// set changes the rate and burst in place: the queue and the tokens in hand
// (up to the new burst) carry over.
func (b *Budget) set(rate, burst int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.rate, b.burst = float64(rate), float64(max(burst, 1))
	b.tokens = min(b.tokens, b.burst)
	b.grant()
}

// refill adds the tokens earned since the last refill, up to the burst.
// Called with b.mu held.
func (b *Budget) refill() {
	now := b.now()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*b.rate, b.burst)
	}
	b.last = now
}

// enqueue files t for one packet and reports whether it got one at once.
// Otherwise t.ch receives when a token is granted; the caller must then
// call take or cancel.
func (b *Budget) enqueue(t *ticket) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	select { // a grant left over from a wait that raced its cancel
	case <-t.ch:
	default:
	}
	t.granted = false
	b.arrive++
	t.seq = b.arrive
	heap.Push(&b.queue, t)
	b.refill()
	b.grant()
	if t.granted {
		select {
		case <-t.ch:
		default:
		}
		t.granted = false
		return true
	}
	return false
}

// take consumes the token granted to t (after t.ch received).
func (b *Budget) take(t *ticket) {
	b.mu.Lock()
	t.granted = false
	b.mu.Unlock()
}

// cancel withdraws t: out of the queue if still waiting; a token granted to
// it meanwhile goes back to the bucket (and on to the next waiter).
func (b *Budget) cancel(t *ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.idx >= 0 {
		heap.Remove(&b.queue, t.idx)
	}
	if t.granted {
		t.granted = false
		select {
		case <-t.ch:
		default:
		}
		b.refill()
		b.tokens = min(b.tokens+1, b.burst)
		b.grant()
	}
}

// grant hands whole tokens to the queue in priority order and, when waiters
// remain, arms the timer for the next token. Called with b.mu held, after
// refill.
func (b *Budget) grant() {
	for len(b.queue) > 0 && b.tokens >= 1 {
		t := heap.Pop(&b.queue).(*ticket)
		b.tokens--
		if !t.urgent {
			t.last = grantSeq.Add(1)
		}
		t.granted = true
		select {
		case t.ch <- struct{}{}:
		default:
		}
	}
	if len(b.queue) == 0 {
		if b.timer != nil {
			b.timer.Stop()
		}
		return
	}
	d := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	if d <= 0 {
		d = time.Microsecond
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.tick)
	} else {
		b.timer.Reset(d)
	}
}

func (b *Budget) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.grant()
}

// ticketQueue is a heap: urgent tickets first, in arrival order; then the
// least recently served prober first, ties in arrival order.
type ticketQueue []*ticket

func (q ticketQueue) Len() int { return len(q) }
func (q ticketQueue) Less(i, j int) bool {
	a, b := q[i], q[j]
	if a.urgent != b.urgent {
		return a.urgent
	}
	if !a.urgent && a.last != b.last {
		return a.last < b.last
	}
	return a.seq < b.seq
}
func (q ticketQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *ticketQueue) Push(x any) {
	t := x.(*ticket)
	t.idx = len(*q)
	*q = append(*q, t)
}
func (q *ticketQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.idx = -1
	*q = old[:len(old)-1]
	return t
}

var budget = mustBudget(DefaultRate, DefaultBurst)

func mustBudget(rate, burst int) *Budget {
	b, err := NewBudget(rate, burst)
	if err != nil {
		panic(err)
	}
	return b
}

// SetRate sets the process-wide budget for raw sends: every SYN of every
// prober, retransmits and PAWS checks included, waits for a packet from it.
// It exists so a misconfigured prober (thousands of targets, a short
// interval) slows down instead of flooding its targets. It may be called
// again (a reload): senders already waiting keep their place.
func SetRate(rate, burst int) error {
	if rate <= 0 {
		return fmt.Errorf("syn: rate %d packets/s must be positive", rate)
	}
	budget.set(rate, burst)
	return nil
}

// CurrentRate returns the packets per second of the process-wide budget.
func CurrentRate() int { return budget.Rate() }

func currentBudget() *Budget { return budget }
