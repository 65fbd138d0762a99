// Package pool is DataFlare's tiered buffer pool: five tiers of fixed-size
// byte buffers — Tiny 256 B, Small 4 KiB, Medium 64 KiB, Large 1 MiB, Huge
// 4 MiB — handed out and taken back without allocating, with per-tier
// limits, idle cleanup, warm-up, pinning, statistics and a memory budget.
// A worker encodes every batch's results into its buffers and, sharing the
// pool with its WebAssembly runtime, copies guest output into them; it
// reports the pool's Stats and Pressure in every heartbeat. (Batches are
// decoded in place from the message the NATS client received: there is no
// buffer to pool on that side.)
//
//	p, err := pool.New(pool.DefaultConfig()) // err wraps pool.ErrInvalidConfig
//	if err != nil { ... }
//	defer p.Close()            // stops the cleanup goroutine
//	p.Warmup()                 // optional: pre-allocate Config.Warm buffers per tier
//
//	buf := p.Get(n)            // len(buf.Bytes()) == n, from the smallest tier ≥ n
//	out, err := batch.AppendResults(buf.Bytes()[:0], rs)
//	...                        // use out; it stays in buf while len(out) <= buf.Cap()
//	err = p.Put(buf)           // ErrDoublePut, ErrForeign or ErrPinned on misuse
//
//	s := p.Stats()             // hits, misses, hit rate, in-use/idle bytes, efficiency, errors
//	pressure := p.Pressure()   // bytes in use / Config.Budget, for the heartbeat and the batch sizer
//
// A Get larger than 4 MiB (MaxSize) is a plain allocation, counted as
// oversize. A nil *Pool is a valid "no pool": Get allocates exactly the size
// asked for and Put lets the buffer go, so code can take an optional pool.
//
// # Design
//
// Each tier has two layers. In front, a sync.Pool holds idle buffers per
// core, so a Get and a Put on the same core touch no shared cache line. Behind
// it, a registry (a slice under a mutex) owns every buffer of the tier, idle
// or held: it bounds their number (MaxBuffers), lets the cleanup goroutine
// find and release the idle ones, and lets Stats count them. The sync.Pool
// alone could do none of that — it cannot be enumerated, bounded or timed,
// and the garbage collector empties it on its own schedule — while a plain
// mutex-guarded free list would make every Get and Put on two cores fight
// over one cache line.
//
// When a garbage collection empties the per-core cache, its buffers are not
// lost: the registry still holds them, and the next Get that misses sweeps
// the registry's idle buffers into a depot (a free list under the tier's
// mutex) and takes one from there. Cleanup passes sweep too.
//
// Every Buffer carries one atomic state word: its kind (idle, held,
// released, abandoned), a pin count and a use count. Every transition —
// Get, Put, Pin, Unpin, release, abandonment — is a compare-and-swap on that
// word, so a buffer that is reachable from the per-core cache and the depot
// at once, or that a cleanup pass is releasing, still reaches exactly one
// holder. The use count doubles as the tier's hit counter and lets cleanup
// passes measure idle and hold times without a clock on the Get/Put path: a
// pass notes each buffer's word and the time, and a word found unchanged
// later means the buffer has not moved since. The Buffer headers are recycled
// with their memory and padded to two cache lines, so steady-state Get/Put
// allocates nothing and two cores never share a header's line.
//
// # The seed's features in Go
//
// The original pool was written in Rust, where memory is freed when its
// owner drops it and "GC" in the seed's claims means the allocator. Each
// feature is carried over; where its meaning changes in Go, this is what it
// becomes and how it is measured (BENCHMARKS.md has the numbers):
//
//   - Five tiers and per-tier maximum counts: as in the seed. MaxBuffers caps
//     what a tier owns, idle or held, so its idle buffers never exceed it;
//     past it Get hands out a plain allocation (Stats: Unpooled).
//   - Cleanup interval and maximum idle time: a cleanup goroutine releases
//     buffers idle for MaxIdle, i.e. drops them so the garbage collector can
//     reclaim them; it stops on Close. Releasing does not return memory to
//     the OS at once: the Go runtime does that later, as it does for any
//     garbage.
//   - Warm-up ("预热"): Warmup allocates Config.Warm buffers per tier and
//     writes one byte per page, so the first Gets pay neither the allocation
//     nor the page faults. BenchmarkFirstGet measures a first 1 MiB Get cold
//     and warm.
//   - Buffer locking against accidental cleanup ("缓冲区锁定机制防止意外清理"):
//     in Go, memory that anything still references is never freed, so a
//     cleanup cannot pull a buffer from under its holder. The Go hazard is
//     recycling: a buffer put back while something still aliases its bytes
//     (DataFlare decodes records zero-copy, so a record's Value aliases the
//     message buffer) is handed to the next Get and overwritten. Pin is the
//     Go form of locking: a pinned buffer is refused by Put (ErrPinned) until
//     Unpin, and it is exempt from the one cleanup that does touch held
//     buffers — after MaxHold a held, unpinned buffer is declared abandoned
//     (presumed leaked): the pool stops counting it against MaxBuffers, the
//     holder keeps a valid buffer, and a late Put just drops it.
//   - Hit rate, misses, in-use and idle bytes, errors (double Put, foreign
//     buffer, Put of a pinned buffer, and Pin/Unpin misuse): Stats, per tier
//     and in total, as JSON-ready values.
//   - Memory efficiency: bytes asked for / bytes handed out (Stats
//     Efficiency). This is also the Go meaning of the seed's "fragmentation
//     −85%": the Go runtime allocates in size classes and never moves objects,
//     so the fragmentation a pool adds or removes is the gap between what is
//     asked for and the tier size handed out.
//   - Memory pressure: bytes held (pooled, unpooled and oversize) over
//     Config.Budget; the pool itself never owns more than the budget.
//   - "Allocation efficiency +70%": BenchmarkPool against BenchmarkMake and
//     BenchmarkSyncPool (one plain sync.Pool per tier), same op, same run.
//   - "GC pressure −60%": in Go this is the garbage collector's work.
//     BenchmarkGC runs 1M records of 100 B through decode → plugin → encode
//     with and without the pool and reports GC cycles and bytes allocated
//     per record.
//
// # Limits
//
// A double Put is detected only until the buffer is handed out again: a
// Buffer is its own handle, so a stale Put after that looks like the new
// holder's (and takes the buffer from them). Stats is read while Gets and
// Puts run, so its fields can disagree by the operations in flight. Idle and
// hold times have the resolution of CleanupInterval.
package pool
