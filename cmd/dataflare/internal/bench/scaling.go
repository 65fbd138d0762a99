package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// ScalingConfig describes a scaling run: the latency-bound delay plugin
// over more and more workers. Zero fields take their defaults.
type ScalingConfig struct {
	// Counts are the numbers of workers to measure. Default 1, 2, 4, 8.
	Counts []int
	// DelayMillis is the delay plugin's ms per record. Default 1.
	DelayMillis int
	// Parallel is how many batches each worker runs at once. Default 2.
	Parallel int
	// Seconds is about how long each job runs: a count of n workers gets
	// n × Parallel × 1000/DelayMillis × Seconds records. Default 4.
	Seconds float64
	// Rounds is how many times every count is measured. Default 2.
	Rounds int
	// RecordSize is each record's value size. Default 100.
	RecordSize int
	// Window is the client's window (client.WithWindow). Default four
	// batches per slot of the most workers, so that the client is not
	// what limits them.
	Window int
	// Spawner starts the workers. Default InProcess.
	Spawner Spawner
	// Log receives progress lines (nil: none).
	Log *slog.Logger
}

// ScalingReport is what Scaling measured.
type ScalingReport struct {
	Date        string  `json:"date"`
	Machine     Machine `json:"machine"`
	Plugin      string  `json:"plugin"`
	DelayMillis int     `json:"delay_ms"`
	Parallel    int     `json:"parallel"`
	RecordSize  int     `json:"record_size"`
	Rounds      int     `json:"rounds"`
	// Workers says what the workers were: "process" or "in-process".
	Workers string `json:"workers"`
	// Window is the client's window (client.WithWindow).
	Window int `json:"client_window"`
	// Ceiling is one worker's throughput if it did nothing but sleep:
	// Parallel × 1000 / DelayMillis records per second.
	Ceiling float64        `json:"ceiling_per_worker"`
	Points  []ScalingPoint `json:"points"`
}

// ScalingPoint is one worker count.
type ScalingPoint struct {
	Workers       int       `json:"workers"`
	Records       int       `json:"records"`
	RecordsPerSec float64   `json:"records_per_sec"`
	RoundsPerSec  []float64 `json:"rounds_records_per_sec"`
	// Efficiency is RecordsPerSec over Workers times one worker's.
	Efficiency float64 `json:"efficiency"`
	// AddedEfficiency is what the workers added since the previous count
	// brought, over what as many single workers bring.
	AddedEfficiency float64 `json:"added_efficiency"`
	P50BatchMs      float64 `json:"p50_batch_ms"`
	P99BatchMs      float64 `json:"p99_batch_ms"`
	// BatchSize is the sizer's batch size at the end of the job.
	BatchSize int `json:"batch_size"`
}

func (c ScalingConfig) withDefaults() (ScalingConfig, error) {
	if len(c.Counts) == 0 {
		c.Counts = []int{1, 2, 4, 8}
	}
	if c.DelayMillis == 0 {
		c.DelayMillis = 1
	}
	if c.Parallel == 0 {
		c.Parallel = 2
	}
	if c.Seconds == 0 {
		c.Seconds = 4
	}
	if c.Rounds == 0 {
		c.Rounds = 2
	}
	if c.RecordSize == 0 {
		c.RecordSize = 100
	}
	if c.Spawner == nil {
		c.Spawner = InProcess{}
	}
	if c.Window == 0 && len(c.Counts) > 0 {
		c.Window = 4 * max(c.Parallel, 1) * slices.Max(c.Counts)
	}
	if c.Log == nil {
		c.Log = discard
	}
	c.Counts = slices.Clone(c.Counts)
	slices.Sort(c.Counts)
	switch {
	case c.Counts[0] < 1 || c.Counts[len(c.Counts)-1] > 64:
		return c, fmt.Errorf("%w: worker counts %v not in 1..64", ErrInvalidConfig, c.Counts)
	case c.DelayMillis < 1 || c.DelayMillis > 1000:
		return c, fmt.Errorf("%w: delay %d ms not in 1..1000", ErrInvalidConfig, c.DelayMillis)
	case c.Parallel < 1, c.Rounds < 1, c.Seconds <= 0, c.Window < 1:
		return c, fmt.Errorf("%w: parallel %d, rounds %d, seconds %v must be positive", ErrInvalidConfig, c.Parallel, c.Rounds, c.Seconds)
	case c.RecordSize < 1 || c.RecordSize > MaxRecordSize:
		return c, fmt.Errorf("%w: record size %d not in 1..%d", ErrInvalidConfig, c.RecordSize, MaxRecordSize)
	}
	return c, nil
}

