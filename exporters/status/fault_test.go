package status

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/connprobe/connprobe/probe"
	"github.com/connprobe/connprobe/scheduler"
)

// TestRingFaultedIn: a target's history ring is in memory (its pages
// faulted in) once the target is added, not at its first attempt. A ring
// of a million attempts is 12 MiB: fresh pages from the kernel, mapped only
// when first written.
func TestRingFaultedIn(t *testing.T) {
	s := New(Options{Attempts: 1 << 20})
	tg := s.Target(&scheduler.Job{Name: "web", Kind: "connect"}, probe.Target{Name: "a:1"}).(*target)
	ring := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(tg.ring))), len(tg.ring)*int(unsafe.Sizeof(entry{})))
	// mincore(2) wants a page-aligned start: check the ring's whole pages.
	pg := os.Getpagesize()
	off := (pg - int(uintptr(unsafe.Pointer(unsafe.SliceData(ring)))%uintptr(pg))) % pg
	pages := (len(ring) - off) / pg
	vec := make([]byte, pages)
	// x/sys/unix has no wrapper for mincore(2).
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&ring[off])), uintptr(pages*pg), uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); errno != 0 {
		t.Fatal(os.NewSyscallError("mincore", errno))
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	if resident != pages {
		t.Errorf("%d of the ring's %d pages in memory after the target was added, want all", resident, pages)
	}
}
