package pool_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/pool"
)

func TestTierFor(t *testing.T) {
	tests := []struct {
		size int
		want pool.Tier
		ok   bool
	}{
		{-5, pool.Tiny, true},
		{0, pool.Tiny, true},
		{1, pool.Tiny, true},
		{256, pool.Tiny, true},
		{257, pool.Small, true},
		{4096, pool.Small, true},
		{4097, pool.Medium, true},
		{65536, pool.Medium, true},
		{65537, pool.Large, true},
		{1 << 20, pool.Large, true},
		{1<<20 + 1, pool.Huge, true},
		{4 << 20, pool.Huge, true},
		{4<<20 + 1, -1, false},
	}
	for _, tt := range tests {
		got, ok := pool.TierFor(tt.size)
		if got != tt.want || ok != tt.ok {
			t.Errorf("TierFor(%d) = %v, %v; want %v, %v", tt.size, got, ok, tt.want, tt.ok)
		}
	}
}

func TestTierSizeAndString(t *testing.T) {
	tests := []struct {
		tier pool.Tier
		size int
		name string
	}{
		{pool.Tiny, 256, "tiny"},
		{pool.Small, 4096, "small"},
		{pool.Medium, 65536, "medium"},
		{pool.Large, 1 << 20, "large"},
		{pool.Huge, 4 << 20, "huge"},
		{pool.NumTiers, 0, "tier(5)"},
		{-1, 0, "tier(-1)"},
	}
	for _, tt := range tests {
		if got := tt.tier.Size(); got != tt.size {
			t.Errorf("%v.Size() = %d, want %d", tt.tier, got, tt.size)
		}
		if got := tt.tier.String(); got != tt.name {
			t.Errorf("Tier(%d).String() = %q, want %q", int(tt.tier), got, tt.name)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*pool.Config)
		field  string
	}{
		{"negative max", func(c *pool.Config) { c.MaxBuffers[pool.Small] = -1 }, "MaxBuffers[small]"},
		{"negative warm", func(c *pool.Config) { c.Warm[pool.Tiny] = -1 }, "Warm[tiny]"},
		{"zero interval", func(c *pool.Config) { c.CleanupInterval = 0 }, "CleanupInterval"},
		{"zero max idle", func(c *pool.Config) { c.MaxIdle = 0 }, "MaxIdle"},
		{"negative max hold", func(c *pool.Config) { c.MaxHold = -time.Second }, "MaxHold"},
		{"negative budget", func(c *pool.Config) { c.Budget = -1 }, "Budget"},
		{"zero config", func(c *pool.Config) { *c = pool.Config{} }, "CleanupInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pool.DefaultConfig()
			tt.mutate(&cfg)
			p, err := pool.New(cfg)
			if p != nil {
				p.Close()
			}
			if !errors.Is(err, pool.ErrInvalidConfig) {
				t.Fatalf("New: err = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("New: err = %q, want it to name %s", err, tt.field)
			}
		})
	}
	t.Run("defaults valid", func(t *testing.T) {
		p := newPool(t, pool.DefaultConfig())
		if got := p.Config().MaxBuffers; got != [pool.NumTiers]int{1000, 500, 100, 50, 10} {
			t.Errorf("default MaxBuffers = %v, want the seed's 1000, 500, 100, 50, 10", got)
		}
	})
}

