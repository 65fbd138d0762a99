package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/dataflare/dataflare/plugin/builtin/twins"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/wasm"
)

// ColdStartConfig describes a cold-start run. Zero fields take their
// defaults.
type ColdStartConfig struct {
	// Repeats is how many times each variant is measured. Default 3.
	Repeats int
	// Spawner, when set, also measures whole workers: from starting one
	// to the first result of a WebAssembly job it runs. Processes is the
	// one that means something (a fresh process, nothing warm).
	Spawner Spawner
	// Module is "c" (default: the 16 KB C build the fleet runs as
	// upper-wasm) or the path of another build of upper-wasm, such as
	// examples/plugins/upper-wasm/upper.wasm (3.4 MB, built with Go and
	// package pdk: a typical plugin of a Go author, where compiling takes
	// seconds).
	Module string
	// Log receives progress lines (nil: none).
	Log *slog.Logger
}

// ColdStartReport is what ColdStart measured, for an example build of
// upper-wasm.
type ColdStartReport struct {
	Date        string  `json:"date"`
	Machine     Machine `json:"machine"`
	Module      string  `json:"module"`
	ModuleBytes int     `json:"module_bytes"`
	Repeats     int     `json:"repeats"`
	// InProcess is a new wasm.Runtime and Registry loading the module
	// (fetch from memory, verify, compile or read the cache, instantiate)
	// and running a one-record batch.
	InProcess ColdStartPair `json:"in_process"`
	// Worker is a new worker (see Workers) from its start to the first
	// result of a one-record job of the module: start, connect, first
	// heartbeat, fetch from the plugin store, compile or read the cache,
	// run. Nil without a Spawner.
	Worker  *ColdStartPair `json:"worker,omitempty"`
	Workers string         `json:"workers,omitempty"`
}

// ColdStartPair is one cold start with and without the compiled-module
// cache.
type ColdStartPair struct {
	// NoCacheMs and CacheMs are medians over the repeats.
	NoCacheMs   float64   `json:"no_cache_ms"`
	CacheMs     float64   `json:"cache_ms"`
	NoCacheRuns []float64 `json:"no_cache_runs_ms"`
	CacheRuns   []float64 `json:"cache_runs_ms"`
	// Speedup is NoCacheMs over CacheMs.
	Speedup float64 `json:"speedup"`
	// HeartbeatMs is, for a worker, the median time to its first
	// heartbeat seen by the coordinator (the rest is the module).
	HeartbeatMs float64 `json:"first_heartbeat_ms,omitempty"`
}

// memSource serves one module from memory.
type memSource struct {
	name, digest string
	module       []byte
}

func (m memSource) Fetch(_ context.Context, name, digest string) ([]byte, error) {
	if name != m.name || digest != m.digest {
		return nil, &plugin.Error{Code: plugin.CodeUnknownPlugin, Message: "bench: no module " + name + "@" + digest}
	}
	return m.module, nil
}

