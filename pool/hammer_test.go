package pool_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataflare/dataflare/pool"
)

// held is one buffer a hammer worker holds, with the byte it wrote into it.
type held struct {
	b     *pool.Buffer
	token byte
	pins  int
}

// marks returns the offsets a worker writes its token at: every byte of a
// small buffer, and for a large one the first and last 64 bytes and one byte
// per 4 KiB page.
func marks(n int, f func(i int)) {
	if n <= 4096 {
		for i := range n {
			f(i)
		}
		return
	}
	for i := range 64 {
		f(i)
		f(n - 1 - i)
	}
	for i := 4096; i < n; i += 4096 {
		f(i)
	}
}

// hammerSize picks a size: mostly small, sometimes large, rarely oversize.
func hammerSize(rng *rand.Rand) int {
	switch r := rng.IntN(1000); {
	case r < 500:
		return rng.IntN(257)
	case r < 750:
		return 257 + rng.IntN(4096-256)
	case r < 900:
		return 4097 + rng.IntN(64<<10-4096)
	case r < 970:
		return 64<<10 + 1 + rng.IntN(1<<20-64<<10)
	case r < 995:
		return 1<<20 + 1 + rng.IntN(3<<20)
	default:
		return pool.MaxSize + 1 + rng.IntN(1<<20)
	}
}

