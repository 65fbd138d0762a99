package pool_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/dataflare/dataflare/pool"
)

// benchSizes are the sizes of the comparison benchmarks: one per tier, each
// the whole tier, so every implementation hands out the same bytes.
var benchSizes = []int{256, 4 << 10, 64 << 10, 1 << 20, 4 << 20}

// touch writes the buffer the way a user would start to: one byte in every
// 4 KiB page and the last byte. It keeps the compiler from dropping the
// buffer and makes a fresh allocation pay for its pages, without turning the
// benchmark into a memory-bandwidth test.
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = byte(i)
	}
	b[len(b)-1] = 1
}

// runParallel is b.RunParallel that also reports the process's CPU time per
// op ("cpu-ns/op"): the figure to compare on a machine shared with other
// work, where wall time per op swings with the other processes' load.
// It includes the garbage collector's work, which make causes.
func runParallel(b *testing.B, body func(*testing.PB)) {
	start := cpuTime()
	b.RunParallel(body)
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkPool is one op = Get(size), touch, Put, on a pool with the
// default configuration (metrics on), from GOMAXPROCS goroutines.
func BenchmarkPool(b *testing.B) { benchPool(b, pool.DefaultConfig()) }

// BenchmarkPoolNoMetrics is BenchmarkPool with Config.Metrics off: no
// count of bytes asked, one atomic add less per Get.
func BenchmarkPoolNoMetrics(b *testing.B) {
	cfg := pool.DefaultConfig()
	cfg.Metrics = false
	benchPool(b, cfg)
}

func benchPool(b *testing.B, cfg pool.Config) {
	for _, size := range benchSizes {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			p, err := pool.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.ReportAllocs()
			b.ResetTimer()
			runParallel(b, func(pb *testing.PB) {
				for pb.Next() {
					buf := p.Get(size)
					touch(buf.Bytes())
					if err := p.Put(buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMake is the baseline without a pool: one op = make, touch, drop.
func BenchmarkMake(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			runParallel(b, func(pb *testing.PB) {
				for pb.Next() {
					touch(make([]byte, size))
				}
			})
		})
	}
}

// syncPools is the plain alternative: one sync.Pool per tier holding
// *[]byte (a pointer, so Put does not allocate), with the same tier choice.
type syncPools [pool.NumTiers]sync.Pool

func (s *syncPools) get(size int) *[]byte {
	t, _ := pool.TierFor(size)
	if bp, _ := s[t].Get().(*[]byte); bp != nil {
		*bp = (*bp)[:size]
		return bp
	}
	b := make([]byte, size, t.Size())
	return &b
}

func (s *syncPools) put(bp *[]byte) {
	t, _ := pool.TierFor(cap(*bp))
	s[t].Put(bp)
}

// BenchmarkSyncPool is one op = get from the tier's sync.Pool, touch, put.
func BenchmarkSyncPool(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			var s syncPools
			b.ReportAllocs()
			runParallel(b, func(pb *testing.PB) {
				for pb.Next() {
					bp := s.get(size)
					touch(*bp)
					s.put(bp)
				}
			})
		})
	}
}

// BenchmarkFirstGet measures the first Get of a 1 MiB buffer from a fresh
// pool, touching every page, cold (the Get allocates and faults the pages
// in) and after Warmup (the seed's "预热").
func BenchmarkFirstGet(b *testing.B) {
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			cfg := pool.DefaultConfig()
			cfg.Warm = [pool.NumTiers]int{pool.Large: 1}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				p, err := pool.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				if warm {
					p.Warmup()
				}
				b.StartTimer()
				buf := p.Get(1 << 20)
				bs := buf.Bytes()
				for i := 0; i < len(bs); i += 4096 {
					bs[i] = 1
				}
				p.Put(buf)
				b.StopTimer()
				p.Close()
				b.StartTimer()
			}
		})
	}
}
