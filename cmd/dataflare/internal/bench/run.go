package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

// task is one thing a round measures: a mode, or fleet_native at a sweep
// size.
type task struct {
	mode  string
	sweep int // batch size of a sweep task, else 0
}

func (t task) String() string {
	if t.sweep > 0 {
		return fmt.Sprintf("sweep:%d", t.sweep)
	}
	return t.mode
}

// measured is what the rounds of one task gathered.
type measured struct {
	perSec []float64
	gc     []float64
	bytes  []float64
	allocs []float64
	cpu    []float64
	lat    []time.Duration
}

func (e *env) run(ctx context.Context) (*Report, error) {
	cfg := e.cfg
	rep := &Report{
		Date:         e.start.UTC().Format(time.RFC3339),
		Machine:      machine(),
		Plugin:       cfg.Plugin,
		PluginConfig: cfg.PluginConfig,
		Records:      cfg.Records,
		RecordSize:   cfg.RecordSize,
		Rounds:       cfg.Rounds,
		Workers:      cfg.Workers,
		Parallel:     cfg.Parallel,
		Storage:      "file",
	}
	if e.twin != nil && (contains(e.modes, ModeFleetWASM) || contains(e.modes, ModeDirectWASM)) {
		rep.WASMPlugin = e.twin.name
	}
	if err := e.warmup(ctx); err != nil {
		return nil, err
	}
	rep.BatchSize, rep.FixedBatchSize, rep.BatchSizeWASM = e.sizerSize, cfg.BatchSize > 0, e.wasmSize

	var tasks []task
	for _, m := range e.modes {
		tasks = append(tasks, task{mode: m})
	}
	for _, n := range cfg.Sweep {
		tasks = append(tasks, task{mode: ModeFleetNative, sweep: n})
	}
	got := make(map[task]*measured, len(tasks))
	for _, t := range tasks {
		got[t] = &measured{}
	}
	stop := func() {}
	if cfg.OnRounds != nil {
		if s := cfg.OnRounds(); s != nil {
			stop = s
		}
	}
	for round := range cfg.Rounds {
		// Each round starts one task further, so that no task always
		// runs first (on a cooler machine) or last.
		for k := range tasks {
			t := tasks[(round+k)%len(tasks)]
			m := got[t]
			runtime.GC()
			before := readMem()
			elapsed, lat, err := e.runTask(ctx, t, round, m.lat)
			after := readMem()
			if err != nil {
				stop()
				return nil, fmt.Errorf("%s, round %d: %w", t, round+1, err)
			}
			m.lat = lat
			n := float64(cfg.Records)
			m.perSec = append(m.perSec, n/elapsed.Seconds())
			m.gc = append(m.gc, float64(after.gc-before.gc))
			m.bytes = append(m.bytes, float64(after.bytes-before.bytes)/n)
			m.allocs = append(m.allocs, float64(after.objects-before.objects)/n)
			m.cpu = append(m.cpu, float64(after.cpu-before.cpu)/float64(time.Microsecond)/n)
			cfg.Log.Info("round", "n", round+1, "task", t.String(), "records_per_sec", int(n/elapsed.Seconds()),
				"elapsed", elapsed.Round(time.Millisecond), "cpu_us_per_record", round3(m.cpu[len(m.cpu)-1]),
				"gc", after.gc-before.gc, "bytes_per_record", int(m.bytes[len(m.bytes)-1]))
		}
	}
	stop()

	mode := func(name string, size int) *Mode {
		m, ok := got[task{mode: name}]
		if !ok {
			return nil
		}
		return e.modeOf(m, size)
	}
	rep.Raw = mode(ModeRaw, e.batchSize)
	rep.FleetNative = mode(ModeFleetNative, e.batchSize)
	rep.FleetWASM = mode(ModeFleetWASM, min(e.wasmSize, e.perMessage()))
	rep.Direct = mode(ModeDirect, e.batchSize)
	rep.DirectWASM = mode(ModeDirectWASM, e.batchSize)
	// The sizes the sizer holds at the end, for the record.
	if cfg.BatchSize == 0 {
		if rep.FleetNative != nil {
			if n, err := e.batchSizeOf(ctx, cfg.Plugin); err == nil {
				rep.FleetNative.BatchSize = min(n, e.perMessage())
			}
		}
		if rep.FleetWASM != nil {
			if n, err := e.batchSizeOf(ctx, e.twin.name); err == nil {
				rep.FleetWASM.BatchSize = min(n, e.perMessage())
			}
		}
	}
	rep.FleetNativeVsRaw = pairedRatio(got[task{mode: ModeFleetNative}], got[task{mode: ModeRaw}])
	rep.FleetWASMVsNative = pairedRatio(got[task{mode: ModeFleetWASM}], got[task{mode: ModeFleetNative}])
	if raw, fleet := got[task{mode: ModeRaw}], got[task{mode: ModeFleetNative}]; raw != nil && fleet != nil {
		// Throughput is the inverse of CPU time per record: raw over
		// fleet, as the throughput ratio is fleet over raw.
		rep.FleetNativeVsRawCPU = pairedRatio(&measured{perSec: raw.cpu}, &measured{perSec: fleet.cpu})
	}
	if m := got[task{mode: ModeFleetNative}]; m != nil {
		rep.GCCycles = uint32(median(m.gc))
		rep.AllocBytesPerRecord = round2(median(m.bytes))
		rep.AllocsPerRecord = round2(median(m.allocs))
	}
	if len(cfg.Sweep) > 0 {
		best := -1.0
		var bestM *measured
		for _, n := range cfg.Sweep {
			m := got[task{mode: ModeFleetNative, sweep: n}]
			p50, p99 := percentiles(m.lat)
			pt := SweepPoint{BatchSize: n, RecordsPerSec: round2(median(m.perSec)), RoundsPerSec: roundAll(m.perSec),
				P50BatchMs: p50, P99BatchMs: p99}
			rep.Sweep = append(rep.Sweep, pt)
			if pt.RecordsPerSec > best {
				best, bestM, rep.SweepBest = pt.RecordsPerSec, m, n
			}
		}
		rep.ControllerVsBest = pairedRatio(got[task{mode: ModeFleetNative}], bestM)
	}
	return rep, nil
}

