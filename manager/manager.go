package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/sizer"
)

// localSource names the Manager's own estimates in its controllers.
const localSource = "local"

// sizerInterval is the shortest time between two moves of a batch size.
// A fleet's controller waits a heartbeat (1 s) for new estimates; in-process
// every call is an estimate, so the size may move sooner (still damped by
// the controller's deadband and maximum step).
const sizerInterval = 100 * time.Millisecond

// errClosed is what calls on a closed Manager return.
var errClosed = &plugin.Error{Code: plugin.CodeUnavailable, Message: "manager: closed", Err: ErrClosed}

// Manager runs plugins in-process: the original library's PluginManager. It
// owns a memory pool, keeps metrics and a health verdict per plugin, and
// sizes batches from measured costs. It is safe for concurrent use.
type Manager struct {
	cfg     Config
	sizer   sizer.Config
	pool    *pool.Pool
	log     *slog.Logger
	clock   func() time.Time
	started time.Time

	mu      sync.RWMutex
	plugins map[string]*entry
	closed  bool

	stop      chan struct{} // closed by Close: stops the background goroutines
	bg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New returns a Manager for cfg (zero fields set to their defaults, see
// Config), with its pool created and its background goroutines started.
// It returns an error wrapping ErrInvalidConfig when a field is out of
// range or the pool cannot be created.
func New(cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sc := sizer.Config{
		Target:   cfg.Batch.TargetLatency,
		Initial:  cfg.Batch.DefaultSize,
		Min:      cfg.Batch.MinSize,
		Max:      cfg.Batch.MaxSize,
		MaxBytes: math.MaxInt, // no message size limit in-process
		Interval: sizerInterval,
		Clock:    cfg.Clock,
	}
	if _, err := sizer.New(sc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	p := cfg.SharedPool
	if p == nil {
		if p, err = pool.New(cfg.Pool); err != nil {
			return nil, fmt.Errorf("%w: pool: %w", ErrInvalidConfig, err)
		}
	}
	m := &Manager{
		cfg:     cfg,
		sizer:   sc,
		pool:    p,
		log:     cfg.Logger,
		clock:   cfg.Clock,
		started: cfg.Clock(),
		plugins: make(map[string]*entry),
		stop:    make(chan struct{}),
	}
	if cfg.MonitoringInterval > 0 {
		m.bg.Add(1)
		// Stops when Close closes m.stop.
		go m.every(cfg.MonitoringInterval, m.monitor)
	}
	if cfg.HealthCheckInterval > 0 {
		m.bg.Add(1)
		// Stops when Close closes m.stop.
		go m.every(cfg.HealthCheckInterval, m.backgroundCheck)
	}
	return m, nil
}

// every runs f every d until m.stop is closed.
func (m *Manager) every(d time.Duration, f func(time.Duration)) {
	defer m.bg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			f(d)
		}
	}
}

// monitor hands the pool's pressure to every controller.
func (m *Manager) monitor(time.Duration) {
	p := m.pool.Pressure()
	for _, e := range m.entries() {
		e.ctl.SetPressure(p)
		if m.cfg.AutoOptimize {
			e.size.Store(int64(e.ctl.Size(int(e.recordBytes.Load()))))
		}
		if m.cfg.Debug {
			pm, _ := m.Metrics(e.name)
			m.log.Debug("plugin metrics", slog.String("plugin", e.name), slog.Uint64("processed", pm.TotalProcessed),
				slog.Float64("throughput", pm.Throughput), slog.Float64("error_rate", pm.ErrorRate),
				slog.Duration("p99_batch", pm.BatchLatency.P99), slog.Int("batch_size", pm.BatchSize),
				slog.Float64("pool_pressure", p))
		}
		e.calls.Done()
	}
}

// backgroundCheck runs HealthCheck with a deadline of one interval.
func (m *Manager) backgroundCheck(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := m.HealthCheck(ctx); err != nil {
		m.log.Warn("health check", slog.Any("error", err))
	}
}

// Pool returns the memory pool the Manager owns, for the code around the
// plugins (decoding, encoding, WebAssembly guest I/O) to share. Close closes
// it.
func (m *Manager) Pool() *pool.Pool { return m.pool }

// PoolStats returns the pool's statistics.
func (m *Manager) PoolStats() pool.Stats { return m.pool.Stats() }

// checkName returns an error wrapping plugin.ErrInvalidInput for an empty
// name or one with spaces or control characters.
func checkName(name string) error {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%w: plugin name %q is empty or has spaces or control characters", plugin.ErrInvalidInput, name)
	}
	return nil
}

