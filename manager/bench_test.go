package manager_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

const benchRecordSize = 100

func benchRecords(n int) []plugin.Record {
	value := bytes.Repeat([]byte("lorem ipsum "), benchRecordSize/12+1)[:benchRecordSize]
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Value = value
	}
	return recs
}

func reportRecords(b *testing.B, n int) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)*float64(n)/sec, "records/s")
	b.ReportMetric(sec*1e9/(float64(b.N)*float64(n)), "ns/record")
}

// BenchmarkManagerProcessBatch runs the built-in plugins through a Manager
// with the default configuration (auto-optimisation on), 100-byte records,
// once the batch size has settled; batch_size is where it settled.
func BenchmarkManagerProcessBatch(b *testing.B) {
	for _, name := range []string{builtin.IdentityName, builtin.UpperName} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", name, n), func(b *testing.B) {
				m := newManager(b, nil)
				if err := builtin.Register(m); err != nil {
					b.Fatal(err)
				}
				recs := benchRecords(n)
				ctx := context.Background()
				// Let the batch size settle first: it moves at most once
				// per 100 ms, by at most ×2.
				for t0 := time.Now(); time.Since(t0) < time.Second; {
					if _, err := m.ProcessBatch(ctx, name, nil, recs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.SetBytes(int64(n * benchRecordSize))
				for b.Loop() {
					if _, err := m.ProcessBatch(ctx, name, nil, recs); err != nil {
						b.Fatal(err)
					}
				}
				reportRecords(b, n)
				b.ReportMetric(float64(m.BatchSize(name)), "batch_size")
			})
		}
	}
}

// BenchmarkManagerProcessBatchFixed is the same with a fixed batch size of
// 1000 (no chunking, no tuning): the Manager's own overhead per call.
func BenchmarkManagerProcessBatchFixed(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("identity/batch=%d", n), func(b *testing.B) {
			m := newManager(b, func(c *manager.Config) { c.AutoOptimize = false; c.Batch.DefaultSize = 1000 })
			if err := builtin.Register(m); err != nil {
				b.Fatal(err)
			}
			recs := benchRecords(n)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(n * benchRecordSize))
			for b.Loop() {
				if _, err := m.ProcessBatch(ctx, builtin.IdentityName, nil, recs); err != nil {
					b.Fatal(err)
				}
			}
			reportRecords(b, n)
		})
	}
}

// BenchmarkDirect calls the plugins without a Manager, for comparison.
func BenchmarkDirect(b *testing.B) {
	all := builtin.All()
	for _, name := range []string{builtin.IdentityName, builtin.UpperName} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", name, n), func(b *testing.B) {
				p := all[name]
				recs := benchRecords(n)
				ctx := context.Background()
				b.ReportAllocs()
				b.SetBytes(int64(n * benchRecordSize))
				for b.Loop() {
					if _, err := p.ProcessBatch(ctx, nil, recs); err != nil {
						b.Fatal(err)
					}
				}
				reportRecords(b, n)
			})
		}
	}
}

// BenchmarkProcessRecord is one record per call through a Manager.
func BenchmarkProcessRecord(b *testing.B) {
	m := newManager(b, nil)
	if err := builtin.Register(m); err != nil {
		b.Fatal(err)
	}
	rec := benchRecords(1)[0]
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.ProcessRecord(ctx, builtin.IdentityName, nil, rec); err != nil {
			b.Fatal(err)
		}
	}
}