// warmup lets the sizer settle for the fleet modes (each plugin within
// Warmup), encodes the raw mode's messages at the settled size, and runs
// every mode once on a few records, outside the measurement.
func (e *env) warmup(ctx context.Context) error {
	deadline := time.Now().Add(e.cfg.Warmup)
	e.batchSize, e.wasmSize = e.cfg.BatchSize, e.cfg.BatchSize
	fleetNative := contains(e.modes, ModeFleetNative) || len(e.cfg.Sweep) > 0
	if e.batchSize == 0 {
		if !fleetNative && !contains(e.modes, ModeRaw) && !contains(e.modes, ModeDirect) && !contains(e.modes, ModeDirectWASM) {
			e.batchSize = 0
		} else {
			n, err := e.settle(ctx, e.cfg.Plugin, deadline)
			if err != nil {
				return err
			}
			e.batchSize = n
		}
	}
	if contains(e.modes, ModeFleetWASM) && e.wasmSize == 0 {
		n, err := e.settle(ctx, e.twin.name, time.Now().Add(e.cfg.Warmup))
		if err != nil {
			return err
		}
		e.wasmSize = n
	}
	// A batch is cut at the message size limit too, as the client cuts
	// it: the raw and direct modes run batches of the size the fleet's
	// actually have.
	e.sizerSize = e.batchSize
	if e.batchSize > 0 {
		e.batchSize = min(e.batchSize, e.perMessage())
	}
	if contains(e.modes, ModeRaw) {
		var err error
		if e.raw, err = newRawLegs(ctx, e, e.batchSize); err != nil {
			return err
		}
	}
	// One short pass of every mode: connections, consumers, instances
	// and caches are warm before the first measured round.
	few := min(e.in.n, max(e.batchSize, e.wasmSize, 1)*2)
	for _, m := range e.modes {
		var err error
		switch m {
		case ModeRaw:
			_, _, err = e.raw.round(ctx, -1, nil)
		case ModeFleetNative:
			if e.cfg.BatchSize > 0 {
				_, _, err = e.fleetRound(ctx, e.cfg.Plugin, few, e.cfg.BatchSize, nil)
			}
		case ModeFleetWASM:
			if e.cfg.BatchSize > 0 {
				_, _, err = e.fleetRound(ctx, e.twin.name, few, e.cfg.BatchSize, nil)
			}
		case ModeDirect:
			_, _, err = e.directRound(ctx, e.direct, few, nil)
		case ModeDirectWASM:
			_, _, err = e.directRound(ctx, e.directWASM, few, nil)
		}
		if err != nil {
			return fmt.Errorf("warm-up of %s: %w", m, err)
		}
	}
	return nil
}

