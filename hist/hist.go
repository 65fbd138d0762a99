package hist

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/bits"
	"time"
)

// ErrInvalid is returned (wrapped) by the decoders for bytes that are not a
// valid histogram encoding.
var ErrInvalid = errors.New("hist: invalid encoding")

const (
	subBits    = 4
	subCount   = 1 << subBits // sub-buckets per power of two
	maxExp     = 42           // values ≥ 2^(maxExp+1) ns land in the top bucket
	numBuckets = (maxExp-subBits+1)*subCount + subCount

	// binaryVersion is the first byte of the binary encoding.
	binaryVersion = 1
)

// NumBuckets is the number of buckets of every Histogram.
const NumBuckets = numBuckets

// Histogram counts durations in log-linear buckets. The zero value is an
// empty histogram ready to use. It is not safe for concurrent use.
type Histogram struct {
	count, sum, min, max uint64 // nanoseconds; sum saturates
	counts               [numBuckets]uint64
}

// index returns the bucket of v nanoseconds.
func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - 1
	if e > maxExp {
		return numBuckets - 1
	}
	return (e-subBits+1)*subCount + int(v>>(e-subBits))&(subCount-1)
}

// bounds returns the smallest and largest value of bucket i, in nanoseconds.
func bounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	e := i/subCount + subBits - 1
	s := uint64(i % subCount)
	lo = (subCount + s) << (e - subBits)
	return lo, lo + 1<<(e-subBits) - 1
}

func nanos(d time.Duration) uint64 {
	if d < 0 {
		return 0
	}
	return uint64(d)
}

func dur(ns uint64) time.Duration {
	if ns > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

func addSat(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

func mulSat(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// Record counts one duration. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN counts n occurrences of the duration d (for example each record of
// a batch, at the batch's latency divided by its size). Negative durations
// count as 0.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := nanos(d)
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count += n
	h.sum = addSat(h.sum, mulSat(v, n))
	h.counts[index(v)] += n
}

// Merge adds o's counts to h. Merging is exact: the result is what h would
// hold had it recorded o's durations too.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum = addSat(h.sum, o.sum)
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count returns the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Sum returns the total of the durations recorded (saturating at the
// largest Duration).
func (h *Histogram) Sum() time.Duration { return dur(h.sum) }

// Min returns the smallest duration recorded, or 0 when h is empty.
func (h *Histogram) Min() time.Duration { return dur(h.min) }

// Max returns the largest duration recorded, or 0 when h is empty.
func (h *Histogram) Max() time.Duration { return dur(h.max) }

// Mean returns the exact mean of the durations recorded, or 0 when h is
// empty.
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return dur(h.sum / h.count)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the durations recorded:
// the middle of the bucket that holds the ⌈q·count⌉-th smallest duration,
// kept within [Min, Max] (Max itself for the top bucket, which has no upper
// bound). Quantile(0) is Min and Quantile(1) is Max. It
// returns 0 when h is empty; q outside [0, 1] (or NaN) is clamped.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	if !(q > 0) {
		return dur(h.min)
	}
	if q >= 1 {
		return dur(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = max(1, min(rank, h.count))
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			if i == numBuckets-1 {
				return dur(h.max) // the top bucket has no upper bound
			}
			lo, hi := bounds(i)
			v := lo + (hi-lo)/2
			return dur(max(h.min, min(v, h.max)))
		}
	}
	return dur(h.max) // unreachable when the counts add up
}

// Bucket is one non-empty bucket: Count durations d with Low ≤ d ≤ High.
type Bucket struct {
	Low, High time.Duration
	Count     uint64
}

// Buckets yields h's non-empty buckets, from the shortest durations to the
// longest. The top bucket's High is the largest Duration: it also holds
// every longer duration.
func (h *Histogram) Buckets() iter.Seq[Bucket] {
	return func(yield func(Bucket) bool) {
		for i, c := range h.counts {
			if c == 0 {
				continue
			}
			lo, hi := bounds(i)
			if i == numBuckets-1 {
				hi = math.MaxInt64
			}
			if !yield(Bucket{Low: dur(lo), High: dur(hi), Count: c}) {
				return
			}
		}
	}
}

// wire is the JSON shape of a Histogram. Buckets lists the non-empty
// buckets as pairs (index step, count): the first step is the bucket's
// index, each later step the distance from the previous non-empty bucket.
type wire struct {
	Count   uint64   `json:"count"`
	SumNs   uint64   `json:"sum_ns"`
	MinNs   uint64   `json:"min_ns"`
	MaxNs   uint64   `json:"max_ns"`
	Buckets []uint64 `json:"buckets,omitempty"`
}

func (h *Histogram) pairs() []uint64 {
	var out []uint64
	prev := 0
	for i, c := range h.counts {
		if c != 0 {
			out = append(out, uint64(i-prev), c)
			prev = i
		}
	}
	return out
}

// MarshalJSON encodes h as {"count","sum_ns","min_ns","max_ns","buckets"},
// where buckets holds only the non-empty buckets (see the package doc). It
// has a value receiver so that a Histogram held by value in another struct
// is encoded this way too.
func (h Histogram) MarshalJSON() ([]byte, error) {
	return json.Marshal(wire{Count: h.count, SumNs: h.sum, MinNs: h.min, MaxNs: h.max, Buckets: h.pairs()})
}

// UnmarshalJSON decodes what MarshalJSON encodes. A malformed or
// inconsistent encoding (counts that do not add up, a bucket out of range,
// a min or max outside its bucket) is an error wrapping ErrInvalid, and h is
// left unchanged.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(w.Buckets)%2 != 0 {
		return fmt.Errorf("%w: odd bucket list length %d", ErrInvalid, len(w.Buckets))
	}
	var n Histogram
	if err := n.build(w.Count, w.SumNs, w.MinNs, w.MaxNs, len(w.Buckets)/2, func(k int) (uint64, uint64) {
		return w.Buckets[2*k], w.Buckets[2*k+1]
	}); err != nil {
		return err
	}
	*h = n
	return nil
}

