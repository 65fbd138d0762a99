package pool

import (
	"testing"
	"unsafe"
)

func TestBufferHeaderIsTwoCacheLines(t *testing.T) {
	if got := unsafe.Sizeof(Buffer{}); got != 128 {
		t.Errorf("sizeof(Buffer) = %d, want 128 (one size class, no false sharing)", got)
	}
}

func TestUsesSinceWraps(t *testing.T) {
	const top = 1<<usesWidth - 1
	tests := []struct{ was, now, want uint64 }{
		{0, 0, 0},
		{3, 10, 7},
		{top - 1, 2, 4}, // top-1 → top → 0 → 1 → 2
		{top, 0, 1},
	}
	for _, tt := range tests {
		if got := usesSince(tt.was, tt.now); got != tt.want {
			t.Errorf("usesSince(%d, %d) = %d, want %d", tt.was, tt.now, got, tt.want)
		}
	}
	// The use count lives in the top bits: adding a use to the largest
	// count wraps to 0 without touching kind or pins.
	s := withKind(top<<useShift|3*pinUnit, kindIdle)
	next := withKind(s, kindHeld) + useUnit
	if kindOf(next) != kindHeld || pinsOf(next) != 3 || usesOf(next) != 0 {
		t.Errorf("wrapped state: kind %d pins %d uses %d; want held, 3, 0", kindOf(next), pinsOf(next), usesOf(next))
	}
}

// drainHot empties tier t's per-core cache, as a garbage collection does.
func drainHot(p *Pool, t Tier) int {
	n := 0
	for p.hot[t].Get() != nil {
		n++
	}
	return n
}

func TestLostIdleBuffersAreFoundAgain(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBuffers[Small] = 3
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var bs []*Buffer
	for range 3 {
		bs = append(bs, p.Get(1000))
	}
	for _, b := range bs {
		p.Put(b)
	}
	drainHot(p, Small)
	// The tier is full and its cache empty: without a sweep of the registry
	// every Get would now be an unpooled allocation.
	for i := range 3 {
		b := p.Get(1000)
		if !b.pooled {
			t.Fatalf("Get #%d after the cache was emptied: unpooled, want one of the lost idle buffers", i+1)
		}
		defer p.Put(b)
	}
	if s := p.Stats().Tiers[Small]; s.Hits != 3 || s.Misses != 3 || s.Unpooled != 0 {
		t.Errorf("stats = %+v, want 3 hits after the 3 misses, none unpooled", s)
	}
}

func TestSweepBacksOffWhenTierFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBuffers[Tiny] = 64
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var held []*Buffer
	for range 64 {
		held = append(held, p.Get(1))
	}
	tr := &p.tiers[Tiny]
	var skips []int
	for range 6 {
		held = append(held, p.Get(1)) // full, nothing idle: unpooled
		tr.mu.Lock()
		skips = append(skips, tr.skip)
		tr.mu.Unlock()
	}
	// Sweep (finds nothing) → skip 1; skip; sweep → skip 2; skip, skip;
	// sweep → skip 4 (capped at 64/8+1 = 9).
	want := []int{1, 0, 2, 1, 0, 4}
	for i := range want {
		if skips[i] != want[i] {
			t.Fatalf("skip after each full Get = %v, want %v", skips, want)
		}
	}
	// A Put makes the next sweep fruitful again once the 4 skips run out.
	p.Put(held[0])
	drainHot(p, Tiny)
	for range 5 {
		b := p.Get(1)
		held = append(held, b)
		if b.pooled {
			break
		}
	}
	if !held[len(held)-1].pooled {
		t.Error("the idle buffer was not found within the backoff")
	}
	for _, b := range held[1:] {
		p.Put(b)
	}
}
