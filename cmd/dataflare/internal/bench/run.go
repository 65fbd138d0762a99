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
	wire   []float64
	lat    []time.Duration
}

// add records one round over n records that took elapsed, between the
// snapshots before and after.
func (m *measured) add(n float64, elapsed time.Duration, before, after memSnap) {
	m.perSec = append(m.perSec, n/elapsed.Seconds())
	m.gc = append(m.gc, float64(after.gc-before.gc))
	m.bytes = append(m.bytes, float64(after.bytes-before.bytes)/n)
	m.allocs = append(m.allocs, float64(after.objects-before.objects)/n)
	m.cpu = append(m.cpu, float64(after.cpu-before.cpu)/float64(time.Microsecond)/n)
}

// run measures the throughput modes: a warm-up, the rounds, the report.
func (e *env) run(ctx context.Context) (*Report, error) {
	r := newBenchRun(e)
	if err := e.warmup(ctx); err != nil {
		return nil, err
	}
	r.rep.BatchSize, r.rep.FixedBatchSize, r.rep.BatchSizeWASM = e.sizerSize, e.cfg.BatchSize > 0, e.wasmSize
	if err := r.measureRounds(ctx); err != nil {
		return nil, err
	}
	r.summarise(ctx)
	return r.rep, nil
}

// benchRun is one Run of the throughput modes: the tasks of a round, what
// each task's rounds measured, and the report they become.
type benchRun struct {
	e     *env
	tasks []task
	got   map[task]*measured
	rep   *Report
}

// newBenchRun lists the tasks of a round (the modes, then the sweep sizes)
// and starts the report with what is known before anything runs.
func newBenchRun(e *env) *benchRun {
	r := &benchRun{e: e, rep: e.reportHeader()}
	for _, m := range e.modes {
		r.tasks = append(r.tasks, task{mode: m})
	}
	for _, n := range e.cfg.Sweep {
		r.tasks = append(r.tasks, task{mode: ModeFleetNative, sweep: n})
	}
	r.got = make(map[task]*measured, len(r.tasks))
	for _, t := range r.tasks {
		r.got[t] = &measured{}
	}
	return r
}

// reportHeader is the report's description of the run and the machine.
func (e *env) reportHeader() *Report {
	cfg := e.cfg
	rep := &Report{
		Date:         e.start.UTC().Format(time.RFC3339),
		Machine:      machine(),
		Plugin:       cfg.Plugin,
		PluginConfig: cfg.PluginConfig,
		Records:      cfg.Records,
		RecordSize:   cfg.RecordSize,
		Data:         cfg.Data,
		Compression:  !cfg.NoCompression,
		Rounds:       cfg.Rounds,
		Workers:      cfg.Workers,
		Parallel:     cfg.Parallel,
		Storage:      "file",
	}
	if e.twin != nil && (contains(e.modes, ModeFleetWASM) || contains(e.modes, ModeDirectWASM)) {
		rep.WASMPlugin = e.twin.name
	}
	return rep
}

// measureRounds runs every task once per round, between Config.OnRounds
// and the stop function it returned.
func (r *benchRun) measureRounds(ctx context.Context) error {
	stop := r.startRounds()
	defer stop()
	for round := range r.e.cfg.Rounds {
		// Each round starts one task further, so that no task always
		// runs first (on a cooler machine) or last.
		for k := range r.tasks {
			t := r.tasks[(round+k)%len(r.tasks)]
			if err := r.measure(ctx, t, round); err != nil {
				return fmt.Errorf("%s, round %d: %w", t, round+1, err)
			}
		}
	}
	return nil
}

// startRounds calls Config.OnRounds, if set, and returns what stops it (a
// no-op when there is nothing to stop).
func (r *benchRun) startRounds() (stop func()) {
	if r.e.cfg.OnRounds != nil {
		if s := r.e.cfg.OnRounds(); s != nil {
			return s
		}
	}
	return func() {}
}

// measure runs task t in round (from 0) and records its throughput,
// allocations and CPU time.
func (r *benchRun) measure(ctx context.Context, t task, round int) error {
	m := r.got[t]
	runtime.GC()
	wire0 := r.e.wireBytes()
	before := readMem()
	elapsed, lat, err := r.runTask(ctx, t, round, m.lat)
	after := readMem()
	wire1 := r.e.wireBytes()
	if err != nil {
		return err
	}
	m.lat = lat
	n := float64(r.e.cfg.Records)
	m.add(n, elapsed, before, after)
	if t.mode != ModeDirect && t.mode != ModeDirectWASM {
		m.wire = append(m.wire, float64(wire1-wire0)/n)
	}
	r.e.cfg.Log.Info("round", "n", round+1, "task", t.String(), "records_per_sec", int(n/elapsed.Seconds()),
		"elapsed", elapsed.Round(time.Millisecond), "cpu_us_per_record", round3(m.cpu[len(m.cpu)-1]),
		"gc", after.gc-before.gc, "bytes_per_record", int(m.bytes[len(m.bytes)-1]))
	return nil
}