func TestGetSizes(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	tests := []struct {
		size    int
		wantLen int
		wantCap int
		tier    pool.Tier
		tiered  bool
	}{
		{-1, 0, 256, pool.Tiny, true},
		{0, 0, 256, pool.Tiny, true},
		{100, 100, 256, pool.Tiny, true},
		{256, 256, 256, pool.Tiny, true},
		{1000, 1000, 4096, pool.Small, true},
		{50000, 50000, 65536, pool.Medium, true},
		{1 << 20, 1 << 20, 1 << 20, pool.Large, true},
		{3 << 20, 3 << 20, 4 << 20, pool.Huge, true},
		{5 << 20, 5 << 20, 5 << 20, -1, false},
	}
	for _, tt := range tests {
		b := p.Get(tt.size)
		if b == nil {
			t.Fatalf("Get(%d) = nil", tt.size)
		}
		if got := len(b.Bytes()); got != tt.wantLen || b.Len() != tt.wantLen {
			t.Errorf("Get(%d): len = %d (Len %d), want %d", tt.size, got, b.Len(), tt.wantLen)
		}
		if got := b.Cap(); got != tt.wantCap || cap(b.Bytes()) != tt.wantCap {
			t.Errorf("Get(%d): Cap = %d (cap(Bytes) %d), want %d", tt.size, got, cap(b.Bytes()), tt.wantCap)
		}
		if tier, ok := b.Tier(); tier != tt.tier || ok != tt.tiered {
			t.Errorf("Get(%d): Tier = %v, %v; want %v, %v", tt.size, tier, ok, tt.tier, tt.tiered)
		}
		if err := p.Put(b); err != nil {
			t.Errorf("Put after Get(%d): %v", tt.size, err)
		}
	}
	s := p.Stats()
	if s.Oversize.Gets != 1 || s.Oversize.AskedBytes != 5<<20 || s.Oversize.InUse != 0 {
		t.Errorf("Oversize = %+v, want 1 get of 5 MiB, none in use", s.Oversize)
	}
}

func TestBufferSetLenReset(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	b := p.Get(10)
	defer p.Put(b)
	copy(b.Bytes(), "0123456789")
	tests := []struct {
		n       int
		wantErr error
		wantLen int
	}{
		{4, nil, 4},
		{256, nil, 256},
		{257, pool.ErrLength, 256},
		{-1, pool.ErrLength, 256},
		{0, nil, 0},
		{10, nil, 10},
	}
	for _, tt := range tests {
		if err := b.SetLen(tt.n); !errors.Is(err, tt.wantErr) {
			t.Errorf("SetLen(%d) = %v, want %v", tt.n, err, tt.wantErr)
		}
		if b.Len() != tt.wantLen {
			t.Errorf("after SetLen(%d): Len = %d, want %d", tt.n, b.Len(), tt.wantLen)
		}
	}
	if got := string(b.Bytes()); got != "0123456789" {
		t.Errorf("SetLen lost the contents: %q", got)
	}
	b.Reset()
	if b.Len() != 0 || b.Cap() != 256 {
		t.Errorf("after Reset: Len %d Cap %d, want 0, 256", b.Len(), b.Cap())
	}
	if out := append(b.Bytes(), "abc"...); &out[0] != &b.Bytes()[:1][0] {
		t.Error("append within Cap left the buffer")
	}
}

func TestPutErrors(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	other := newPool(t, pool.DefaultConfig())

	// Take every buffer before putting any back: a double Put is detected
	// only until the buffer is handed out again.
	pinned := p.Get(10)
	if err := p.Pin(pinned); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	put := p.Get(10)
	if err := p.Put(put); err != nil {
		t.Fatalf("first Put: %v", err)
	}
	over := p.Get(pool.MaxSize + 1)
	if err := p.Put(over); err != nil {
		t.Fatalf("first Put of oversize: %v", err)
	}
	foreign := other.Get(10)
	defer other.Put(foreign)
	plain := (*pool.Pool)(nil).Get(10)

	tests := []struct {
		name string
		b    *pool.Buffer
		want error
	}{
		{"double put", put, pool.ErrDoublePut},
		{"double put oversize", over, pool.ErrDoublePut},
		{"pinned", pinned, pool.ErrPinned},
		{"other pool", foreign, pool.ErrForeign},
		{"no pool", plain, pool.ErrForeign},
		{"nil", nil, pool.ErrForeign},
		{"zero buffer", &pool.Buffer{}, pool.ErrForeign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Put(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("Put = %v, want %v", err, tt.want)
			}
		})
	}
	want := pool.ErrorStats{DoublePut: 2, Pinned: 1, Foreign: 4, Total: 7}
	if got := p.Stats().Errors; got != want {
		t.Errorf("Stats().Errors = %+v, want %+v", got, want)
	}
	if err := p.Unpin(pinned); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	if err := p.Put(pinned); err != nil {
		t.Errorf("Put after Unpin = %v, want nil", err)
	}
}