// Register registers a record-at-a-time Plugin under name, running each
// batch of it on up to Batch.Parallelism goroutines (plugin.Adapt, which
// passes on p's State and OptimizeBatchSize when it has them). The
// Manager owns p from then on: Unregister and Close call its Close method,
// if it has one. Register returns an error wrapping ErrDuplicate when name is
// taken, plugin.ErrInvalidInput for a nil plugin or an empty name (or one
// with spaces or control characters), ErrClosed after Close.
func (m *Manager) Register(name string, p plugin.Plugin) error {
	if p == nil {
		return fmt.Errorf("%w: nil plugin %q", plugin.ErrInvalidInput, name)
	}
	bp, err := plugin.NewAdapter(p, plugin.WithParallelism(m.cfg.Batch.Parallelism))
	if err != nil {
		return err
	}
	return m.add(name, bp, p)
}

// RegisterBatch registers a BatchPlugin under name; otherwise as Register.
func (m *Manager) RegisterBatch(name string, p plugin.BatchPlugin) error {
	if p == nil {
		return fmt.Errorf("%w: nil plugin %q", plugin.ErrInvalidInput, name)
	}
	return m.add(name, p, p)
}

func (m *Manager) add(name string, bp plugin.BatchPlugin, orig any) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctl, err := sizer.New(m.sizer)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err) // validated in New: unreachable
	}
	now := m.clock()
	e := &entry{
		name:       name,
		bp:         bp,
		orig:       orig,
		est:        sizer.NewEstimator(0),
		ctl:        ctl,
		registered: now,
		since:      now,
	}
	// The optional methods, looked up once; a record-at-a-time plugin's
	// come through its adapter.
	e.stater, _ = bp.(plugin.Stater)
	e.hinter, _ = bp.(plugin.BatchSizer)
	e.recent.span = m.cfg.Window
	e.health.span = m.cfg.Window
	e.size.Store(int64(m.cfg.Batch.DefaultSize))
	if m.cfg.MaxInstances > 0 {
		e.sem = make(chan struct{}, m.cfg.MaxInstances)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, dup := m.plugins[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	m.plugins[name] = e
	m.log.Info("plugin registered", slog.String("plugin", name), slog.String("info", e.info().String()))
	return nil
}

// Unregister removes the plugin registered under name, waits for its
// running calls to end, then calls its Close method if it has one (and
// returns that method's error). It must not be called from inside the
// plugin's own call. It returns an error matching plugin.ErrUnknownPlugin
// when no plugin has that name, ErrClosed after Close.
func (m *Manager) Unregister(name string) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	e, ok := m.plugins[name]
	delete(m.plugins, name)
	m.mu.Unlock()
	if !ok {
		return unknown(name)
	}
	e.calls.Wait()
	m.log.Info("plugin unregistered", slog.String("plugin", name))
	return closePlugin(e)
}

func closePlugin(e *entry) error {
	if c, ok := e.orig.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("manager: close plugin %q: %w", e.name, err)
		}
	}
	return nil
}

func unknown(name string) error {
	return &plugin.Error{Code: plugin.CodeUnknownPlugin, Message: fmt.Sprintf("manager: unknown plugin %q", name)}
}

// Plugins returns the Info of every registered plugin, sorted by the name
// it is registered under.
func (m *Manager) Plugins() []plugin.Info {
	es := m.entries()
	out := make([]plugin.Info, len(es))
	for i, e := range es {
		out[i] = e.info()
		e.calls.Done()
	}
	return out
}

// entries returns the registered entries sorted by name, each with a call
// reference the caller must release with e.calls.Done().
func (m *Manager) entries() []*entry {
	m.mu.RLock()
	es := make([]*entry, 0, len(m.plugins))
	for _, e := range m.plugins {
		e.calls.Add(1)
		es = append(es, e)
	}
	m.mu.RUnlock()
	slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
	return es
}