// ColdStart measures how long a WebAssembly module takes from nothing to
// its first result, with and without the compiled-module cache
// (wasm.WithCacheDir), the two variants interleaved. The error wraps
// ErrInvalidConfig for a bad cfg, or is the first failure.
func ColdStart(ctx context.Context, cfg ColdStartConfig) (*ColdStartReport, error) {
	if cfg.Repeats == 0 {
		cfg.Repeats = 3
	}
	if cfg.Repeats < 1 {
		return nil, fmt.Errorf("%w: repeats %d below 1", ErrInvalidConfig, cfg.Repeats)
	}
	if cfg.Log == nil {
		cfg.Log = discard
	}
	module := twins.Upper
	switch cfg.Module {
	case "", "c":
		cfg.Module = "c"
	default:
		b, err := os.ReadFile(cfg.Module)
		if err != nil {
			return nil, fmt.Errorf("%w: module: %v", ErrInvalidConfig, err)
		}
		module = b
	}
	src := memSource{name: twins.UpperName, digest: wasm.Digest(module), module: module}
	rep := &ColdStartReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine(), Module: src.name + " (" + cfg.Module + ")",
		ModuleBytes: len(src.module), Repeats: cfg.Repeats}
	cache, err := os.MkdirTemp("", "dataflare-bench-cache-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(cache)
	// Fill the cache once, outside the measurement.
	if _, err := loadAndRun(ctx, src, cache); err != nil {
		return nil, err
	}
	var no, with []float64
	for i := range cfg.Repeats {
		for _, dir := range []string{"", cache} {
			d, err := loadAndRun(ctx, src, dir)
			if err != nil {
				return nil, err
			}
			ms := round3(float64(d) / float64(time.Millisecond))
			if dir == "" {
				no = append(no, ms)
			} else {
				with = append(with, ms)
			}
			cfg.Log.Info("cold start in process", "run", i+1, "cache", dir != "", "ms", ms)
		}
	}
	rep.InProcess = pair(no, with)
	if cfg.Spawner != nil {
		rep.Workers = cfg.Spawner.Kind()
		if rep.Worker, err = workerColdStart(ctx, cfg, src, cache); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func pair(no, with []float64) ColdStartPair {
	p := ColdStartPair{NoCacheMs: round3(median(no)), CacheMs: round3(median(with)), NoCacheRuns: no, CacheRuns: with}
	if p.CacheMs > 0 {
		p.Speedup = round2(p.NoCacheMs / p.CacheMs)
	}
	return p
}

// loadAndRun times a new runtime (caching in dir, "" for none) loading the
// module through a Registry and running one record.
func loadAndRun(ctx context.Context, src memSource, dir string) (time.Duration, error) {
	start := time.Now()
	opts := []wasm.Option{wasm.WithInstances(1)}
	if dir != "" {
		opts = append(opts, wasm.WithCacheDir(dir))
	}
	rt, err := wasm.NewRuntime(ctx, opts...)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rt.Close(cctx)
	}()
	reg, err := wasm.NewRegistry(rt, src)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer reg.Close()
	p, err := reg.Plugin(ctx, src.name, src.digest)
	if err != nil {
		return 0, fmt.Errorf("bench: load %s: %w", src.name, err)
	}
	in := []byte("cold start")
	res, err := p.ProcessBatch(ctx, nil, []plugin.Record{{Value: in}})
	if err != nil {
		return 0, fmt.Errorf("bench: first batch of %s: %w", src.name, err)
	}
	d := time.Since(start)
	if got := res.Results[0]; got.Err != nil || !checker(builtin.UpperName)(in, got.Value) {
		return 0, fmt.Errorf("bench: %s: wrong first result %q (%v)", src.name, got.Value, got.Err)
	}
	return d, nil
}

// workerColdStart times workers from their start to the first result of a
// one-record job of the module, without and with a filled cache.
func workerColdStart(ctx context.Context, cfg ColdStartConfig, src memSource, cache string) (*ColdStartPair, error) {
	bcfg, err := Config{Records: 1, Plugin: builtin.UpperName, Modes: []string{ModeFleetWASM}, Log: cfg.Log}.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := setupStack(ctx, bcfg, 0, defaultWindow)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var no, with, hb []float64
	for i := range cfg.Repeats {
		for _, dir := range []string{"", cache} {
			start := time.Now()
			w, err := cfg.Spawner.Start(ctx, e.st.URL, WorkerSpec{ID: fmt.Sprintf("bench-cold-%d", i+1), Parallel: 1, CacheDir: dir})
			if err != nil {
				return nil, err
			}
			d, beat, err := func() (time.Duration, time.Duration, error) {
				if err := waitWorkers(ctx, e.cl, 1, time.Minute); err != nil {
					return 0, 0, err
				}
				beat := time.Since(start)
				if _, _, err := e.fleetRound(ctx, src.name, 1, 0, nil); err != nil {
					return 0, 0, err
				}
				return time.Since(start), beat, nil
			}()
			err = errors.Join(err, w.Stop())
			if err != nil {
				return nil, err
			}
			if err := waitWorkers(ctx, e.cl, 0, time.Minute); err != nil {
				return nil, err
			}
			ms := round3(float64(d) / float64(time.Millisecond))
			if dir == "" {
				no = append(no, ms)
			} else {
				with = append(with, ms)
			}
			hb = append(hb, round3(float64(beat)/float64(time.Millisecond)))
			cfg.Log.Info("cold start of a worker", "run", i+1, "cache", dir != "", "ms", ms, "first_heartbeat_ms", hb[len(hb)-1])
		}
	}
	p := pair(no, with)
	p.HeartbeatMs = round3(median(hb))
	return &p, nil
}