func TestPinUnpin(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	b := p.Get(10)
	steps := []struct {
		name     string
		op       func() error
		want     error
		wantPins int
	}{
		{"unpin unpinned", func() error { return p.Unpin(b) }, pool.ErrNotPinned, 0},
		{"pin", func() error { return p.Pin(b) }, nil, 1},
		{"pin again", func() error { return p.Pin(b) }, nil, 2},
		{"put pinned", func() error { return p.Put(b) }, pool.ErrPinned, 2},
		{"unpin", func() error { return p.Unpin(b) }, nil, 1},
		{"put still pinned", func() error { return p.Put(b) }, pool.ErrPinned, 1},
		{"unpin last", func() error { return p.Unpin(b) }, nil, 0},
		{"put", func() error { return p.Put(b) }, nil, 0},
		{"pin after put", func() error { return p.Pin(b) }, pool.ErrNotHeld, 0},
		{"unpin after put", func() error { return p.Unpin(b) }, pool.ErrNotHeld, 0},
		{"pin nil", func() error { return p.Pin(nil) }, pool.ErrForeign, 0},
		{"unpin nil", func() error { return p.Unpin(nil) }, pool.ErrForeign, 0},
	}
	for _, st := range steps {
		if err := st.op(); !errors.Is(err, st.want) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		}
		if got := b.Pinned(); got != st.wantPins {
			t.Fatalf("%s: Pinned() = %d, want %d", st.name, got, st.wantPins)
		}
	}
	want := pool.ErrorStats{Pinned: 2, NotHeld: 2, NotPinned: 1, Foreign: 2, Total: 7}
	if got := p.Stats().Errors; got != want {
		t.Errorf("Stats().Errors = %+v, want %+v", got, want)
	}
}

func TestPinLimit(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	b := p.Get(1)
	for i := range pool.MaxPins {
		if err := p.Pin(b); err != nil {
			t.Fatalf("Pin #%d: %v", i+1, err)
		}
	}
	if err := p.Pin(b); !errors.Is(err, pool.ErrPinLimit) {
		t.Fatalf("Pin past MaxPins = %v, want ErrPinLimit", err)
	}
	for range pool.MaxPins {
		if err := p.Unpin(b); err != nil {
			t.Fatalf("Unpin: %v", err)
		}
	}
	if err := p.Put(b); err != nil {
		t.Errorf("Put = %v", err)
	}
}

func TestHitsMissesEfficiency(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	for range 3 {
		b := p.Get(64) // 64 of 256 bytes: efficiency 0.25
		if err := p.Put(b); err != nil {
			t.Fatal(err)
		}
	}
	s := p.Stats()
	tiny := s.Tiers[pool.Tiny]
	want := pool.TierStats{
		Tier: "tiny", Size: 256, Buffers: 1,
		Hits: 2, Misses: 1, HitRate: 2.0 / 3,
		Idle: 1, IdleBytes: 256,
		AskedBytes: 3 * 64, HandedBytes: 3 * 256, Efficiency: 0.25,
	}
	if tiny != want {
		t.Errorf("Tiers[tiny] =\n %+v\nwant\n %+v", tiny, want)
	}
	if s.Total.Hits != 2 || s.Total.Misses != 1 || s.Total.Efficiency != 0.25 {
		t.Errorf("Total = %+v, want the tiny tier's hits, misses and efficiency", s.Total)
	}
	if !s.Metrics {
		t.Error("Stats().Metrics = false with metrics on")
	}
}

