package manager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*manager.Config)
	}{
		{"min size 0 after default is fine but negative is not", func(c *manager.Config) { c.Batch.MinSize = -1 }},
		{"max below min", func(c *manager.Config) { c.Batch.MinSize = 10; c.Batch.MaxSize = 5; c.Batch.DefaultSize = 5 }},
		{"default above max", func(c *manager.Config) { c.Batch.DefaultSize = 2000; c.Batch.MaxSize = 1000 }},
		{"negative target", func(c *manager.Config) { c.Batch.TargetLatency = -time.Second }},
		{"negative parallelism", func(c *manager.Config) { c.Batch.Parallelism = -1 }},
		{"negative max instances", func(c *manager.Config) { c.MaxInstances = -1 }},
		{"negative window", func(c *manager.Config) { c.Window = -time.Second }},
		{"error rate above 1", func(c *manager.Config) { c.Health.ErrorRate = 1.5 }},
		{"error rate NaN", func(c *manager.Config) { c.Health.ErrorRate = math.NaN() }},
		{"recover above error rate", func(c *manager.Config) { c.Health.ErrorRate = 0.3; c.Health.RecoverBelow = 0.4 }},
		{"negative min records", func(c *manager.Config) { c.Health.MinRecords = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := manager.DefaultConfig()
			tt.edit(&cfg)
			m, err := manager.New(cfg)
			if !errors.Is(err, manager.ErrInvalidConfig) {
				if m != nil {
					m.Close()
				}
				t.Fatalf("New error = %v, want one wrapping ErrInvalidConfig", err)
			}
		})
	}

	t.Run("zero config gets defaults", func(t *testing.T) {
		m, err := manager.New(manager.Config{MonitoringInterval: -1, HealthCheckInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		s := m.Report().Settings
		want := manager.Settings{
			Batch: manager.BatchConfig{DefaultSize: 100, MinSize: 1, MaxSize: 1000, TargetLatency: 100 * time.Millisecond,
				Parallelism: runtime.GOMAXPROCS(0)},
			Health:              manager.HealthConfig{ErrorRate: 0.5, RecoverBelow: 0.1, MinRecords: 20, MaxPanics: 3},
			Window:              time.Minute,
			MonitoringInterval:  -1,
			HealthCheckInterval: -1,
		}
		if diff := cmp.Diff(want, s); diff != "" {
			t.Errorf("settings (-want +got):\n%s", diff)
		}
	})
	t.Run("DefaultConfig", func(t *testing.T) {
		c := manager.DefaultConfig()
		if !c.AutoOptimize || c.MonitoringInterval != 30*time.Second || c.HealthCheckInterval != time.Minute || c.Batch.DefaultSize != 100 {
			t.Errorf("DefaultConfig() = %+v, want the original library's defaults", c)
		}
	})
}

func TestRegister(t *testing.T) {
	m := newManager(t, nil)
	ctx := context.Background()
	if err := m.RegisterBatch("b", newBatchFunc("b", echo)); err != nil {
		t.Fatal(err)
	}
	if err := m.Register("a", recordFunc(func(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
		return plugin.Value(r.Value), nil
	})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"duplicate batch", m.RegisterBatch("b", newBatchFunc("b", echo)), manager.ErrDuplicate},
		{"duplicate record", m.Register("a", recordFunc(nil)), manager.ErrDuplicate},
		{"empty name", m.RegisterBatch("", newBatchFunc("x", echo)), plugin.ErrInvalidInput},
		{"space in name", m.RegisterBatch("a b", newBatchFunc("x", echo)), plugin.ErrInvalidInput},
		{"nil batch plugin", m.RegisterBatch("n", nil), plugin.ErrInvalidInput},
		{"nil plugin", m.Register("n", nil), plugin.ErrInvalidInput},
		{"unregister unknown", m.Unregister("zz"), plugin.ErrUnknownPlugin},
	}
	_, err := m.ProcessBatch(ctx, "zz", nil, numbered(1))
	tests = append(tests, struct {
		name string
		err  error
		want error
	}{"process unknown", err, plugin.ErrUnknownPlugin})
	_, err = m.ProcessRecord(ctx, "zz", nil, plugin.Record{})
	tests = append(tests, struct {
		name string
		err  error
		want error
	}{"process record unknown", err, plugin.ErrUnknownPlugin})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("error = %v, want one matching %v", tt.err, tt.want)
			}
		})
	}
	if got := plugin.CodeOf(err); got != plugin.CodeUnknownPlugin {
		t.Errorf("unknown plugin error code = %v, want %v", got, plugin.CodeUnknownPlugin)
	}
	if _, ok := m.Metrics("zz"); ok {
		t.Error("Metrics of an unknown plugin: ok, want !ok")
	}
	if got := m.BatchSize("zz"); got != 0 {
		t.Errorf("BatchSize of an unknown plugin = %d, want 0", got)
	}
	var names []string
	for _, in := range m.Plugins() {
		names = append(names, in.Name)
	}
	if diff := cmp.Diff([]string{"record", "b"}, names); diff != "" { // sorted by registered name: a, b
		t.Errorf("Plugins() names (-want +got):\n%s", diff)
	}
	if err := m.Unregister("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ProcessBatch(ctx, "b", nil, numbered(1)); !errors.Is(err, plugin.ErrUnknownPlugin) {
		t.Errorf("after Unregister: error = %v, want ErrUnknownPlugin", err)
	}
	if err := m.RegisterBatch("b", newBatchFunc("b", echo)); err != nil {
		t.Errorf("registering again after Unregister: %v", err)
	}
}

