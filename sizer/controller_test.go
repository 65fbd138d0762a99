package sizer

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newTestController returns a Controller on a fake clock (pure logic: time
// moves only when the test advances it).
func newTestController(t testing.TB, cfg Config) (*Controller, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg.Clock = clock.Now
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clock
}

// sizes calls Size once per Interval, k times, re-reporting est each time.
func sizes(c *Controller, clock *fakeClock, est Estimate, avgBytes, k int) []int {
	var out []int
	for range k {
		c.Report("w", est)
		out = append(out, c.Size(avgBytes))
		clock.Advance(c.Config().Interval)
	}
	return out
}

func TestSizeFollowsModel(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		est  Estimate
		want []int
	}{
		{"linear: ×2 steps, then the last 25%", Config{}, Estimate{Fixed: 20 * ms, PerRecord: 160 * us, Samples: 10}, []int{200, 400, 500, 500}},
		{"shrink: ÷2 steps", Config{Initial: 1000}, Estimate{PerRecord: 1 * ms, Samples: 10}, []int{500, 250, 125, 100, 100}},
		{"no per-record cost: Max", Config{}, Estimate{Fixed: 10 * ms, Samples: 10}, []int{200, 400, 800, 1000, 1000}},
		{"target unreachable: Min", Config{Min: 10}, Estimate{Fixed: 150 * ms, PerRecord: us, Samples: 10}, []int{50, 25, 13, 10, 10}},
		{"Max 10000", Config{Max: 10000}, Estimate{PerRecord: 10 * us, Samples: 10}, []int{200, 400, 800, 1600, 3200, 6400, 10000, 10000}},
		{"inside the deadband: stays", Config{}, Estimate{PerRecord: 930 * us, Samples: 10}, []int{100, 100}},
		{"just outside: moves", Config{}, Estimate{PerRecord: 880 * us, Samples: 10}, []int{114, 114}},
		{"no samples: Initial", Config{}, Estimate{PerRecord: 10 * ms}, []int{100, 100}},
		{"hint", Config{}, Estimate{PerRecord: 10 * us, Samples: 10, Hint: 150}, []int{150, 150}},
		{"hint above Max", Config{Max: 300}, Estimate{Hint: 5000}, []int{200, 300, 300}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clock := newTestController(t, tt.cfg)
			if got := sizes(c, clock, tt.est, 0, len(tt.want)); !cmp.Equal(got, tt.want) {
				t.Errorf("sizes = %v; want %v", got, tt.want)
			}
		})
	}
}

// TestOneAdjustmentPerInterval: on the fake clock, the size moves at most
// once per Interval however often it is asked.
func TestOneAdjustmentPerInterval(t *testing.T) {
	c, clock := newTestController(t, Config{Interval: time.Second})
	c.Report("w", Estimate{PerRecord: 10 * us, Samples: 10})
	for range 100 {
		c.Size(0)
	}
	if got := c.Adjustments(); got != 1 {
		t.Fatalf("Adjustments() after 100 calls at one instant = %d; want 1", got)
	}
	clock.Advance(time.Second - time.Nanosecond)
	if got := c.Size(0); got != 200 || c.Adjustments() != 1 {
		t.Fatalf("before the Interval: Size = %d, Adjustments = %d; want 200, 1", got, c.Adjustments())
	}
	clock.Advance(time.Nanosecond)
	if got := c.Size(0); got != 400 || c.Adjustments() != 2 {
		t.Fatalf("after the Interval: Size = %d, Adjustments = %d; want 400, 2", got, c.Adjustments())
	}
}

func TestStaleEstimatesAreForgotten(t *testing.T) {
	c, clock := newTestController(t, Config{MaxAge: 5 * time.Second})
	c.Report("w1", Estimate{PerRecord: 500 * us, Samples: 10})
	c.Report("w2", Estimate{PerRecord: 500 * us, Samples: 10})
	if got := c.Size(0); got != 200 {
		t.Fatalf("Size = %d; want 200", got)
	}
	c.Forget("w2")
	if got := c.Snapshot().Sources; got != 1 {
		t.Errorf("after Forget: Sources = %d; want 1", got)
	}
	clock.Advance(5 * time.Second)
	st := c.Snapshot()
	if st.Sources != 0 || st.Estimate != (Estimate{}) {
		t.Errorf("after MaxAge: Sources = %d, Estimate = %+v; want none", st.Sources, st.Estimate)
	}
	// Without fresh data the size holds where it was.
	if got := c.Size(0); got != 200 {
		t.Errorf("Size without fresh estimates = %d; want 200 (held)", got)
	}
}