func TestMetricsOff(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.Metrics = false
	p := newPool(t, cfg)
	for range 3 {
		if err := p.Put(p.Get(64)); err != nil {
			t.Fatal(err)
		}
	}
	tiny := p.Stats().Tiers[pool.Tiny]
	if tiny.Hits != 2 || tiny.Misses != 1 {
		t.Errorf("hits, misses = %d, %d; want 2, 1 (kept without metrics)", tiny.Hits, tiny.Misses)
	}
	if tiny.AskedBytes != 0 || tiny.HandedBytes != 0 || tiny.Efficiency != 0 {
		t.Errorf("byte counters = %d, %d, %v; want 0 without metrics", tiny.AskedBytes, tiny.HandedBytes, tiny.Efficiency)
	}
}

func TestInUseIdleAndUnpooled(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.MaxBuffers[pool.Small] = 2
	p := newPool(t, cfg)
	held := []*pool.Buffer{p.Get(4096), p.Get(4096), p.Get(4096)} // the third is unpooled
	if err := p.Pin(held[0]); err != nil {
		t.Fatal(err)
	}
	s := p.Stats().Tiers[pool.Small]
	if s.Buffers != 2 || s.InUse != 3 || s.InUseBytes != 3*4096 || s.Unpooled != 1 || s.Misses != 3 || s.Pinned != 1 {
		t.Errorf("while holding 3 with MaxBuffers 2: %+v", s)
	}
	p.Unpin(held[0])
	for _, b := range held {
		if err := p.Put(b); err != nil {
			t.Fatal(err)
		}
	}
	s = p.Stats().Tiers[pool.Small]
	if s.Buffers != 2 || s.InUse != 0 || s.Idle != 2 || s.IdleBytes != 2*4096 {
		t.Errorf("after putting all back: %+v, want 2 idle, 0 in use", s)
	}
}

func TestZeroMaxBuffersNeverPools(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.MaxBuffers[pool.Medium] = 0
	cfg.Warm[pool.Medium] = 0
	p := newPool(t, cfg)
	for range 3 {
		if err := p.Put(p.Get(10000)); err != nil {
			t.Fatal(err)
		}
	}
	s := p.Stats().Tiers[pool.Medium]
	if s.Buffers != 0 || s.Hits != 0 || s.Misses != 3 || s.Unpooled != 3 || s.Idle != 0 {
		t.Errorf("tier with MaxBuffers 0: %+v, want every Get unpooled", s)
	}
}

func TestBudgetAndPressure(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.Budget = 3 << 20 // three Large buffers
	p := newPool(t, cfg)
	var held []*pool.Buffer
	for range 4 {
		held = append(held, p.Get(1<<20))
	}
	s := p.Stats()
	if s.OwnedBytes != 3<<20 {
		t.Errorf("OwnedBytes = %d, want the budget, %d", s.OwnedBytes, 3<<20)
	}
	if s.Tiers[pool.Large].Unpooled != 1 {
		t.Errorf("Unpooled = %d, want 1 (the Get past the budget)", s.Tiers[pool.Large].Unpooled)
	}
	if want := 4.0 / 3; s.Pressure != want || p.Pressure() != want {
		t.Errorf("Pressure = %v (Stats %v), want %v: in use counts unpooled buffers", p.Pressure(), s.Pressure, want)
	}
	for _, b := range held {
		p.Put(b)
	}
	if got := p.Pressure(); got != 0 {
		t.Errorf("Pressure after putting all back = %v, want 0", got)
	}
	over := p.Get(6 << 20)
	if got := p.Pressure(); got != 2 {
		t.Errorf("Pressure holding 6 MiB oversize = %v, want 2", got)
	}
	p.Put(over)

	noBudget := newPool(t, pool.DefaultConfig())
	b := noBudget.Get(100)
	defer noBudget.Put(b)
	if got := noBudget.Pressure(); got != 0 {
		t.Errorf("Pressure without budget = %v, want 0", got)
	}
}