func (e *env) runTask(ctx context.Context, t task, round int, lat []time.Duration) (time.Duration, []time.Duration, error) {
	if t.sweep > 0 {
		return e.fleetRound(ctx, e.cfg.Plugin, e.in.n, t.sweep, lat)
	}
	switch t.mode {
	case ModeRaw:
		return e.raw.round(ctx, round, lat)
	case ModeFleetNative:
		return e.fleetRound(ctx, e.cfg.Plugin, e.in.n, e.cfg.BatchSize, lat)
	case ModeFleetWASM:
		return e.fleetRound(ctx, e.twin.name, e.in.n, e.cfg.BatchSize, lat)
	case ModeDirect:
		return e.directRound(ctx, e.direct, e.in.n, lat)
	case ModeDirectWASM:
		return e.directRound(ctx, e.directWASM, e.in.n, lat)
	}
	return 0, lat, fmt.Errorf("bench: unknown mode %q", t.mode)
}

// directRound calls p over the first n records in batches of the settled
// size, in a loop on one goroutine: the compute ceiling, with no messaging
// at all.
func (e *env) directRound(ctx context.Context, p plugin.BatchPlugin, n int, lat []time.Duration) (time.Duration, []time.Duration, error) {
	size := max(e.batchSize, 1)
	part := make([]plugin.Record, 0, min(size, n))
	start := time.Now()
	for lo := 0; lo < n; lo += size {
		part = e.in.fill(part, lo, min(lo+size, n))
		t0 := time.Now()
		res, err := p.ProcessBatch(ctx, e.cfg.PluginConfig, part)
		if err != nil {
			return 0, lat, fmt.Errorf("bench: direct: %w", err)
		}
		lat = append(lat, time.Since(t0))
		if len(res.Results) != len(part) {
			return 0, lat, fmt.Errorf("bench: direct: %d results for %d records", len(res.Results), len(part))
		}
		if r := res.Results[0]; r.Err != nil || !e.check(part[0].Value, r.Value) {
			return 0, lat, fmt.Errorf("bench: direct: record %d: wrong result (err %v)", lo, r.Err)
		}
	}
	return time.Since(start), lat, nil
}

// modeOf summarises a mode's rounds.
func (e *env) modeOf(m *measured, size int) *Mode {
	rps := median(m.perSec)
	p50, p99 := percentiles(m.lat)
	return &Mode{
		RecordsPerSec:       round2(rps),
		MBPerSec:            round2(rps * float64(e.cfg.RecordSize) / 1e6),
		P50BatchMs:          p50,
		P99BatchMs:          p99,
		GCCycles:            uint32(median(m.gc)),
		AllocBytesPerRecord: round2(median(m.bytes)),
		AllocsPerRecord:     round2(median(m.allocs)),
		CPUMicrosPerRecord:  round3(median(m.cpu)),
		RoundsPerSec:        roundAll(m.perSec),
		BatchSize:           size,
	}
}

// pairedRatio is the median over rounds of a's throughput over b's in the
// same round; nil when either did not run.
func pairedRatio(a, b *measured) *float64 {
	if a == nil || b == nil || len(a.perSec) == 0 || len(a.perSec) != len(b.perSec) {
		return nil
	}
	r := make([]float64, len(a.perSec))
	for i := range r {
		r[i] = a.perSec[i] / b.perSec[i]
	}
	v := round3(median(r))
	return &v
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentiles returns the 50th and 99th percentiles of ds in
// milliseconds (nearest rank).
func percentiles(ds []time.Duration) (p50, p99 float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		i = min(max(i, 0), len(s)-1)
		return round3(float64(s[i]) / float64(time.Millisecond))
	}
	return rank(0.50), rank(0.99)
}

func round2(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func roundAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = round2(x)
	}
	return out
}

// Machine describes the machine a run measured.
type Machine struct {
	CPU        string `json:"cpu,omitempty"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	// LoadAvg is the 1-minute load average when the run started (Linux
	// only): other processes compete for the CPUs.
	LoadAvg float64 `json:"load_avg,omitempty"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, LoadAvg: LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// LoadAvg returns the 1-minute load average (0 where /proc/loadavg is
// not available).
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// perMessage is the most records of the run's size one batch message holds:
// the client cuts batches at the server's message size less room for the
// header (client and coordinator keep 16 KiB).
func (e *env) perMessage() int {
	room := int(e.nc.MaxPayload()) - 16<<10
	return max(1, room/batch.RecordSize(&plugin.Record{Value: e.in.value(0)}))
}
