package sizer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// This file simulates a fleet against the Controller. Everything here is
// pure logic on a fake clock: time moves only when the simulation advances
// it, so the tests are deterministic and take no wall-clock time.

// fakeClock is a fake clock for pure logic: it moves only by Advance.
type fakeClock struct{ t time.Time }

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// cost is a simulated plugin's batch latency for n records.
type cost struct {
	fixed, perRecord time.Duration
	noise            float64 // the latency is multiplied by 1 + U(-noise, noise)
}

func (c cost) latency(n int, rng *rand.Rand) time.Duration {
	l := float64(c.fixed) + float64(n)*float64(c.perRecord)
	if c.noise > 0 {
		l *= 1 + c.noise*(2*rng.Float64()-1)
	}
	return time.Duration(l)
}

// ideal is the size whose mean latency meets target, within [lo, hi].
func (c cost) ideal(target time.Duration, lo, hi int) int {
	if c.fixed >= target {
		return lo
	}
	if c.perRecord <= 0 {
		return hi
	}
	n := float64(target-c.fixed) / float64(c.perRecord)
	return int(min(max(n, float64(lo)), float64(hi)))
}

// phase is a stretch of a simulation with one cost model.
type phase struct {
	cost  cost
	ticks int
}

// simConfig describes a simulated fleet.
type simConfig struct {
	workers     int // each with its own Estimator, reporting once per tick
	batches     int // batches each worker runs per tick (per Interval)
	recordBytes int
	halfLife    int    // of each worker's Estimator; 0 for the default
	cfg         Config // Clock is set by the simulation
	seed        uint64
}

// trace is what a simulation saw: the size chosen in each tick and the
// adjustment count at the end of each tick.
type trace struct {
	sizes       []int
	adjustments []int
}