// TestHammer runs many goroutines on one small Pool — random sizes, random
// Get, Put, Pin and Unpin — while another runs cleanup passes on a fast
// fake clock (so buffers are released and abandoned) and forces garbage
// collections (so the per-core caches lose buffers). It checks that no
// buffer is ever handed to two holders at once, both by bookkeeping and by
// the bytes each holder wrote, and that the statistics add up afterwards.
func TestHammer(t *testing.T) {
	workers, ops := 8, 4000
	if testing.Short() {
		ops = 1000
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	clk := newFakeClock()
	cfg := pool.DefaultConfig()
	cfg.MaxBuffers = [pool.NumTiers]int{64, 32, 8, 4, 2} // small, so tiers fill and overflow
	cfg.CleanupInterval = time.Hour                      // passes come from the test
	cfg.MaxIdle = time.Second
	cfg.MaxHold = 5 * time.Second
	cfg.Budget = 12 << 20
	cfg.Clock = clk.Now
	p := newPool(t, cfg)

	var (
		owners     sync.Map // *pool.Buffer → worker id
		gets       [pool.NumTiers + 1]atomic.Uint64
		pinnedPuts atomic.Uint64
		wg         sync.WaitGroup
	)
	done := make(chan struct{})
	var janitor sync.WaitGroup
	janitor.Add(1)
	go func() { // stops when done is closed
		defer janitor.Done()
		rng := rand.New(rand.NewPCG(seed, 999))
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			p.Cleanup()
			clk.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
			s := p.Stats()
			if s.Total.InUse < 0 || s.Total.Idle < 0 || s.Total.Hits > s.Total.Hits+s.Total.Misses {
				t.Errorf("inconsistent stats: %+v", s.Total)
			}
			if i%20 == 0 {
				runtime.GC()
			}
			runtime.Gosched()
		}
	}()

	for w := range workers {
		wg.Add(1)
		go func() { // ends after ops operations
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine []held
			check := func(h held, when string) {
				bs := h.b.Bytes()
				marks(len(bs), func(i int) {
					if bs[i] != h.token {
						t.Errorf("worker %d %s: byte %d of its %d-byte buffer is %d, want %d: someone else wrote it",
							w, when, i, len(bs), bs[i], h.token)
					}
				})
			}
			put := func(i int) {
				h := mine[i]
				check(h, "before Put")
				if h.pins > 0 {
					if err := p.Put(h.b); !errors.Is(err, pool.ErrPinned) {
						t.Errorf("Put of a pinned buffer = %v, want ErrPinned", err)
					}
					pinnedPuts.Add(1)
					return
				}
				owners.Delete(h.b) // before Put: afterwards someone else may own it
				if err := p.Put(h.b); err != nil {
					t.Errorf("Put = %v, want nil", err)
				}
				mine[i] = mine[len(mine)-1]
				mine = mine[:len(mine)-1]
			}
			for op := range ops {
				switch r := rng.IntN(100); {
				case r < 45 && len(mine) < 4:
					size := hammerSize(rng)
					b := p.Get(size)
					if len(b.Bytes()) != size {
						t.Errorf("Get(%d): len %d", size, len(b.Bytes()))
					}
					tier, ok := b.Tier()
					if !ok {
						tier = pool.NumTiers
					}
					gets[tier].Add(1)
					if other, loaded := owners.LoadOrStore(b, w); loaded {
						t.Errorf("worker %d got a buffer worker %d holds", w, other)
						continue
					}
					h := held{b: b, token: byte(w*53 + op)}
					bs := b.Bytes()
					marks(len(bs), func(i int) { bs[i] = h.token })
					mine = append(mine, h)
				case r < 85 && len(mine) > 0:
					put(rng.IntN(len(mine)))
				case r < 95 && len(mine) > 0:
					i := rng.IntN(len(mine))
					if mine[i].pins > 0 && rng.IntN(2) == 0 {
						if err := p.Unpin(mine[i].b); err != nil {
							t.Errorf("Unpin = %v", err)
						}
						mine[i].pins--
					} else {
						if err := p.Pin(mine[i].b); err != nil {
							t.Errorf("Pin = %v", err)
						}
						mine[i].pins++
					}
				case len(mine) > 0:
					check(mine[rng.IntN(len(mine))], "while holding")
				}
			}
			for i := range mine {
				for ; mine[i].pins > 0; mine[i].pins-- {
					p.Unpin(mine[i].b)
				}
			}
			for len(mine) > 0 {
				put(0)
			}
		}()
	}
	wg.Wait()
	close(done)
	janitor.Wait()

	s := p.Stats()
	if s.Total.InUse != 0 || s.Total.Pinned != 0 {
		t.Errorf("after every buffer was put back: in use %d, pinned %d; want 0", s.Total.InUse, s.Total.Pinned)
	}
	wantErrs := pool.ErrorStats{Pinned: pinnedPuts.Load(), Total: pinnedPuts.Load()}
	if s.Errors != wantErrs {
		t.Errorf("Errors = %+v, want %+v", s.Errors, wantErrs)
	}
	var owned int64
	for tier := range pool.Tier(pool.NumTiers) {
		ts := s.Tiers[tier]
		if got, want := ts.Hits+ts.Misses, gets[tier].Load(); got != want {
			t.Errorf("%v: hits %d + misses %d = %d, want the %d Gets", tier, ts.Hits, ts.Misses, got, want)
		}
		if ts.Buffers > cfg.MaxBuffers[tier] || ts.Idle != ts.Buffers {
			t.Errorf("%v: %d buffers, %d idle; want all idle, at most %d", tier, ts.Buffers, ts.Idle, cfg.MaxBuffers[tier])
		}
		owned += int64(ts.Buffers) * int64(tier.Size())
		t.Logf("%v: gets %d hits %d misses %d unpooled %d released %d abandoned %d late puts %d",
			tier, gets[tier].Load(), ts.Hits, ts.Misses, ts.Unpooled, ts.Released, ts.Abandoned, ts.LatePuts)
	}
	if s.OwnedBytes != owned || owned > cfg.Budget {
		t.Errorf("OwnedBytes = %d, buffers add up to %d, budget %d", s.OwnedBytes, owned, cfg.Budget)
	}
	if s.Oversize.Gets != gets[pool.NumTiers].Load() || s.Oversize.InUse != 0 {
		t.Errorf("Oversize = %+v, want %d gets, none in use", s.Oversize, gets[pool.NumTiers].Load())
	}
	if s.Total.Released == 0 || s.Total.Hits == 0 {
		t.Errorf("the hammer released %d and hit %d: it did not exercise cleanup and reuse", s.Total.Released, s.Total.Hits)
	}
}
