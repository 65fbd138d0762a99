package pool

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a tiered buffer pool: five tiers of fixed-size buffers (Tiny 256 B,
// Small 4 KiB, Medium 64 KiB, Large 1 MiB, Huge 4 MiB), each with a per-core
// cache in front (a sync.Pool) and a registry behind it that owns the tier's
// buffers, bounds their number, and lets a cleanup goroutine release the ones
// idle for longer than MaxIdle. See the package documentation for the design.
//
// A Pool is safe for concurrent use. A nil *Pool is a valid "no pool": Get
// allocates a fresh buffer of exactly the size asked for and Put lets it go.
type Pool struct {
	metrics bool
	closed  atomic.Bool
	hot     [NumTiers]sync.Pool // per-core caches of idle *Buffer; may hold stale references
	_       [64]byte            // keep the read-mostly fields above off the lines the slow path writes

	tiers [NumTiers]tierState
	spare sync.Pool // headers for unpooled and oversize buffers, recycled without their memory

	owned  atomic.Int64 // bytes of registered buffers, against Budget
	over   oversizeCounters
	errs   errorCounters
	passes atomic.Uint64

	cfg       Config
	start     time.Time
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// tierState is one tier's registry and slow-path counters.
type tierState struct {
	mu sync.Mutex
	// reg holds every buffer the tier owns, idle or held; its length plus
	// pending never exceeds MaxBuffers. It is what keeps idle buffers alive
	// when a garbage collection empties the sync.Pool in front.
	reg []*Buffer
	// depot holds idle buffers found by a sweep of reg (or put there by
	// Warmup), for Gets that miss the per-core cache. Entries may be stale.
	depot   []*Buffer
	pending int // buffers being allocated outside mu, counted against MaxBuffers
	skip    int // slow-path Gets left before the next sweep after fruitless ones
	backoff int

	// Guarded by mu.
	hits         uint64 // uses of registered buffers folded in by passes, and of retired ones
	retiredAsked uint64 // asked bytes of buffers no longer registered
	released     uint64
	abandoned    uint64

	misses        atomic.Uint64
	unpooled      atomic.Uint64
	unpooledAsked atomic.Uint64
	unpooledHeld  atomic.Int64
	latePuts      atomic.Uint64

	_ [64]byte
}

type oversizeCounters struct {
	gets      atomic.Uint64
	asked     atomic.Uint64
	held      atomic.Int64
	heldBytes atomic.Int64
}

type errorCounters struct {
	doublePut atomic.Uint64
	foreign   atomic.Uint64
	pinned    atomic.Uint64
	notHeld   atomic.Uint64
	notPinned atomic.Uint64
}

// New returns a Pool configured by cfg and starts its cleanup goroutine,
// which runs a pass every cfg.CleanupInterval until Close. It returns an
// error wrapping ErrInvalidConfig when cfg fails validation (see Config for
// the ranges). New does not pre-allocate: call Warmup for that.
func New(cfg Config) (*Pool, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	p := &Pool{
		metrics: cfg.Metrics,
		cfg:     cfg,
		start:   cfg.Clock(),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for t := range p.tiers {
		p.tiers[t].reg = make([]*Buffer, 0, cfg.MaxBuffers[t])
		p.tiers[t].depot = make([]*Buffer, 0, cfg.MaxBuffers[t])
	}
	go p.run() // stops when Close closes p.stop
	return p, nil
}

// Config returns the configuration the Pool runs with (Clock filled in).
func (p *Pool) Config() Config {
	if p == nil {
		return Config{}
	}
	return p.cfg
}

// run is the cleanup goroutine: a pass every CleanupInterval until stop.
func (p *Pool) run() {
	defer close(p.done)
	tk := time.NewTicker(p.cfg.CleanupInterval)
	defer tk.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tk.C:
			p.Cleanup()
		}
	}
}

// Get returns a buffer whose Bytes has length size (a negative size counts
// as 0), from the smallest tier that holds it; its contents are arbitrary,
// not zeroed. It never returns nil. A size larger than MaxSize is served by a
// plain allocation, counted as oversize. When the tier has no idle buffer
// and owns MaxBuffers of them already (or the Budget is spent, or the pool is
// closed), Get hands out a plain allocation of the tier's size, which Put
// lets go. Give the buffer back with Put.
func (p *Pool) Get(size int) *Buffer {
	if size < 0 {
		size = 0
	}
	if p == nil {
		return plainBuffer(size)
	}
	t, ok := TierFor(size)
	if !ok {
		return p.getOversize(size)
	}
	if !p.closed.Load() {
		// A reference from the per-core cache may be stale (the buffer was
		// handed out through the depot meanwhile, or released): acquire's
		// compare-and-swap tells, and a stale one is simply dropped.
		for range 4 {
			x := p.hot[t].Get()
			if x == nil {
				break
			}
			if b := x.(*Buffer); b.acquire() {
				b.n = size
				if p.metrics {
					b.asked.Add(uint64(size))
				}
				return b
			}
		}
	}
	return p.getSlow(t, size)
}

// getSlow serves a Get that missed the per-core cache: from the depot (after
// a sweep of the registry if the depot is empty), else with a new buffer the
// tier will own, else with a plain allocation.
func (p *Pool) getSlow(t Tier, size int) *Buffer {
	tr := &p.tiers[t]
	limit := p.cfg.MaxBuffers[t]
	if limit > 0 && !p.closed.Load() {
		tr.mu.Lock()
		canGrow := len(tr.reg)+tr.pending < limit &&
			(p.cfg.Budget == 0 || p.owned.Load()+int64(t.Size()) <= p.cfg.Budget)
		if len(tr.depot) == 0 {
			tr.maybeSweepLocked(canGrow, limit)
		}
		for n := len(tr.depot); n > 0; n = len(tr.depot) {
			b := tr.depot[n-1]
			tr.depot[n-1] = nil
			tr.depot = tr.depot[:n-1]
			b.inDepot = false
			if b.acquire() {
				tr.mu.Unlock()
				b.n = size
				if p.metrics {
					b.asked.Add(uint64(size))
				}
				return b
			}
		}
		if canGrow && p.reserve(t.Size()) {
			tr.pending++
			tr.mu.Unlock()
			b := p.newBuffer(t) // allocate outside the lock: a Huge one takes a while
			b.state.Store(kindHeld)
			tr.mu.Lock()
			tr.pending--
			tr.registerLocked(b)
			tr.mu.Unlock()
			tr.misses.Add(1)
			b.n = size
			if p.metrics {
				b.asked.Add(uint64(size))
			}
			return b
		}
		tr.mu.Unlock()
	}
	tr.misses.Add(1)
	tr.unpooled.Add(1)
	tr.unpooledHeld.Add(1)
	if p.metrics {
		tr.unpooledAsked.Add(uint64(size))
	}
	b := p.spareHeader()
	b.tier = int8(t)
	b.data = make([]byte, t.Size())
	b.n = size
	b.state.Store(kindHeld)
	return b
}

// maybeSweepLocked moves the registry's idle buffers that are not in the
// depot into it. They got there when the garbage collector emptied the
// per-core cache, or when the cache dropped a Put (it may, under the race
// detector) or kept it on another core. A tier that cannot grow hands out a
// plain allocation when the sweep finds nothing; there, after a fruitless
// sweep, the next sweeps are skipped for exponentially more slow-path Gets
// (up to MaxBuffers/8), so a tier whose buffers are all held does not pay a
// full scan on every Get.
func (tr *tierState) maybeSweepLocked(canGrow bool, limit int) {
	if !canGrow && tr.skip > 0 {
		tr.skip--
		return
	}
	if tr.sweepLocked() > 0 || canGrow {
		tr.backoff, tr.skip = 0, 0
		return
	}
	tr.backoff = min(max(1, 2*tr.backoff), limit/8+1)
	tr.skip = tr.backoff
}

// sweepLocked puts every idle registered buffer not yet in the depot into
// it and returns how many it added.
func (tr *tierState) sweepLocked() int {
	n := 0
	for _, b := range tr.reg {
		if !b.inDepot && kindOf(b.state.Load()) == kindIdle {
			b.inDepot = true
			tr.depot = append(tr.depot, b)
			n++
		}
	}
	return n
}

// compactDepotLocked drops the depot's entries that are no longer idle and
// registered.
func (tr *tierState) compactDepotLocked() {
	keep := tr.depot[:0]
	for _, b := range tr.depot {
		if b.idx >= 0 && kindOf(b.state.Load()) == kindIdle {
			keep = append(keep, b)
			continue
		}
		b.inDepot = false
	}
	clear(tr.depot[len(keep):])
	tr.depot = keep
}

// foldLocked adds b's uses since the last fold, read from its state word s,
// to the tier's hits.
func (tr *tierState) foldLocked(b *Buffer, s uint64) {
	tr.hits += usesSince(b.folded, usesOf(s))
	b.folded = usesOf(s)
}

func (tr *tierState) registerLocked(b *Buffer) {
	b.idx = int32(len(tr.reg))
	tr.reg = append(tr.reg, b)
}

// retireLocked removes b from the registry, folding its counters into the
// tier's; the caller has already moved b out of idle or held.
func (p *Pool) retireLocked(tr *tierState, b *Buffer) {
	last := len(tr.reg) - 1
	moved := tr.reg[last]
	tr.reg[b.idx] = moved
	moved.idx = b.idx
	tr.reg[last] = nil
	tr.reg = tr.reg[:last]
	b.idx = -1
	p.owned.Add(-int64(Tier(b.tier).Size())) // not len(b.data): a late Put may be clearing it
	tr.foldLocked(b, b.state.Load())
	tr.retiredAsked += b.asked.Load()
}

// reserve takes n bytes of the budget and reports whether it could.
func (p *Pool) reserve(n int) bool {
	for {
		o := p.owned.Load()
		if p.cfg.Budget > 0 && o+int64(n) > p.cfg.Budget {
			return false
		}
		if p.owned.CompareAndSwap(o, o+int64(n)) {
			return true
		}
	}
}

func (p *Pool) newBuffer(t Tier) *Buffer {
	return &Buffer{pool: p, data: make([]byte, t.Size()), idx: -1, tier: int8(t), pooled: true}
}

// spareHeader returns a recycled header for an unpooled or oversize buffer.
func (p *Pool) spareHeader() *Buffer {
	if b, _ := p.spare.Get().(*Buffer); b != nil {
		return b
	}
	return &Buffer{pool: p, idx: -1}
}

func (p *Pool) getOversize(size int) *Buffer {
	p.over.gets.Add(1)
	p.over.asked.Add(uint64(size))
	p.over.held.Add(1)
	p.over.heldBytes.Add(int64(size))
	b := p.spareHeader()
	b.tier = -1
	b.data = make([]byte, size)
	b.n = size
	b.state.Store(kindHeld)
	return b
}

// Put gives b back to the pool. The caller must not use b, or any slice
// taken from it, afterwards. Put returns ErrForeign for a nil Buffer or one
// from another Pool, ErrPinned for a pinned Buffer (the caller still holds
// it), and ErrDoublePut for a Buffer that is not held (put back already and
// not handed out since); each is also counted in Stats().Errors. A double Put
// is detected only until the pool hands the buffer out again: after that,
// the stale Put cannot be told from the new holder's.
func (p *Pool) Put(b *Buffer) error {
	if p == nil {
		return putPlain(b)
	}
	if b == nil || b.pool != p {
		p.errs.foreign.Add(1)
		return ErrForeign
	}
	for {
		s := b.state.Load()
		switch kindOf(s) {
		case kindHeld:
			if pinsOf(s) > 0 {
				p.errs.pinned.Add(1)
				return ErrPinned
			}
			if b.pooled && !p.closed.Load() {
				if b.state.CompareAndSwap(s, withKind(s, kindIdle)) {
					p.hot[b.tier].Put(b)
					if p.closed.Load() { // Close ran meanwhile and will not see b
						p.releaseIdle(b)
					}
					return nil
				}
				continue
			}
			if b.state.CompareAndSwap(s, withKind(s, kindReleased)) {
				p.dispose(b)
				return nil
			}
		case kindAbandoned:
			if pinsOf(s) > 0 {
				p.errs.pinned.Add(1)
				return ErrPinned
			}
			if b.state.CompareAndSwap(s, withKind(s, kindReleased)) {
				p.tiers[b.tier].latePuts.Add(1)
				b.data = nil
				return nil
			}
		default:
			p.errs.doublePut.Add(1)
			return ErrDoublePut
		}
	}
}

// releaseIdle releases b if it is still idle and registered.
func (p *Pool) releaseIdle(b *Buffer) {
	tr := &p.tiers[b.tier]
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if s := b.state.Load(); kindOf(s) == kindIdle && b.idx >= 0 && b.state.CompareAndSwap(s, withKind(s, kindReleased)) {
		p.retireLocked(tr, b)
		tr.released++
		b.data = nil
	}
}

// dispose lets go of a buffer that Put moved from held to released without
// pooling it: oversize, unpooled, or pooled in a closed pool.
func (p *Pool) dispose(b *Buffer) {
	switch {
	case b.tier < 0:
		p.over.held.Add(-1)
		p.over.heldBytes.Add(-int64(len(b.data)))
	case !b.pooled:
		p.tiers[b.tier].unpooledHeld.Add(-1)
	default:
		tr := &p.tiers[b.tier]
		tr.mu.Lock()
		p.retireLocked(tr, b)
		tr.released++
		tr.mu.Unlock()
		b.data = nil
		return // a registered header may still be referenced by the caches: never recycle it
	}
	b.data = nil
	p.spare.Put(b)
}

// Pin marks b, which the caller holds, as pinned: until the matching Unpin,
// Put refuses it with ErrPinned and no cleanup pass may declare it
// abandoned (see Config.MaxHold). Pins nest, up to MaxPins. Pin returns
// ErrForeign for a nil Buffer or one from another Pool, ErrNotHeld for a
// Buffer that is not held, and ErrPinLimit past MaxPins.
func (p *Pool) Pin(b *Buffer) error {
	if b == nil || b.pool != p {
		p.countErr(ErrForeign)
		return ErrForeign
	}
	if err := b.pin(); err != nil {
		p.countErr(err)
		return err
	}
	return nil
}

// Unpin removes one pin from b. It returns ErrForeign for a nil Buffer or one
// from another Pool, ErrNotHeld for a Buffer that is not held, and
// ErrNotPinned for one that is not pinned.
func (p *Pool) Unpin(b *Buffer) error {
	if b == nil || b.pool != p {
		p.countErr(ErrForeign)
		return ErrForeign
	}
	if err := b.unpin(); err != nil {
		p.countErr(err)
		return err
	}
	return nil
}

func (p *Pool) countErr(err error) {
	if p == nil {
		return
	}
	switch err {
	case ErrForeign:
		p.errs.foreign.Add(1)
	case ErrNotHeld:
		p.errs.notHeld.Add(1)
	case ErrNotPinned:
		p.errs.notPinned.Add(1)
	}
}

// Warmup pre-allocates buffers until each tier owns Config.Warm of them
// (or its MaxBuffers, or the Budget is spent), touching every page so the
// first Gets pay neither the allocation nor the page faults. It returns how
// many buffers it added, or ErrClosed on a closed Pool. Calling it again
// adds only what is missing.
func (p *Pool) Warmup() (int, error) {
	if p == nil {
		return 0, nil
	}
	return p.WarmupTiers(p.cfg.Warm)
}

// WarmupTiers is Warmup with explicit per-tier counts; each is capped by the
// tier's MaxBuffers. It returns how many buffers it added, or ErrClosed.
func (p *Pool) WarmupTiers(counts [NumTiers]int) (int, error) {
	if p == nil {
		return 0, nil
	}
	if p.closed.Load() {
		return 0, ErrClosed
	}
	added := 0
	for t := Tier(0); t < NumTiers; t++ {
		tr := &p.tiers[t]
		want := min(counts[t], p.cfg.MaxBuffers[t])
		for {
			tr.mu.Lock()
			if len(tr.reg)+tr.pending >= want || !p.reserve(t.Size()) {
				tr.mu.Unlock()
				break
			}
			tr.pending++
			tr.mu.Unlock()
			b := p.newBuffer(t)
			for i := 0; i < len(b.data); i += 4096 {
				b.data[i] = 0 // fault the page in now rather than on first use
			}
			b.state.Store(kindIdle)
			tr.mu.Lock()
			tr.pending--
			tr.registerLocked(b)
			b.inDepot = true
			tr.depot = append(tr.depot, b)
			tr.mu.Unlock()
			added++
		}
	}
	return added, nil
}

// Cleanup runs one cleanup pass now, as the cleanup goroutine does every
// CleanupInterval, and returns how many idle buffers it released. A pass
// notes, for each buffer the pool owns, its state and the time (from
// Config.Clock); a buffer found unchanged since a note taken at least MaxIdle
// ago while idle is released, and one found held, unpinned and unchanged
// since a note at least MaxHold ago is abandoned (see Config.MaxHold). A
// pass also gathers idle buffers the per-core caches lost into the depot.
func (p *Pool) Cleanup() int {
	if p == nil {
		return 0
	}
	now := p.millis(p.cfg.Clock())
	maxIdle := uint64(p.cfg.MaxIdle.Milliseconds())
	maxHold := uint64(p.cfg.MaxHold.Milliseconds())
	released := 0
	for t := range p.tiers {
		tr := &p.tiers[t]
		tr.mu.Lock()
		for i := 0; i < len(tr.reg); {
			b := tr.reg[i]
			s := b.state.Load()
			tr.foldLocked(b, s)
			if s != b.seen {
				b.seen, b.seenAt = s, now
				i++
				continue
			}
			age := now - min(b.seenAt, now)
			switch k := kindOf(s); {
			case k == kindIdle && age >= maxIdle && b.state.CompareAndSwap(s, withKind(s, kindReleased)):
				p.retireLocked(tr, b) // moves another buffer to reg[i]
				tr.released++
				b.data = nil
				released++
				continue
			case k == kindHeld && maxHold > 0 && pinsOf(s) == 0 && age >= maxHold &&
				b.state.CompareAndSwap(s, withKind(s, kindAbandoned)):
				p.retireLocked(tr, b) // the holder keeps b.data
				tr.abandoned++
				continue
			}
			i++
		}
		tr.compactDepotLocked()
		tr.sweepLocked()
		tr.mu.Unlock()
	}
	p.passes.Add(1)
	return released
}

// millis returns the milliseconds from the pool's start to now, 0 if now is
// earlier.
func (p *Pool) millis(now time.Time) uint64 {
	return uint64(max(now.Sub(p.start).Milliseconds(), 0))
}

// Close stops the cleanup goroutine and releases every idle buffer. After
// Close, Get hands out plain allocations and Put lets every buffer go
// (still checking for double, foreign and pinned Puts); Stats keeps working.
// Close is idempotent and always returns nil.
func (p *Pool) Close() error {
	if p == nil {
		return nil
	}
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.stop)
		<-p.done
		for t := range p.tiers {
			tr := &p.tiers[t]
			tr.mu.Lock()
			for i := 0; i < len(tr.reg); {
				b := tr.reg[i]
				if s := b.state.Load(); kindOf(s) == kindIdle && b.state.CompareAndSwap(s, withKind(s, kindReleased)) {
					p.retireLocked(tr, b)
					tr.released++
					b.data = nil
					continue
				}
				i++
			}
			for _, b := range tr.depot {
				b.inDepot = false
			}
			clear(tr.depot)
			tr.depot = tr.depot[:0]
			tr.mu.Unlock()
		}
	})
	return nil
}

// plainBuffer is Get on a nil Pool.
func plainBuffer(size int) *Buffer {
	t, ok := TierFor(size)
	if !ok {
		t = -1
	}
	b := &Buffer{data: make([]byte, size), n: size, idx: -1, tier: int8(t)}
	b.state.Store(kindHeld)
	return b
}

// putPlain is Put on a nil Pool.
func putPlain(b *Buffer) error {
	if b == nil || b.pool != nil {
		return ErrForeign
	}
	for {
		s := b.state.Load()
		if kindOf(s) != kindHeld {
			return ErrDoublePut
		}
		if pinsOf(s) > 0 {
			return ErrPinned
		}
		if b.state.CompareAndSwap(s, withKind(s, kindReleased)) {
			b.data = nil
			return nil
		}
	}
}
