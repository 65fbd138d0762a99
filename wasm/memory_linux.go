package wasm

import (
	"math"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// guestMemory reserves each guest memory as one anonymous mapping of its
// maximum size (the page limit when the module declares none). The kernel
// backs a page only when the guest first touches it, growing never copies,
// and closing the instance unmaps it, returning the memory to the system at
// once instead of leaving it to the Go garbage collector.
//
// The mapping must not be unmapped while a guest runs: instances are closed
// only when no call is running on them (Plugin.release, Runtime.Close).
var guestMemory experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(mapMemory)

func mapMemory(capacity, max uint64) experimental.LinearMemory {
	if max == 0 || max > math.MaxInt {
		return newHeapMemory(capacity, max)
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return newHeapMemory(capacity, max)
	}
	return &mappedMemory{buf: b[:0]}
}

// mappedMemory is a guest memory in a mapping of its maximum size.
type mappedMemory struct{ buf []byte }

// Reallocate returns the mapping's first size bytes, or nil past its end.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		return nil
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free unmaps the memory.
func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf[:cap(m.buf)])
		m.buf = nil
	}
}
