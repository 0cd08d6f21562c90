package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/connprobe/connprobe/scheduler/targets"
)

// The informers here are built on listWatch rather than client-go's
// informer factory, for two reasons a real API server showed:
//
//   - Blindness. While the API is unreachable a reflector retries its watch
//     in a loop that calls no error handler, so the factory's informers fail
//     silently. listWatch sees every list and watch request and reports its
//     outcome to the source's targets.SourceStatus (the WARN after a blind
//     spell, the INFO on recovery, connprobe_discovery_*).
//   - Shutdown. client-go's watch-list mode (the streaming initial list,
//     on by default) backs off between failed attempts with a sleep that
//     does not look at the stop channel: up to a minute in which stopping
//     an informer, and so `probe serve` or a reload, hangs. listWatch says
//     it does not support watch-list semantics, so the reflector uses a
//     plain list and watch, whose every wait honours its context.

// listWatch is a cache.ListerWatcher that reports the outcome of each list
// and watch request and keeps the reflector out of watch-list mode.
type listWatch struct {
	*cache.ListWatch
}

// IsWatchListSemanticsUnSupported makes the reflector list and watch
// (client-go util/watchlist.DoesClientNotSupportWatchListSemantics).
func (listWatch) IsWatchListSemanticsUnSupported() bool { return true }

// newListWatch wraps a typed client's List and Watch: tweak sets the
// selectors, report receives nil after a request that worked and the
// error of one that failed (requests cut short by ctx are not reported).
// resource names the resource in a forbidden error.
func newListWatch[L runtime.Object](
	resource string,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	tweak func(*metav1.ListOptions),
	report func(error),
) listWatch {
	wrap := func(ctx context.Context, err error) error {
		if ctx.Err() != nil {
			return err
		}
		if err != nil && apierrors.IsForbidden(err) {
			err = fmt.Errorf("kubernetes: %s forbidden: the service account needs list/watch on %s (deploy/rbac.yaml): %w", resource, resource, err)
		} else if err != nil {
			err = fmt.Errorf("kubernetes: %s: %w", resource, err)
		}
		report(err)
		return err
	}
	return listWatch{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			l, err := list(ctx, o)
			if err := wrap(ctx, err); err != nil {
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			w, err := watchFn(ctx, o)
			if err := wrap(ctx, err); err != nil {
				return nil, err
			}
			// A watch can be accepted and then end with an error event: after
			// an API server restart, typically 410 Gone (the resource version
			// is older than the new server's cache). The reflector then
			// relists, after its backoff; until that list the view is stale.
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				if e.Type == watch.Error {
					_ = wrap(ctx, fmt.Errorf("watch ended: %w", apierrors.FromObject(e.Object)))
				}
				return e, true
			}), nil
		},
	}}
}

// newInformer returns an informer with a namespace index (for listers).
func newInformer(lw listWatch, obj runtime.Object, resync time.Duration) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformerWithOptions(lw, obj, cache.SharedIndexInformerOptions{
		ResyncPeriod: resync,
		Indexers:     cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
	})
}

// tracker folds the informers of one source into its SourceStatus: the
// source has a view when every informer's last request worked and each has
// listed once.
type tracker struct {
	st      *targets.SourceStatus
	mu      sync.Mutex
	n       int
	synced  map[int]bool
	failing map[int]bool
}

func newTracker(st *targets.SourceStatus) *tracker {
	return &tracker{st: st, synced: map[int]bool{}, failing: map[int]bool{}}
}

// add returns the report function of one more informer.
func (t *tracker) add() func(error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.n
	t.n++
	return func(err error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if err != nil {
			t.failing[i] = true
			t.st.Error(err)
			return
		}
		delete(t.failing, i)
		t.synced[i] = true
		if len(t.failing) == 0 && len(t.synced) == t.n {
			t.st.OK()
		}
	}
}

// informerSet is the plumbing every watcher here shares (the target source
// and the vantage's pod source): its informers' requests report to one
// tracker, their events fill one change signal, and follow runs them,
// recomputes the watcher's set after each change and stops them all.
type informerSet struct {
	tr      *tracker
	changed <-chan struct{}
	handler cache.ResourceEventHandlerFuncs
	infs    []cache.SharedIndexInformer
	wg      sync.WaitGroup
}

func newInformerSet(st *targets.SourceStatus) *informerSet {
	s := &informerSet{tr: newTracker(st)}
	s.changed, s.handler = changeSignal()
	return s
}

// report returns the report function of one more informer's list-and-watch
// (newListWatch's last argument).
func (s *informerSet) report() func(error) { return s.tr.add() }

// add adds inf: its events signal a change, its watch errors are logged
// at debug level (Health says when the source is blind).
func (s *informerSet) add(inf cache.SharedIndexInformer, log *slog.Logger) error {
	if err := debugWatchErrors(inf, log); err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	if _, err := inf.AddEventHandler(s.handler); err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	s.infs = append(s.infs, inf)
	return nil
}

// follow runs the set's informers until ctx is done: once every cache has
// synced and again after each change, it computes the watcher's complete
// set and hands it to update when it differs from the last one handed on
// (update is never called concurrently). It returns nil when ctx is done,
// or compute's error, and only once every informer has stopped (bounded:
// no wait of a list-and-watch reflector ignores ctx).
func follow[T any](ctx context.Context, s *informerSet, compute func() ([]T, error), equal func(a, b T) bool, update func([]T)) error {
	ictx, cancel := context.WithCancel(ctx)
	for _, inf := range s.infs {
		s.wg.Go(func() { inf.RunWithContext(ictx) })
	}
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	synced := make([]cache.InformerSynced, len(s.infs))
	for i, inf := range s.infs {
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx is done
	}
	var last []T
	first := true
	for {
		set, err := compute()
		if err != nil {
			return err
		}
		if first || !slices.EqualFunc(set, last, equal) {
			update(set)
			last, first = set, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

// debugWatchErrors sets an informer's watch error handler: the failures
// reach the log through Health (a WARN after a blind spell); each one is
// logged at debug level only.
func debugWatchErrors(inf cache.SharedIndexInformer, log *slog.Logger) error {
	return inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		log.Debug("kubernetes: list or watch failed; retrying", "err", err)
	})
}
