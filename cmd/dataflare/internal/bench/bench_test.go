package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/batch/batchz"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

// runTiny runs a small bench: fixed batch size (no sizer to wait for).
func runTiny(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func TestRunReportsEveryModeFromOneRun(t *testing.T) {
	rep := runTiny(t, Config{Records: 3000, RecordSize: 100, Rounds: 3, BatchSize: 500})
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	// The contract's fields, by their JSON names.
	for _, mode := range []string{"raw", "fleet_native", "fleet_wasm", "direct"} {
		m, ok := doc[mode].(map[string]any)
		if !ok {
			t.Fatalf("%s: got %v, want an object", mode, doc[mode])
		}
		for _, f := range []string{"records_per_sec", "mb_per_sec", "p50_batch_ms", "p99_batch_ms", "cpu_us_per_record"} {
			v, ok := m[f].(float64)
			if !ok || v <= 0 {
				t.Errorf("%s.%s = %v, want a positive number", mode, f, m[f])
			}
		}
		if got, want := len(m["rounds_records_per_sec"].([]any)), 3; got != want {
			t.Errorf("%s: %d rounds, want %d", mode, got, want)
		}
	}
	for _, f := range []string{"fleet_native_vs_raw", "fleet_wasm_vs_native", "fleet_native_vs_raw_cpu", "alloc_bytes_per_record", "batch_size"} {
		if v, ok := doc[f].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", f, doc[f])
		}
	}
	if _, ok := doc["gc_cycles"].(float64); !ok {
		t.Errorf("gc_cycles = %v, want a number", doc["gc_cycles"])
	}
	if got, want := rep.BatchSize, 500; got != want {
		t.Errorf("batch_size = %d, want %d", got, want)
	}

	// The ratios come from the same run: the median of the per-round
	// ratios of the throughputs the report lists.
	check := func(name string, got *float64, a, b *Mode) {
		t.Helper()
		r := make([]float64, len(a.RoundsPerSec))
		for i := range r {
			r[i] = a.RoundsPerSec[i] / b.RoundsPerSec[i]
		}
		if want := median(r); got == nil || math.Abs(*got-want) > 0.01*want+0.002 {
			t.Errorf("%s = %v, want %.3f (from rounds %v / %v)", name, got, want, a.RoundsPerSec, b.RoundsPerSec)
		}
	}
	check("fleet_native_vs_raw", rep.FleetNativeVsRaw, rep.FleetNative, rep.Raw)
	check("fleet_wasm_vs_native", rep.FleetWASMVsNative, rep.FleetWASM, rep.FleetNative)
	for name, m := range map[string]*Mode{"raw": rep.Raw, "fleet_native": rep.FleetNative, "direct": rep.Direct} {
		if got, want := m.RecordsPerSec, median(m.RoundsPerSec); math.Abs(got-want) > 0.01 {
			t.Errorf("%s: records_per_sec %v, want the median of %v", name, got, m.RoundsPerSec)
		}
		if got, want := m.MBPerSec, m.RecordsPerSec*100/1e6; math.Abs(got-want) > 0.01 {
			t.Errorf("%s: mb_per_sec %v, want %v", name, got, want)
		}
	}
}

func TestRunSizerAndSweep(t *testing.T) {
	rep := runTiny(t, Config{Records: 2000, RecordSize: 64, Plugin: "identity", Rounds: 1,
		Modes: []string{ModeFleetNative}, Sweep: []int{100, 1000}, Warmup: time.Millisecond})
	if rep.BatchSize < 1 || rep.FixedBatchSize {
		t.Errorf("batch_size %d (fixed %v), want the sizer's", rep.BatchSize, rep.FixedBatchSize)
	}
	if rep.Raw != nil || rep.FleetWASM != nil || rep.FleetNativeVsRaw != nil {
		t.Errorf("modes not asked for ran: raw %v, fleet_wasm %v", rep.Raw, rep.FleetWASM)
	}
	if got, want := len(rep.Sweep), 2; got != want {
		t.Fatalf("%d sweep points, want %d", got, want)
	}
	if rep.ControllerVsBest == nil || *rep.ControllerVsBest <= 0 {
		t.Errorf("controller_vs_best = %v, want a positive ratio", rep.ControllerVsBest)
	}
	if rep.SweepBest != 100 && rep.SweepBest != 1000 {
		t.Errorf("sweep_best = %d, want one of the sizes", rep.SweepBest)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"negative records", Config{Records: -1}},
		{"record too large", Config{RecordSize: MaxRecordSize + 1}},
		{"unknown plugin", Config{Plugin: "nope"}},
		{"unknown mode", Config{Modes: []string{"fast"}}},
		{"batch size over the codec's limit", Config{BatchSize: maxBatch + 1}},
		{"sweep size 0", Config{Sweep: []int{0}}},
		{"negative rounds", Config{Rounds: -2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v, want an error wrapping ErrInvalidConfig", err)
			}
		})
	}
}

