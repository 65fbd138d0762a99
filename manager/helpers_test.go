package manager_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newManager returns a Manager with no background goroutines, closed at the
// end of the test; edit changes its Config first.
func newManager(t testing.TB, edit func(*manager.Config)) *manager.Manager {
	t.Helper()
	cfg := manager.DefaultConfig()
	cfg.MonitoringInterval = -1
	cfg.HealthCheckInterval = -1
	if edit != nil {
		edit(&cfg)
	}
	m, err := manager.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// batchFunc is a BatchPlugin whose behaviour a test sets.
type batchFunc struct {
	name    string
	process func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error)
	hint    func(current int) int
	state   atomic.Int32 // a plugin.State
	closed  atomic.Int32 // Close calls
	check   func(ctx context.Context) error
}

func (p *batchFunc) Info() plugin.Info {
	return plugin.Info{Name: p.name, Version: "0.1.0", APIVersion: plugin.APIVersion}
}
func (p *batchFunc) State() plugin.State { return plugin.State(p.state.Load()) }
func (p *batchFunc) ProcessBatch(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	return p.process(ctx, cfg, recs)
}
func (p *batchFunc) OptimizeBatchSize(current int, _ time.Duration, _ float64) int {
	if p.hint == nil {
		return 0
	}
	return p.hint(current)
}
func (p *batchFunc) Close() error { p.closed.Add(1); return nil }

// checkedPlugin adds a HealthCheck method to batchFunc.
type checkedPlugin struct{ *batchFunc }

func (p checkedPlugin) HealthCheck(ctx context.Context) error { return p.check(ctx) }

// echo returns each value unchanged.
func echo(_ context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	out := make([]plugin.Result, len(recs))
	for i := range recs {
		out[i].Value = recs[i].Value
	}
	return &plugin.BatchResult{Results: out}, nil
}

func newBatchFunc(name string, f func(context.Context, plugin.Config, []plugin.Record) (*plugin.BatchResult, error)) *batchFunc {
	p := &batchFunc{name: name, process: f}
	p.state.Store(int32(plugin.Ready))
	return p
}

// recordFunc is a record-at-a-time Plugin.
type recordFunc func(ctx context.Context, cfg plugin.Config, r plugin.Record) (plugin.Result, error)

func (recordFunc) Info() plugin.Info { return plugin.Info{Name: "record", Version: "1.0.0"} }
func (f recordFunc) Process(ctx context.Context, cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
	return f(ctx, cfg, r)
}

// numbered returns n records whose values are their indexes.
func numbered(n int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Value = []byte(strconv.Itoa(i))
	}
	return recs
}

// values returns n records with the given value.
func values(n int, v string) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Value = []byte(v)
	}
	return recs
}
