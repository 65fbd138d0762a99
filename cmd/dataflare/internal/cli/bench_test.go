package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBench(t *testing.T) {
	r := run(t, "", "bench", "--records", "1000", "--rounds", "2", "--batch-size", "250",
		"--modes", "raw,fleet_native,direct", "--json")
	if r.code != ExitOK {
		t.Fatalf("exit %d, want 0; stderr: %s", r.code, r.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, r.stdout)
	}
	for _, mode := range []string{"raw", "fleet_native", "direct"} {
		m, ok := doc[mode].(map[string]any)
		if !ok {
			t.Fatalf("%s: got %v, want an object", mode, doc[mode])
		}
		for _, f := range []string{"records_per_sec", "mb_per_sec", "p50_batch_ms", "p99_batch_ms"} {
			if v, ok := m[f].(float64); !ok || v <= 0 {
				t.Errorf("%s.%s = %v, want a positive number", mode, f, m[f])
			}
		}
	}
	if doc["fleet_wasm"] != nil {
		t.Errorf("fleet_wasm = %v, want null when not asked for", doc["fleet_wasm"])
	}
	for _, f := range []string{"fleet_native_vs_raw", "gc_cycles", "alloc_bytes_per_record", "batch_size"} {
		if _, ok := doc[f].(float64); !ok {
			t.Errorf("%s = %v, want a number", f, doc[f])
		}
	}

	r = run(t, "", "bench", "--records", "500", "--rounds", "1", "--batch-size", "250", "--modes", "fleet_native,direct")
	if r.code != ExitOK || !strings.Contains(r.stdout, "fleet_native") || !strings.Contains(r.stdout, "RECORDS/S") {
		t.Errorf("table output: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown plugin", []string{"--plugin", "nope"}, "not a native plugin"},
		{"unknown mode", []string{"--modes", "raw,fast"}, "unknown mode"},
		{"bad config", []string{"--config", "ms"}, "KEY=VALUE"},
		{"zero records", []string{"--records", "-5"}, "records"},
		{"argument", []string{"extra"}, "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, "", append([]string{"bench"}, tc.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, ExitUsage, tc.want)
			}
		})
	}
}

func TestBenchFigures(t *testing.T) {
	r := run(t, "", "bench", "--scaling", "1,2", "--seconds", "0.3", "--rounds", "1", "--workers-as", "in-process", "--json")
	if r.code != ExitOK {
		t.Fatalf("--scaling: exit %d, stderr %s", r.code, r.stderr)
	}
	var doc struct {
		Points []struct {
			Workers       int     `json:"workers"`
			RecordsPerSec float64 `json:"records_per_sec"`
			Efficiency    float64 `json:"efficiency"`
		} `json:"points"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--scaling --json: %v\n%s", err, r.stdout)
	}
	if len(doc.Points) != 2 || doc.Points[1].Workers != 2 || doc.Points[1].RecordsPerSec <= 0 {
		t.Errorf("--scaling points %+v, want 1 and 2 workers with throughput", doc.Points)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"two figures", []string{"--coldstart", "--failover"}, "separate runs"},
		{"latency and fairness", []string{"--latency", "--fairness"}, "separate runs"},
		{"pipeline and latency", []string{"--pipeline", "--latency"}, "separate runs"},
		{"failing pipeline step", []string{"--pipeline", "--plugin", "fail"}, "pipeline plugin"},
		{"negative pipeline seconds", []string{"--pipeline", "--seconds", "-1"}, "--seconds"},
		{"no load jobs", []string{"--fairness", "--load-jobs", "0"}, "--load-jobs"},
		{"negative probe gap", []string{"--latency", "--probe-gap", "-1s"}, "--probe-gap"},
		{"failing load", []string{"--latency", "--plugin", "fail"}, "load plugin"},
		{"bad workers-as", []string{"--failover", "--workers-as", "threads"}, "--workers-as"},
		{"bad ms", []string{"--scaling", "1", "--config", "ms=x"}, "integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, "", append([]string{"bench"}, tc.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, ExitUsage, tc.want)
			}
		})
	}
}

func TestBenchLatency(t *testing.T) {
	r := run(t, "", "bench", "--latency", "--samples", "3", "--probe-gap", "5ms", "--json")
	if r.code != ExitOK {
		t.Fatalf("--latency: exit %d, stderr %s", r.code, r.stderr)
	}
	var doc struct {
		Latency map[string]map[string]float64 `json:"latency"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--latency --json: %v\n%s", err, r.stdout)
	}
	for _, fig := range []string{"idle", "loaded"} {
		l := doc.Latency[fig]
		if l["p50_ms"] <= 0 || l["p99_ms"] < l["p50_ms"] || l["samples"] != 3 {
			t.Errorf("latency.%s = %v, want 3 samples, 0 < p50 <= p99", fig, l)
		}
	}
	r = run(t, "", "bench", "--latency", "--samples", "2", "--probe-gap", "0")
	if r.code != ExitOK || !strings.Contains(r.stdout, "idle") || !strings.Contains(r.stdout, "P99 MS") {
		t.Errorf("table output: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestBenchPipeline(t *testing.T) {
	r := run(t, "", "bench", "--pipeline", "--records", "500", "--record-size", "128", "--rounds", "1", "--warmup", "1ms",
		"--seconds", "1", "--json")
	if r.code != ExitOK {
		t.Fatalf("--pipeline: exit %d, stderr %s", r.code, r.stderr)
	}
	var doc struct {
		Pipeline map[string]any `json:"pipeline"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--pipeline --json: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"records_per_sec", "raw_records_per_sec", "vs_raw", "lag_p50_ms", "lag_p99_ms", "lag_rate"} {
		if v, ok := doc.Pipeline[k].(float64); !ok || v <= 0 {
			t.Errorf("pipeline.%s = %v, want a positive number", k, doc.Pipeline[k])
		}
	}
	if doc.Pipeline["records"] != 500.0 || doc.Pipeline["record_size"] != 128.0 {
		t.Errorf("pipeline.records %v of %v B, want 500 of 128", doc.Pipeline["records"], doc.Pipeline["record_size"])
	}
	r = run(t, "", "bench", "--pipeline", "--records", "200", "--rounds", "1", "--warmup", "1ms", "--seconds", "0.5")
	if r.code != ExitOK || !strings.Contains(r.stdout, "vs_raw") || !strings.Contains(r.stdout, "1024 B") {
		t.Errorf("table output: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
