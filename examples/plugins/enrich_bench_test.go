package plugins_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/examples/plugins"
	"github.com/dataflare/dataflare/internal/kvcache"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/wasm"
)

// The enrich benchmark's data: a bucket of enrichKeys keys with values of
// about 100 bytes, and batches of benchRecords records whose values are
// keys drawn uniformly from enrichDrawn (so that 1 in 6 has no value).
const (
	enrichKeys  = 10_000
	enrichDrawn = 12_000
)

// enrichFixture starts a server, fills the bucket and returns a JetStream
// on it and the batches' records.
func enrichFixture(b *testing.B) (jetstream.JetStream, [][]plugin.Record) {
	b.Helper()
	ctx := context.Background()
	s := natstest.RunServer(b)
	js, err := jetstream.New(natstest.Connect(b, s.ClientURL()))
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "users"})
	if err != nil {
		b.Fatal(err)
	}
	for i := range enrichKeys {
		v := fmt.Appendf(nil, `{"id":%d,"name":"user %d","country":"FR","plan":"team","since":"2021-03-04"}`, i, i)
		if _, err := kv.Put(ctx, fmt.Sprintf("user-%d", i), v); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	batches := make([][]plugin.Record, 64)
	for i := range batches {
		batches[i] = make([]plugin.Record, benchRecords)
		for j := range batches[i] {
			batches[i][j].Value = fmt.Appendf(nil, "user-%d", r.IntN(enrichDrawn))
		}
	}
	return js, batches
}

// BenchmarkEnrich runs the kv-lookup module (each record's value a key,
// its result the key's value in a NATS KV bucket, read through the
// worker's cache) against the native upper over the same records:
// records/s of each, and the cache's hit rate.
//
//   - kv-lookup-wasm-hot: every key was read once before: all hits.
//   - kv-lookup-wasm-first-pass: each op is one pass over 64 batches of
//     1,000 records (12,000 distinct keys) with a cache that starts empty,
//     as a worker's does: the first read of each key asks NATS.
//   - kv-lookup-wasm-misses: a cache too small to hold anything: every
//     lookup asks NATS.
func BenchmarkEnrich(b *testing.B) {
	js, batches := enrichFixture(b)
	ctx := context.Background()
	cfg := plugin.Config{"bucket": "users"}

	b.Run("upper-native", func(b *testing.B) {
		up := builtin.Upper{}
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := range b.N {
			if _, err := up.ProcessBatch(ctx, nil, batches[i%len(batches)]); err != nil {
				b.Fatal(err)
			}
		}
		perRecord(b, cpu0)
		b.ReportMetric(float64(b.N*benchRecords)/b.Elapsed().Seconds(), "records/s")
	})

	// lookup loads kv-lookup over cache and returns a function running
	// one batch, which counts the records found and missing.
	var found, missing int
	load := func(b *testing.B, cache *kvcache.Cache, mod []byte) func(recs []plugin.Record) {
		r, err := wasm.NewRuntime(ctx, wasm.WithInstances(1), wasm.WithCacheDir(pdktest.CacheDir(b)), wasm.WithKV(cache))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close(ctx) })
		p, err := r.LoadLimited(ctx, mod, wasm.Digest(mod), wasm.Limits{Grants: []string{"kv:users"}})
		if err != nil {
			b.Fatal(err)
		}
		return func(recs []plugin.Record) {
			res, err := p.ProcessBatch(ctx, cfg, recs)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res.Results {
				if r.Err == nil {
					found++
				} else {
					missing++
				}
			}
			wasm.ReleaseResult(res)
		}
	}
	check := func(b *testing.B) {
		if found == 0 || missing == 0 || missing > found/3 {
			b.Fatalf("%d keys found, %d missing: want about 1 in 6 missing", found, missing)
		}
		found, missing = 0, 0
	}
	report := func(b *testing.B, cpu0 time.Duration, records int, hits, misses uint64) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
		if cpu := cpuTime() - cpu0; cpu0 > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(records), "cpu-ns/record")
		}
		b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(hits)/float64(hits+misses), "hit-rate")
	}

	rust, err := os.ReadFile("kv-lookup-rust/kv-lookup.wasm")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name     string
		module   []byte
		maxBytes int64
		warm     bool
	}{
		{"kv-lookup-wasm-hot", plugins.KVLookupWASM, kvcache.DefaultMaxBytes, true},
		{"kv-lookup-rust-hot", rust, kvcache.DefaultMaxBytes, true},
		{"kv-lookup-rust-misses", rust, 1, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cache := kvcache.New(js, kvcache.WithMaxBytes(bc.maxBytes))
			defer cache.Close()
			run := load(b, cache, bc.module)
			if bc.warm {
				for _, recs := range batches {
					run(recs)
				}
			}
			st0 := cache.Stats()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				run(batches[i%len(batches)])
			}
			st := cache.Stats()
			report(b, cpu0, b.N*benchRecords, st.Hits-st0.Hits, st.Misses-st0.Misses)
			check(b)
		})
	}
	b.Run("kv-lookup-rust-first-pass", func(b *testing.B) {
		var hits, misses uint64
		var dur time.Duration
		b.StopTimer()
		cpu0 := cpuTime()
		for range b.N {
			cache := kvcache.New(js)
			run := load(b, cache, rust)
			b.StartTimer()
			start := time.Now()
			for _, recs := range batches {
				run(recs)
			}
			dur += time.Since(start)
			b.StopTimer()
			st := cache.Stats()
			hits, misses = hits+st.Hits, misses+st.Misses
			cache.Close()
		}
		_ = dur
		report(b, cpu0, b.N*len(batches)*benchRecords, hits, misses)
		check(b)
	})
}
