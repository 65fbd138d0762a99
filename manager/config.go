package manager

import (
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"time"

	"github.com/dataflare/dataflare/pool"
)

// Defaults applied by New to the zero fields of a Config. Batch sizes,
// target latency and the intervals are the original library's defaults.
const (
	DefaultBatchSize           = 100
	DefaultMaxBatchSize        = 1000
	DefaultTargetLatency       = 100 * time.Millisecond
	DefaultMonitoringInterval  = 30 * time.Second
	DefaultHealthCheckInterval = 60 * time.Second
	DefaultWindow              = time.Minute
	DefaultErrorRate           = 0.5
	DefaultRecoverBelow        = 0.1
	DefaultMinRecords          = 20
	DefaultMaxPanics           = 3
)

// Config configures a Manager. New fills every zero field with its default
// (so Config{} works) but takes booleans as given: start from DefaultConfig
// to get the original library's defaults, AutoOptimize included.
type Config struct {
	// Pool configures the memory pool the Manager owns. Its zero value
	// means pool.DefaultConfig(); any other value is used as it is.
	Pool pool.Config
	// SharedPool, when set, is used instead of a pool of the Manager's
	// own (Pool is then ignored), so that the code around the Manager —
	// a worker's result encoding, a WebAssembly runtime's guest output —
	// draws from the same pool and its statistics are the whole picture.
	// The Manager does not close a shared pool.
	SharedPool *pool.Pool
	// Batch configures batch sizes and parallelism.
	Batch BatchConfig
	// AutoOptimize lets the batch size follow the plugin's measured costs
	// (package sizer, fed by every chunk the Manager runs, with the
	// plugin's OptimizeBatchSize answer, if it is a plugin.BatchSizer, as a
	// hint). When false the batch size stays Batch.DefaultSize.
	// DefaultConfig sets it.
	AutoOptimize bool
	// MonitoringInterval is how often the monitor goroutine hands the
	// pool's memory pressure to the batch-size controllers and, with
	// Debug, logs a summary. Default DefaultMonitoringInterval (30 s); a
	// negative value runs no monitor (pressure is then never applied).
	MonitoringInterval time.Duration
	// MaxInstances bounds the plugin calls running at once per plugin
	// (each chunk of a batch is one call). 0 means no bound.
	MaxInstances int
	// HealthCheckInterval is how often a background HealthCheck runs and
	// logs changes. Default DefaultHealthCheckInterval (60 s); a negative
	// value checks only on demand (health still changes after each batch).
	HealthCheckInterval time.Duration
	// Window is the span of the recent metrics — throughput, recent error
	// rate — and of what health decisions look at. Default DefaultWindow
	// (1 min).
	Window time.Duration
	// Health sets when a plugin is marked degraded and when it recovers.
	Health HealthConfig
	// Debug logs every plugin call at debug level (the Logger's handler
	// must let debug records through).
	Debug bool
	// Logger receives the Manager's logs. Default: discard.
	Logger *slog.Logger
	// Clock tells the time for latencies, windows and health. Default
	// time.Now; tests inject a fake one.
	Clock func() time.Time
}

// BatchConfig configures batch sizes and parallelism. Durations encode in
// JSON as integer nanoseconds.
type BatchConfig struct {
	// DefaultSize is the batch size before any measurement, and always
	// when AutoOptimize is off. Default DefaultBatchSize (100).
	DefaultSize int `json:"default_size"`
	// MinSize is the smallest size auto-optimisation chooses. Default 1.
	MinSize int `json:"min_size"`
	// MaxSize is the largest size auto-optimisation chooses. Default
	// DefaultMaxBatchSize (1000), raised to DefaultSize when below it.
	MaxSize int `json:"max_size"`
	// TargetLatency is the latency of one plugin call that
	// auto-optimisation aims for. Default DefaultTargetLatency (100 ms).
	TargetLatency time.Duration `json:"target_latency_ns"`
	// Parallelism is how many chunks of one ProcessBatch run at once, and
	// how many goroutines run one batch of a record-at-a-time Plugin.
	// Default runtime.GOMAXPROCS(0).
	Parallelism int `json:"parallelism"`
}

