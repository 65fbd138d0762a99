package wasm

import (
	"context"
	"sync/atomic"

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

// withCappedMemory makes the instances instantiated under ctx use guest
// memories of at most limit bytes, whatever their module declares: past
// it, memory.grow fails, and the largest size refused is stored in
// refused. The memory itself is the platform's, as by withGuestMemory.
func withCappedMemory(ctx context.Context, limit uint64, refused *atomic.Uint64) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(func(capacity, max uint64) experimental.LinearMemory {
		if max == 0 || max > limit {
			max = limit
		}
		capacity = min(capacity, max)
		var m experimental.LinearMemory
		if guestMemory != nil {
			m = guestMemory.Allocate(capacity, max)
		} else {
			m = newHeapMemory(capacity, max)
		}
		return &cappedMemory{LinearMemory: m, limit: limit, refused: refused}
	}))
}

// cappedMemory is a guest memory under a module policy's cap: it records
// the growths the cap refuses.
type cappedMemory struct {
	experimental.LinearMemory
	limit   uint64
	refused *atomic.Uint64
}

// Reallocate returns the memory resized to size bytes, or nil past the
// cap, recording size.
func (m *cappedMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		for {
			old := m.refused.Load()
			if old >= size || m.refused.CompareAndSwap(old, size) {
				return nil
			}
		}
	}
	return m.LinearMemory.Reallocate(size)
}
