// Package targets holds the sources of a job's targets: static lists, files
// in Prometheus file_sd format, and DNS names (A, AAAA, SRV) re-resolved on a
// period. A Source pushes the complete current set whenever it changes; the
// scheduler diffs consecutive sets, so a source never says "removed".
// Kubernetes and pod-netns sources implement the same interface.
package targets

import (
	"context"
	"slices"
	"sync"

	"github.com/connprobe/connprobe/probe"
)

// Source produces a job's targets.
type Source interface {
	// Run calls update with the complete current target set, first as soon
	// as it is known and again whenever it changes, until ctx is done. update
	// must not be called after Run returns. Run returns nil when ctx ends,
	// or an error when the source cannot work at all.
	Run(ctx context.Context, update func([]probe.Target)) error
}

// Static is a fixed list of targets.
type Static []probe.Target

// Run implements Source.
func (s Static) Run(ctx context.Context, update func([]probe.Target)) error {
	update(slices.Clone(s))
	<-ctx.Done()
	return nil
}

// Merge runs several sources and pushes the union of their latest sets;
// a target named twice is kept once (the first source's).
type Merge []Source

// Run implements Source.
func (m Merge) Run(ctx context.Context, update func([]probe.Target)) error {
	if len(m) == 1 {
		return m[0].Run(ctx, update)
	}
	var mu sync.Mutex
	sets := make([][]probe.Target, len(m))
	push := func(i int, ts []probe.Target) {
		mu.Lock()
		defer mu.Unlock()
		sets[i] = ts
		var all []probe.Target
		names := map[string]bool{}
		for _, set := range sets {
			for _, t := range set {
				if !names[t.Name] {
					names[t.Name] = true
					all = append(all, t)
				}
			}
		}
		update(all)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(m))
	var wg sync.WaitGroup
	for i, s := range m {
		wg.Go(func() {
			err := s.Run(ctx, func(ts []probe.Target) { push(i, ts) })
			if err != nil {
				errs <- err
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