func TestWarmup(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.Warm = [pool.NumTiers]int{3, 2, 1, 1, 1}
	p := newPool(t, cfg)
	n, err := p.Warmup()
	if err != nil || n != 8 {
		t.Fatalf("Warmup = %d, %v; want 8, nil", n, err)
	}
	if n, err := p.Warmup(); err != nil || n != 0 {
		t.Errorf("second Warmup = %d, %v; want 0, nil (nothing missing)", n, err)
	}
	s := p.Stats()
	for tier, want := range cfg.Warm {
		if got := s.Tiers[tier].Idle; got != want {
			t.Errorf("%v: Idle = %d, want %d", pool.Tier(tier), got, want)
		}
	}
	// Warm buffers are hits, not misses.
	var held []*pool.Buffer
	for range 3 {
		held = append(held, p.Get(200))
	}
	if tiny := p.Stats().Tiers[pool.Tiny]; tiny.Hits != 3 || tiny.Misses != 0 {
		t.Errorf("after 3 Gets from a warm tier: hits %d misses %d, want 3, 0", tiny.Hits, tiny.Misses)
	}
	for _, b := range held {
		p.Put(b)
	}
	if n, err := p.WarmupTiers([pool.NumTiers]int{5000}); err != nil || n != 997 {
		t.Errorf("WarmupTiers past MaxBuffers = %d, %v; want 997 (to 1000), nil", n, err)
	}
	p.Close()
	if _, err := p.Warmup(); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("Warmup after Close = %v, want ErrClosed", err)
	}
}

func TestWarmupRespectsBudget(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.Budget = 5 << 20
	p := newPool(t, cfg)
	n, err := p.WarmupTiers([pool.NumTiers]int{pool.Huge: 10})
	if err != nil || n != 1 {
		t.Errorf("WarmupTiers(10 Huge) with a 5 MiB budget = %d, %v; want 1", n, err)
	}
}

func TestCleanupReleasesIdle(t *testing.T) {
	clk := newFakeClock()
	p := newPool(t, manualConfig(clk)) // MaxIdle 10 s
	stay, leave := p.Get(100), p.Get(100)
	p.Put(stay)
	p.Put(leave)
	if n := p.Cleanup(); n != 0 {
		t.Fatalf("first pass released %d, want 0 (it only notes)", n)
	}
	clk.Advance(9 * time.Second)
	if n := p.Cleanup(); n != 0 {
		t.Fatalf("pass after 9 s released %d, want 0", n)
	}
	// One buffer is used between passes: its idle time starts again.
	b := p.Get(100)
	p.Put(b)
	clk.Advance(time.Second)
	if n := p.Cleanup(); n != 1 {
		t.Fatalf("pass after 10 s released %d, want 1 (the unused one)", n)
	}
	s := p.Stats()
	if tiny := s.Tiers[pool.Tiny]; tiny.Buffers != 1 || tiny.Idle != 1 || tiny.Released != 1 {
		t.Errorf("after release: %+v, want 1 buffer left, 1 released", tiny)
	}
	if s.OwnedBytes != 256 {
		t.Errorf("OwnedBytes = %d, want 256", s.OwnedBytes)
	}
	clk.Advance(10 * time.Second)
	if n := p.Cleanup(); n != 1 {
		t.Fatalf("last pass released %d, want 1", n)
	}
	if s := p.Stats(); s.CleanupPasses != 4 || s.Tiers[pool.Tiny].Hits != 1 {
		t.Errorf("CleanupPasses %d, hits %d; want 4, 1 (hits survive release)", s.CleanupPasses, s.Tiers[pool.Tiny].Hits)
	}
	// The tier works on after a release.
	if err := p.Put(p.Get(100)); err != nil {
		t.Errorf("Get/Put after release: %v", err)
	}
}

