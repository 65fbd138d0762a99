package sizer

import (
	"math"
	"sync"
	"time"
)

// DefaultHalfLife is the Estimator's memory, in observations, when
// NewEstimator is given a half-life below 1.
const DefaultHalfLife = 16

const (
	// priorWeight is the weight of a phantom observation "a batch of no
	// records takes no time" added to the regression. It decides the split
	// between fixed and per-record cost while the observed sizes do not
	// (all batches the same size: the fit is then proportional), and fades
	// as soon as the sizes spread.
	priorWeight = 0.5
	// surpriseRatio and surpriseRun define a change in cost: surpriseRun
	// observations in a row whose latency is more than surpriseRatio times
	// above (or below) anything the model's recent average could explain.
	surpriseRatio = 1.5
	surpriseRun   = 3
)

// Estimate is a cost model of one plugin on one worker (or, merged, on the
// fleet): a batch of n records is predicted to take Fixed + n·PerRecord. It
// travels in heartbeats as JSON; durations are integer nanoseconds.
type Estimate struct {
	// Fixed is the cost of a batch regardless of its size.
	Fixed time.Duration `json:"fixed_ns"`
	// PerRecord is the cost of each record.
	PerRecord time.Duration `json:"per_record_ns"`
	// RecordBytes is the average size of a record in bytes, 0 if unknown.
	RecordBytes float64 `json:"record_bytes,omitempty"`
	// Samples is the number of batches observed; 0 means no data.
	Samples int `json:"samples"`
	// Hint is the plugin's own wish for the next batch size (what its
	// OptimizeBatchSize hook returned), 0 for no opinion.
	Hint int `json:"hint,omitempty"`
}

// Predict returns the latency e predicts for a batch of n records.
func (e Estimate) Predict(n int) time.Duration {
	return seconds(e.Fixed.Seconds() + float64(n)*e.PerRecord.Seconds())
}

// observation is one batch: its size, latency in seconds, and bytes.
type observation struct{ n, l, b float64 }

// Estimator fits the cost model Estimate to the batches one worker runs of
// one plugin: an exponentially weighted least-squares line of latency against
// batch size, each observation's weight halving after halfLife newer ones.
//
// Two guards make it usable for control. While all recent batches have the
// same size the split between fixed and per-record cost cannot be observed,
// and a weak prior makes the fit proportional through the current operating
// point (which is all the controller needs to hold its size). And a batch
// that takes more than surpriseRatio times longer (or shorter) than any
// non-negative split of the recent average cost allows is a surprise: a
// single one is an outlier, clipped to that range before it is counted, and
// surpriseRun in a row in the same direction are a change in cost, upon which
// the Estimator forgets everything before them instead of averaging two
// regimes for several half-lives.
//
// The zero value is not usable; call NewEstimator. An Estimator is safe for
// concurrent use.
type Estimator struct {
	mu       sync.Mutex
	decay    float64
	w, sn    float64 // Σw, Σw·n
	sl, snn  float64 // Σw·L, Σw·n²
	snl, sb  float64 // Σw·n·L, Σw·bytes
	samples  int
	hint     int
	run      int // consecutive surprises: > 0 slower, < 0 faster
	recent   [surpriseRun]observation
	restarts int
}

// NewEstimator returns an Estimator whose observations lose half their
// weight after halfLife newer ones (DefaultHalfLife if halfLife < 1).
func NewEstimator(halfLife int) *Estimator {
	if halfLife < 1 {
		halfLife = DefaultHalfLife
	}
	return &Estimator{decay: math.Exp2(-1 / float64(halfLife))}
}

// Observe records that a batch of n records and size bytes took latency.
// Observations with n < 1 or a negative latency are ignored; a negative
// bytes counts as 0.
func (e *Estimator) Observe(n, bytes int, latency time.Duration) {
	if n < 1 || latency < 0 {
		return
	}
	o := observation{float64(n), latency.Seconds(), float64(max(bytes, 0))}
	e.mu.Lock()
	defer e.mu.Unlock()
	copy(e.recent[1:], e.recent[:len(e.recent)-1])
	e.recent[0] = o
	switch lo, hi, ok := e.plausible(o.n); {
	case !ok:
		e.add(o)
	case e.surprised(o, lo, hi):
		// The cost changed: start over from the surprising batches.
		e.w, e.sn, e.sl, e.snn, e.snl, e.sb = 0, 0, 0, 0, 0, 0
		for i := len(e.recent) - 1; i >= 0; i-- {
			e.add(e.recent[i])
		}
		e.run = 0
		e.restarts++
	default:
		// Until confirmed as a change, a surprising batch (a pause, a
		// slow neighbour) counts as if it were at the edge of what is
		// plausible: one outlier cannot drag the model far.
		o.l = min(max(o.l, lo/surpriseRatio), hi*surpriseRatio)
		e.add(o)
	}
	if e.samples < math.MaxInt {
		e.samples++
	}
}

