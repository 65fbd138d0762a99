package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// FairnessConfig describes a fairness run: small jobs beside saturating
// jobs of another owner, on a fleet that shares its workers by owner and on
// one that queues every owner's batches in arrival order (FIFO), one fleet
// after the other; and the split of a fleet between two saturating owners
// of different weights. Zero fields take their defaults.
type FairnessConfig struct {
	// Samples is how many probe jobs each figure measures. Default 100.
	Samples int
	// ProbeRecords is the records of each probe job. Default 10.
	ProbeRecords int
	// ProbeBudget bounds the time one figure's probes take (after
	// minSamples of them): without fair sharing a probe waits for the
	// whole queue ahead of it, seconds. Default 1 min.
	ProbeBudget time.Duration
	// LoadJobs is the number of saturating jobs of owner A. Default 3.
	LoadJobs int
	// Load is the saturating jobs. Default delay with ms=1.
	Load LoadConfig
	// SplitTime is how long the weighted split is counted. Default 10 s.
	SplitTime time.Duration
	// Weights are the two owners' weights in the weighted split. Default
	// 1 and 3.
	Weights [2]float64
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

func (c FairnessConfig) withDefaults() (FairnessConfig, error) {
	if c.Samples == 0 {
		c.Samples = 100
	}
	if c.ProbeRecords == 0 {
		c.ProbeRecords = 10
	}
	if c.ProbeBudget == 0 {
		c.ProbeBudget = time.Minute
	}
	if c.LoadJobs == 0 {
		c.LoadJobs = 3
	}
	if c.SplitTime == 0 {
		c.SplitTime = 10 * time.Second
	}
	if c.Weights == [2]float64{} {
		c.Weights = [2]float64{1, 3}
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
	case c.Samples < 1 || c.ProbeRecords < 1 || c.ProbeRecords > 4096:
		return c, fmt.Errorf("%w: samples %d must be positive, probe records %d in 1..4096", ErrInvalidConfig, c.Samples, c.ProbeRecords)
	case c.LoadJobs < 1 || c.LoadJobs > 64:
		return c, fmt.Errorf("%w: load jobs %d not in 1..64", ErrInvalidConfig, c.LoadJobs)
	case c.ProbeBudget < 0 || c.SplitTime <= 0:
		return c, fmt.Errorf("%w: probe budget %v and split time %v", ErrInvalidConfig, c.ProbeBudget, c.SplitTime)
	case !(c.Weights[0] > 0) || !(c.Weights[1] > 0) || c.Weights[0] > 1e6 || c.Weights[1] > 1e6:
		return c, fmt.Errorf("%w: weights %v must be in (0, 1e6]", ErrInvalidConfig, c.Weights)
	case c.Workers < 1 || c.Parallel < 1:
		return c, fmt.Errorf("%w: workers %d and parallel %d must be positive", ErrInvalidConfig, c.Workers, c.Parallel)
	case c.RecordSize < 1 || c.RecordSize > MaxRecordSize:
		return c, fmt.Errorf("%w: record size %d not in 1..%d", ErrInvalidConfig, c.RecordSize, MaxRecordSize)
	}
	return c, nil
}

// FairnessReport is what Fairness measured.
type FairnessReport struct {
	Date         string  `json:"date"`
	Machine      Machine `json:"machine"`
	Workers      int     `json:"workers"`
	Parallel     int     `json:"parallel"`
	Storage      string  `json:"storage"`
	RecordSize   int     `json:"record_size"`
	Plugin       string  `json:"plugin"`
	ProbeRecords int     `json:"probe_records"`
	// ProbeGapMs bounds the random pause before each probe (0: none).
	ProbeGapMs float64       `json:"probe_gap_ms"`
	Seed       uint64        `json:"seed"`
	LoadJobs   int           `json:"load_jobs"`
	LoadPlugin string        `json:"load_plugin"`
	LoadConfig plugin.Config `json:"load_config,omitempty"`
	// LoadCeiling is the load's most records per second when its plugin
	// is delay (workers × parallel × 1000 / ms): what saturation is.
	LoadCeiling float64         `json:"load_ceiling_records_per_sec,omitempty"`
	Fairness    FairnessFigures `json:"fairness"`
}

// FairnessFigures are the latencies of small jobs beside saturating ones,
// and the weighted split.
type FairnessFigures struct {
	// Fair and FIFO are jobs of owner B beside LoadJobs saturating jobs of
	// owner A, with fair sharing (the default topology) and without
	// (proto.Topology.FIFO).
	Fair Latencies `json:"fair"`
	FIFO Latencies `json:"fifo"`
	// FairHigh and FIFOHigh are high-priority jobs of owner A beside A's
	// own saturating jobs, on the same two fleets.
	FairHigh Latencies `json:"fair_high"`
	FIFOHigh Latencies `json:"fifo_high"`
	// Weights is the split between two saturating owners, with fair
	// sharing.
	Weights WeightedSplit `json:"weights"`
}

// WeightedSplit is how two owners of different weights, both saturating
// the fleet, shared it: the records each got over the same time.
type WeightedSplit struct {
	AWeight float64 `json:"a_weight"`
	BWeight float64 `json:"b_weight"`
	// AShare and BShare are each owner's part of the records both got
	// (they sum to 1); fair sharing aims at AWeight/(AWeight+BWeight).
	AShare   float64 `json:"a_share"`
	BShare   float64 `json:"b_share"`
	ARecords int64   `json:"a_records"`
	BRecords int64   `json:"b_records"`
	Seconds  float64 `json:"seconds"`
}

// Fairness measures, on a fleet with fair sharing and then on one without
// (FIFO), small jobs of owner B one after another beside LoadJobs jobs of
// owner A that saturate the fleet, then high-priority small jobs of A
// beside the same load; and, with fair sharing, the split between two
// owners of Weights both saturating the fleet for SplitTime. Load jobs
// are cancelled at the end of each part. The error wraps ErrInvalidConfig
// for a bad cfg, or is the first failure of a stack or of a job.
func Fairness(ctx context.Context, cfg FairnessConfig) (*FairnessReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rep := &FairnessReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine(), Workers: cfg.Workers,
		Parallel: cfg.Parallel, Storage: "file", RecordSize: cfg.RecordSize, Plugin: probePlugin,
		ProbeRecords: cfg.ProbeRecords, ProbeGapMs: ms(max(cfg.ProbeGap, 0)), Seed: cfg.Seed, LoadJobs: cfg.LoadJobs, LoadPlugin: cfg.Load.Plugin, LoadConfig: cfg.Load.Config,
		LoadCeiling: cfg.Load.ceiling(cfg.Workers, cfg.Parallel)}
	f := &rep.Fairness
	if err := fairnessFleet(ctx, cfg, false, &f.Fair, &f.FairHigh, &f.Weights); err != nil {
		return nil, fmt.Errorf("fair sharing: %w", err)
	}
	if err := fairnessFleet(ctx, cfg, true, &f.FIFO, &f.FIFOHigh, nil); err != nil {
		return nil, fmt.Errorf("fifo: %w", err)
	}
	return rep, nil
}

