package hist

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestIndexBounds(t *testing.T) {
	// Every bucket's bounds map back to it, and buckets tile the range.
	var next uint64
	for i := range numBuckets {
		lo, hi := bounds(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if lo > hi {
			t.Fatalf("bucket %d: lo %d > hi %d", i, lo, hi)
		}
		if got := index(lo); got != i {
			t.Fatalf("index(%d) = %d, want %d", lo, got, i)
		}
		if got := index(hi); got != i {
			t.Fatalf("index(%d) = %d, want %d", hi, got, i)
		}
		if w := hi - lo + 1; lo >= subCount && float64(w)/float64(lo) > 1.0/subCount {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its start", i, lo, hi, subCount)
		}
		next = hi + 1
	}
	if got, want := next, uint64(1)<<(maxExp+1); got != want {
		t.Errorf("buckets end at %d, want %d", got, want)
	}
	for _, v := range []uint64{1 << (maxExp + 1), math.MaxUint64} {
		if got := index(v); got != numBuckets-1 {
			t.Errorf("index(%d) = %d, want the top bucket %d", v, got, numBuckets-1)
		}
	}
}

func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(1, rank)-1]
}

func TestQuantileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform µs", func() time.Duration { return time.Duration(rng.Int64N(int64(time.Millisecond))) }},
		{"lognormal ms", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*1.5) * float64(time.Millisecond))
		}},
		{"tiny", func() time.Duration { return time.Duration(rng.IntN(40)) }},
		{"constant", func() time.Duration { return 1234567 * time.Nanosecond }},
	}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			var h Histogram
			vals := make([]time.Duration, 10000)
			var sum time.Duration
			for i := range vals {
				vals[i] = d.gen()
				sum += vals[i]
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exactQuantile(vals, q)
				got := h.Quantile(q)
				if diff := math.Abs(float64(got - want)); diff > float64(want)/32+0.5 {
					t.Errorf("Quantile(%v) = %v, want %v within 1/32", q, got, want)
				}
			}
			if got, want := h.Count(), uint64(len(vals)); got != want {
				t.Errorf("Count = %d, want %d", got, want)
			}
			if got, want := h.Mean(), sum/time.Duration(len(vals)); got != want {
				t.Errorf("Mean = %v, want %v", got, want)
			}
			if got, want := h.Min(), vals[0]; got != want {
				t.Errorf("Min = %v, want %v", got, want)
			}
			if got, want := h.Max(), vals[len(vals)-1]; got != want {
				t.Errorf("Max = %v, want %v", got, want)
			}
		})
	}
}

func TestEmptyAndEdges(t *testing.T) {
	var h Histogram
	for _, q := range []float64{0, 0.5, 1, math.NaN(), -1, 2} {
		if got := h.Quantile(q); got != 0 {
			t.Errorf("empty Quantile(%v) = %v, want 0", q, got)
		}
	}
	if h.Mean() != 0 || h.Min() != 0 || h.Max() != 0 || h.Sum() != 0 {
		t.Errorf("empty histogram has non-zero stats: %+v", h)
	}
	h.Record(-5)
	h.RecordN(time.Second, 0)
	if got, want := h.Count(), uint64(1); got != want {
		t.Errorf("Count after a negative and a zero-count record = %d, want %d", got, want)
	}
	if got := h.Max(); got != 0 {
		t.Errorf("a negative duration was recorded as %v, want 0", got)
	}
	h.Record(math.MaxInt64)
	h.Record(math.MaxInt64)
	if got := h.Sum(); got != math.MaxInt64 {
		t.Errorf("Sum after overflow = %v, want the largest Duration", got)
	}
	if got := h.Quantile(0.99); got != math.MaxInt64 {
		t.Errorf("Quantile(0.99) = %v, want the exact max", got)
	}
	if got := h.Quantile(math.NaN()); got != 0 {
		t.Errorf("Quantile(NaN) = %v, want Min", got)
	}
}

func TestMergeExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	for i := range 5000 {
		d := time.Duration(rng.Int64N(int64(time.Second)))
		n := uint64(1 + rng.IntN(3))
		if i%3 == 0 {
			a.RecordN(d, n)
		} else {
			b.RecordN(d, n)
		}
		all.RecordN(d, n)
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	if m != all {
		t.Errorf("merge of two halves differs from recording everything: count %d/%d sum %v/%v", m.Count(), all.Count(), m.Sum(), all.Sum())
	}
}

func TestRecordNoAlloc(t *testing.T) {
	var h Histogram
	if got := testing.AllocsPerRun(1000, func() { h.Record(123 * time.Microsecond) }); got != 0 {
		t.Errorf("Record allocates %v times, want 0", got)
	}
}

func TestBuckets(t *testing.T) {
	var h Histogram
	h.RecordN(5, 2)
	h.Record(time.Millisecond)
	h.Record(10 * time.Hour) // top bucket
	var got []Bucket
	for b := range h.Buckets() {
		got = append(got, b)
	}
	if len(got) != 3 {
		t.Fatalf("Buckets yielded %d, want 3: %v", len(got), got)
	}
	if got[0] != (Bucket{Low: 5, High: 5, Count: 2}) {
		t.Errorf("first bucket = %+v, want [5,5]×2", got[0])
	}
	if b := got[1]; b.Low > time.Millisecond || b.High < time.Millisecond || b.Count != 1 {
		t.Errorf("second bucket = %+v, want one holding 1ms", b)
	}
	if b := got[2]; b.High != math.MaxInt64 {
		t.Errorf("top bucket High = %v, want the largest Duration", b.High)
	}
	n := 0
	for range h.Buckets() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("Buckets did not stop when asked")
	}
}

