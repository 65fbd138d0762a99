package pool

import "sync/atomic"

// A Buffer's state word packs, from the low bits up: its kind (2 bits), its
// pin count (12 bits) and its use count (50 bits, wrapping): how many times
// the pool handed it out again after it was idle, which is the tier's hit
// count. Get and Put each change the word with one compare-and-swap, and
// every Get changes it, so a cleanup pass that finds a word unchanged since
// its last look knows the buffer has not moved since then: that is how idle
// and hold times are measured without reading a clock on the hot path.
const (
	kindReleased  uint64 = iota // owned by nobody: put back unpooled, released, or zero value
	kindIdle                    // in the pool, free to hand out
	kindHeld                    // handed out, not yet put back
	kindAbandoned               // held so long that the pool stopped owning it

	kindMask  = 3
	pinShift  = 2
	pinBits   = 12
	pinUnit   = 1 << pinShift
	pinMask   = (1<<pinBits - 1) << pinShift
	useShift  = pinShift + pinBits
	useUnit   = 1 << useShift
	usesWidth = 64 - useShift
)

// MaxPins (4095) is the most times one Buffer can be pinned at once.
const MaxPins = 1<<pinBits - 1

func kindOf(s uint64) uint64 { return s & kindMask }
func pinsOf(s uint64) int    { return int(s&pinMask) >> pinShift }
func usesOf(s uint64) uint64 { return s >> useShift }

// usesSince returns how many uses happened from use count was to now,
// modulo the counter's width.
func usesSince(was, now uint64) uint64 { return (now - was) & (1<<usesWidth - 1) }

// withKind returns s with its kind replaced by k.
func withKind(s, k uint64) uint64 { return s&^kindMask | k }

// Buffer is a byte buffer handed out by a Pool. Its header is recycled with
// its memory, so a Get/Put cycle allocates nothing once the pool is warm.
//
// A Buffer belongs to one holder from Get until Put: the holder may read and
// write Bytes and call SetLen or Reset; nobody else may. After Put the holder
// must not touch the Buffer or any slice taken from it, since the next Get
// may hand the same memory to someone else. Pin it to make a stray Put fail
// while something still aliases its bytes.
type Buffer struct {
	// state is the packed state word (see kindReleased); every transition
	// is a compare-and-swap, which is what keeps one buffer from reaching
	// two holders.
	state atomic.Uint64
	// asked is, while metrics are on, the bytes asked for over all this
	// buffer's handouts. Only the holder adds to it, so it is per-core in
	// practice; Stats sums it.
	asked atomic.Uint64

	data []byte // the whole buffer: len == cap == the tier's size (or the oversize size)
	n    int    // the length Bytes returns
	pool *Pool

	// Guarded by the tier's mutex: what the last cleanup pass saw (the
	// state word, and when), and the use count already added to the tier's
	// hits.
	seen   uint64
	seenAt uint64
	folded uint64

	idx     int32 // index in its tier's registry, -1 when not registered; guarded by the tier's mutex
	tier    int8  // -1 for an oversize buffer
	pooled  bool  // registered in a tier (false: a plain allocation that Put lets go)
	inDepot bool  // in its tier's depot; guarded by the tier's mutex

	// Pad to 128 bytes so that two buffers held on two cores never share a
	// cache line: the state word and counter are written on every Get/Put.
	_ [41]byte
}

// Bytes returns the buffer's contents: the size asked for at Get, or the
// length set by SetLen. Its capacity is the whole buffer (Cap), so appending
// up to Cap stays in the buffer.
func (b *Buffer) Bytes() []byte { return b.data[:b.n] }

// Len returns len(b.Bytes()).
func (b *Buffer) Len() int { return b.n }

// Cap returns the buffer's capacity: its tier's size, or the size asked for
// when it is an oversize buffer.
func (b *Buffer) Cap() int { return len(b.data) }

// SetLen sets the length of Bytes to n, keeping the contents. It returns
// ErrLength, and changes nothing, when n is outside [0, Cap()].
func (b *Buffer) SetLen(n int) error {
	if n < 0 || n > len(b.data) {
		return ErrLength
	}
	b.n = n
	return nil
}

// Reset sets the length of Bytes to 0.
func (b *Buffer) Reset() { b.n = 0 }

// Tier reports the buffer's tier and true, or false for an oversize buffer.
func (b *Buffer) Tier() (Tier, bool) {
	if b.tier < 0 {
		return -1, false
	}
	return Tier(b.tier), true
}

// Pinned reports how many times the buffer is pinned.
func (b *Buffer) Pinned() int { return pinsOf(b.state.Load()) }

// acquire moves an idle buffer to held and reports whether it did; false
// means the reference was stale (the buffer is held or released).
func (b *Buffer) acquire() bool {
	for {
		s := b.state.Load()
		if kindOf(s) != kindIdle {
			return false
		}
		if b.state.CompareAndSwap(s, withKind(s, kindHeld)+useUnit) {
			return true
		}
	}
}

// pin adds one pin to a held buffer.
func (b *Buffer) pin() error {
	for {
		s := b.state.Load()
		switch k := kindOf(s); {
		case k != kindHeld && k != kindAbandoned:
			return ErrNotHeld
		case pinsOf(s) == MaxPins:
			return ErrPinLimit
		}
		if b.state.CompareAndSwap(s, s+pinUnit) {
			return nil
		}
	}
}

// unpin removes one pin from a held buffer.
func (b *Buffer) unpin() error {
	for {
		s := b.state.Load()
		if k := kindOf(s); k != kindHeld && k != kindAbandoned {
			return ErrNotHeld
		}
		if pinsOf(s) == 0 {
			return ErrNotPinned
		}
		if b.state.CompareAndSwap(s, s-pinUnit) {
			return nil
		}
	}
}