func TestCleanupAbandonsLongHeldUnlessPinned(t *testing.T) {
	clk := newFakeClock()
	p := newPool(t, manualConfig(clk)) // MaxHold 30 s
	lost, kept := p.Get(1000), p.Get(1000)
	copy(lost.Bytes(), "still mine")
	if err := p.Pin(kept); err != nil {
		t.Fatal(err)
	}
	p.Cleanup()
	clk.Advance(30 * time.Second)
	p.Cleanup()
	s := p.Stats().Tiers[pool.Small]
	if s.Abandoned != 1 || s.Buffers != 1 || s.InUse != 1 || s.Pinned != 1 {
		t.Fatalf("after MaxHold: %+v, want 1 abandoned, the pinned one still owned", s)
	}
	if got := string(lost.Bytes()[:10]); got != "still mine" {
		t.Errorf("abandoned buffer's bytes = %q: the holder must keep them", got)
	}
	// An abandoned buffer is never handed out again.
	var others []*pool.Buffer
	for range 4 {
		b := p.Get(1000)
		if b == lost {
			t.Fatal("Get handed out an abandoned buffer")
		}
		others = append(others, b)
	}
	for _, b := range others {
		p.Put(b)
	}
	if err := p.Put(lost); err != nil {
		t.Errorf("late Put = %v, want nil", err)
	}
	if err := p.Put(lost); !errors.Is(err, pool.ErrDoublePut) {
		t.Errorf("second late Put = %v, want ErrDoublePut", err)
	}
	if s := p.Stats().Tiers[pool.Small]; s.LatePuts != 1 {
		t.Errorf("LatePuts = %d, want 1", s.LatePuts)
	}
	// Unpinned, the kept buffer's hold time starts at the next pass.
	p.Unpin(kept)
	clk.Advance(30 * time.Second)
	p.Cleanup()
	if s := p.Stats().Tiers[pool.Small]; s.Abandoned != 1 {
		t.Errorf("Abandoned = %d right after Unpin, want still 1", s.Abandoned)
	}
	clk.Advance(30 * time.Second)
	p.Cleanup()
	if s := p.Stats().Tiers[pool.Small]; s.Abandoned != 2 {
		t.Errorf("Abandoned = %d after MaxHold unpinned, want 2", s.Abandoned)
	}
	p.Put(kept)
}

func TestMaxHoldZeroNeverAbandons(t *testing.T) {
	clk := newFakeClock()
	cfg := manualConfig(clk)
	cfg.MaxHold = 0
	p := newPool(t, cfg)
	b := p.Get(10)
	for range 3 {
		p.Cleanup()
		clk.Advance(time.Hour)
	}
	if s := p.Stats().Tiers[pool.Tiny]; s.Abandoned != 0 || s.InUse != 1 {
		t.Errorf("with MaxHold 0: %+v, want nothing abandoned", s)
	}
	p.Put(b)
}

func TestCleanupGoroutineRuns(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.CleanupInterval = 5 * time.Millisecond
	cfg.MaxIdle = time.Millisecond
	p := newPool(t, cfg)
	p.Put(p.Get(100))
	poll.Wait(t, 5*time.Second, "the cleanup goroutine to release the idle buffer", func() bool {
		return p.Stats().Tiers[pool.Tiny].Released == 1
	})
	if s := p.Stats(); s.CleanupPasses < 2 {
		t.Errorf("CleanupPasses = %d, want >= 2 (one to note, one to release)", s.CleanupPasses)
	}
}