// Scaling runs the delay plugin over each count of workers in turn, each
// job long enough to keep them all busy for about Seconds, and reports the
// throughput and the efficiency of each count against one worker's. Workers
// are added as the count grows and all stopped after each round. The error
// wraps ErrInvalidConfig for a bad cfg, or is the first failure of the
// stack, a worker or a job.
func Scaling(ctx context.Context, cfg ScalingConfig) (*ScalingReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	perWorker := float64(cfg.Parallel) * 1000 / float64(cfg.DelayMillis)
	most := int(float64(cfg.Counts[len(cfg.Counts)-1]) * perWorker * cfg.Seconds)
	bcfg, err := Config{Records: most, RecordSize: cfg.RecordSize, Plugin: builtin.DelayName,
		PluginConfig: plugin.Config{"ms": strconv.Itoa(cfg.DelayMillis)}, Modes: []string{ModeFleetNative}, Log: cfg.Log}.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := setupStack(ctx, bcfg, 0, cfg.Window)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rep := &ScalingReport{Date: e.start.UTC().Format(time.RFC3339), Machine: machine(), Plugin: builtin.DelayName,
		DelayMillis: cfg.DelayMillis, Parallel: cfg.Parallel, RecordSize: cfg.RecordSize, Rounds: cfg.Rounds,
		Workers: cfg.Spawner.Kind(), Ceiling: perWorker, Window: cfg.Window}

	var running []Worker
	stopAll := func() error {
		var first error
		for _, w := range running {
			if err := w.Stop(); err != nil && first == nil {
				first = err
			}
		}
		running = running[:0]
		return first
	}
	defer stopAll()
	perSec := make(map[int][]float64)
	lats := make(map[int][]time.Duration)
	sizes := make(map[int]int)
	for round := range cfg.Rounds {
		for _, n := range cfg.Counts {
			for len(running) < n {
				w, err := cfg.Spawner.Start(ctx, e.st.URL, WorkerSpec{ID: fmt.Sprintf("bench-r%d-w%d", round+1, len(running)+1), Parallel: cfg.Parallel})
				if err != nil {
					return nil, err
				}
				running = append(running, w)
			}
			if err := waitWorkers(ctx, e.cl, n, 30*time.Second); err != nil {
				return nil, err
			}
			if round == 0 && n == cfg.Counts[0] {
				// The sizer learns the plugin's cost from a first job.
				if _, _, err := e.fleetRound(ctx, builtin.DelayName, min(int(float64(n)*perWorker), most), 0, nil); err != nil {
					return nil, err
				}
			}
			records := int(float64(n) * perWorker * cfg.Seconds)
			elapsed, lat, err := e.fleetRound(ctx, builtin.DelayName, records, 0, lats[n])
			if err != nil {
				return nil, fmt.Errorf("%d workers: %w", n, err)
			}
			lats[n] = lat
			perSec[n] = append(perSec[n], float64(records)/elapsed.Seconds())
			if size, err := e.batchSizeOf(ctx, builtin.DelayName); err == nil {
				sizes[n] = size
			}
			cfg.Log.Info("scaling", "round", round+1, "workers", n, "records_per_sec", int(float64(records)/elapsed.Seconds()),
				"batch_size", sizes[n])
		}
		if err := stopAll(); err != nil {
			return nil, err
		}
		if err := waitWorkers(ctx, e.cl, 0, 30*time.Second); err != nil {
			return nil, err
		}
	}
	one := median(perSec[cfg.Counts[0]]) / float64(cfg.Counts[0])
	prevN, prevRate := 0, 0.0
	for _, n := range cfg.Counts {
		rate := median(perSec[n])
		p50, p99 := percentiles(lats[n])
		pt := ScalingPoint{Workers: n, Records: int(float64(n) * perWorker * cfg.Seconds), RecordsPerSec: round2(rate),
			RoundsPerSec: roundAll(perSec[n]), Efficiency: round3(rate / (float64(n) * one)),
			P50BatchMs: p50, P99BatchMs: p99, BatchSize: sizes[n]}
		if prevN > 0 {
			pt.AddedEfficiency = round3((rate - prevRate) / (float64(n-prevN) * one))
		} else {
			pt.AddedEfficiency = 1
		}
		rep.Points = append(rep.Points, pt)
		prevN, prevRate = n, rate
	}
	return rep, nil
}