// runTask runs task t once over all the records, in round (from 0), and
// returns how long it took and lat with its batch latencies added.
func (r *benchRun) runTask(ctx context.Context, t task, round int, lat []time.Duration) (time.Duration, []time.Duration, error) {
	e := r.e
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

// summarise turns what the rounds measured into the report.
func (r *benchRun) summarise(ctx context.Context) {
	r.summariseModes()
	r.finalSizes(ctx)
	r.ratios()
	r.sweep()
}

// summariseModes fills in each mode that ran.
func (r *benchRun) summariseModes() {
	e := r.e
	r.rep.Raw = r.mode(ModeRaw, e.batchSize)
	r.rep.FleetNative = r.mode(ModeFleetNative, e.batchSize)
	r.rep.FleetWASM = r.mode(ModeFleetWASM, min(e.wasmSize, e.perMessage()))
	r.rep.Direct = r.mode(ModeDirect, e.batchSize)
	r.rep.DirectWASM = r.mode(ModeDirectWASM, e.batchSize)
}

// mode summarises the mode name's rounds at batch size size; nil when it
// did not run.
func (r *benchRun) mode(name string, size int) *Mode {
	m, ok := r.got[task{mode: name}]
	if !ok {
		return nil
	}
	return r.e.modeOf(m, size)
}

// finalSizes records, for the fleet modes, the sizes the sizer holds at the
// end (when the batch size was not fixed).
func (r *benchRun) finalSizes(ctx context.Context) {
	e := r.e
	if e.cfg.BatchSize != 0 {
		return
	}
	if r.rep.FleetNative != nil {
		if n, err := e.batchSizeOf(ctx, e.cfg.Plugin); err == nil {
			r.rep.FleetNative.BatchSize = min(n, e.perMessage())
		}
	}
	if r.rep.FleetWASM != nil {
		if n, err := e.batchSizeOf(ctx, e.twin.name); err == nil {
			r.rep.FleetWASM.BatchSize = min(n, e.perMessage())
		}
	}
}

// ratios compares the modes round by round, and gives fleet_native's
// allocations at the top of the report.
func (r *benchRun) ratios() {
	raw, native := r.got[task{mode: ModeRaw}], r.got[task{mode: ModeFleetNative}]
	r.rep.FleetNativeVsRaw = pairedRatio(native, raw)
	r.rep.FleetWASMVsNative = pairedRatio(r.got[task{mode: ModeFleetWASM}], native)
	if raw != nil && native != nil {
		// Throughput is the inverse of CPU time per record: raw over
		// fleet, as the throughput ratio is fleet over raw.
		r.rep.FleetNativeVsRawCPU = pairedRatio(&measured{perSec: raw.cpu}, &measured{perSec: native.cpu})
	}
	if native != nil {
		r.rep.GCCycles = uint32(median(native.gc))
		r.rep.AllocBytesPerRecord = round2(median(native.bytes))
		r.rep.AllocsPerRecord = round2(median(native.allocs))
	}
}

// sweep reports fleet_native at each sweep size, the best size, and the
// sizer's throughput against the best size's.
func (r *benchRun) sweep() {
	if len(r.e.cfg.Sweep) == 0 {
		return
	}
	best := -1.0
	var bestM *measured
	for _, n := range r.e.cfg.Sweep {
		m := r.got[task{mode: ModeFleetNative, sweep: n}]
		p50, p99 := percentiles(m.lat)
		pt := SweepPoint{BatchSize: n, RecordsPerSec: round2(median(m.perSec)), RoundsPerSec: roundAll(m.perSec),
			P50BatchMs: p50, P99BatchMs: p99}
		r.rep.Sweep = append(r.rep.Sweep, pt)
		if pt.RecordsPerSec > best {
			best, bestM, r.rep.SweepBest = pt.RecordsPerSec, m, n
		}
	}
	r.rep.ControllerVsBest = pairedRatio(r.got[task{mode: ModeFleetNative}], bestM)
}

// warmup lets the sizer settle for the fleet modes (each plugin within
// Warmup), encodes the raw mode's messages at the settled size, and runs
// every mode once on a few records, outside the measurement.
func (e *env) warmup(ctx context.Context) error {
	if err := e.settleSizes(ctx); err != nil {
		return err
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
		if err := e.warmMode(ctx, m, few); err != nil {
			return fmt.Errorf("warm-up of %s: %w", m, err)
		}
	}
	return nil
}

// settleSizes sets the batch sizes the modes run at: the fixed size, or
// the size the sizer settles on for each plugin within Warmup.
func (e *env) settleSizes(ctx context.Context) error {
	deadline := time.Now().Add(e.cfg.Warmup)
	e.batchSize, e.wasmSize = e.cfg.BatchSize, e.cfg.BatchSize
	// Whether some mode runs at the native plugin's size.
	native := contains(e.modes, ModeFleetNative) || len(e.cfg.Sweep) > 0 || contains(e.modes, ModeRaw) ||
		contains(e.modes, ModeDirect) || contains(e.modes, ModeDirectWASM)
	if e.batchSize == 0 && native {
		n, err := e.settle(ctx, e.cfg.Plugin, deadline)
		if err != nil {
			return err
		}
		e.batchSize = n
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
	return nil
}

// warmMode runs mode m once on few records (the fleet modes only at a
// fixed batch size: settling the sizer warmed them).
func (e *env) warmMode(ctx context.Context, m string, few int) error {
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
	return err
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
		WireBytesPerRecord:  round2(median(m.wire)),
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