// acquire returns the entry of name with a call reference held.
func (m *Manager) acquire(name string) (*entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, errClosed
	}
	e, ok := m.plugins[name]
	if !ok {
		return nil, unknown(name)
	}
	e.calls.Add(1)
	return e, nil
}

// ProcessRecord runs the plugin registered under name on one record with the
// job configuration cfg. A per-record failure is returned both as the error
// and in the Result's Err; the other errors are ProcessBatch's.
func (m *Manager) ProcessRecord(ctx context.Context, name string, cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
	res, err := m.ProcessBatch(ctx, name, cfg, []plugin.Record{r})
	if err != nil {
		return plugin.Result{}, err
	}
	out := res.Results[0]
	return out, out.Err
}

// ProcessBatch runs the plugin registered under name on recs with the job
// configuration cfg and returns exactly one Result per record, in input
// order. Its Duration is the plugin call's latency, or for a batch split
// into chunks the wall time from before the first chunk to after the last.
//
// A batch longer than the plugin's current BatchSize is cut into chunks of
// that size, of which up to Batch.Parallelism run at once (and at most
// MaxInstances per plugin across all callers). Each chunk's latency feeds the
// plugin's metrics, health and batch-size estimate.
//
// A returned error means no result is valid. It matches
// plugin.ErrUnknownPlugin when no plugin has that name, plugin.ErrUnavailable
// when the plugin reports itself failed or stopped or the Manager is closed
// (then it also wraps ErrClosed), plugin.ErrPanic when the plugin panicked
// (the panic is recovered and counted: it never crashes the process), the
// context's error (as plugin.ContextError) when ctx ends first, a
// plugin.ErrProcessing error when the plugin returned a wrong number of
// results, or else the plugin's own batch error.
func (m *Manager) ProcessBatch(ctx context.Context, name string, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	return m.process(ctx, name, cfg, nil, recs)
}

// ProcessEncoded is ProcessBatch for a batch that comes as its wire message
// msg (package batch), recs being its records decoded from msg and cfg its
// configuration: a plugin that takes messages (plugin.EncodedBatchPlugin, a
// WebAssembly plugin) gets msg whole when the batch runs in one call, the
// others get recs. The errors are ProcessBatch's.
func (m *Manager) ProcessEncoded(ctx context.Context, name string, cfg plugin.Config, msg []byte, recs []plugin.Record) (*plugin.BatchResult, error) {
	return m.process(ctx, name, cfg, msg, recs)
}

// process runs ProcessBatch and ProcessEncoded (msg nil for the former).
func (m *Manager) process(ctx context.Context, name string, cfg plugin.Config, msg []byte, recs []plugin.Record) (*plugin.BatchResult, error) {
	e, err := m.acquire(name)
	if err != nil {
		return nil, err
	}
	defer e.calls.Done()
	if s := e.pluginState(); s == plugin.Failed || s == plugin.Stopped {
		return nil, &plugin.Error{Code: plugin.CodeUnavailable, Message: fmt.Sprintf("manager: plugin %q is %s", name, s)}
	}
	if len(recs) == 0 {
		return &plugin.BatchResult{Results: []plugin.Result{}}, nil
	}
	size := max(int(e.size.Load()), 1)
	if len(recs) <= size {
		res, lat, err := m.call(ctx, e, cfg, msg, recs)
		if err != nil {
			return nil, err
		}
		res.Duration = lat
		return res, nil
	}
	start := m.clock()
	out := make([]plugin.Result, len(recs))
	chunks := (len(recs) + size - 1) / size
	workers := min(m.cfg.Batch.Parallelism, chunks)
	run := func(ctx context.Context, c int) error {
		lo := c * size
		hi := min(lo+size, len(recs))
		res, _, err := m.call(ctx, e, cfg, nil, recs[lo:hi])
		if err != nil {
			return err
		}
		copy(out[lo:hi], res.Results)
		return nil
	}
	if workers == 1 {
		for c := range chunks {
			if err := run(ctx, c); err != nil {
				return nil, err
			}
		}
	} else if err := parallel(ctx, workers, chunks, run); err != nil {
		return nil, err
	}
	return &plugin.BatchResult{Results: out, Duration: m.clock().Sub(start)}, nil
}

