package builtin_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

func benchRecords(n, size int) []plugin.Record {
	value := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, "), size/28+1)[:size]
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Value = value
	}
	return recs
}

func BenchmarkUpper(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run(fmt.Sprintf("batch=100/record=%dB", size), func(b *testing.B) {
			recs := benchRecords(100, size)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(100 * size))
			for b.Loop() {
				if _, err := (builtin.Upper{}).ProcessBatch(ctx, nil, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkAppendUpper compares the word-at-a-time upper-case with
// bytes.ToUpper (which also handles Unicode) on an ASCII value.
func BenchmarkAppendUpper(b *testing.B) {
	src := benchRecords(1, 4096)[0].Value
	b.Run("AppendUpper", func(b *testing.B) {
		dst := make([]byte, 0, len(src))
		b.ReportAllocs()
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			dst = builtin.AppendUpper(dst[:0], src)
		}
	})
	b.Run("bytes.ToUpper", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			_ = bytes.ToUpper(src)
		}
	})
}
