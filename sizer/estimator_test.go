package sizer

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// within reports whether got is within tol (a fraction) of want.
func within(got, want time.Duration, tol float64) bool {
	return math.Abs(float64(got-want)) <= tol*math.Abs(float64(want))+1 // +1ns for zero
}

func TestEstimatorFitsLine(t *testing.T) {
	tests := []struct {
		name             string
		fixed, perRecord time.Duration
	}{
		{"linear", 20 * ms, 160 * us},
		{"fixed-heavy", 60 * ms, 100 * us},
		{"proportional", 0, 250 * us},
		{"constant", 30 * ms, 0},
	}
	sizes := []int{100, 200, 400, 800, 300, 600}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEstimator(0)
			for i := range 60 {
				n := sizes[i%len(sizes)]
				e.Observe(n, n*10, tt.fixed+time.Duration(n)*tt.perRecord)
			}
			got := e.Estimate()
			if got.Samples != 60 || got.RecordBytes != 10 {
				t.Errorf("Samples, RecordBytes = %d, %v; want 60, 10", got.Samples, got.RecordBytes)
			}
			// The prior pulls the split towards proportional by a few
			// percent; the predictions, and the size that meets the
			// target, stay accurate.
			if !within(got.Fixed, tt.fixed, 0.1) || math.Abs(float64(got.PerRecord-tt.perRecord)) > 0.1*float64(max(tt.perRecord, 50*us)) {
				t.Errorf("Estimate() = %v + %v/record; want %v + %v/record within 10%%", got.Fixed, got.PerRecord, tt.fixed, tt.perRecord)
			}
			for _, n := range sizes {
				want := tt.fixed + time.Duration(n)*tt.perRecord
				if p := got.Predict(n); !within(p, want, 0.07) {
					t.Errorf("Predict(%d) = %v; want %v within 7%%", n, p, want)
				}
			}
			sizeFor := func(fixed, perRecord time.Duration) float64 {
				return min(float64(100*ms-fixed)/float64(perRecord), 1e4) // +Inf for 0 per record
			}
			if got, want := sizeFor(got.Fixed, got.PerRecord), sizeFor(tt.fixed, tt.perRecord); math.Abs(got-want) > 0.02*want {
				t.Errorf("size for 100ms = %.0f; want %.0f within 2%%", got, want)
			}
		})
	}
}

func TestEstimatorOneSize(t *testing.T) {
	e := NewEstimator(0)
	for range 50 {
		e.Observe(500, 0, 100*ms)
	}
	got := e.Estimate()
	want := Estimate{Fixed: 0, PerRecord: 200 * us, Samples: 50}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Estimate() mismatch (-want +got):\n%s", diff)
	}
	if p := got.Predict(500); p != 100*ms {
		t.Errorf("Predict(500) = %v; want 100ms", p)
	}
}

func TestEstimatorIgnoresNonsense(t *testing.T) {
	e := NewEstimator(4)
	e.Observe(0, 100, ms)
	e.Observe(-5, 100, ms)
	e.Observe(10, 100, -ms)
	if got := e.Estimate(); got != (Estimate{}) {
		t.Errorf("after ignored observations Estimate() = %+v; want zero", got)
	}
	e.Observe(10, -100, 10*ms)
	if got := e.Estimate(); got.Samples != 1 || got.RecordBytes != 0 {
		t.Errorf("negative bytes: Samples, RecordBytes = %d, %v; want 1, 0", got.Samples, got.RecordBytes)
	}
}

// TestEstimatorStepChange: a ×4 change in per-record cost is detected after
// surpriseRun batches, and the prediction follows at once; ±30% noise alone
// never looks like a change.
func TestEstimatorStepChange(t *testing.T) {
	seed := uint64(simSeed)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	before := cost{fixed: 20 * ms, perRecord: 160 * us, noise: 0.3}
	after := before
	after.perRecord *= 4
	e := NewEstimator(0)
	for range 10_000 {
		n := 400 + rng.IntN(200)
		e.Observe(n, 0, before.latency(n, rng))
	}
	if r := e.Restarts(); r != 0 {
		t.Fatalf("noise alone: Restarts() = %d; want 0", r)
	}
	for i := range surpriseRun {
		if r := e.Restarts(); r != 0 {
			t.Fatalf("after %d changed batches Restarts() = %d; want 0 before %d", i, r, surpriseRun)
		}
		e.Observe(500, 0, after.latency(500, rng))
	}
	if r := e.Restarts(); r != 1 {
		t.Fatalf("after %d changed batches Restarts() = %d; want 1", surpriseRun, r)
	}
	want := after.fixed + 500*after.perRecord
	if got := e.Estimate().Predict(500); !within(got, want, 0.3) {
		t.Errorf("Predict(500) after the change = %v; want %v ±30%%", got, want)
	}
	// And back down.
	for range surpriseRun {
		e.Observe(500, 0, before.latency(500, rng))
	}
	if r := e.Restarts(); r != 2 {
		t.Errorf("after the change back Restarts() = %d; want 2", r)
	}
}

// TestEstimatorOutlierIsNotAChange: one very slow batch (a GC pause) does not
// make the Estimator forget.
func TestEstimatorOutlierIsNotAChange(t *testing.T) {
	e := NewEstimator(0)
	for i := range 100 {
		l := 100 * ms
		if i%10 == 9 {
			l = 10 * l
		}
		e.Observe(500, 0, l)
	}
	if r := e.Restarts(); r != 0 {
		t.Errorf("Restarts() = %d; want 0", r)
	}
}

func TestEstimatorHint(t *testing.T) {
	e := NewEstimator(0)
	e.SetHint(300)
	if got := e.Estimate(); got.Hint != 300 || got.Samples != 0 {
		t.Errorf("Estimate() = %+v; want Hint 300 and no samples", got)
	}
	e.Observe(10, 0, ms)
	e.SetHint(-1)
	if got := e.Estimate(); got.Hint != 0 {
		t.Errorf("after SetHint(-1) Hint = %d; want 0", got.Hint)
	}
}

// TestEstimatorHammer: many goroutines observing and estimating at once
// (run with -race).
func TestEstimatorHammer(t *testing.T) {
	e := NewEstimator(0)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				e.Observe(100+g, 1000, time.Duration(100+i)*us)
				if i%50 == 0 {
					if est := e.Estimate(); est.Fixed < 0 || est.PerRecord < 0 {
						t.Errorf("negative estimate %+v", est)
					}
					e.SetHint(i)
				}
			}
		})
	}
	wg.Wait()
	if got := e.Estimate().Samples; got != goroutines*each {
		t.Errorf("Samples = %d; want %d", got, goroutines*each)
	}
}

func TestEstimateJSON(t *testing.T) {
	est := Estimate{Fixed: 2 * ms, PerRecord: 1500, RecordBytes: 120.5, Samples: 42, Hint: 7}
	b, err := json.Marshal(est)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"fixed_ns":2000000,"per_record_ns":1500,"record_bytes":120.5,"samples":42,"hint":7}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s; want %s", b, want)
	}
	var got Estimate
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(est, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestSeconds(t *testing.T) {
	tests := []struct {
		in   float64
		want time.Duration
	}{
		{0, 0},
		{-1, 0},
		{math.NaN(), 0},
		{math.Inf(-1), 0},
		{math.Inf(1), math.MaxInt64},
		{1e300, math.MaxInt64},
		{1.5e-9, 2},
		{0.1, 100 * ms},
	}
	for _, tt := range tests {
		if got := seconds(tt.in); got != tt.want {
			t.Errorf("seconds(%v) = %v; want %v", tt.in, got, tt.want)
		}
	}
}