// parallel runs run(ctx, 0..n-1) on workers goroutines (the caller's and
// workers-1 new ones) and returns the first error; the first error cancels
// the context of the others.
func parallel(ctx context.Context, workers, n int, run func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	work := func() {
		for {
			c := int(next.Add(1) - 1)
			if c >= n || ctx.Err() != nil {
				return
			}
			if err := run(ctx, c); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
				return
			}
		}
	}
	for range workers - 1 {
		wg.Add(1)
		// Stops when no chunk is left, or after the first error.
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work() // the caller's goroutine is one of the workers
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		// The caller's context ended between chunks.
		return plugin.ContextError(ctx.Err())
	}
	return firstErr
}

// call runs the plugin once on recs (given as the message msg too, when it
// is not nil), within the instance limit, books the outcome, and returns the
// result with the call's latency.
func (m *Manager) call(ctx context.Context, e *entry, cfg plugin.Config, msg []byte, recs []plugin.Record) (*plugin.BatchResult, time.Duration, error) {
	if e.sem != nil {
		select {
		case e.sem <- struct{}{}:
			defer func() { <-e.sem }()
		case <-ctx.Done():
			return nil, 0, plugin.ContextError(ctx.Err())
		}
	}
	e.inflight.Add(1)
	t0 := m.clock()
	res, err, panicked := m.invoke(ctx, e, cfg, msg, recs)
	end := m.clock()
	lat := end.Sub(t0)
	e.inflight.Add(-1)

	o := outcome{records: len(recs), latency: lat}
	for i := range recs {
		o.recordSize += recs[i].Size()
	}
	switch {
	case panicked:
		o.batchErr, o.panics = true, 1
	case err != nil:
		o.batchErr = true
		o.canceled = errors.Is(ctx.Err(), context.Canceled)
	case res == nil || len(res.Results) != len(recs):
		got := 0
		if res != nil {
			got = len(res.Results)
		}
		err = &plugin.Error{Code: plugin.CodeProcessing, Message: fmt.Sprintf("manager: plugin %q returned %d results for %d records", e.name, got, len(recs))}
		res, o.batchErr = nil, true
	default:
		for i := range res.Results {
			r := &res.Results[i]
			switch {
			case r.Err != nil:
				o.failed++
				if plugin.CodeOf(r.Err) == plugin.CodePanic {
					o.panics++
				}
			case r.Dropped:
				o.dropped++
			}
		}
	}
	if ch := e.record(end, o, &m.cfg.Health); ch != nil {
		m.logChange(e.name, ch)
	}
	if !o.batchErr {
		m.tune(e, o, end)
	}
	if m.cfg.Debug {
		m.log.LogAttrs(ctx, slog.LevelDebug, "plugin call", slog.String("plugin", e.name),
			slog.Int("records", o.records), slog.Int("failed", o.failed), slog.Int("dropped", o.dropped),
			slog.Duration("latency", lat), slog.Int64("batch_size", e.size.Load()), slog.Any("error", err))
	}
	return res, lat, err
}

// invoke calls the plugin, turning a panic into an ErrPanic error.
func (m *Manager) invoke(ctx context.Context, e *entry, cfg plugin.Config, msg []byte, recs []plugin.Record) (res *plugin.BatchResult, err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			m.log.LogAttrs(ctx, slog.LevelError, "plugin panicked", slog.String("plugin", e.name),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			res, panicked = nil, true
			err = &plugin.Error{Code: plugin.CodePanic, Message: fmt.Sprintf("manager: plugin %q panicked: %v", e.name, v)}
		}
	}()
	if enc, ok := e.bp.(plugin.EncodedBatchPlugin); ok && msg != nil {
		res, err = enc.ProcessEncoded(ctx, msg, recs)
	} else {
		res, err = e.bp.ProcessBatch(ctx, cfg, recs)
	}
	return res, err, false
}

// tuneEvery is how often, at most, a plugin's controller is consulted: it
// moves the size at most once per sizerInterval anyway, and consulting it
// costs two clock reads.
const tuneEvery = 50 * time.Millisecond