func sample() Histogram {
	var h Histogram
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		h.Record(time.Duration(rng.Int64N(int64(50 * time.Millisecond))))
	}
	h.Record(3)
	return h
}

func TestRoundTrip(t *testing.T) {
	for _, h := range []Histogram{{}, sample()} {
		js, err := json.Marshal(h) // by value: the value receiver is used
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Histogram
		if err := json.Unmarshal(js, &fromJSON); err != nil {
			t.Fatalf("Unmarshal(%s): %v", js, err)
		}
		if fromJSON != h {
			t.Errorf("JSON round trip changed the histogram (%s)", js)
		}
		bin, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var fromBin Histogram
		if err := fromBin.UnmarshalBinary(bin); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if fromBin != h {
			t.Errorf("binary round trip changed the histogram")
		}
		if h.Count() > 0 {
			t.Logf("%d values: JSON %d bytes, binary %d bytes", h.Count(), len(js), len(bin))
		}
	}
}

func TestUnmarshalJSONRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"not json", `{`},
		{"odd buckets", `{"count":1,"sum_ns":5,"min_ns":5,"max_ns":5,"buckets":[5]}`},
		{"count mismatch", `{"count":2,"sum_ns":10,"min_ns":5,"max_ns":5,"buckets":[5,1]}`},
		{"zero count bucket", `{"count":1,"sum_ns":5,"min_ns":5,"max_ns":5,"buckets":[5,1,1,0]}`},
		{"repeated bucket", `{"count":2,"sum_ns":10,"min_ns":5,"max_ns":5,"buckets":[5,1,0,1]}`},
		{"index out of range", `{"count":1,"sum_ns":5,"min_ns":5,"max_ns":5,"buckets":[640,1]}`},
		{"min outside first bucket", `{"count":1,"sum_ns":6,"min_ns":6,"max_ns":6,"buckets":[5,1]}`},
		{"min above max", `{"count":1,"sum_ns":6,"min_ns":7,"max_ns":6,"buckets":[6,1]}`},
		{"empty with sum", `{"count":0,"sum_ns":6}`},
		{"sum too small", `{"count":2,"sum_ns":1,"min_ns":5,"max_ns":5,"buckets":[5,2]}`},
		{"sum too large", `{"count":2,"sum_ns":100,"min_ns":5,"max_ns":5,"buckets":[5,2]}`},
		{"negative", `{"count":-1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sample()
			before := h
			err := h.UnmarshalJSON([]byte(tt.in))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Unmarshal(%s) error = %v, want one wrapping ErrInvalid", tt.in, err)
			}
			if h != before {
				t.Errorf("a failed Unmarshal changed the histogram")
			}
		})
	}
}

func TestUnmarshalBinaryRejects(t *testing.T) {
	h := sample()
	good, _ := h.MarshalBinary()
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bad version", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"header only", good[:3]},
		{"too many buckets", []byte{1, 1, 5, 5, 5, 0xff, 0xff, 0x03}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Histogram
			if err := got.UnmarshalBinary(tt.in); !errors.Is(err, ErrInvalid) {
				t.Errorf("UnmarshalBinary error = %v, want one wrapping ErrInvalid", err)
			}
		})
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	h := sample()
	good, _ := h.MarshalBinary()
	f.Add(good)
	var e Histogram
	empty, _ := e.MarshalBinary()
	f.Add(empty)
	f.Add([]byte{1, 1, 5, 5, 5, 1, 5, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Histogram
		if err := h.UnmarshalBinary(b); err != nil {
			return
		}
		// A decoded histogram re-encodes to a histogram equal to itself,
		// and its quantiles stay within [Min, Max].
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var h2 Histogram
		if err := h2.UnmarshalBinary(again); err != nil || h2 != h {
			t.Fatalf("re-decoding failed (%v) or differs", err)
		}
		for _, q := range []float64{0, 0.5, 0.99, 1} {
			if v := h.Quantile(q); v < h.Min() || v > h.Max() {
				t.Fatalf("Quantile(%v) = %v outside [%v, %v]", q, v, h.Min(), h.Max())
			}
		}
	})
}

func FuzzUnmarshalJSON(f *testing.F) {
	js, _ := json.Marshal(sample())
	f.Add(js)
	f.Add([]byte(`{"count":0,"sum_ns":0,"min_ns":0,"max_ns":0}`))
	f.Add([]byte(`{"count":1,"sum_ns":5,"min_ns":5,"max_ns":5,"buckets":[5,1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Histogram
		if err := json.Unmarshal(b, &h); err != nil {
			return
		}
		again, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var h2 Histogram
		if err := json.Unmarshal(again, &h2); err != nil || h2 != h {
			t.Fatalf("re-decoding %s failed (%v) or differs", again, err)
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	d := 1500 * time.Microsecond
	for b.Loop() {
		h.Record(d)
		d += 7
	}
}

func BenchmarkQuantile(b *testing.B) {
	h := sample()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Quantile(0.99)
	}
}

func BenchmarkMarshalBinary(b *testing.B) {
	h := sample()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = h.AppendBinary(buf[:0])
	}
}