// add folds o into the weighted sums, decaying the older ones.
func (e *Estimator) add(o observation) {
	d := e.decay
	e.w = e.w*d + 1
	e.sn = e.sn*d + o.n
	e.sl = e.sl*d + o.l
	e.snn = e.snn*d + o.n*o.n
	e.snl = e.snl*d + o.n*o.l
	e.sb = e.sb*d + o.b
}

// plausible returns the range of latencies the model allows at n: any line
// through the recent mean (n̄, L̄) with non-negative costs predicts between
// L̄ and L̄·n/n̄. The range, not the fitted line, is used so that a poorly
// known split does not pass for a change when the size moves away from n̄.
// ok is false while the model has too few observations to judge.
func (e *Estimator) plausible(n float64) (lo, hi float64, ok bool) {
	if e.samples < 2*surpriseRun || !(e.w > 0) {
		return 0, 0, false
	}
	mean := e.sl / e.w
	lo, hi = mean, mean*n/(e.sn/e.w)
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi, true
}

// surprised counts o towards a change in cost and reports whether this is
// the surpriseRun-th surprise in a row in the same direction: a latency more
// than surpriseRatio beyond the plausible range [lo, hi].
func (e *Estimator) surprised(o observation, lo, hi float64) bool {
	switch {
	case o.l > hi*surpriseRatio:
		e.run = max(e.run, 0) + 1
	case o.l*surpriseRatio < lo:
		e.run = min(e.run, 0) - 1
	default:
		e.run = 0
	}
	return e.run >= surpriseRun || e.run <= -surpriseRun
}

// fit returns the fixed and per-record cost in seconds, both >= 0.
func (e *Estimator) fit() (fixed, perRecord float64) {
	if !(e.w > 0) {
		return 0, 0
	}
	// Ridge regression: the phantom observation (0 records, 0 s) adds
	// priorWeight to Σw and nothing to the other sums.
	w := e.w + priorWeight
	var slope float64
	if det := w*e.snn - e.sn*e.sn; det > 0 {
		slope = (w*e.snl - e.sn*e.sl) / det
	}
	// The line goes through the observations' mean, with a fixed cost
	// between 0 and the mean latency.
	n, l := e.sn/e.w, e.sl/e.w
	slope = min(max(slope, 0), l/n)
	if math.IsNaN(slope) {
		slope = 0
	}
	return l - slope*n, slope
}

// SetHint records the plugin's own wish for the next batch size (what its
// OptimizeBatchSize returned); 0 or less withdraws it.
func (e *Estimator) SetHint(n int) {
	e.mu.Lock()
	e.hint = max(n, 0)
	e.mu.Unlock()
}

// Estimate returns the current cost model; its Samples is 0 before the
// first observation. Fixed and PerRecord are never negative.
func (e *Estimator) Estimate() Estimate {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.samples == 0 {
		return Estimate{Hint: e.hint}
	}
	fixed, per := e.fit()
	est := Estimate{
		Fixed:     seconds(fixed),
		PerRecord: seconds(per),
		Samples:   e.samples,
		Hint:      e.hint,
	}
	if e.sn > 0 {
		est.RecordBytes = e.sb / e.sn
	}
	return est
}

// Restarts returns how many times the Estimator detected a change in cost
// and forgot the batches before it.
func (e *Estimator) Restarts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.restarts
}

// seconds converts s seconds to a Duration, rounded: 0 for NaN and
// negatives, the largest Duration for values beyond it.
func seconds(s float64) time.Duration {
	ns := s * 1e9
	switch {
	case !(ns > 0):
		return 0
	case ns >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(math.Round(ns))
}
