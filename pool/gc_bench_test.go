package pool_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/pool"
)

// The GC benchmark runs records through the worker's data path — receive a
// batch message into a buffer, decode it (zero copy), run an upper-case
// plugin stage, encode the results — once with every buffer from make and
// once with every buffer from a Pool. Nothing else differs: the decoded
// Batch and the Result slice are reused in both, as the worker reuses them.
const (
	gcRecordSize = 100
	gcBatchSize  = 500 // ~55 KB messages: the 64 KiB tier
	gcInputs     = 8   // distinct input batches, cycled, so the live heap stays small
)

// gcInput returns gcInputs encoded batches of gcBatchSize records of
// gcRecordSize bytes.
func gcInput(tb testing.TB) [][]byte {
	tb.Helper()
	value := bytes.Repeat([]byte("lorem ipsum dolor sit amet, "), gcRecordSize/28+1)[:gcRecordSize]
	recs := make([]plugin.Record, gcBatchSize)
	for i := range recs {
		recs[i] = plugin.Record{Key: fmt.Appendf(nil, "k%06d", i), Value: value}
	}
	msgs := make([][]byte, gcInputs)
	for i := range msgs {
		b := &batch.Batch{Job: "gc-bench", Seq: uint64(i), Base: uint64(i * gcBatchSize), Plugin: "upper", Records: recs}
		msg, err := batch.AppendBatch(nil, b)
		if err != nil {
			tb.Fatal(err)
		}
		msgs[i] = msg
	}
	return msgs
}

// pipeline is the data path with its reusable state. Its buffers come from
// p, or from make when p is nil.
type pipeline struct {
	p       *pool.Pool
	in      batch.Batch
	results []plugin.Result
	out     batch.ResultSet
	held    []*pool.Buffer
	sink    int
}

func (pl *pipeline) get(n int) []byte {
	if pl.p == nil {
		return make([]byte, n)
	}
	b := pl.p.Get(n)
	pl.held = append(pl.held, b)
	return b.Bytes()
}

func (pl *pipeline) release(tb testing.TB) {
	for _, b := range pl.held {
		if err := pl.p.Put(b); err != nil {
			tb.Fatal(err)
		}
	}
	clear(pl.held)
	pl.held = pl.held[:0]
}

// run pushes one batch message through receive → decode → plugin → encode.
func (pl *pipeline) run(tb testing.TB, wire []byte) {
	msg := pl.get(len(wire)) // the bytes as they arrive from the network
	copy(msg, wire)
	if err := batch.DecodeBatch(msg, &pl.in); err != nil {
		tb.Fatal(err)
	}
	total := 0
	for i := range pl.in.Records {
		total += len(pl.in.Records[i].Value)
	}
	slab := pl.get(total)[:0] // the plugin's output values
	pl.results = pl.results[:0]
	for i := range pl.in.Records {
		n := len(slab)
		slab = builtin.AppendUpper(slab, pl.in.Records[i].Value)
		pl.results = append(pl.results, plugin.Value(slab[n:len(slab):len(slab)]))
	}
	pl.out = batch.ResultSet{Job: pl.in.Job, Worker: "w1", Seq: pl.in.Seq, Base: pl.in.Base, Results: pl.results}
	enc, err := batch.AppendResults(pl.get(batch.ResultsSize(&pl.out))[:0], &pl.out)
	if err != nil {
		tb.Fatal(err)
	}
	pl.sink += len(enc) // "publish"
	if pl.p != nil {
		pl.release(tb)
	}
}

// gcRun is what one run of n records cost: GC cycles and bytes allocated.
type gcRun struct {
	cycles uint32
	bytes  uint64
	took   time.Duration
}

func runRecords(tb testing.TB, p *pool.Pool, msgs [][]byte, records int) gcRun {
	pl := &pipeline{p: p}
	pl.run(tb, msgs[0]) // warm the reusable state and the pool
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range records / gcBatchSize {
		pl.run(tb, msgs[i%len(msgs)])
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return gcRun{cycles: after.NumGC - before.NumGC, bytes: after.TotalAlloc - before.TotalAlloc, took: took}
}

// BenchmarkGC runs 1M records of 100 B per op through the data path with
// buffers from make and from the pool, and reports GC cycles per million
// records and bytes allocated per record.
func BenchmarkGC(b *testing.B) {
	const records = 1_000_000
	msgs := gcInput(b)
	for _, pooled := range []bool{false, true} {
		name := "make"
		if pooled {
			name = "pool"
		}
		b.Run(name, func(b *testing.B) {
			var p *pool.Pool
			if pooled {
				p = newPool(b, pool.DefaultConfig())
			}
			var sum gcRun
			b.ReportAllocs()
			for b.Loop() {
				r := runRecords(b, p, msgs, records)
				sum.cycles += r.cycles
				sum.bytes += r.bytes
				sum.took += r.took
			}
			n := float64(b.N)
			b.ReportMetric(float64(sum.cycles)/n, "gc-cycles/1M-records")
			b.ReportMetric(float64(sum.bytes)/n/records, "B/record")
			b.ReportMetric(float64(sum.took.Nanoseconds())/n/records, "ns/record")
		})
	}
}

// TestPoolCutsGCCycles is a short version of BenchmarkGC that holds the
// target: at least 80% fewer GC cycles with the pool than with make.
func TestPoolCutsGCCycles(t *testing.T) {
	const records = 100_000
	msgs := gcInput(t)
	without := runRecords(t, nil, msgs, records)
	p := newPool(t, pool.DefaultConfig())
	with := runRecords(t, p, msgs, records)
	t.Logf("make: %d GC cycles, %.1f B/record; pool: %d GC cycles, %.1f B/record",
		without.cycles, float64(without.bytes)/records, with.cycles, float64(with.bytes)/records)
	if without.cycles < 5 {
		t.Fatalf("make ran only %d GC cycles: the comparison says nothing", without.cycles)
	}
	if with.cycles*5 > without.cycles {
		t.Errorf("pool: %d GC cycles, make: %d; want at least 80%% fewer", with.cycles, without.cycles)
	}
	if with.bytes*10 > without.bytes {
		t.Errorf("pool allocated %d bytes, make %d; want at least 90%% less", with.bytes, without.bytes)
	}
}
