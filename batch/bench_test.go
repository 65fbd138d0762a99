package batch

import (
	"fmt"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

var benchSizes = []int{100, 1000, 10000}

// benchBatch returns a batch of n records with 8-byte keys, 100-byte values
// and a timestamp, and headers headers of 16 bytes each.
func benchBatch(n, headers int) *Batch {
	b := &Batch{
		Job: "job-5f1e2d", Seq: 42, Base: 42 * uint64(n), Plugin: "upper",
		Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Config: plugin.Config{"mode": "fast", "limit": "10"},
	}
	value := make([]byte, 100)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	ts := time.Unix(1_700_000_000, 0)
	for i := range n {
		r := plugin.Record{Key: fmt.Appendf(nil, "k%07d", i), Value: value, Timestamp: ts.Add(time.Duration(i))}
		for j := range headers {
			r.Headers = append(r.Headers, plugin.Header{Key: []byte("trace-id"), Value: fmt.Appendf(nil, "%08d", j)})
		}
		b.Records = append(b.Records, r)
	}
	return b
}

func benchResults(n int) *ResultSet {
	rs := &ResultSet{Job: "job-5f1e2d", Worker: "worker-1", Seq: 42, Base: 42 * uint64(n), Duration: time.Millisecond}
	value := make([]byte, 100)
	for i := range n {
		switch {
		case i%100 == 99:
			rs.Results = append(rs.Results, plugin.Drop())
		default:
			rs.Results = append(rs.Results, plugin.Value(value))
		}
	}
	return rs
}

func perRecord(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
}

func BenchmarkDecode(b *testing.B) {
	for _, headers := range []int{0, 2} {
		for _, n := range benchSizes {
			name := fmt.Sprintf("records=%d", n)
			if headers > 0 {
				if n != 1000 {
					continue
				}
				name += fmt.Sprintf(",headers=%d", headers)
			}
			b.Run(name, func(b *testing.B) {
				msg, err := AppendBatch(nil, benchBatch(n, headers))
				if err != nil {
					b.Fatal(err)
				}
				var dst Batch
				b.ReportAllocs()
				b.SetBytes(int64(len(msg)))
				for b.Loop() {
					if err := DecodeBatch(msg, &dst); err != nil {
						b.Fatal(err)
					}
				}
				perRecord(b, n)
			})
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			bt := benchBatch(n, 0)
			buf := make([]byte, 0, BatchSize(bt))
			b.ReportAllocs()
			b.SetBytes(int64(cap(buf)))
			for b.Loop() {
				var err error
				if buf, err = AppendBatch(buf[:0], bt); err != nil {
					b.Fatal(err)
				}
			}
			perRecord(b, n)
		})
	}
}

func BenchmarkDecodeResults(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			msg, err := AppendResults(nil, benchResults(n))
			if err != nil {
				b.Fatal(err)
			}
			var dst ResultSet
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if err := DecodeResults(msg, &dst); err != nil {
					b.Fatal(err)
				}
			}
			perRecord(b, n)
		})
	}
}

func BenchmarkAppendResults(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			rs := benchResults(n)
			buf := make([]byte, 0, ResultsSize(rs))
			b.ReportAllocs()
			b.SetBytes(int64(cap(buf)))
			for b.Loop() {
				var err error
				if buf, err = AppendResults(buf[:0], rs); err != nil {
					b.Fatal(err)
				}
			}
			perRecord(b, n)
		})
	}
}

func BenchmarkDecodeEntries(b *testing.B) {
	const n = 1000
	bt := benchBatch(n, 0)
	var msg []byte
	for i := range n {
		if i%2 == 0 {
			msg = AppendUnchanged(msg)
		} else {
			msg = AppendEntry(msg, plugin.Value(bt.Records[i].Value))
		}
	}
	dst := make([]plugin.Result, n)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := DecodeEntries(msg, bt.Records, dst); err != nil {
			b.Fatal(err)
		}
	}
	perRecord(b, n)
}