// HealthConfig sets when a plugin is degraded and when it recovers. A
// healthy plugin becomes degraded when, within the last Window, it failed at
// least ErrorRate of at least MinRecords records, or panicked MaxPanics
// times. A degraded plugin recovers when, since it was degraded and within
// the last Window, it processed at least MinRecords records with an error
// rate below RecoverBelow and no panic — or a whole Window passed without a
// failure or a panic.
type HealthConfig struct {
	// ErrorRate is the error rate, in (0, 1], at which a plugin is
	// degraded. Default DefaultErrorRate (0.5).
	ErrorRate float64 `json:"error_rate"`
	// RecoverBelow is the error rate, in (0, ErrorRate], under which a
	// degraded plugin recovers. Default DefaultRecoverBelow (0.1), lowered
	// to ErrorRate when above it.
	RecoverBelow float64 `json:"recover_below"`
	// MinRecords is how many records an error rate needs before it
	// counts. Default DefaultMinRecords (20).
	MinRecords int `json:"min_records"`
	// MaxPanics is how many panics within the Window degrade a plugin.
	// Default DefaultMaxPanics (3); negative: panics alone never do.
	MaxPanics int `json:"max_panics"`
}

// DefaultConfig returns the original library's defaults: a default pool,
// batches of 100 (at most 1000) aiming at 100 ms, auto-optimisation on,
// monitoring every 30 s, health checks every 60 s.
func DefaultConfig() Config {
	c, _ := Config{AutoOptimize: true}.withDefaults()
	return c
}

// withDefaults returns c with its zero fields set to their defaults, and an
// error wrapping ErrInvalidConfig when a field is out of range.
func (c Config) withDefaults() (Config, error) {
	if reflect.ValueOf(c.Pool).IsZero() {
		c.Pool = pool.DefaultConfig()
	}
	b := &c.Batch
	if b.DefaultSize == 0 {
		b.DefaultSize = DefaultBatchSize
	}
	if b.MinSize == 0 {
		b.MinSize = 1
	}
	if b.MaxSize == 0 {
		b.MaxSize = max(DefaultMaxBatchSize, b.DefaultSize)
	}
	if b.TargetLatency == 0 {
		b.TargetLatency = DefaultTargetLatency
	}
	if b.Parallelism == 0 {
		b.Parallelism = runtime.GOMAXPROCS(0)
	}
	if c.MonitoringInterval == 0 {
		c.MonitoringInterval = DefaultMonitoringInterval
	}
	if c.HealthCheckInterval == 0 {
		c.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	h := &c.Health
	if h.ErrorRate == 0 {
		h.ErrorRate = DefaultErrorRate
	}
	if h.RecoverBelow == 0 {
		h.RecoverBelow = min(DefaultRecoverBelow, h.ErrorRate)
	}
	if h.MinRecords == 0 {
		h.MinRecords = DefaultMinRecords
	}
	if h.MaxPanics == 0 {
		h.MaxPanics = DefaultMaxPanics
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case b.MinSize < 1:
		return bad("Batch.MinSize %d is below 1", b.MinSize)
	case b.MaxSize < b.MinSize:
		return bad("Batch.MaxSize %d is below Batch.MinSize %d", b.MaxSize, b.MinSize)
	case b.DefaultSize < b.MinSize || b.DefaultSize > b.MaxSize:
		return bad("Batch.DefaultSize %d is outside [%d, %d]", b.DefaultSize, b.MinSize, b.MaxSize)
	case b.TargetLatency < 0:
		return bad("Batch.TargetLatency %v is negative", b.TargetLatency)
	case b.Parallelism < 1:
		return bad("Batch.Parallelism %d is below 1", b.Parallelism)
	case c.MaxInstances < 0:
		return bad("MaxInstances %d is negative", c.MaxInstances)
	case c.Window < 0:
		return bad("Window %v is negative", c.Window)
	case c.Window < slots:
		return bad("Window %v is too short", c.Window)
	case !(h.ErrorRate > 0 && h.ErrorRate <= 1): // also refuses NaN
		return bad("Health.ErrorRate %v is outside (0, 1]", h.ErrorRate)
	case !(h.RecoverBelow > 0 && h.RecoverBelow <= h.ErrorRate):
		return bad("Health.RecoverBelow %v is outside (0, Health.ErrorRate %v]", h.RecoverBelow, h.ErrorRate)
	case h.MinRecords < 1:
		return bad("Health.MinRecords %d is below 1", h.MinRecords)
	}
	return c, nil
}