// AppendBinary appends h's compact binary encoding to b: a version byte,
// then unsigned varints count, sum, min, max (nanoseconds), the number of
// non-empty buckets and their (index step, count) pairs as in the JSON form.
func (h *Histogram) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, binaryVersion)
	b = binary.AppendUvarint(b, h.count)
	b = binary.AppendUvarint(b, h.sum)
	b = binary.AppendUvarint(b, h.min)
	b = binary.AppendUvarint(b, h.max)
	n := 0
	for _, c := range h.counts {
		if c != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	prev := 0
	for i, c := range h.counts {
		if c != 0 {
			b = binary.AppendUvarint(b, uint64(i-prev))
			b = binary.AppendUvarint(b, c)
			prev = i
		}
	}
	return b, nil
}

// MarshalBinary returns h's binary encoding (see AppendBinary).
func (h *Histogram) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }

// UnmarshalBinary decodes what AppendBinary encodes. A malformed or
// inconsistent encoding, an unknown version or trailing bytes is an error
// wrapping ErrInvalid, and h is left unchanged.
func (h *Histogram) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != binaryVersion {
		return fmt.Errorf("%w: missing or unknown version", ErrInvalid)
	}
	b = b[1:]
	var bad bool
	next := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	count, sum, lo, hi, n := next(), next(), next(), next(), next()
	if bad {
		return fmt.Errorf("%w: truncated header", ErrInvalid)
	}
	if n > numBuckets {
		return fmt.Errorf("%w: %d buckets, at most %d", ErrInvalid, n, numBuckets)
	}
	steps := make([]uint64, 2*n)
	for i := range steps {
		steps[i] = next()
	}
	if bad {
		return fmt.Errorf("%w: truncated buckets", ErrInvalid)
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrInvalid, len(b))
	}
	var nh Histogram
	if err := nh.build(count, sum, lo, hi, int(n), func(k int) (uint64, uint64) { return steps[2*k], steps[2*k+1] }); err != nil {
		return err
	}
	*h = nh
	return nil
}

// build fills the empty h from decoded fields and checks their consistency.
func (h *Histogram) build(count, sum, lo, hi uint64, n int, pair func(k int) (step, count uint64)) error {
	if n > numBuckets {
		return fmt.Errorf("%w: %d buckets, at most %d", ErrInvalid, n, numBuckets)
	}
	if count == 0 {
		if sum != 0 || lo != 0 || hi != 0 || n != 0 {
			return fmt.Errorf("%w: empty histogram with non-zero fields", ErrInvalid)
		}
		return nil
	}
	if lo > hi {
		return fmt.Errorf("%w: min %d > max %d", ErrInvalid, lo, hi)
	}
	var total uint64
	first, last := -1, -1
	idx := 0
	for k := range n {
		step, c := pair(k)
		if k > 0 && step == 0 || step >= numBuckets || c == 0 {
			return fmt.Errorf("%w: bucket pair %d (%d, %d)", ErrInvalid, k, step, c)
		}
		idx += int(step)
		if idx >= numBuckets {
			return fmt.Errorf("%w: bucket index %d out of range", ErrInvalid, idx)
		}
		h.counts[idx] = c
		var carry uint64
		total, carry = bits.Add64(total, c, 0)
		if carry != 0 {
			return fmt.Errorf("%w: bucket counts overflow", ErrInvalid)
		}
		if first < 0 {
			first = idx
		}
		last = idx
	}
	if total != count {
		return fmt.Errorf("%w: buckets hold %d, count is %d", ErrInvalid, total, count)
	}
	if index(lo) != first || index(hi) != last {
		return fmt.Errorf("%w: min or max outside the first or last bucket", ErrInvalid)
	}
	if s := mulSat(lo, count); s > sum {
		return fmt.Errorf("%w: sum %d below min×count", ErrInvalid, sum)
	}
	if s := mulSat(hi, count); s != math.MaxUint64 && sum > s {
		return fmt.Errorf("%w: sum %d above max×count", ErrInvalid, sum)
	}
	h.count, h.sum, h.min, h.max = count, sum, lo, hi
	return nil
}
