package batchz

import (
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/dataflare/dataflare/batch"
)

// BenchmarkCompression compresses and decompresses the body of a batch of
// 10,000 log lines (compressible) with S2, the wire's codec, and with zstd
// at its fastest level, measured for comparison: ns per record, the ratio
// (compressed / plain) and MB/s of plain bytes.
func BenchmarkCompression(b *testing.B) {
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "p", Records: logLines(10_000)})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10_000
	report := func(b *testing.B, plain, compressed int) {
		b.SetBytes(int64(plain))
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
		b.ReportMetric(float64(compressed)/float64(plain), "ratio")
	}
	b.Run("s2/compress", func(b *testing.B) {
		dst := make([]byte, 0, MaxCompressedLen(len(msg)))
		var z []byte
		for b.Loop() {
			z, _ = Compress(dst[:0], msg)
		}
		report(b, len(msg), len(z))
	})
	b.Run("s2/plain", func(b *testing.B) {
		z, _ := Compress(nil, msg)
		dst := make([]byte, 0, len(msg))
		for b.Loop() {
			if _, err := Plain(dst[:0], z); err != nil {
				b.Fatal(err)
			}
		}
		report(b, len(msg), len(z))
	})
	b.Run("s2-better/compress", func(b *testing.B) {
		dst := make([]byte, s2.MaxEncodedLen(len(msg)))
		var z []byte
		for b.Loop() {
			z = s2.EncodeBetter(dst, msg)
		}
		report(b, len(msg), len(z))
	})
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	b.Run("zstd-fastest/compress", func(b *testing.B) {
		dst := make([]byte, 0, len(msg))
		var z []byte
		for b.Loop() {
			z = enc.EncodeAll(msg, dst[:0])
		}
		report(b, len(msg), len(z))
	})
	b.Run("zstd-fastest/decompress", func(b *testing.B) {
		z := enc.EncodeAll(msg, nil)
		dst := make([]byte, 0, len(msg))
		for b.Loop() {
			if _, err := dec.DecodeAll(z, dst[:0]); err != nil {
				b.Fatal(err)
			}
		}
		report(b, len(msg), len(z))
	})
}