func TestStatistics(t *testing.T) {
	ms := func(xs ...float64) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x * float64(time.Millisecond))
		}
		return out
	}
	for _, tc := range []struct {
		name               string
		in                 []time.Duration
		wantP50, wantP99   float64
		values             []float64
		wantMedian         float64
		a, b               []float64
		wantRatio          float64
		wantRatioUndefined bool
	}{
		{name: "odd", in: ms(3, 1, 2), wantP50: 2, wantP99: 3, values: []float64{5, 1, 3}, wantMedian: 3,
			a: []float64{2, 4, 9}, b: []float64{1, 4, 3}, wantRatio: 2},
		{name: "even", in: ms(4, 1, 3, 2), wantP50: 2, wantP99: 4, values: []float64{4, 1, 3, 2}, wantMedian: 2.5,
			a: []float64{1, 1}, b: []float64{2, 4}, wantRatio: 0.375},
		{name: "hundred", in: ms(func() []float64 {
			xs := make([]float64, 100)
			for i := range xs {
				xs[i] = float64(100 - i)
			}
			return xs
		}()...), wantP50: 50, wantP99: 99, values: []float64{7}, wantMedian: 7, a: []float64{1}, b: []float64{1}, wantRatio: 1},
		{name: "empty", values: nil, a: []float64{1}, b: nil, wantRatioUndefined: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p50, p99 := percentiles(tc.in)
			if p50 != tc.wantP50 || p99 != tc.wantP99 {
				t.Errorf("percentiles: got %v, %v; want %v, %v", p50, p99, tc.wantP50, tc.wantP99)
			}
			if got := median(tc.values); got != tc.wantMedian {
				t.Errorf("median(%v) = %v, want %v", tc.values, got, tc.wantMedian)
			}
			got := pairedRatio(&measured{perSec: tc.a}, &measured{perSec: tc.b})
			switch {
			case tc.wantRatioUndefined && got != nil:
				t.Errorf("pairedRatio = %v, want nil", *got)
			case !tc.wantRatioUndefined && (got == nil || *got != tc.wantRatio):
				t.Errorf("pairedRatio = %v, want %v", got, tc.wantRatio)
			}
		})
	}
}

func TestRecordsAndChecker(t *testing.T) {
	in := makeRecords(5000, 37, DataLetters)
	if got, want := in.distinct, 4096; got != want {
		t.Errorf("%d distinct values, want %d", got, want)
	}
	recs := in.fill(nil, 4000, 5000)
	if got, want := len(recs), 1000; got != want {
		t.Fatalf("%d records, want %d", got, want)
	}
	for i, r := range recs {
		if len(r.Value) != 37 || cap(r.Value) != 37 {
			t.Fatalf("record %d: len %d cap %d, want 37 and 37", i, len(r.Value), cap(r.Value))
		}
	}
	if !bytes.Equal(in.value(1), in.value(4097)) || bytes.Equal(in.value(1), in.value(2)) {
		t.Errorf("values do not cycle through %d distinct ones", in.distinct)
	}
	if got, want := makeRecords(1000, 1<<20, DataLetters).distinct, maxSlab>>20; got != want {
		t.Errorf("1 MiB records: %d distinct values, want %d (the slab bound)", got, want)
	}
	// Logs and random bytes: every record distinct, of the size asked;
	// log lines compress, random bytes do not.
	for _, tc := range []struct {
		data     string
		compress bool
	}{{DataLogs, true}, {DataRandom, false}} {
		in := makeRecords(5000, 100, tc.data)
		if in.distinct != 5000 || bytes.Equal(in.value(0), in.value(1)) || len(in.value(4999)) != 100 {
			t.Errorf("%s: %d distinct values of %d bytes", tc.data, in.distinct, len(in.value(4999)))
		}
		msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "upper", Records: in.fill(nil, 0, 1000)})
		if err != nil {
			t.Fatal(err)
		}
		z, ok := batchz.Compress(nil, msg)
		if ok != tc.compress {
			t.Errorf("%s: compressed %v, want %v", tc.data, ok, tc.compress)
		}
		t.Logf("%s: a batch of 1,000 records of 100 bytes: %d bytes, compressed %d (%v)", tc.data, len(msg), len(z), ok)
	}
	if !checker("upper")([]byte("a\xffb\xc3"), []byte("A\xffB\xc3")) {
		t.Error("the upper checker rewrites bytes that are not ASCII letters")
	}
	upper := checker("upper")
	for _, tc := range []struct {
		in, out string
		want    bool
	}{
		{"abc 1", "ABC 1", true},
		{"abc", "abc", false},
		{"abc", "ABCD", false},
	} {
		if got := upper([]byte(tc.in), []byte(tc.out)); got != tc.want {
			t.Errorf("upper check %q → %q = %v, want %v", tc.in, tc.out, got, tc.want)
		}
	}
}