func TestProcessRecord(t *testing.T) {
	m := newManager(t, nil)
	if err := builtin.Register(m); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := m.ProcessRecord(ctx, builtin.UpperName, nil, plugin.Record{Value: []byte("abc")})
	if err != nil || string(res.Value) != "ABC" {
		t.Errorf("ProcessRecord(upper, abc) = %q, %v; want ABC, nil", res.Value, err)
	}
	res, err = m.ProcessRecord(ctx, builtin.FailName, plugin.Config{"match": "x"}, plugin.Record{Value: []byte("xyz")})
	if !errors.Is(err, plugin.ErrProcessing) || res.Err != err {
		t.Errorf("ProcessRecord(fail, xyz) error = %v, Result.Err = %v; want the same error matching ErrProcessing", err, res.Err)
	}
}

func TestProcessBatchChunks(t *testing.T) {
	const parallel = 4
	var cur, peak atomic.Int32
	p := newBatchFunc("tag", func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		n := cur.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		defer cur.Add(-1)
		runtime.Gosched()
		out := make([]plugin.Result, len(recs))
		for i := range recs {
			switch {
			case string(recs[i].Value) == "7":
				out[i] = plugin.Drop()
			case strings.HasSuffix(string(recs[i].Value), "3"):
				out[i] = plugin.Fail(plugin.Errorf(plugin.CodeInvalidInput, "ends in 3"))
			default:
				out[i] = plugin.Value(append([]byte(cfg.Get("prefix")), recs[i].Value...))
			}
		}
		return &plugin.BatchResult{Results: out}, nil
	})
	m := newManager(t, func(c *manager.Config) {
		c.AutoOptimize = false
		c.Batch.DefaultSize = 10
		c.Batch.Parallelism = parallel
	})
	if err := m.RegisterBatch("tag", p); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n           int
		wantBatches uint64
	}{{0, 0}, {1, 1}, {10, 1}, {11, 2}, {995, 100}}
	var batches, total, failed uint64
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			res, err := m.ProcessBatch(context.Background(), "tag", plugin.Config{"prefix": "p"}, numbered(tt.n))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Results) != tt.n {
				t.Fatalf("%d results for %d records", len(res.Results), tt.n)
			}
			var wantFailed uint64
			for i, r := range res.Results {
				s := strconv.Itoa(i)
				switch {
				case i == 7:
					if !r.Dropped {
						t.Errorf("result %d = %+v, want dropped", i, r)
					}
				case strings.HasSuffix(s, "3"):
					wantFailed++
					if !errors.Is(r.Err, plugin.ErrInvalidInput) {
						t.Errorf("result %d error = %v, want ErrInvalidInput", i, r.Err)
					}
				default:
					if got, want := string(r.Value), "p"+s; got != want || r.Err != nil {
						t.Errorf("result %d = %q (%v), want %q", i, got, r.Err, want)
					}
				}
			}
			batches += tt.wantBatches
			total += uint64(tt.n)
			failed += wantFailed
			pm, _ := m.Metrics("tag")
			if pm.Batches != batches || pm.TotalProcessed != total || pm.Failed != failed || pm.Succeeded != total-failed {
				t.Errorf("metrics batches %d processed %d failed %d succeeded %d, want %d %d %d %d",
					pm.Batches, pm.TotalProcessed, pm.Failed, pm.Succeeded, batches, total, failed, total-failed)
			}
		})
	}
	if got := peak.Load(); got > parallel {
		t.Errorf("%d chunks ran at once, want at most Parallelism %d", got, parallel)
	}
	t.Logf("peak parallel chunks: %d", peak.Load())
}