func TestMergeWeights(t *testing.T) {
	tests := []struct {
		name    string
		reports []Estimate // w0, w1, ...
		ages    []time.Duration
		want    Estimate
	}{
		{
			name:    "equal samples: mean",
			reports: []Estimate{{Fixed: 10 * ms, PerRecord: 100 * us, Samples: 50}, {Fixed: 30 * ms, PerRecord: 300 * us, Samples: 50}},
			ages:    []time.Duration{0, 0},
			want:    Estimate{Fixed: 20 * ms, PerRecord: 200 * us, Samples: 100},
		},
		{
			name:    "by samples, capped at 100",
			reports: []Estimate{{Fixed: 10 * ms, Samples: 1_000_000}, {Fixed: 40 * ms, Samples: 50}},
			ages:    []time.Duration{0, 0},
			want:    Estimate{Fixed: 20 * ms, Samples: 1_000_050},
		},
		{
			name:    "half as fresh, half the weight",
			reports: []Estimate{{Fixed: 10 * ms, Samples: 10}, {Fixed: 40 * ms, Samples: 10}},
			ages:    []time.Duration{2500 * ms, 0},
			want:    Estimate{Fixed: 30 * ms, Samples: 20},
		},
		{
			name:    "record bytes from those that know",
			reports: []Estimate{{Samples: 10, RecordBytes: 100}, {Samples: 10}},
			ages:    []time.Duration{0, 0},
			want:    Estimate{Samples: 20, RecordBytes: 100},
		},
		{
			name:    "hints averaged, a hint without samples counts",
			reports: []Estimate{{Hint: 100}, {Samples: 10, Hint: 300}, {Samples: 10}},
			ages:    []time.Duration{0, 0, 0},
			want:    Estimate{Samples: 20, Hint: 282}, // (1·100 + 10·300) / 11
		},
		{
			name:    "negative and nonsense values sanitised",
			reports: []Estimate{{Fixed: -ms, PerRecord: -us, Samples: 10, Hint: -3, RecordBytes: math.NaN()}, {Samples: -5, Fixed: time.Hour}},
			ages:    []time.Duration{0, 0},
			want:    Estimate{Samples: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clock := newTestController(t, Config{MaxAge: 5 * time.Second})
			// Report the oldest first: ages are relative to the end.
			start := clock.Now()
			for i, est := range tt.reports {
				clock.t = start.Add(-tt.ages[i])
				c.Report(fmt.Sprintf("w%d", i), est)
			}
			clock.t = start
			got := c.Snapshot().Estimate
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b time.Duration) bool { return within(a, b, 1e-9) })); diff != "" {
				t.Errorf("merged estimate mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestByteLimit(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		est      Estimate
		avgBytes int
		want     int
		bound    string
	}{
		{"fits", Config{MaxBytes: 100_000}, Estimate{}, 100, 100, BoundInitial},
		{"limits", Config{MaxBytes: 1000}, Estimate{}, 30, 33, BoundBytes},
		{"below Min: the message limit wins", Config{MaxBytes: 1000, Min: 10}, Estimate{}, 300, 3, BoundBytes},
		{"never below 1", Config{MaxBytes: 1000}, Estimate{}, 1 << 30, 1, BoundBytes},
		{"unknown size: the workers' record size", Config{MaxBytes: 1000}, Estimate{Samples: 10, RecordBytes: 50, PerRecord: us}, 0, 20, BoundBytes},
		{"unknown everywhere: no limit", Config{MaxBytes: 1000}, Estimate{}, 0, 100, BoundInitial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestController(t, tt.cfg)
			if tt.est != (Estimate{}) {
				c.Report("w", tt.est)
			}
			if got := c.Size(tt.avgBytes); got != tt.want {
				t.Errorf("Size(%d) = %d; want %d", tt.avgBytes, got, tt.want)
			}
			if got := c.Snapshot().Bound; got != tt.bound {
				t.Errorf("Bound = %q; want %q", got, tt.bound)
			}
		})
	}
}

