package plugins_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/examples/plugins"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/wasm"
)

const benchRecords, benchSize = 1000, 100

func benchBatch(b *testing.B) ([]plugin.Record, []byte) {
	b.Helper()
	recs := make([]plugin.Record, benchRecords)
	for i := range recs {
		recs[i].Value = bytes.Repeat([]byte("abcdefghij"), benchSize/10)
	}
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "bench", Plugin: "p", Records: recs})
	if err != nil {
		b.Fatal(err)
	}
	return recs, msg
}

// perRecord reports the wall-clock and the CPU time per record; cpu0 is
// cpuTime() before the loop (see the wasm package's benchmarks).
func perRecord(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchRecords, "ns/record")
	if cpu := cpuTime() - cpu0; cpu0 > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/benchRecords, "cpu-ns/record")
	}
}

// perOp reports the CPU time per operation in milliseconds.
func perOp(b *testing.B, cpu0 time.Duration) {
	if cpu := cpuTime() - cpu0; cpu0 > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}

// loadBytes loads module into a fresh single-instance runtime sharing the
// tests' compiled-module cache.
func loadBytes(b *testing.B, module []byte) *wasm.Plugin {
	b.Helper()
	ctx := context.Background()
	r, err := wasm.NewRuntime(ctx, wasm.WithInstances(1), wasm.WithCacheDir(pdktest.CacheDir(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close(ctx) })
	p, err := r.Load(ctx, module)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

// BenchmarkUpperNative is the baseline of BenchmarkUpperWASM: MB/s of
// values through the native upper.
func BenchmarkUpperNative(b *testing.B) {
	recs, _ := benchBatch(b)
	ctx := context.Background()
	b.SetBytes(benchRecords * benchSize)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := (builtin.Upper{}).ProcessBatch(ctx, nil, recs); err != nil {
			b.Fatal(err)
		}
	}
	perRecord(b, cpu0)
}

// BenchmarkUpperWASM runs the committed upper-wasm, the C build the system
// pushes, on the worker's path: the batch message copied into the guest,
// one call, the output copied out.
func BenchmarkUpperWASM(b *testing.B) {
	benchUpper(b, twins.Upper)
}

// BenchmarkUpperGoWASM is BenchmarkUpperWASM for the Go build (package
// pdk).
func BenchmarkUpperGoWASM(b *testing.B) {
	benchUpper(b, plugins.UpperGoWASM)
}

// BenchmarkUpperRustWASM is BenchmarkUpperWASM for the Rust build (the
// Rust kit, pdk/rust).
func BenchmarkUpperRustWASM(b *testing.B) {
	benchUpper(b, plugins.UpperRustWASM)
}

// BenchmarkUpperBuilds runs the three builds of upper-wasm one after the
// other in one benchmark, so that their ratios come from the same minutes
// of a noisy machine; each reports its module's size.
func BenchmarkUpperBuilds(b *testing.B) {
	for _, m := range []struct {
		name   string
		module []byte
	}{{"c", twins.Upper}, {"rust", plugins.UpperRustWASM}, {"go", plugins.UpperGoWASM}} {
		b.Run(m.name, func(b *testing.B) {
			benchUpper(b, m.module)
			b.ReportMetric(float64(len(m.module)), "module-bytes")
		})
	}
}

func benchUpper(b *testing.B, module []byte) { benchEncoded(b, loadBytes(b, module)) }

// benchEncoded runs p over the benchmark batch, from its encoded message.
func benchEncoded(b *testing.B, p *wasm.Plugin) {
	recs, msg := benchBatch(b)
	ctx := context.Background()
	b.SetBytes(benchRecords * benchSize)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := p.ProcessEncoded(ctx, msg, recs); err != nil {
			b.Fatal(err)
		}
	}
	perRecord(b, cpu0)
	b.ReportMetric(float64(b.N)*benchRecords/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkIdentityWASM is the Go guest's own overhead: identity-wasm
// answers "unchanged" for every record, after decoding the batch with
// package batch.
func BenchmarkIdentityWASM(b *testing.B) { benchEncoded(b, load(b, "identity-wasm")) }

// BenchmarkColdStart is a worker's first batch of a module: a new runtime,
// the module loaded (compiled, or read from the compiled-module cache on
// disk), instantiated, and one batch run. no-cache and cache are the Go
// build of upper-wasm (3.3 MB); c/… the C build (16 KB); rust/… the Rust
// build (63 KB).
func BenchmarkColdStart(b *testing.B) {
	recs, msg := benchBatch(b)
	ctx := context.Background()
	coldStart := func(b *testing.B, module []byte, opts ...wasm.Option) {
		r, err := wasm.NewRuntime(ctx, opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close(ctx)
		p, err := r.Load(ctx, module)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.ProcessEncoded(ctx, msg, recs); err != nil {
			b.Fatal(err)
		}
	}
	for _, m := range []struct {
		prefix string
		module []byte
	}{{"", plugins.UpperGoWASM}, {"c/", twins.Upper}, {"rust/", plugins.UpperRustWASM}} {
		b.Run(m.prefix+"no-cache", func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				coldStart(b, m.module)
			}
			perOp(b, cpu0)
		})
		b.Run(m.prefix+"cache", func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "wazero")
			coldStart(b, m.module, wasm.WithCacheDir(dir)) // fills the cache
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				coldStart(b, m.module, wasm.WithCacheDir(dir))
			}
			perOp(b, cpu0)
		})
	}
}