// tune feeds a successful call to the plugin's estimator and, with
// AutoOptimize, moves its batch size.
func (m *Manager) tune(e *entry, o outcome, now time.Time) {
	e.est.Observe(o.records, o.recordSize, o.latency)
	var thr float64
	if o.latency > 0 {
		thr = float64(o.records) / o.latency.Seconds()
	}
	e.est.SetHint(e.hint(o.records, o.latency, thr))
	avg := o.recordSize / o.records
	e.recordBytes.Store(int64(avg))
	if !m.cfg.AutoOptimize {
		return
	}
	ns := now.UnixNano()
	last := e.lastTune.Load()
	if ns-last < int64(tuneEvery) && ns >= last || !e.lastTune.CompareAndSwap(last, ns) {
		return // consulted recently, or another call is doing it now
	}
	e.ctl.Report(localSource, e.est.Estimate())
	e.size.Store(int64(e.ctl.Size(avg)))
}

func (m *Manager) logChange(name string, ch *change) {
	if ch.to == fleet.Healthy {
		m.log.Info("plugin recovered", slog.String("plugin", name), slog.String("reason", ch.reason))
		return
	}
	m.log.Warn("plugin degraded", slog.String("plugin", name), slog.String("reason", ch.reason))
}

// BatchSize returns the size ProcessBatch currently cuts the named plugin's
// batches into, or 0 when no plugin has that name.
func (m *Manager) BatchSize(name string) int {
	e, err := m.acquire(name)
	if err != nil {
		return 0
	}
	defer e.calls.Done()
	return int(e.size.Load())
}

// Estimate returns the named plugin's measured cost model, for heartbeats
// (a fleet's controller merges the workers' estimates), and false when no
// plugin has that name.
func (m *Manager) Estimate(name string) (sizer.Estimate, bool) {
	e, err := m.acquire(name)
	if err != nil {
		return sizer.Estimate{}, false
	}
	defer e.calls.Done()
	return e.est.Estimate(), true
}

// Metrics returns the named plugin's metrics, and false when no plugin has
// that name.
func (m *Manager) Metrics(name string) (fleet.PluginMetrics, bool) {
	e, err := m.acquire(name)
	if err != nil {
		return fleet.PluginMetrics{}, false
	}
	defer e.calls.Done()
	return m.metricsOf(e), true
}

func (m *Manager) metricsOf(e *entry) fleet.PluginMetrics {
	now := m.clock()
	e.mu.Lock()
	ch := e.evaluate(now, &m.cfg.Health)
	pm := e.metrics(now)
	e.mu.Unlock()
	if ch != nil {
		m.logChange(e.name, ch)
	}
	return pm
}

// AllMetrics returns every plugin's metrics, by name.
func (m *Manager) AllMetrics() map[string]fleet.PluginMetrics {
	out := make(map[string]fleet.PluginMetrics)
	for _, e := range m.entries() {
		out[e.name] = m.metricsOf(e)
		e.calls.Done()
	}
	return out
}

// HealthCheck re-evaluates every plugin's health (see HealthConfig) and
// calls the HealthCheck method of those that have one (see HealthChecker).
// It returns the report and, when any plugin is not fleet.Healthy, an error
// wrapping fleet.ErrUnhealthy that names them. When ctx ends before every check
// ran, it returns the plugins checked so far and plugin.ContextError of ctx's
// error.
func (m *Manager) HealthCheck(ctx context.Context) (fleet.HealthReport, error) {
	rep := fleet.HealthReport{CheckedAt: m.clock(), Plugins: []fleet.PluginHealth{}}
	es := m.entries()
	defer func() {
		for _, e := range es {
			e.calls.Done()
		}
	}()
	var bad []string
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return rep, plugin.ContextError(err)
		}
		if hc, ok := e.orig.(HealthChecker); ok {
			err := check(ctx, hc)
			if err != nil && ctx.Err() != nil {
				return rep, plugin.ContextError(ctx.Err())
			}
			e.mu.Lock()
			e.checkErr = err
			e.mu.Unlock()
		}
		now := m.clock()
		e.mu.Lock()
		ch := e.evaluate(now, &m.cfg.Health)
		ph := e.healthOf(now)
		e.mu.Unlock()
		if ch != nil {
			m.logChange(e.name, ch)
		}
		rep.Plugins = append(rep.Plugins, ph)
		rep.Health = max(rep.Health, ph.Health)
		if ph.Health != fleet.Healthy {
			bad = append(bad, fmt.Sprintf("%s is %s (%s)", ph.Name, ph.Health, ph.Reason))
		}
	}
	if len(bad) > 0 {
		return rep, fmt.Errorf("%w: %s", fleet.ErrUnhealthy, strings.Join(bad, "; "))
	}
	return rep, nil
}