// fairnessFleet measures one fleet (FIFO or not): other, owner B's probes
// beside A's load; high, A's high-priority probes beside it; and with
// split set, the weighted split.
func fairnessFleet(ctx context.Context, cfg FairnessConfig, fifo bool, other, high *Latencies, split *WeightedSplit) error {
	owners := []string{ownerLoad, ownerProbe}
	var weights map[string]float64
	if split != nil {
		owners = append(owners, ownerW1, ownerW3)
		weights = map[string]float64{ownerW1: cfg.Weights[0], ownerW3: cfg.Weights[1]}
	}
	s, err := startSharing(ctx, probeSetting{workers: cfg.Workers, parallel: cfg.Parallel, recordSize: cfg.RecordSize,
		load: cfg.Load, gap: cfg.ProbeGap, seed: cfg.Seed}, proto.Topology{FIFO: fifo}, weights, owners...)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.warm(ctx); err != nil {
		return err
	}
	name := map[bool]string{false: "fair", true: "fifo"}[fifo]
	a := s.clients[ownerLoad]
	cls := make([]*client.Client, cfg.LoadJobs)
	for i := range cls {
		cls[i] = a
	}
	ls, err := s.startLoads(ctx, cls...)
	if err != nil {
		return err
	}
	*other, err = s.beside(ls, func() (Latencies, error) {
		return s.probes(ctx, s.clients[ownerProbe], cfg.ProbeRecords, cfg.Samples, cfg.ProbeBudget)
	})
	if err == nil {
		cfg.Log.Info("fairness", "figure", name, "p50_ms", other.P50Ms, "p99_ms", other.P99Ms, "samples", other.Samples,
			"load_records_per_sec", other.LoadRecordsPerSec)
		*high, err = s.beside(ls, func() (Latencies, error) {
			return s.probes(ctx, a, cfg.ProbeRecords, cfg.Samples, cfg.ProbeBudget, client.WithPriority(fleet.High))
		})
	}
	if cerr := ls.cancel(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	cfg.Log.Info("fairness", "figure", name+"_high", "p50_ms", high.P50Ms, "p99_ms", high.P99Ms, "samples", high.Samples)
	if split == nil {
		return nil
	}
	if *split, err = s.weightedSplit(ctx, cfg); err != nil {
		return fmt.Errorf("weighted split: %w", err)
	}
	cfg.Log.Info("fairness", "figure", "weights", "a_share", split.AShare, "b_share", split.BShare)
	return nil
}

// weightedSplit starts a saturating job of each weighted owner, lets them
// run for a moment, then counts the results each gets for SplitTime.
func (s *sharingStack) weightedSplit(ctx context.Context, cfg FairnessConfig) (WeightedSplit, error) {
	ls, err := s.startLoads(ctx, s.clients[ownerW1], s.clients[ownerW3])
	if err != nil {
		return WeightedSplit{}, err
	}
	// The results handed out lag behind the batches run by the client's
	// window; let both owners' flows settle first.
	err = sleep(ctx, splitSettle)
	a0, b0, t0 := ls[0].results.Load(), ls[1].results.Load(), time.Now()
	if err == nil {
		err = sleep(ctx, cfg.SplitTime)
	}
	a1, b1, t1 := ls[0].results.Load(), ls[1].results.Load(), time.Now()
	if cerr := ls.cancel(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return WeightedSplit{}, err
	}
	w := WeightedSplit{AWeight: cfg.Weights[0], BWeight: cfg.Weights[1], ARecords: a1 - a0, BRecords: b1 - b0,
		Seconds: round3(t1.Sub(t0).Seconds())}
	if total := w.ARecords + w.BRecords; total > 0 {
		w.AShare = round3(float64(w.ARecords) / float64(total))
		w.BShare = round3(1 - w.AShare)
	}
	return w, nil
}

// splitSettle is how long both owners of the weighted split run before
// their results are counted.
const splitSettle = 2 * time.Second

// sleep waits for d or for ctx to end.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
