package wasm

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// benchBatch returns n records of size-byte lower-case values and their
// batch message.
func benchBatch(b *testing.B, n, size int) ([]plugin.Record, []byte) {
	b.Helper()
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Value = bytes.Repeat([]byte("abcdefghij"), size/10)
	}
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "bench", Plugin: "p", Records: recs})
	if err != nil {
		b.Fatal(err)
	}
	return recs, msg
}

// perRecord reports the wall-clock and the CPU time per record of n-record
// batches; cpu0 is cpuTime() before the loop. The CPU time includes the
// garbage collector's and wazero's work on other threads, and not the
// neighbours' on a shared machine.
func perRecord(b *testing.B, n int, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
	if cpu := cpuTime() - cpu0; cpu0 > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/record")
	}
}

const benchRecords, benchSize = 1000, 100

// BenchmarkNativeIdentity is the baseline of BenchmarkWASMBatchOverhead:
// the native identity plugin on the same batch.
func BenchmarkNativeIdentity(b *testing.B) {
	recs, _ := benchBatch(b, benchRecords, benchSize)
	ctx := context.Background()
	b.SetBytes(benchRecords * benchSize)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := (builtin.Identity{}).ProcessBatch(ctx, nil, recs); err != nil {
			b.Fatal(err)
		}
	}
	perRecord(b, benchRecords, cpu0)
}

// BenchmarkWASMBatchOverhead measures what one batch through the ABI costs
// with a guest that does nothing (noop.wat answers "unchanged" for every
// record): copying the message in, the call with its deadline watcher,
// decoding the entries.
func BenchmarkWASMBatchOverhead(b *testing.B) {
	recs, msg := benchBatch(b, benchRecords, benchSize)
	r, err := NewRuntime(context.Background(), WithInstances(1))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	p := load(b, r, "noop")
	ctx := context.Background()
	run := map[string]func() error{
		"ProcessEncoded": func() error { _, err := p.ProcessEncoded(ctx, msg, recs); return err },
		"ProcessEncodedFunc": func() error {
			return p.ProcessEncodedFunc(ctx, msg, recs, func(*plugin.BatchResult) error { return nil })
		},
		"ProcessBatch": func() error { _, err := p.ProcessBatch(ctx, nil, recs); return err },
	}
	for _, name := range []string{"ProcessEncoded", "ProcessEncodedFunc", "ProcessBatch"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchRecords * benchSize)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if err := run[name](); err != nil {
					b.Fatal(err)
				}
			}
			perRecord(b, benchRecords, cpu0)
		})
	}
}

// BenchmarkUpper compares the native upper with the WAT one (abi_upper),
// in MB/s of values.
func BenchmarkUpper(b *testing.B) {
	recs, msg := benchBatch(b, benchRecords, benchSize)
	ctx := context.Background()
	b.Run("native", func(b *testing.B) {
		b.SetBytes(benchRecords * benchSize)
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := (builtin.Upper{}).ProcessBatch(ctx, nil, recs); err != nil {
				b.Fatal(err)
			}
		}
		perRecord(b, benchRecords, cpu0)
	})
	b.Run("wat", func(b *testing.B) {
		r, err := NewRuntime(ctx, WithInstances(1))
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close(ctx)
		p := load(b, r, "abi_upper")
		b.SetBytes(benchRecords * benchSize)
		b.ReportAllocs()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := p.ProcessEncoded(ctx, msg, recs); err != nil {
				b.Fatal(err)
			}
		}
		perRecord(b, benchRecords, cpu0)
	})
}
