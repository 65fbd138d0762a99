package pool_test

import (
	"sync"
	"testing"
	"time"

	"github.com/dataflare/dataflare/pool"
)

// fakeClock is a Config.Clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// manualConfig is DefaultConfig with a fake clock and a cleanup interval so
// long that only the test's own Cleanup calls run passes.
func manualConfig(clk *fakeClock) pool.Config {
	cfg := pool.DefaultConfig()
	cfg.CleanupInterval = time.Hour
	cfg.MaxIdle = 10 * time.Second
	cfg.MaxHold = 30 * time.Second
	cfg.Clock = clk.Now
	return cfg
}

// newPool returns a Pool for cfg, closed when the test ends.
func newPool(t testing.TB, cfg pool.Config) *pool.Pool {
	t.Helper()
	p, err := pool.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}
