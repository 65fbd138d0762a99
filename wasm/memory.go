package wasm

import (
	"context"

	"github.com/tetratelabs/wazero/experimental"
)

// withGuestMemory makes the instances instantiated under ctx use the
// platform's guest memory allocator, if it has one.
func withGuestMemory(ctx context.Context) context.Context {
	if guestMemory == nil {
		return ctx
	}
	return experimental.WithMemoryAllocator(ctx, guestMemory)
}

// heapMemory is a guest memory on the Go heap that grows by doubling up to
// max: the fallback where no mapping can be made.
type heapMemory struct {
	buf []byte
	max uint64
}

func newHeapMemory(capacity, max uint64) *heapMemory {
	return &heapMemory{buf: make([]byte, 0, min(capacity, max)), max: max}
}

// Reallocate returns the memory resized to size bytes, or nil past max.
func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	grown := make([]byte, size, min(max(2*uint64(cap(m.buf)), size), m.max))
	copy(grown, m.buf)
	m.buf = grown
	return m.buf
}

// Free drops the memory.
func (m *heapMemory) Free() { m.buf = nil }