// simulate runs phases against a Controller and returns the trace.
func simulate(t testing.TB, sc simConfig, phases []phase) trace {
	t.Helper()
	clock := newFakeClock()
	sc.cfg.Clock = clock.Now
	ctl, err := New(sc.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rng := rand.New(rand.NewPCG(sc.seed, sc.seed^0x9e3779b97f4a7c15))
	ests := make([]*Estimator, sc.workers)
	for i := range ests {
		ests[i] = NewEstimator(sc.halfLife)
	}
	var tr trace
	for _, ph := range phases {
		for range ph.ticks {
			size := ctl.Size(sc.recordBytes)
			for i, e := range ests {
				for range sc.batches {
					n := ctl.Size(sc.recordBytes)
					e.Observe(n, n*sc.recordBytes, ph.cost.latency(n, rng))
				}
				ctl.Report(fmt.Sprintf("w%d", i), e.Estimate())
			}
			tr.sizes = append(tr.sizes, size)
			tr.adjustments = append(tr.adjustments, ctl.Adjustments())
			clock.Advance(ctl.Config().Interval)
		}
	}
	return tr
}

// convergence describes how a trace settled in one phase [from, to).
type convergence struct {
	ok          bool // settled within tolerance and stayed there
	ticks       int  // ticks into the phase until it settled
	adjustments int  // adjustments made in the phase until it settled
	after       int  // adjustments made after it settled
	reversals   int  // direction changes after it settled
	worst       float64
}

// settle finds when sizes[from:to] entered ideal ±tol for good.
func settle(tr trace, from, to, ideal int, tol float64) convergence {
	within := func(s int) bool { return math.Abs(float64(s-ideal)) <= tol*float64(ideal) }
	first := to
	for i := to - 1; i >= from && within(tr.sizes[i]); i-- {
		first = i
	}
	if first == to {
		return convergence{}
	}
	base := 0
	if from > 0 {
		base = tr.adjustments[from-1]
	}
	// The size of tick i was chosen by the adjustments counted up to tick i.
	c := convergence{ok: true, ticks: first - from, adjustments: tr.adjustments[first] - base}
	c.after = tr.adjustments[to-1] - tr.adjustments[first]
	dir := 0
	for i := first; i < to; i++ {
		c.worst = max(c.worst, math.Abs(float64(tr.sizes[i]-ideal))/float64(ideal))
		if i == first {
			continue
		}
		d := tr.sizes[i] - tr.sizes[i-1]
		switch {
		case d > 0 && dir < 0, d < 0 && dir > 0:
			c.reversals++
		}
		if d != 0 {
			dir = d
		}
	}
	return c
}

// seedSimulate runs the seed's OptimizeBatchSize rule against phases: one
// simulated worker, one adjustment opportunity per tick (like the
// Controller's Interval), on the latency of that tick's batch.
func seedSimulate(start int, phases []phase, seed uint64) trace {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var tr trace
	size, adj := start, 0
	for _, ph := range phases {
		for range ph.ticks {
			tr.sizes = append(tr.sizes, size)
			l := ph.cost.latency(size, rng)
			if next := SeedRule(size, l, float64(size)/l.Seconds()); next > 0 && next != size {
				size = next
				adj++
			}
			tr.adjustments = append(tr.adjustments, adj)
		}
	}
	return tr
}

// simSeed is the first seed of the simulations; seed i of a scenario is
// simSeed+i. It is logged so that a failure can be replayed.
const simSeed = 20240601

// simSeeds is how many seeds each scenario runs.
const simSeeds = 20

// check is a stretch of a scenario with the size it should settle at.
type check struct {
	name     string
	from, to int // ticks
	ideal    int
}

// scenario is a simulated plugin against a simulated fleet.
type scenario struct {
	name   string
	cfg    Config
	phases []phase
	checks []check
	assert bool // false: reported, not asserted (see its comment)
}

const (
	ms = time.Millisecond
	us = time.Microsecond
)

// oneCost is a scenario with one cost model for ticks ticks.
func oneCost(name string, cfg Config, c cost, ticks int) scenario {
	d, _ := cfg.withDefaults()
	return scenario{
		name:   name,
		cfg:    cfg,
		phases: []phase{{c, ticks}},
		checks: []check{{"-", 0, ticks, c.ideal(d.Target, d.Min, d.Max)}},
		assert: true,
	}
}

// stepCost is a scenario whose per-record cost is ×4 from tick 30 to 60.
func stepCost(name string, base cost, assert bool) scenario {
	hi := base
	hi.perRecord *= 4
	d := DefaultConfig()
	return scenario{
		name:   name,
		phases: []phase{{base, 30}, {hi, 30}, {base, 30}},
		checks: []check{
			{"×4", 30, 60, hi.ideal(d.Target, d.Min, d.Max)},
			{"÷4", 60, 90, base.ideal(d.Target, d.Min, d.Max)},
		},
		assert: assert,
	}
}

var (
	linearCost     = cost{fixed: 20 * ms, perRecord: 160 * us}             // ideal 500
	fixedHeavyCost = cost{fixed: 60 * ms, perRecord: 100 * us}             // ideal 400
	noisyCost      = cost{fixed: 20 * ms, perRecord: 160 * us, noise: 0.3} // ideal 500
	noisyHeavyCost = cost{fixed: 60 * ms, perRecord: 100 * us, noise: 0.3} // ideal 400
	slowCost       = cost{perRecord: 2 * ms, noise: 0.3}                   // ideal 50, below Initial
	fleetCost      = cost{fixed: 2 * ms, perRecord: 5 * us, noise: 0.3}    // ideal 19,600: Max
	constantCost   = cost{fixed: 30 * ms}                                  // ideal Max
	propCost       = cost{perRecord: 250 * us}                             // ideal 400
)

func scenarios() []scenario {
	return []scenario{
		oneCost("constant 30ms", Config{}, constantCost, 60),
		oneCost("proportional 250µs/rec", Config{}, propCost, 60),
		oneCost("linear 20ms+160µs/rec", Config{}, linearCost, 60),
		oneCost("linear 60ms+100µs/rec", Config{}, fixedHeavyCost, 60),
		oneCost("noisy ±30% 20ms+160µs/rec", Config{}, noisyCost, 100),
		oneCost("noisy ±30% 60ms+100µs/rec", Config{}, noisyHeavyCost, 100),
		oneCost("noisy ±30% 2ms/rec", Config{}, slowCost, 60),
		oneCost("noisy ±30% 2ms+5µs/rec, Max 10000", Config{Max: 10000}, fleetCost, 60),
		stepCost("step ×4 noisy 20ms+160µs/rec", noisyCost, true),
		// The fixed cost is 60% of the target, so ±20% in size is only
		// ±8% in latency, and the ÷4 step back is only a 30% drop in
		// latency at the current size, under the change detector's
		// threshold: the old regime fades by half-life instead. Reported,
		// not asserted (1 seed in 40 needs more than 10 adjustments).
		stepCost("step ×4 noisy 60ms+100µs/rec", noisyHeavyCost, false),
	}
}

// stats summarises a check over all seeds.
type stats struct {
	runs, failed     int   // failed: did not settle, or needed more than 10 adjustments
	adjustments      []int // to settle, per seed
	after, reversals int   // worst over the seeds, after settling
	afterTicks       int   // ticks after settling, in the worst seed for after
	worstSeed        uint64
}

func (s stats) maxAdjustments() int {
	m := 0
	for _, a := range s.adjustments {
		m = max(m, a)
	}
	return m
}

func (s stats) medianAdjustments() int {
	a := append([]int(nil), s.adjustments...)
	slices.Sort(a)
	return a[len(a)/2]
}

// runScenario simulates sc with the given number of workers over simSeeds
// seeds and returns one stats per check.
func runScenario(t testing.TB, sc scenario, workers int) []stats {
	t.Helper()
	out := make([]stats, len(sc.checks))
	for i := range simSeeds {
		seed := uint64(simSeed + i)
		tr := simulate(t, simConfig{workers: workers, batches: 5, recordBytes: 100, cfg: sc.cfg, seed: seed}, sc.phases)
		for j, ck := range sc.checks {
			st := &out[j]
			st.runs++
			cv := settle(tr, ck.from, ck.to, ck.ideal, 0.2)
			if !cv.ok || cv.adjustments > 10 {
				st.failed++
				st.worstSeed = seed
				continue
			}
			st.adjustments = append(st.adjustments, cv.adjustments)
			if cv.after > st.after || cv.reversals > st.reversals {
				st.afterTicks = ck.to - ck.from - cv.ticks
			}
			st.after = max(st.after, cv.after)
			st.reversals = max(st.reversals, cv.reversals)
		}
	}
	return out
}

// TestConvergence: against every asserted cost model, with 1 and 3 workers
// each running 5 batches per heartbeat, the size gets within 20% of the size
// that meets the target latency within 10 adjustments, and stays there.
func TestConvergence(t *testing.T) {
	t.Logf("seeds %d..%d", simSeed, simSeed+simSeeds-1)
	for _, sc := range scenarios() {
		if !sc.assert {
			continue
		}
		for _, workers := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/workers=%d", sc.name, workers), func(t *testing.T) {
				for j, st := range runScenario(t, sc, workers) {
					if st.failed > 0 {
						t.Errorf("%s: %d of %d seeds did not settle within 20%% of %d in 10 adjustments (e.g. seed %d)",
							sc.checks[j].name, st.failed, st.runs, sc.checks[j].ideal, st.worstSeed)
					}
				}
			})
		}
	}
}

