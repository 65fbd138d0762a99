package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// LatencyConfig describes a latency run: 1-record jobs through the Go
// client, one after another, on an idle fleet and beside another owner's
// job that saturates it. Zero fields take their defaults.
type LatencyConfig struct {
	// IdleSamples and LoadedSamples are how many probe jobs each figure
	// measures. Defaults 200 and 100.
	IdleSamples, LoadedSamples int
	// Load is the saturating job. Default delay with ms=1.
	Load LoadConfig
	// Workers and Parallel are the embedded workers and the batches each
	// runs at once. Defaults 1 and GOMAXPROCS.
	Workers, Parallel int
	// RecordSize is each record's value size. Default 100.
	RecordSize int
	// ProbeGap bounds the random pause before each probe job (see
	// DefaultProbeGap, the default); negative means none, back to back.
	ProbeGap time.Duration
	// Seed seeds the pauses. Default DefaultSeed.
	Seed uint64
	// Log receives progress lines (nil: none).
	Log *slog.Logger
}

func (c LatencyConfig) withDefaults() (LatencyConfig, error) {
	if c.IdleSamples == 0 {
		c.IdleSamples = 200
	}
	if c.LoadedSamples == 0 {
		c.LoadedSamples = 100
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Parallel == 0 {
		c.Parallel = runtime.GOMAXPROCS(0)
	}
	if c.RecordSize == 0 {
		c.RecordSize = 100
	}
	if c.ProbeGap == 0 {
		c.ProbeGap = DefaultProbeGap
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.Log == nil {
		c.Log = discard
	}
	var err error
	if c.Load, err = c.Load.withDefaults(); err != nil {
		return c, err
	}
	switch {
	case c.IdleSamples < 1 || c.LoadedSamples < 1:
		return c, fmt.Errorf("%w: samples %d and %d must be positive", ErrInvalidConfig, c.IdleSamples, c.LoadedSamples)
	case c.Workers < 1 || c.Parallel < 1:
		return c, fmt.Errorf("%w: workers %d and parallel %d must be positive", ErrInvalidConfig, c.Workers, c.Parallel)
	case c.RecordSize < 1 || c.RecordSize > MaxRecordSize:
		return c, fmt.Errorf("%w: record size %d not in 1..%d", ErrInvalidConfig, c.RecordSize, MaxRecordSize)
	}
	return c, nil
}

// LatencyReport is what Latency measured.
type LatencyReport struct {
	Date       string  `json:"date"`
	Machine    Machine `json:"machine"`
	Workers    int     `json:"workers"`
	Parallel   int     `json:"parallel"`
	Storage    string  `json:"storage"`
	RecordSize int     `json:"record_size"`
	Plugin     string  `json:"plugin"`
	// ProbeGapMs bounds the random pause before each probe (0: none).
	ProbeGapMs float64       `json:"probe_gap_ms"`
	Seed       uint64        `json:"seed"`
	LoadPlugin string        `json:"load_plugin"`
	LoadConfig plugin.Config `json:"load_config,omitempty"`
	// LoadCeiling is the load's most records per second when its plugin
	// is delay (workers × parallel × 1000 / ms): what saturation is.
	LoadCeiling float64        `json:"load_ceiling_records_per_sec,omitempty"`
	Latency     LatencyFigures `json:"latency"`
}

// LatencyFigures are the latencies of 1-record jobs.
type LatencyFigures struct {
	// Idle is on an idle fleet.
	Idle Latencies `json:"idle"`
	// Loaded is beside a job of another owner that keeps every slot of
	// the workers busy (fair sharing: the default topology).
	Loaded Latencies `json:"loaded"`
}

// Latency measures 1-record jobs of owner B through the Go client, one
// after another, on an idle fleet, then beside a job of owner A that
// saturates it (cancelled at the end). The error wraps ErrInvalidConfig
// for a bad cfg, or is the first failure of the stack or of a job.
func Latency(ctx context.Context, cfg LatencyConfig) (*LatencyReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s, err := startSharing(ctx, probeSetting{workers: cfg.Workers, parallel: cfg.Parallel, recordSize: cfg.RecordSize,
		load: cfg.Load, gap: cfg.ProbeGap, seed: cfg.Seed}, proto.Topology{}, nil, ownerLoad, ownerProbe)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rep := &LatencyReport{Date: s.start.UTC().Format(time.RFC3339), Machine: machine(), Workers: cfg.Workers,
		Parallel: cfg.Parallel, Storage: "file", RecordSize: cfg.RecordSize, Plugin: probePlugin,
		ProbeGapMs: ms(max(cfg.ProbeGap, 0)), Seed: cfg.Seed, LoadPlugin: cfg.Load.Plugin, LoadConfig: cfg.Load.Config, LoadCeiling: cfg.Load.ceiling(cfg.Workers, cfg.Parallel)}
	if err := s.warm(ctx); err != nil {
		return nil, err
	}
	probe := s.clients[ownerProbe]
	if rep.Latency.Idle, err = s.probes(ctx, probe, 1, cfg.IdleSamples, noBudget); err != nil {
		return nil, fmt.Errorf("idle: %w", err)
	}
	cfg.Log.Info("latency", "figure", "idle", "p50_ms", rep.Latency.Idle.P50Ms, "p99_ms", rep.Latency.Idle.P99Ms)
	ls, err := s.startLoads(ctx, s.clients[ownerLoad])
	if err != nil {
		return nil, err
	}
	rep.Latency.Loaded, err = s.beside(ls, func() (Latencies, error) {
		return s.probes(ctx, probe, 1, cfg.LoadedSamples, noBudget)
	})
	if cerr := ls.cancel(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("loaded: %w", err)
	}
	cfg.Log.Info("latency", "figure", "loaded", "p50_ms", rep.Latency.Loaded.P50Ms, "p99_ms", rep.Latency.Loaded.P99Ms,
		"load_records_per_sec", rep.Latency.Loaded.LoadRecordsPerSec)
	return rep, nil
}

// noBudget lets a run of probes take every sample it asks for.
const noBudget = time.Duration(1<<63 - 1)