// BenchmarkFleetNative runs jobs of 100,000 records of 100 B through the
// fleet (client → DF_BATCHES → worker → client) at the sizer's batch size:
// profile it with -cpuprofile / -memprofile.
func BenchmarkFleetNative(b *testing.B) {
	ctx := context.Background()
	cfg, err := Config{Records: 100_000, Modes: []string{ModeFleetNative}}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	e, err := setup(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	if e.batchSize, err = e.settle(ctx, cfg.Plugin, time.Now().Add(cfg.Warmup)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(cfg.Records * cfg.RecordSize))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := e.fleetRound(ctx, cfg.Plugin, cfg.Records, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*cfg.Records), "ns/record")
}

func TestScaling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Scaling(ctx, ScalingConfig{Counts: []int{2, 1}, Seconds: 0.5, Rounds: 1})
	if err != nil {
		t.Fatalf("Scaling: %v", err)
	}
	if got, want := len(rep.Points), 2; got != want {
		t.Fatalf("%d points, want %d", got, want)
	}
	for i, want := range []struct{ workers, records int }{{1, 1000}, {2, 2000}} {
		p := rep.Points[i]
		if p.Workers != want.workers || p.Records != want.records {
			t.Errorf("point %d: %d workers, %d records; want %d, %d", i, p.Workers, p.Records, want.workers, want.records)
		}
		// A worker cannot beat its ceiling: Parallel batches sleeping
		// 1 ms per record.
		if p.RecordsPerSec <= 0 || p.RecordsPerSec > float64(p.Workers)*rep.Ceiling*1.05 {
			t.Errorf("point %d: %v records/s, want in (0, %v]", i, p.RecordsPerSec, float64(p.Workers)*rep.Ceiling)
		}
	}
	if got := rep.Points[0].Efficiency; got != 1 {
		t.Errorf("efficiency of the first count = %v, want 1", got)
	}
	if got := rep.Points[1].Efficiency; got <= 0 {
		t.Errorf("efficiency of 2 workers = %v, want positive", got)
	}
	if _, err := Scaling(ctx, ScalingConfig{Counts: []int{0, 2}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("counts {0, 2}: got %v, want ErrInvalidConfig", err)
	}
}

func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ackWait = 700 * time.Millisecond
	rep, err := Failover(ctx, FailoverConfig{Seconds: 1, KillAfter: 300 * time.Millisecond, AckWait: ackWait, Rounds: 1})
	if err != nil {
		t.Fatalf("Failover: %v", err)
	}
	if got, want := len(rep.Runs), 1; got != want {
		t.Fatalf("%d runs, want %d", got, want)
	}
	// The dead worker's batch waits out most of its AckWait before a
	// survivor gets it (it was fetched before the kill).
	run := rep.Runs[0]
	if run.StallMs < 0.3*float64(ackWait.Milliseconds()) || run.StallMs > 20_000 {
		t.Errorf("stall %v ms, want about the AckWait of %v", run.StallMs, ackWait)
	}
	if run.JobMs <= run.KilledAtMs || run.KilledAtMs < 250 {
		t.Errorf("killed at %v ms of a %v ms job, want 300 ms into it", run.KilledAtMs, run.JobMs)
	}
}

func TestColdStart(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("compiles a 3 MB module twice: a measurement, meaningless under -race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := ColdStart(ctx, ColdStartConfig{Repeats: 1})
	if err != nil {
		t.Fatalf("ColdStart: %v", err)
	}
	p := rep.InProcess
	if p.NoCacheMs <= 0 || p.CacheMs <= 0 || len(p.NoCacheRuns) != 1 || len(p.CacheRuns) != 1 {
		t.Fatalf("in-process cold start %+v, want one positive run of each", p)
	}
	// Reading compiled code back must beat compiling it.
	if p.CacheMs >= p.NoCacheMs {
		t.Errorf("with the cache %v ms, without %v ms: want the cache faster", p.CacheMs, p.NoCacheMs)
	}
	if rep.Worker != nil {
		t.Errorf("worker cold start measured without a Spawner: %+v", rep.Worker)
	}
}
