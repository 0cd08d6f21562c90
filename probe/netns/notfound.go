package netns

import "github.com/connprobe/connprobe/probe"

// ErrNotFound is returned (wrapped) by Resolve for a namespace that does
// not exist: a name never created, a path with nothing at it, a process
// that is not running. It is not "gone" (that one existed and died), but a
// probe that meets it still counts as netns_gone: errors.Is(err,
// probe.ErrNetNSGone) holds for it too.
var ErrNotFound error = notFound{}

type notFound struct{}

func (notFound) Error() string { return "network namespace not found" }

func (notFound) Is(target error) bool { return target == probe.ErrNetNSGone }
