package bench

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

// jsonDoc returns v's JSON form as maps: the contract is the JSON names.
func jsonDoc(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// object returns doc's object at path, failing the test if there is none.
func object(t *testing.T, doc map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := doc
	for i, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("%v: got %v, want an object", path[:i+1], cur[k])
		}
		cur = next
	}
	return cur
}

// checkLatencies checks the figure at path: positive percentiles in
// order, and samples probes.
func checkLatencies(t *testing.T, doc map[string]any, samples int, path ...string) map[string]any {
	t.Helper()
	m := object(t, doc, path...)
	var v [3]float64
	for i, k := range []string{"p50_ms", "p99_ms", "max_ms"} {
		x, ok := m[k].(float64)
		if !ok || x <= 0 {
			t.Errorf("%v.%s = %v, want a positive number", path, k, m[k])
		}
		v[i] = x
	}
	if !(v[0] <= v[1] && v[1] <= v[2]) {
		t.Errorf("%v: p50 %v, p99 %v, max %v: want them in order", path, v[0], v[1], v[2])
	}
	if got, ok := m["samples"].(float64); !ok || int(got) != samples {
		t.Errorf("%v.samples = %v, want %d", path, m["samples"], samples)
	}
	return m
}

func TestLatency(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Latency(ctx, LatencyConfig{IdleSamples: 8, LoadedSamples: 4, ProbeGap: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Latency: %v", err)
	}
	doc := jsonDoc(t, rep)
	checkLatencies(t, doc, 8, "latency", "idle")
	checkLatencies(t, doc, 4, "latency", "loaded")
	// The load's throughput beside a few quick probes says little (its
	// in-order results come 100 at a time, and a window's worth at once
	// after a slow batch); its ceiling is 1 worker × GOMAXPROCS slots of
	// 1,000 records/s.
	if got, want := rep.LoadCeiling, float64(1000*runtime.GOMAXPROCS(0)); got != want {
		t.Errorf("load ceiling %v records/s, want %v", got, want)
	}
	if rep.LoadPlugin != "delay" || rep.LoadConfig["ms"] != "1" || rep.ProbeGapMs != 20 {
		t.Errorf("load %s %v, probe gap %v ms: want delay ms=1 and 20 ms", rep.LoadPlugin, rep.LoadConfig, rep.ProbeGapMs)
	}
}

func TestFairness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Fairness(ctx, FairnessConfig{Samples: 3, LoadJobs: 1, SplitTime: time.Second, ProbeGap: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("Fairness: %v", err)
	}
	doc := jsonDoc(t, rep)
	for _, fig := range []string{"fair", "fifo", "fair_high", "fifo_high"} {
		checkLatencies(t, doc, 3, "fairness", fig)
	}
	// Without fair sharing the probes queue behind the load's window of
	// 100 ms batches; with it they take the next free slot. Not a speed
	// check: the gap is the whole queue, over ten times.
	if f := rep.Fairness; f.FIFO.P50Ms <= f.Fair.P50Ms {
		t.Errorf("fifo p50 %v ms, fair p50 %v ms: want FIFO probes to wait behind the load", f.FIFO.P50Ms, f.Fair.P50Ms)
	}
	w := object(t, doc, "fairness", "weights")
	a, _ := w["a_share"].(float64)
	b, _ := w["b_share"].(float64)
	if a <= 0 || b <= 0 || math.Abs(a+b-1) > 1e-9 {
		t.Errorf("weights: shares %v and %v, want positive, summing to 1", a, b)
	}
	if w["a_weight"] != 1.0 || w["b_weight"] != 3.0 {
		t.Errorf("weights %v and %v, want 1 and 3", w["a_weight"], w["b_weight"])
	}
	if s := rep.Fairness.Weights; s.ARecords <= 0 || s.BRecords <= 0 || s.Seconds < 1 {
		t.Errorf("weighted split %+v: want records of both owners over at least 1 s", s)
	}
}

func TestSharingConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"negative samples", func() error { _, err := Latency(ctx, LatencyConfig{IdleSamples: -1}); return err }},
		{"failing load", func() error { _, err := Latency(ctx, LatencyConfig{Load: LoadConfig{Plugin: "fail"}}); return err }},
		{"unknown load", func() error { _, err := Fairness(ctx, FairnessConfig{Load: LoadConfig{Plugin: "nope"}}); return err }},
		{"no load jobs", func() error { _, err := Fairness(ctx, FairnessConfig{LoadJobs: -1}); return err }},
		{"zero weight", func() error { _, err := Fairness(ctx, FairnessConfig{Weights: [2]float64{0, 3}}); return err }},
		{"probe records", func() error { _, err := Fairness(ctx, FairnessConfig{ProbeRecords: 5000}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v, want an error wrapping ErrInvalidConfig", err)
			}
		})
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		in      LoadConfig
		want    string
		ceiling float64
	}{
		{LoadConfig{}, "1", 4000},
		{LoadConfig{Config: plugin.Config{"ms": "5"}}, "5", 800},
		{LoadConfig{Plugin: "upper"}, "", 0},
	} {
		got, err := tc.in.withDefaults()
		if err != nil {
			t.Fatalf("%+v: %v", tc.in, err)
		}
		if got.Config["ms"] != tc.want {
			t.Errorf("%+v: ms=%q, want %q", tc.in, got.Config["ms"], tc.want)
		}
		if c := got.ceiling(2, 2); c != tc.ceiling {
			t.Errorf("%+v: ceiling on 2 × 2 slots %v, want %v", tc.in, c, tc.ceiling)
		}
	}
}

func TestLatencies(t *testing.T) {
	got := latencies([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	want := Latencies{P50Ms: 2, P99Ms: 3, MaxMs: 3, Samples: 3}
	if got != want {
		t.Errorf("latencies = %+v, want %+v", got, want)
	}
}
