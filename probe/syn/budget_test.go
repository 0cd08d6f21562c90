package syn

import (
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// wait is what a prober does with the budget: queue for a packet, give up
// (without one) when until passes.
func wait(b *Budget, t *ticket, until time.Time) bool {
	if b.enqueue(t) {
		return true
	}
	tm := time.NewTimer(time.Until(until))
	defer tm.Stop()
	select {
	case <-t.ch:
		b.take(t)
		return true
	case <-tm.C:
		b.cancel(t)
		return false
	}
}

// TestBudgetOverload: 20 senders, each wanting a packet every 500 ms and
// waiting at most 250 ms for it, against 10 packets/s (4x overload). Every
// second exactly the budget goes out; every sender gets its share (the
// round robin, whatever its phase); and once the overload ends a sender gets
// a packet at once: no debt was built. The old bucket handed a reservation
// to every sender and never took it back: its waits grew without bound and
// after a few seconds nobody got a packet.
func TestBudgetOverload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, senders, seconds = 10, 20, 10
		b, err := NewBudget(rate, rate)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var mu sync.Mutex
		perSecond := make([]int, seconds)
		perSender := make([]int, senders)
		var wg sync.WaitGroup
		for i := range senders {
			wg.Go(func() {
				tk := newTicket()
				time.Sleep(time.Duration(i) * 25 * time.Millisecond) // fixed phases
				for time.Since(start) < seconds*time.Second {
					at := time.Now()
					if wait(b, tk, at.Add(250*time.Millisecond)) {
						mu.Lock()
						if s := int(time.Since(start) / time.Second); s < seconds {
							perSecond[s]++
						}
						perSender[i]++
						mu.Unlock()
					}
					time.Sleep(time.Until(at.Add(500 * time.Millisecond)))
				}
			})
		}
		wg.Wait()
		t.Logf("per second %v, per sender %v", perSecond, perSender)
		for s, n := range perSecond[1:] {
			if n < rate-1 || n > rate+1 {
				t.Errorf("second %d: %d packets, want %d±1", s+1, n, rate)
			}
		}
		// 10 s at 10/s over 20 senders: 5 each, plus the first burst.
		for i, n := range perSender {
			if n < 3 {
				t.Errorf("sender %d got %d packets in %ds: starved (want about %d)", i, n, seconds, rate*seconds/senders)
			}
		}
		if b.Waiting() != 0 {
			t.Errorf("%d waiters left", b.Waiting())
		}
		// The overload is over: a packet is at hand within one token's time.
		time.Sleep(time.Second / rate)
		if !b.enqueue(newTicket()) {
			t.Error("after the overload a sender must wait: the bucket is in debt")
		}
	})
}

// TestBudgetOrder: a retransmit (urgent) goes before any first SYN; first
// SYNs go to the sender served least recently, ties in arrival order; a
// sender that gives up takes no packet and a packet granted as it gave up
// goes back.
func TestBudgetOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := NewBudget(10, 1)
		if err != nil {
			t.Fatal(err)
		}
		a, c, r := newTicket(), newTicket(), newTicket()
		if !b.enqueue(a) { // a takes the one token: a is now the most recently served
			t.Fatal("a full bucket made the first sender wait")
		}
		if b.enqueue(c) { // c has never been served
			t.Fatal("an empty bucket granted at once")
		}
		if b.enqueue(a) {
			t.Fatal("an empty bucket granted at once")
		}
		r.urgent = true
		if b.enqueue(r) {
			t.Fatal("an empty bucket granted at once")
		}
		order := make(chan string, 3)
		var wg sync.WaitGroup
		for name, tk := range map[string]*ticket{"a": a, "c": c, "r": r} {
			wg.Go(func() {
				<-tk.ch
				b.take(tk)
				order <- name
			})
		}
		for _, want := range []string{"r", "c", "a"} {
			if got := <-order; got != want {
				t.Errorf("got %s, want %s (retransmit, then least recently served)", got, want)
			}
		}
		wg.Wait()

		// Give up: no packet taken, the queue empties, and a packet
		// granted just as the sender gave up is returned.
		time.Sleep(time.Second) // refill: 1 token (burst 1)
		x, y := newTicket(), newTicket()
		if !b.enqueue(x) {
			t.Fatal("a full bucket made the sender wait")
		}
		if b.enqueue(y) {
			t.Fatal("an empty bucket granted at once")
		}
		time.Sleep(100 * time.Millisecond) // the token comes and goes to y
		synctest.Wait()
		if !y.granted {
			t.Fatal("y was not granted the token")
		}
		b.cancel(y) // y gave up at that instant: the token goes back
		if !b.enqueue(newTicket()) {
			t.Error("a token granted to a sender that gave up was not returned")
		}
		if b.Waiting() != 0 {
			t.Errorf("%d waiters left", b.Waiting())
		}
	})
}

func TestBudgetRate(t *testing.T) {
	if _, err := NewBudget(0, 1); err == nil {
		t.Error("rate 0: want an error")
	}
	if err := SetRate(-1, 1); err == nil {
		t.Error("SetRate(-1): want an error")
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