func TestPressureLimit(t *testing.T) {
	tests := []struct {
		size, lo int
		p        float64
		want     int
	}{
		{1000, 1, 0, 1000},
		{1000, 1, 0.8, 1000},
		{1001, 1, 0.9, 501},
		{1001, 1, 0.95, 251},
		{1000, 1, 1, 1},
		{1000, 100, 0.9, 550},
		{1000, 100, 1, 100},
		{50, 100, 1, 50}, // already below Min (byte limit): unchanged
		{1000, 1, math.NaN(), 1000},
		{1000, 1, 7, 1},
	}
	for _, tt := range tests {
		if got := pressureLimit(tt.size, tt.lo, tt.p); got != tt.want {
			t.Errorf("pressureLimit(%d, %d, %v) = %d; want %d", tt.size, tt.lo, tt.p, got, tt.want)
		}
	}
}

func TestSetPressure(t *testing.T) {
	c, clock := newTestController(t, Config{Initial: 1000, Min: 10})
	tests := []struct {
		p     float64
		after time.Duration // the clock's advance before Size
		want  int
	}{
		{0.5, 0, 1000},
		{0.9, 0, 505},
		{math.NaN(), 0, 505}, // ignored
		{2, 0, 10},           // shrunk at once
		// Released, the size grows back from 10 by ×2 per Interval (1 s),
		// continuously, up to the unshrunk 1000 ...
		{-1, 0, 10},
		{0, 500 * time.Millisecond, 14},
		{0, 500 * time.Millisecond, 20},
		// ... but not while the pressure is above half the knee.
		{0.5, 0, 20},
		{0.5, 3 * time.Second, 20},
		{0, 0, 20},
		{0, 3 * time.Second, 160},
		{0.85, 0, 160},            // 752 by pressure: above the hold
		{0.95, 0, 160},            // 257 by pressure: the hold is lower
		{0, 4 * time.Second, 160}, // those 4 s were at 0.95
		{0, 4 * time.Second, 1000},
		{0.9, 0, 505}, // the hold gone, pressure alone
	}
	for i, tt := range tests {
		clock.Advance(tt.after)
		c.SetPressure(tt.p)
		if got := c.Size(0); got != tt.want {
			t.Errorf("%d: SetPressure(%v) after %v: Size = %d; want %d", i, tt.p, tt.after, got, tt.want)
		}
	}
	c.SetPressure(0.9)
	if st := c.Snapshot(); st.Bound != BoundPressure || st.Pressure != 0.9 {
		t.Errorf("Snapshot = %+v; want Bound %q, Pressure 0.9", st, BoundPressure)
	}
	c.SetPressure(0)
	if st := c.Snapshot(); st.Bound != BoundPressure || st.Size != 505 {
		t.Errorf("Snapshot while growing back = %+v; want Size 505, Bound %q", st, BoundPressure)
	}
}

// TestSizeProperties: whatever the estimates, record sizes and pressure,
// Size is in [1, Max], at least Min unless the byte limit is below Min,
// within the byte limit unless it is 1, and never larger under more
// pressure. Two controllers see the same operations with different
// pressures.
func TestSizeProperties(t *testing.T) {
	seed := uint64(simSeed)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dur := func() time.Duration {
		switch rng.IntN(6) {
		case 0:
			return 0
		case 1:
			return -time.Duration(rng.Int64())
		case 2:
			return time.Duration(rng.Int64())
		}
		return time.Duration(rng.Int64N(int64(time.Second)))
	}
	for round := range 200 {
		lo := 1 + rng.IntN(50)
		cfg := Config{Min: lo, Max: lo + rng.IntN(20000), MaxBytes: 1 + rng.IntN(1<<20)}
		low, clock := newTestController(t, cfg)
		high, _ := newTestController(t, cfg)
		high.cfg.Clock = clock.Now
		for i := range 100 {
			est := Estimate{Fixed: dur(), PerRecord: dur(), Samples: rng.IntN(200) - 10, Hint: rng.IntN(3) * rng.IntN(30000), RecordBytes: rng.Float64() * 1000}
			src := fmt.Sprint("w", rng.IntN(4))
			low.Report(src, est)
			high.Report(src, est)
			p := rng.Float64() * 1.2
			low.SetPressure(p)
			high.SetPressure(p + rng.Float64()*0.5)
			avg := rng.IntN(5000) - 100
			a, b := low.Size(avg), high.Size(avg)
			recBytes := float64(avg)
			if avg <= 0 {
				recBytes = low.Snapshot().Estimate.RecordBytes
			}
			byBytes := math.MaxInt
			if recBytes > 0 {
				byBytes = max(int(float64(cfg.MaxBytes)/recBytes), 1)
			}
			for _, n := range []int{a, b} {
				if n < 1 || n > cfg.Max || (n < lo && n != byBytes) || (n > 1 && float64(n)*recBytes > float64(cfg.MaxBytes)) {
					t.Fatalf("round %d op %d: Size(%d) = %d; Min %d, Max %d, MaxBytes %d", round, i, avg, n, lo, cfg.Max, cfg.MaxBytes)
				}
			}
			if b > a {
				t.Fatalf("round %d op %d: Size = %d under more pressure than %d", round, i, b, a)
			}
			clock.Advance(time.Duration(rng.Int64N(int64(2 * time.Second))))
		}
	}
}