// TestNoOscillationUnderNoise: once settled under ±30% noise, the size stays
// within ±20% of the ideal (TestConvergence: "stays there") and moves rarely.
// Criterion, per seed, over the 50 to 100 heartbeats after settling: at most
// 5 adjustments and at most 3 changes of direction. (The seed's rule, by
// contrast, changes direction on almost every adjustment; see
// TestSeedRuleComparison.)
func TestNoOscillationUnderNoise(t *testing.T) {
	t.Logf("seeds %d..%d", simSeed, simSeed+simSeeds-1)
	for _, sc := range scenarios() {
		if !sc.assert || sc.phases[0].cost.noise == 0 || len(sc.phases) > 1 {
			continue
		}
		for _, workers := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/workers=%d", sc.name, workers), func(t *testing.T) {
				st := runScenario(t, sc, workers)[0]
				if st.after > 5 || st.reversals > 3 {
					t.Errorf("after settling: %d adjustments, %d reversals (in %d ticks); want <= 5 and <= 3",
						st.after, st.reversals, st.afterTicks)
				}
			})
		}
	}
}

// comparison is a race between the Controller and SeedRule.
type comparison struct {
	name    string
	initial int
	phases  []phase
	check   check
}

func comparisons() []comparison {
	hi := linearCost
	hi.perRecord *= 4
	return []comparison{
		{"grow: 20ms+160µs/rec from 100", 100, []phase{{linearCost, 60}}, check{"", 0, 60, 500}},
		{"shrink: per-record cost ×4 at 500", 500, []phase{{linearCost, 5}, {hi, 55}}, check{"", 5, 60, 125}},
		{"slow: 2ms/rec from 100", 100, []phase{{cost{perRecord: 2 * ms}, 60}}, check{"", 0, 60, 50}},
	}
}