func TestPanics(t *testing.T) {
	m := newManager(t, func(c *manager.Config) { c.Health.MaxPanics = 100 })
	ctx := context.Background()
	if err := m.Register("rec", recordFunc(func(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
		if string(r.Value) == "boom" {
			panic("record boom")
		}
		return plugin.Value(r.Value), nil
	})); err != nil {
		t.Fatal(err)
	}
	bp := newBatchFunc("batch", func(_ context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		if string(recs[0].Value) == "boom" {
			panic(errors.New("batch boom"))
		}
		return echo(nil, nil, recs)
	})
	if err := m.RegisterBatch("batch", bp); err != nil {
		t.Fatal(err)
	}

	t.Run("record", func(t *testing.T) {
		recs := []plugin.Record{{Value: []byte("ok")}, {Value: []byte("boom")}, {Value: []byte("fine")}}
		res, err := m.ProcessBatch(ctx, "rec", nil, recs)
		if err != nil {
			t.Fatalf("a panicking record failed the batch: %v", err)
		}
		if !errors.Is(res.Results[1].Err, plugin.ErrPanic) || res.Results[0].Err != nil || res.Results[2].Err != nil {
			t.Errorf("errors = %v, %v, %v; want only the second to match ErrPanic", res.Results[0].Err, res.Results[1].Err, res.Results[2].Err)
		}
		pm, _ := m.Metrics("rec")
		if pm.Panics != 1 || pm.Failed != 1 || pm.BatchErrors != 0 {
			t.Errorf("panics %d failed %d batch errors %d, want 1 1 0", pm.Panics, pm.Failed, pm.BatchErrors)
		}
	})
	t.Run("batch", func(t *testing.T) {
		_, err := m.ProcessBatch(ctx, "batch", nil, values(5, "boom"))
		if !errors.Is(err, plugin.ErrPanic) || !strings.Contains(err.Error(), "batch boom") {
			t.Fatalf("error = %v, want one matching ErrPanic naming the panic", err)
		}
		if _, err := m.ProcessBatch(ctx, "batch", nil, values(5, "ok")); err != nil {
			t.Errorf("the plugin is unusable after a panic: %v", err)
		}
		pm, _ := m.Metrics("batch")
		if pm.Panics != 1 || pm.BatchErrors != 1 || pm.Failed != 5 || pm.TotalProcessed != 10 {
			t.Errorf("panics %d batch errors %d failed %d processed %d, want 1 1 5 10", pm.Panics, pm.BatchErrors, pm.Failed, pm.TotalProcessed)
		}
	})
	t.Run("hook", func(t *testing.T) {
		bp.hint = func(int) int { panic("hint boom") }
		if _, err := m.ProcessBatch(ctx, "batch", nil, values(2, "ok")); err != nil {
			t.Errorf("a panicking OptimizeBatchSize failed the batch: %v", err)
		}
	})
}