func TestSnapshot(t *testing.T) {
	c, clock := newTestController(t, Config{})
	if got, want := c.Snapshot(), (Status{Size: 100, Target: 100, Bound: BoundInitial}); !cmp.Equal(got, want) {
		t.Errorf("Snapshot before data = %+v; want %+v", got, want)
	}
	c.Report("w", Estimate{PerRecord: 250 * us, Samples: 10})
	c.Size(0)
	got := c.Snapshot()
	want := Status{
		Size: 200, Target: 400, Bound: BoundModel,
		Estimate: Estimate{PerRecord: 250 * us, Samples: 10}, Sources: 1,
		Adjustments: 1, LastAdjust: clock.Now(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Snapshot mismatch (-want +got):\n%s", diff)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"size":200`, `"target":400`, `"bound":"model"`, `"estimate":{`, `"sources":1`, `"adjustments":1`, `"last_adjust":"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("Status JSON %s lacks %s", b, key)
		}
	}
}

func TestTooManySources(t *testing.T) {
	c, clock := newTestController(t, Config{MaxAge: time.Hour})
	for i := range maxSources + 1 {
		c.Report(fmt.Sprint("w", i), Estimate{Samples: 1})
		clock.Advance(time.Millisecond)
	}
	if got := c.Snapshot().Sources; got != maxSources {
		t.Errorf("Sources = %d; want %d", got, maxSources)
	}
	c.mu.Lock()
	_, oldest := c.sources["w0"]
	_, newest := c.sources[fmt.Sprint("w", maxSources)]
	c.mu.Unlock()
	if oldest || !newest {
		t.Errorf("w0 kept = %v, newest kept = %v; want the oldest replaced by the newest", oldest, newest)
	}
}

// TestControllerHammer: reports, sizes, pressure and snapshots from many
// goroutines at once (run with -race).
func TestControllerHammer(t *testing.T) {
	c, err := New(Config{Interval: time.Microsecond}) // the real clock
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			e := NewEstimator(0)
			for i := range 300 {
				e.Observe(100+i, 1000, time.Duration(i)*us)
				c.Report(fmt.Sprint("w", g), e.Estimate())
				c.SetPressure(float64(i%10) / 10)
				if n := c.Size(100); n < 1 || n > 1000 {
					t.Errorf("Size = %d; outside [1, 1000]", n)
					return
				}
				if i%30 == 0 {
					c.Snapshot()
				}
			}
		})
	}
	wg.Wait()
}

func TestSeedRule(t *testing.T) {
	tests := []struct {
		name       string
		current    int
		latency    time.Duration
		throughput float64
		want       int
	}{
		{"slow: shrink 20%", 500, 150 * ms, 3333, 400},
		{"slow but small: keep", 10, 150 * ms, 66, 12}, // cannot shrink at 10, so it grows
		{"low throughput: grow 20%", 100, 50 * ms, 500, 120},
		{"low throughput at 1000: keep", 1000, 50 * ms, 500, 1000},
		{"fast and quick: keep", 100, 50 * ms, 2000, 100},
		{"exactly at target: not slow", 100, 100 * ms, 2000, 100},
		{"integer rounding as in the seed", 13, 150 * ms, 86, 10},
		{"tiny sizes do not grow (seed arithmetic)", 4, ms, 10, 4},
		{"no size: no opinion", 0, ms, 0, 0},
		{"huge size does not overflow", math.MaxInt, time.Hour, 1, math.MaxInt / 100 * 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SeedRule(tt.current, tt.latency, tt.throughput); got != tt.want {
				t.Errorf("SeedRule(%d, %v, %v) = %d; want %d", tt.current, tt.latency, tt.throughput, got, tt.want)
			}
		})
	}
}