// compare runs c with the Controller (one worker, noise-free) and SeedRule.
func compare(t testing.TB, c comparison) (ctl, seed convergence) {
	tr := simulate(t, simConfig{workers: 1, batches: 5, recordBytes: 100, cfg: Config{Initial: c.initial}, seed: simSeed}, c.phases)
	str := seedSimulate(c.initial, c.phases, simSeed)
	return settle(tr, c.check.from, c.check.to, c.check.ideal, 0.2), settle(str, c.check.from, c.check.to, c.check.ideal, 0.2)
}

// TestSeedRuleComparison shows why the fleet uses the model: on the same
// noise-free costs, the seed's ±20% rule needs more adjustments to shrink,
// never grows a plugin faster than 1000 records/s towards its latency target,
// and flips forever on a plugin slower than that; the Controller settles in a
// few adjustments and stays.
func TestSeedRuleComparison(t *testing.T) {
	for _, c := range comparisons() {
		t.Run(c.name, func(t *testing.T) {
			ctl, seed := compare(t, c)
			t.Logf("controller %+v", ctl)
			t.Logf("seed rule  %+v", seed)
			if !ctl.ok || ctl.adjustments > 10 || ctl.reversals > 0 {
				t.Errorf("controller: %+v; want settled within 10 adjustments, no reversal", ctl)
			}
			if seed.ok && seed.reversals == 0 && seed.adjustments <= ctl.adjustments {
				t.Errorf("seed rule %+v as good as the controller %+v", seed, ctl)
			}
		})
	}
}

// TestReport prints the convergence figures recorded in BENCHMARKS.md:
//
//	go test -run TestReport -v ./sizer
func TestReport(t *testing.T) {
	t.Logf("seeds %d..%d, %d batches per worker per heartbeat, Target 100ms, Initial 100, Max 1000 unless said",
		simSeed, simSeed+simSeeds-1, 5)
	t.Log("| cost model | phase | ideal | workers | adjustments to settle (median / max) | failed | after settling: adjustments / reversals (worst) |")
	t.Log("|---|---|---|---|---|---|---|")
	for _, sc := range scenarios() {
		for _, workers := range []int{1, 3} {
			for j, st := range runScenario(t, sc, workers) {
				med, mx := "-", "-"
				if len(st.adjustments) > 0 {
					med, mx = fmt.Sprint(st.medianAdjustments()), fmt.Sprint(st.maxAdjustments())
				}
				name := sc.name
				if !sc.assert {
					name += " (not asserted)"
				}
				t.Logf("| %s | %s | %d | %d | %s / %s | %d/%d | %d / %d |",
					name, sc.checks[j].name, sc.checks[j].ideal, workers, med, mx, st.failed, st.runs, st.after, st.reversals)
			}
		}
	}
	t.Log("")
	t.Log("| noise-free race | ideal | controller: adjustments / reversals | seed rule: adjustments / reversals |")
	t.Log("|---|---|---|---|")
	show := func(c convergence) string {
		if !c.ok {
			return "never settles"
		}
		return fmt.Sprintf("%d / %d", c.adjustments, c.reversals)
	}
	for _, c := range comparisons() {
		ctl, seed := compare(t, c)
		t.Logf("| %s | %d | %s | %s |", c.name, c.check.ideal, show(ctl), show(seed))
	}
}
