package targets

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// WarnEvery is how often a source logs the same warning (same message,
// same attributes) at most: a name that fails to resolve on every refresh
// is said once, then again with the count of repeats held back.
const WarnEvery = 5 * time.Minute

// limitedLog logs warnings, each distinct one at most once per WarnEvery.
// One lives in each source's Run, so the key is (source, message, attrs).
type limitedLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	seen map[string]*seenWarning
}

type seenWarning struct {
	last    time.Time
	dropped int
}

func newLimitedLog(l *slog.Logger) *limitedLog {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &limitedLog{log: l, seen: map[string]*seenWarning{}}
}

// Warn logs msg with args unless the same was logged less than WarnEvery
// ago; the next one that is logged says how many were held back.
func (l *limitedLog) Warn(msg string, args ...any) {
	var key strings.Builder
	key.WriteString(msg)
	for _, a := range args {
		fmt.Fprintf(&key, "\x00%v", a)
	}
	now := time.Now()
	l.mu.Lock()
	if len(l.seen) > 1000 { // forget stale keys (files, errors that changed)
		for k, s := range l.seen {
			if now.Sub(s.last) >= WarnEvery {
				delete(l.seen, k)
			}
		}
	}
	s := l.seen[key.String()]
	if s != nil && now.Sub(s.last) < WarnEvery {
		s.dropped++
		l.mu.Unlock()
		return
	}
	dropped := 0
	if s != nil {
		dropped = s.dropped
	}
	l.seen[key.String()] = &seenWarning{last: now}
	l.mu.Unlock()
	if dropped > 0 {
		args = append(args, "repeats_not_logged", dropped)
	}
	l.log.Warn(msg, args...)
}

// Info logs at info level, unlimited (state changes, not repeats).
func (l *limitedLog) Info(msg string, args ...any) { l.log.Info(msg, args...) }