func TestBadPluginResults(t *testing.T) {
	m := newManager(t, nil)
	tests := []struct {
		name string
		f    func(context.Context, plugin.Config, []plugin.Record) (*plugin.BatchResult, error)
	}{
		{"too few", func(_ context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
			return &plugin.BatchResult{Results: make([]plugin.Result, len(recs)-1)}, nil
		}},
		{"nil result", func(context.Context, plugin.Config, []plugin.Record) (*plugin.BatchResult, error) { return nil, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.ReplaceAll(tt.name, " ", "_")
			if err := m.RegisterBatch(name, newBatchFunc(name, tt.f)); err != nil {
				t.Fatal(err)
			}
			if _, err := m.ProcessBatch(context.Background(), name, nil, numbered(3)); !errors.Is(err, plugin.ErrProcessing) {
				t.Errorf("error = %v, want one matching ErrProcessing", err)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	m := newManager(t, nil)
	p := newBatchFunc("p", echo)
	p.state.Store(int32(plugin.Failed))
	if err := m.RegisterBatch("p", p); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ProcessBatch(context.Background(), "p", nil, numbered(1)); !errors.Is(err, plugin.ErrUnavailable) {
		t.Errorf("error = %v, want ErrUnavailable", err)
	}
	rep, err := m.HealthCheck(context.Background())
	if !errors.Is(err, fleet.ErrUnhealthy) || rep.Health != fleet.Failed {
		t.Errorf("HealthCheck = %v, %v; want failed and ErrUnhealthy", rep.Health, err)
	}
	p.state.Store(int32(plugin.Ready))
	if _, err := m.HealthCheck(context.Background()); err != nil {
		t.Errorf("HealthCheck after the plugin is ready again: %v", err)
	}
}

func TestHealthChecker(t *testing.T) {
	m := newManager(t, nil)
	var fail atomic.Bool
	p := checkedPlugin{newBatchFunc("c", echo)}
	p.check = func(context.Context) error {
		if fail.Load() {
			return errors.New("disk gone")
		}
		return nil
	}
	if err := m.RegisterBatch("c", p); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.HealthCheck(ctx); err != nil {
		t.Fatalf("HealthCheck: %v", err)
	}
	fail.Store(true)
	rep, err := m.HealthCheck(ctx)
	if !errors.Is(err, fleet.ErrUnhealthy) || !strings.Contains(err.Error(), "disk gone") {
		t.Errorf("HealthCheck error = %v, want ErrUnhealthy naming the check's error", err)
	}
	if len(rep.Plugins) != 1 || rep.Plugins[0].Health != fleet.Failed || rep.Plugins[0].State != plugin.Failed {
		t.Errorf("report = %+v, want c failed", rep.Plugins)
	}
	fail.Store(false)
	if _, err := m.HealthCheck(ctx); err != nil {
		t.Errorf("HealthCheck after the check passes again: %v", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.HealthCheck(done); !errors.Is(err, context.Canceled) {
		t.Errorf("HealthCheck with a done context: %v, want context.Canceled", err)
	}
}

func TestHealthDegradeAndRecover(t *testing.T) {
	clock := newFakeClock()
	m := newManager(t, func(c *manager.Config) {
		c.Clock = clock.Now
		c.Window = time.Minute
		c.Health = manager.HealthConfig{ErrorRate: 0.5, RecoverBelow: 0.1, MinRecords: 10, MaxPanics: 2}
	})
	if err := builtin.Register(m); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := plugin.Config{"match": "bad"}
	run := func(bad, good int) {
		t.Helper()
		recs := append(values(bad, "bad"), values(good, "good")...)
		if _, err := m.ProcessBatch(ctx, builtin.FailName, cfg, recs); err != nil {
			t.Fatal(err)
		}
	}
	health := func() (fleet.Health, plugin.State) {
		pm, _ := m.Metrics(builtin.FailName)
		return pm.Health, pm.State
	}
	steps := []struct {
		name      string
		do        func()
		want      fleet.Health
		wantState plugin.State
	}{
		{"few failures: too few records to judge", func() { run(9, 0) }, fleet.Healthy, plugin.Ready},
		{"tenth failure crosses the rate", func() { run(1, 0) }, fleet.Degraded, plugin.Degraded},
		{"mostly good but above RecoverBelow: still degraded", func() { run(2, 10) }, fleet.Degraded, plugin.Degraded},
		{"good records bring the rate below RecoverBelow", func() { run(0, 10) }, fleet.Healthy, plugin.Ready},
		{"below the rate stays healthy", func() { run(4, 6) }, fleet.Healthy, plugin.Ready},
		{"old failures age out, new ones count", func() { clock.Advance(2 * time.Minute); run(5, 5) }, fleet.Degraded, plugin.Degraded},
		{"too few records to recover", func() { run(1, 3) }, fleet.Degraded, plugin.Degraded},
		{"a failure within the window keeps it degraded", func() { clock.Advance(30 * time.Second) }, fleet.Degraded, plugin.Degraded},
		{"a whole window without failures recovers it", func() { clock.Advance(31 * time.Second) }, fleet.Healthy, plugin.Ready},
	}
	for _, s := range steps {
		s.do()
		if h, st := health(); h != s.want || st != s.wantState {
			t.Fatalf("%s: health %v state %v, want %v %v", s.name, h, st, s.want, s.wantState)
		}
		rep, err := m.HealthCheck(ctx)
		if (err != nil) != (s.want != fleet.Healthy) || (err != nil && !errors.Is(err, fleet.ErrUnhealthy)) {
			t.Fatalf("%s: HealthCheck error = %v, want ErrUnhealthy iff %v", s.name, err, s.want)
		}
		for _, p := range rep.Plugins {
			if p.Name == builtin.FailName && p.Health != s.want {
				t.Fatalf("%s: report says %v, want %v", s.name, p.Health, s.want)
			}
		}
	}

	// Panics degrade a plugin on their own.
	var boom atomic.Bool
	p := newBatchFunc("p", func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		if boom.Load() {
			panic("boom")
		}
		return echo(ctx, cfg, recs)
	})
	if err := m.RegisterBatch("p", p); err != nil {
		t.Fatal(err)
	}
	boom.Store(true)
	for range 2 {
		if _, err := m.ProcessBatch(ctx, "p", nil, numbered(1)); !errors.Is(err, plugin.ErrPanic) {
			t.Fatalf("error = %v, want ErrPanic", err)
		}
	}
	pm, _ := m.Metrics("p")
	if pm.Health != fleet.Degraded || !strings.Contains(pm.HealthReason, "2 panics") {
		t.Fatalf("after 2 panics: health %v (%q), want degraded for panics", pm.Health, pm.HealthReason)
	}
	boom.Store(false)
	for range 10 {
		if _, err := m.ProcessBatch(ctx, "p", nil, numbered(1)); err != nil {
			t.Fatal(err)
		}
	}
	if pm, _ := m.Metrics("p"); pm.Health != fleet.Healthy {
		t.Errorf("after 10 good records: health %v (%q), want healthy", pm.Health, pm.HealthReason)
	}
}

// latencyPlugin advances the fake clock by perRecord × records per call.
func latencyPlugin(clock *fakeClock, perRecord time.Duration) *batchFunc {
	return newBatchFunc("lat", func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		clock.Advance(perRecord * time.Duration(len(recs)))
		return echo(ctx, cfg, recs)
	})
}

func within(got, want time.Duration) bool {
	return math.Abs(float64(got-want)) <= float64(want)/32
}

func TestMetricsExact(t *testing.T) {
	clock := newFakeClock()
	m := newManager(t, func(c *manager.Config) {
		c.Clock = clock.Now
		c.AutoOptimize = false
	})
	var perRecord atomic.Int64
	p := newBatchFunc("lat", func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		clock.Advance(time.Duration(perRecord.Load()) * time.Duration(len(recs)))
		return echo(ctx, cfg, recs)
	})
	if err := m.RegisterBatch("lat", p); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 90 batches of 10 records at 1 ms per record (10 ms per batch), then
	// 10 at 10 ms per record (100 ms per batch): 1.9 s in all.
	for i := range 100 {
		perRecord.Store(int64(time.Millisecond))
		if i >= 90 {
			perRecord.Store(int64(10 * time.Millisecond))
		}
		res, err := m.ProcessBatch(ctx, "lat", nil, numbered(10))
		if err != nil {
			t.Fatal(err)
		}
		if want := 10 * time.Duration(perRecord.Load()); res.Duration != want {
			t.Fatalf("BatchResult.Duration = %v, want %v", res.Duration, want)
		}
	}
	pm, _ := m.Metrics("lat")
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"batch p50", pm.BatchLatency.P50, 10 * time.Millisecond},
		{"batch p90", pm.BatchLatency.P90, 10 * time.Millisecond},
		{"batch p99", pm.BatchLatency.P99, 100 * time.Millisecond},
		{"batch max", pm.BatchLatency.Max, 100 * time.Millisecond},
		{"batch mean", pm.BatchLatency.Mean, 19 * time.Millisecond},
		{"record p50", pm.RecordLatency.P50, time.Millisecond},
		{"record p99", pm.RecordLatency.P99, 10 * time.Millisecond},
		{"record mean", pm.RecordLatency.Mean, 1900 * time.Microsecond},
	}
	for _, c := range checks {
		if !within(c.got, c.want) {
			t.Errorf("%s = %v, want %v within 1/32", c.name, c.got, c.want)
		}
	}
	if pm.BatchLatency.Mean != 19*time.Millisecond || pm.BatchLatency.Max != 100*time.Millisecond {
		t.Errorf("batch mean %v max %v, want exactly 19ms and 100ms", pm.BatchLatency.Mean, pm.BatchLatency.Max)
	}
	if pm.TotalProcessed != 1000 || pm.Batches != 100 || pm.BatchHistogram.Count() != 100 || pm.RecordHistogram.Count() != 1000 {
		t.Errorf("processed %d batches %d histogram counts %d/%d, want 1000 100 100/1000",
			pm.TotalProcessed, pm.Batches, pm.BatchHistogram.Count(), pm.RecordHistogram.Count())
	}
	if pm.WindowSpan != 1900*time.Millisecond || pm.RecentProcessed != 1000 {
		t.Errorf("window span %v recent %d, want 1.9s 1000", pm.WindowSpan, pm.RecentProcessed)
	}
	if want := 1000 / 1.9; math.Abs(pm.Throughput-want) > 1e-9 {
		t.Errorf("throughput = %v, want %v", pm.Throughput, want)
	}
	// Two minutes later the window is empty.
	clock.Advance(2 * time.Minute)
	pm, _ = m.Metrics("lat")
	// The window forgets a slot (a twelfth) at a time: it covers 55 to 60 s.
	if pm.Throughput != 0 || pm.RecentProcessed != 0 || pm.WindowSpan <= 55*time.Second || pm.WindowSpan > time.Minute {
		t.Errorf("after 2 idle minutes: throughput %v recent %d span %v, want 0 0 (55s, 1m]", pm.Throughput, pm.RecentProcessed, pm.WindowSpan)
	}
	if pm.TotalProcessed != 1000 {
		t.Errorf("totals changed with time: %d", pm.TotalProcessed)
	}
}

func TestMerge(t *testing.T) {
	clock := newFakeClock()
	m := newManager(t, func(c *manager.Config) { c.Clock = clock.Now; c.AutoOptimize = false })
	if err := m.RegisterBatch("lat", latencyPlugin(clock, time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := builtin.Register(m); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 10 {
		if _, err := m.ProcessBatch(ctx, "lat", nil, numbered(5)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.ProcessBatch(ctx, builtin.FailName, plugin.Config{"match": "1"}, numbered(20)); err != nil {
		t.Fatal(err)
	}
	a, _ := m.Metrics("lat")
	b, _ := m.Metrics(builtin.FailName)
	var sum fleet.PluginMetrics
	sum.Merge(&a)
	sum.Merge(&b)
	if sum.Name != "lat" || sum.TotalProcessed != 70 || sum.Failed != b.Failed || sum.Batches != 11 {
		t.Errorf("merged name %q processed %d failed %d batches %d, want lat 70 %d 11", sum.Name, sum.TotalProcessed, sum.Failed, sum.Batches, b.Failed)
	}
	if got, want := sum.ErrorRate, float64(b.Failed)/70; got != want {
		t.Errorf("merged error rate = %v, want %v", got, want)
	}
	if got, want := sum.Throughput, a.Throughput+b.Throughput; got != want {
		t.Errorf("merged throughput = %v, want %v", got, want)
	}
	if got := sum.BatchHistogram.Count(); got != 11 {
		t.Errorf("merged batch histogram count = %d, want 11", got)
	}
}

func TestReportJSON(t *testing.T) {
	clock := newFakeClock()
	m := newManager(t, func(c *manager.Config) { c.Clock = clock.Now })
	if err := builtin.Register(m); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterBatch("lat", latencyPlugin(clock, time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := m.ProcessBatch(ctx, "lat", nil, numbered(10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.ProcessBatch(ctx, builtin.UpperName, nil, numbered(10)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.ExportPerformanceReport(&buf); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, buf.Bytes())
	}
	get := func(path string) any {
		var v any = raw
		for _, k := range strings.Split(path, ".") {
			switch x := v.(type) {
			case map[string]any:
				v = x[k]
			case []any:
				i, _ := strconv.Atoi(k)
				if i >= len(x) {
					return nil
				}
				v = x[i]
			default:
				return nil
			}
		}
		return v
	}
	wantFields := map[string]any{
		"total.name":                       "total",
		"total.total_processed":            40.0,
		"plugins.0.name":                   "delay",
		"plugins.4.name":                   "upper",
		"plugins.3.name":                   "lat",
		"plugins.3.batches":                3.0,
		"plugins.3.batch_latency.p50_ns":   float64(10 * time.Millisecond),
		"plugins.3.batch_histogram.count":  3.0,
		"plugins.3.record_histogram.count": 30.0,
		"plugins.3.health":                 "healthy",
		"plugins.3.state":                  "ready",
		"plugins.3.info.version":           "0.1.0",
		"settings.batch.default_size":      100.0,
		"settings.batch.target_latency_ns": float64(100 * time.Millisecond),
		"settings.health.error_rate":       0.5,
		"settings.auto_optimize":           true,
		"system.health":                    "healthy",
		"system.plugins.3.total_processed": 30.0,
		"system.uptime_ns":                 float64(30 * time.Millisecond),
		"system.runtime.go_version":        runtime.Version(),
		"generated_at":                     clock.Now().Format(time.RFC3339Nano),
		"plugins.3.throughput":             30 / 0.03,
		"plugins.3.recent_processed":       30.0,
		"plugins.3.window_ns":              float64(time.Minute),
		"plugins.3.batch_latency.max_ns":   float64(10 * time.Millisecond),
		"plugins.3.record_latency.mean_ns": float64(time.Millisecond),
		"plugins.3.error_rate":             0.0,
		"plugins.3.batch_size":             100.0,
		"system.auto_optimize":             true,
		"settings.health.min_records":      20.0,
		"settings.batch.parallelism":       float64(runtime.GOMAXPROCS(0)),
		"settings.window_ns":               float64(time.Minute),
		"settings.max_instances":           0.0,
		"total.record_histogram.count":     40.0,
	}
	for path, want := range wantFields {
		if got := get(path); !cmp.Equal(got, want) {
			t.Errorf("%s = %v (%T), want %v", path, got, got, want)
		}
	}
	if get("system.pool") == nil {
		t.Error("system.pool is missing")
	}
	var rep manager.PerformanceReport
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatalf("report does not decode into PerformanceReport: %v", err)
	}
	if rep.Plugins[3].BatchHistogram != m.Report().Plugins[3].BatchHistogram {
		t.Errorf("the histogram did not survive the JSON round trip")
	}
}

func TestMaxInstancesHammer(t *testing.T) {
	const limit = 3
	var cur, peak atomic.Int32
	p := newBatchFunc("h", func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		for range 20 {
			runtime.Gosched()
		}
		return echo(ctx, cfg, recs)
	})
	m := newManager(t, func(c *manager.Config) {
		c.MaxInstances = limit
		c.AutoOptimize = false
		c.Batch.DefaultSize = 4
		c.Batch.Parallelism = 4
	})
	if err := m.RegisterBatch("h", p); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	const goroutines, calls = 32, 20
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				n := 1 + (g+i)%10 // 1 to 3 chunks
				if _, err := m.ProcessBatch(context.Background(), "h", nil, numbered(n)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := peak.Load(); got > limit {
		t.Errorf("%d plugin calls ran at once, want at most MaxInstances %d", got, limit)
	}
	t.Logf("peak concurrent calls: %d", peak.Load())
	pm, _ := m.Metrics("h")
	if pm.InFlight != 0 || pm.TotalProcessed != goroutines*calls*5.5 {
		t.Errorf("in flight %d processed %d, want 0 %d", pm.InFlight, pm.TotalProcessed, goroutines*calls*11/2)
	}
}

func TestMaxInstancesBlocks(t *testing.T) {
	const limit = 2
	release := make(chan struct{})
	var entered atomic.Int32
	p := newBatchFunc("b", func(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
		entered.Add(1)
		<-release
		return echo(ctx, cfg, recs)
	})
	m := newManager(t, func(c *manager.Config) { c.MaxInstances = limit })
	if err := m.RegisterBatch("b", p); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.ProcessBatch(context.Background(), "b", nil, numbered(1)); err != nil {
				t.Error(err)
			}
		}()
	}
	poll.Wait(t, 10*time.Second, "two calls inside the plugin", func() bool { return entered.Load() == limit })
	if pm, _ := m.Metrics("b"); pm.InFlight != limit || pm.State != plugin.Running {
		t.Errorf("in flight %d state %v, want %d running", pm.InFlight, pm.State, limit)
	}
	// A caller whose context ends while it waits for a slot gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := m.ProcessBatch(ctx, "b", nil, numbered(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a slot past the deadline: %v, want DeadlineExceeded", err)
	}
	if got := entered.Load(); got != limit {
		t.Errorf("%d calls entered the plugin, want %d", got, limit)
	}
	close(release)
	wg.Wait()
	if got := entered.Load(); got != 5 {
		t.Errorf("%d calls ran in the end, want 5", got)
	}
}

func TestCancel(t *testing.T) {
	m := newManager(t, func(c *manager.Config) { c.AutoOptimize = false; c.Batch.DefaultSize = 2; c.Batch.Parallelism = 2 })
	if err := builtin.Register(m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := m.ProcessBatch(ctx, builtin.DelayName, plugin.Config{"ms": strconv.Itoa(builtin.MaxDelayMillis)}, numbered(10))
		errc <- err
	}()
	poll.Wait(t, 10*time.Second, "the delay plugin to run", func() bool { pm, _ := m.Metrics(builtin.DelayName); return pm.InFlight > 0 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
	pm, _ := m.Metrics(builtin.DelayName)
	if pm.Canceled == 0 || pm.Failed != 0 || pm.TotalProcessed != 0 || pm.Health != fleet.Healthy {
		t.Errorf("canceled %d failed %d processed %d health %v, want >0 0 0 healthy", pm.Canceled, pm.Failed, pm.TotalProcessed, pm.Health)
	}
	// A bad configuration is a batch error that counts as a failure.
	if _, err := m.ProcessBatch(context.Background(), builtin.DelayName, plugin.Config{"ms": "abc"}, numbered(3)); !errors.Is(err, plugin.ErrInvalidInput) {
		t.Errorf("delay ms=abc: %v, want ErrInvalidInput", err)
	}
}

// optional is a record-at-a-time Plugin with both optional methods: its
// State and its wish for the batch size reach the Manager through the
// adapter.
type optional struct {
	recordFunc
	state atomic.Int32 // a plugin.State
	want  atomic.Int64 // OptimizeBatchSize's answer
}

func (p *optional) State() plugin.State { return plugin.State(p.state.Load()) }
func (p *optional) OptimizeBatchSize(int, time.Duration, float64) int {
	return int(p.want.Load())
}

func TestOptionalMethods(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	m := newManager(t, func(c *manager.Config) {
		c.Clock = clock.Now
		c.Batch.DefaultSize = 10
		c.Batch.Parallelism = 1
	})
	p := &optional{recordFunc: func(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
		clock.Advance(time.Millisecond)
		return plugin.Value(r.Value), nil
	}}
	p.state.Store(int32(plugin.Stopped))
	if err := m.Register("opt", p); err != nil {
		t.Fatal(err)
	}
	if err := m.Register("plain", recordFunc(echoRecord)); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterBatch("batch", builtin.Identity{}); err != nil {
		t.Fatal(err)
	}

	t.Run("State", func(t *testing.T) {
		if _, err := m.ProcessBatch(ctx, "opt", nil, numbered(1)); !errors.Is(err, plugin.ErrUnavailable) {
			t.Errorf("ProcessBatch of a plugin reporting stopped: error = %v, want ErrUnavailable", err)
		}
		if pm, _ := m.Metrics("opt"); pm.State != plugin.Stopped || pm.Health != fleet.Failed {
			t.Errorf("state %v health %v, want stopped failed", pm.State, pm.Health)
		}
		p.state.Store(int32(plugin.Ready))
		if _, err := m.ProcessBatch(ctx, "opt", nil, numbered(1)); err != nil {
			t.Errorf("ProcessBatch once the plugin is ready: %v", err)
		}
		for _, name := range []string{"plain", "batch"} {
			if pm, _ := m.Metrics(name); pm.State != plugin.Ready || pm.Health != fleet.Healthy {
				t.Errorf("%s without State: state %v health %v, want ready healthy", name, pm.State, pm.Health)
			}
		}
	})
	t.Run("OptimizeBatchSize", func(t *testing.T) {
		p.want.Store(37)
		for range 20 {
			if _, err := m.ProcessBatch(ctx, "opt", nil, numbered(200)); err != nil {
				t.Fatal(err)
			}
		}
		if got := m.BatchSize("opt"); got != 37 {
			t.Errorf("batch size with the record plugin asking for 37 = %d, want 37", got)
		}
	})
}

// echoRecord returns the record's value unchanged.
func echoRecord(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
	return plugin.Value(r.Value), nil
}

func TestAutoOptimize(t *testing.T) {
	clock := newFakeClock()
	m := newManager(t, func(c *manager.Config) {
		c.Clock = clock.Now
		c.Batch.DefaultSize = 10
		c.Batch.Parallelism = 1
	})
	// 1 ms per record: a 100 ms target is met by batches of 100.
	p := latencyPlugin(clock, time.Millisecond)
	if err := m.RegisterBatch("lat", p); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 100 {
		if _, err := m.ProcessBatch(ctx, "lat", nil, numbered(1000)); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.BatchSize("lat"); got < 90 || got > 110 {
		t.Errorf("batch size after 100 s at 1 ms per record = %d, want about 100", got)
	}
	if est, ok := m.Estimate("lat"); !ok || est.Samples == 0 || !within(est.PerRecord, time.Millisecond) {
		t.Errorf("Estimate = %+v, %v; want about 1ms per record", est, ok)
	}
	// The plugin's own wish wins.
	p.hint = func(int) int { return 37 }
	for range 20 {
		if _, err := m.ProcessBatch(ctx, "lat", nil, numbered(200)); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.BatchSize("lat"); got != 37 {
		t.Errorf("batch size with the plugin asking for 37 = %d, want 37", got)
	}

	t.Run("off", func(t *testing.T) {
		m := newManager(t, func(c *manager.Config) { c.Clock = clock.Now; c.AutoOptimize = false; c.Batch.DefaultSize = 10 })
		if err := m.RegisterBatch("lat", latencyPlugin(clock, time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if _, err := m.ProcessBatch(ctx, "lat", nil, numbered(100)); err != nil {
				t.Fatal(err)
			}
		}
		if got := m.BatchSize("lat"); got != 10 {
			t.Errorf("batch size without auto-optimisation = %d, want 10", got)
		}
	})
}

func TestClose(t *testing.T) {
	cfg := manager.DefaultConfig()
	cfg.MonitoringInterval = time.Millisecond
	cfg.HealthCheckInterval = time.Millisecond
	m, err := manager.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int32
	p := checkedPlugin{newBatchFunc("c", echo)}
	p.check = func(context.Context) error { checks.Add(1); return nil }
	if err := m.RegisterBatch("c", p); err != nil {
		t.Fatal(err)
	}
	other := newBatchFunc("o", echo)
	if err := m.RegisterBatch("o", other); err != nil {
		t.Fatal(err)
	}
	poll.Wait(t, 10*time.Second, "background health checks", func() bool { return checks.Load() >= 2 })
	if err := m.Unregister("o"); err != nil {
		t.Fatal(err)
	}
	if got := other.closed.Load(); got != 1 {
		t.Errorf("Unregister closed the plugin %d times, want 1", got)
	}
	for i := range 2 {
		if err := m.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	if got := p.closed.Load(); got != 1 {
		t.Errorf("Close closed the plugin %d times, want 1", got)
	}
	_, err = m.ProcessBatch(context.Background(), "c", nil, numbered(1))
	if !errors.Is(err, manager.ErrClosed) || !errors.Is(err, plugin.ErrUnavailable) {
		t.Errorf("ProcessBatch after Close: %v, want ErrClosed and ErrUnavailable", err)
	}
	if err := m.RegisterBatch("x", newBatchFunc("x", echo)); !errors.Is(err, manager.ErrClosed) {
		t.Errorf("RegisterBatch after Close: %v, want ErrClosed", err)
	}
	if err := m.Unregister("c"); !errors.Is(err, manager.ErrClosed) {
		t.Errorf("Unregister after Close: %v, want ErrClosed", err)
	}
	if got := len(m.SystemStatus().Plugins); got != 0 {
		t.Errorf("SystemStatus after Close lists %d plugins, want 0", got)
	}
}

func TestHealthText(t *testing.T) {
	for _, h := range []fleet.Health{fleet.Healthy, fleet.Degraded, fleet.Failed} {
		b, err := h.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got fleet.Health
		if err := got.UnmarshalText(b); err != nil || got != h {
			t.Errorf("round trip of %v = %v, %v", h, got, err)
		}
	}
	var h fleet.Health
	if err := h.UnmarshalText([]byte("sick")); !errors.Is(err, plugin.ErrInvalidInput) {
		t.Errorf("UnmarshalText(sick) = %v, want ErrInvalidInput", err)
	}
}

// panicky panics in Info and State.
type panicky struct{ *batchFunc }

func (panicky) Info() plugin.Info   { panic("info boom") }
func (panicky) State() plugin.State { panic("state boom") }

func TestPanickyInfoAndState(t *testing.T) {
	m := newManager(t, nil)
	if err := m.RegisterBatch("p", panicky{newBatchFunc("p", echo)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ProcessBatch(context.Background(), "p", nil, numbered(1)); !errors.Is(err, plugin.ErrUnavailable) {
		t.Errorf("ProcessBatch error = %v, want ErrUnavailable", err)
	}
	if infos := m.Plugins(); len(infos) != 1 || infos[0].Name != "p" {
		t.Errorf("Plugins() = %+v, want one named p", infos)
	}
	pm, _ := m.Metrics("p")
	if pm.State != plugin.Failed || pm.Health != fleet.Failed {
		t.Errorf("state %v health %v, want failed failed", pm.State, pm.Health)
	}
	if st := m.SystemStatus(); st.Health != fleet.Failed {
		t.Errorf("system health %v, want failed", st.Health)
	}
}