// check runs a plugin's own check, turning a panic into an error.
func check(ctx context.Context, hc HealthChecker) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = plugin.PanicError(v)
		}
	}()
	return hc.HealthCheck(ctx)
}

// SystemStatus returns the Manager's state at a glance: uptime, plugins,
// pool statistics, Go runtime figures and overall health (as last
// evaluated; HealthCheck also runs the plugins' own checks).
func (m *Manager) SystemStatus() SystemStatus {
	now := m.clock()
	st := SystemStatus{
		StartedAt:    m.started,
		Uptime:       now.Sub(m.started),
		AutoOptimize: m.cfg.AutoOptimize,
		Plugins:      []PluginStatus{},
		Pool:         m.pool.Stats(),
		Runtime:      runtimeStats(),
	}
	for _, e := range m.entries() {
		e.mu.Lock()
		ch := e.evaluate(now, &m.cfg.Health)
		s, h, _ := e.state()
		ps := PluginStatus{
			Name: e.name, Version: e.info().Version, State: s, Health: h,
			BatchSize: int(e.size.Load()), InFlight: int(e.inflight.Load()), TotalProcessed: e.tot.processed,
		}
		e.mu.Unlock()
		e.calls.Done()
		if ch != nil {
			m.logChange(e.name, ch)
		}
		st.Plugins = append(st.Plugins, ps)
		st.Health = max(st.Health, h)
	}
	return st
}

var runtimeSamples = []string{
	"/sched/goroutines:goroutines",
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/goal:bytes",
	"/memory/classes/total:bytes",
	"/gc/cycles/total:gc-cycles",
}

func runtimeStats() fleet.RuntimeStats {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, n := range runtimeSamples {
		s[i].Name = n
	}
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	return fleet.RuntimeStats{
		GoVersion:     runtime.Version(),
		GOMAXPROCS:    runtime.GOMAXPROCS(0),
		Goroutines:    int(u(0)),
		HeapBytes:     u(1),
		HeapGoalBytes: u(2),
		TotalBytes:    u(3),
		GCCycles:      u(4),
	}
}

// Report returns the performance report: every plugin's metrics, their
// total, the system status and the settings.
func (m *Manager) Report() PerformanceReport {
	r := PerformanceReport{
		GeneratedAt: m.clock(),
		Settings: Settings{
			Batch:               m.cfg.Batch,
			Health:              m.cfg.Health,
			AutoOptimize:        m.cfg.AutoOptimize,
			MaxInstances:        m.cfg.MaxInstances,
			Window:              m.cfg.Window,
			MonitoringInterval:  m.cfg.MonitoringInterval,
			HealthCheckInterval: m.cfg.HealthCheckInterval,
			Debug:               m.cfg.Debug,
		},
		Plugins: []fleet.PluginMetrics{},
	}
	for _, e := range m.entries() {
		r.Plugins = append(r.Plugins, m.metricsOf(e))
		e.calls.Done()
	}
	r.Total = fleet.Total(r.Plugins)
	r.Total.Window = m.cfg.Window
	r.System = m.SystemStatus()
	return r
}

// ExportPerformanceReport writes Report as indented JSON to w. It returns
// w's error, if any.
func (m *Manager) ExportPerformanceReport(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m.Report()); err != nil {
		return fmt.Errorf("manager: export performance report: %w", err)
	}
	return nil
}

// Close stops the background goroutines, waits for the running calls to
// end (cancel their contexts first to hurry them), closes every plugin that
// has a Close method, then the pool. Later calls do nothing and return the
// first call's result: the plugins' and the pool's Close errors, joined.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		es := make([]*entry, 0, len(m.plugins))
		for _, e := range m.plugins {
			es = append(es, e)
		}
		m.plugins = map[string]*entry{}
		m.mu.Unlock()
		close(m.stop)
		m.bg.Wait()
		slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
		var errs []error
		for _, e := range es {
			e.calls.Wait()
			if err := closePlugin(e); err != nil {
				errs = append(errs, err)
			}
		}
		if m.cfg.SharedPool == nil {
			if err := m.pool.Close(); err != nil {
				errs = append(errs, fmt.Errorf("manager: close pool: %w", err))
			}
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