func TestClose(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	held := p.Get(100)
	if err := p.Put(p.Get(100)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WarmupTiers([pool.NumTiers]int{pool.Large: 2}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.Close(); err != nil {
			t.Fatalf("Close = %v, want nil (idempotent)", err)
		}
	}
	s := p.Stats()
	if s.Total.Idle != 0 || s.Total.Released != 3 || s.Total.InUse != 1 {
		t.Errorf("after Close: idle %d released %d in use %d; want 0, 3, 1", s.Total.Idle, s.Total.Released, s.Total.InUse)
	}
	// A closed pool still serves Gets, with plain allocations.
	b := p.Get(100)
	if len(b.Bytes()) != 100 {
		t.Fatalf("Get after Close: len %d", len(b.Bytes()))
	}
	for _, b := range []*pool.Buffer{b, held} {
		if err := p.Put(b); err != nil {
			t.Errorf("Put after Close = %v, want nil", err)
		}
	}
	if err := p.Put(b); !errors.Is(err, pool.ErrDoublePut) {
		t.Errorf("double Put after Close = %v, want ErrDoublePut", err)
	}
	s = p.Stats()
	if s.Total.InUse != 0 || s.Total.Buffers != 0 || s.OwnedBytes != 0 {
		t.Errorf("after Close and Puts: in use %d, buffers %d, owned %d; want 0", s.Total.InUse, s.Total.Buffers, s.OwnedBytes)
	}
}

func TestNilPool(t *testing.T) {
	var p *pool.Pool
	b := p.Get(300)
	if len(b.Bytes()) != 300 || b.Cap() != 300 {
		t.Errorf("nil Pool Get(300): len %d cap %d, want 300, 300", len(b.Bytes()), b.Cap())
	}
	if err := p.Pin(b); err != nil {
		t.Errorf("nil Pool Pin = %v", err)
	}
	if err := p.Put(b); !errors.Is(err, pool.ErrPinned) {
		t.Errorf("nil Pool Put pinned = %v, want ErrPinned", err)
	}
	if err := p.Unpin(b); err != nil {
		t.Errorf("nil Pool Unpin = %v", err)
	}
	if err := p.Put(b); err != nil {
		t.Errorf("nil Pool Put = %v", err)
	}
	if err := p.Put(b); !errors.Is(err, pool.ErrDoublePut) {
		t.Errorf("nil Pool double Put = %v, want ErrDoublePut", err)
	}
	other := newPool(t, pool.DefaultConfig())
	ob := other.Get(1)
	defer other.Put(ob)
	if err := p.Put(ob); !errors.Is(err, pool.ErrForeign) {
		t.Errorf("nil Pool Put of a pooled buffer = %v, want ErrForeign", err)
	}
	if n, err := p.Warmup(); n != 0 || err != nil {
		t.Errorf("nil Pool Warmup = %d, %v", n, err)
	}
	if s := p.Stats(); s != (pool.Stats{}) {
		t.Errorf("nil Pool Stats = %+v, want zero", s)
	}
	if p.Pressure() != 0 || p.Cleanup() != 0 || p.Close() != nil {
		t.Error("nil Pool Pressure/Cleanup/Close not zero")
	}
}

func TestStatsJSON(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.Budget = 1 << 20
	p := newPool(t, cfg)
	p.Put(p.Get(10))
	data, err := json.Marshal(p.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		`"tiers":[{"tier":"tiny","size":256,`, `"hit_rate":`, `"in_use_bytes":`, `"idle_bytes":`,
		`"efficiency":0.0390625`, `"double_put":`, `"oversize":{"gets":0`, `"pressure":0`,
		`"budget_bytes":1048576`, `"total":{"tier":"total"`, `"cleanup_passes":`,
	} {
		if !strings.Contains(string(data), key) {
			t.Errorf("Stats JSON lacks %s:\n%s", key, data)
		}
	}
	var back pool.Stats
	if err := json.Unmarshal(data, &back); err != nil || back != p.Stats() {
		t.Errorf("Stats JSON does not round-trip: %v", err)
	}
}

func TestSteadyStateAllocatesNothing(t *testing.T) {
	p := newPool(t, pool.DefaultConfig())
	for _, size := range []int{100, 4000, 60000, 1 << 20, 4 << 20} {
		p.Put(p.Get(size))
		allocs := testing.AllocsPerRun(100, func() {
			b := p.Get(size)
			b.Bytes()[0] = 1
			p.Put(b)
		})
		if allocs != 0 {
			t.Errorf("Get/Put(%d): %v allocs per cycle, want 0", size, allocs)
		}
	}
}
