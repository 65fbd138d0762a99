package sizer

import (
	"math"
	"sync"
	"time"
)

// maxSources bounds the number of sources a Controller remembers; a new
// source beyond it replaces the one heard from longest ago.
const maxSources = 4096

// maxRecordBytes bounds a reported record size (to keep the merge finite);
// it is far beyond any message limit.
const maxRecordBytes = 1 << 50

// sampleCap bounds a source's weight in the merge, so a long-lived worker
// does not drown one that started recently.
const sampleCap = 100

// Bounds: what decided a Status's Size.
const (
	BoundInitial  = "initial"  // no estimate yet
	BoundModel    = "model"    // the cost model's size for the target latency
	BoundHint     = "hint"     // the plugin's own OptimizeBatchSize
	BoundMin      = "min"      // Config.Min (the target cannot be met)
	BoundMax      = "max"      // Config.Max
	BoundBytes    = "bytes"    // Config.MaxBytes over the record size
	BoundPressure = "pressure" // memory pressure above PressureKnee
)

// Controller chooses the size of the next batch of one plugin from the cost
// estimates workers report. It is pure logic driven by Config.Clock, and safe
// for concurrent use.
type Controller struct {
	cfg Config

	mu          sync.Mutex
	sources     map[string]source
	pressure    float64
	current     int // the damped size, within [Min, Max]
	target      int // the last undamped wish
	bound       string
	adjustments int
	lastAdjust  time.Time
	lastBytes   int
	// hold is, after memory pressure, the smallest size it limited the
	// batches to, at holdAt; Size returns at most hold grown back by
	// ×MaxStep per Interval since (see held). 0: none.
	hold   float64
	holdAt time.Time

	// The merged estimate, recomputed only when a report arrives or leaves,
	// or when the oldest report expires.
	merged   Estimate
	mergedOK bool
	dirty    bool
	expiry   time.Time // when the oldest counted report expires
	mergedAt time.Time
}

type source struct {
	est Estimate
	at  time.Time // when it was reported, on the controller's clock
}

// New returns a Controller for cfg, its zero fields set to their defaults.
// It returns an error wrapping ErrInvalidConfig when a field is out of range.
func New(cfg Config) (*Controller, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Controller{
		cfg:     cfg,
		sources: make(map[string]source),
		dirty:   true,
		current: cfg.Initial,
		target:  cfg.Initial,
		bound:   BoundInitial,
	}, nil
}

// Config returns the controller's configuration, defaults filled in.
func (c *Controller) Config() Config { return c.cfg }

// Report records source's latest estimate (a worker's, from its heartbeat),
// replacing the previous one. Negative values count as 0; an estimate with
// no samples and no hint counts for nothing. Estimates older than
// Config.MaxAge are forgotten.
func (c *Controller) Report(src string, est Estimate) {
	est.Fixed = max(est.Fixed, 0)
	est.PerRecord = max(est.PerRecord, 0)
	est.Samples = max(est.Samples, 0)
	est.Hint = max(est.Hint, 0)
	if !(est.RecordBytes > 0) {
		est.RecordBytes = 0
	}
	est.RecordBytes = min(est.RecordBytes, maxRecordBytes)
	now := c.cfg.Clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sources[src]; !ok && len(c.sources) >= maxSources {
		oldest, first := "", true
		for k, s := range c.sources {
			if first || s.at.Before(c.sources[oldest].at) {
				oldest, first = k, false
			}
		}
		delete(c.sources, oldest)
	}
	c.sources[src] = source{est: est, at: now}
	c.dirty = true
}

// Forget drops source's estimate, for a worker that left the fleet.
func (c *Controller) Forget(src string) {
	c.mu.Lock()
	delete(c.sources, src)
	c.dirty = true
	c.mu.Unlock()
}

// SetPressure sets the memory pressure, from 0 (none) to 1 (full); values
// outside are clamped and NaN is ignored. Pass the highest pressure among
// the workers the batches may go to. Above PressureKnee the size shrinks
// linearly, reaching Config.Min at 1; the shrinking is applied at once,
// without damping. Once the pressure falls, the size grows back from the
// smallest it shrank to at most ×MaxStep per Interval, as an adjustment
// would: a worker whose pressure reads low between two large batches does
// not get the unshrunk size at once.
func (c *Controller) SetPressure(p float64) {
	if math.IsNaN(p) {
		return
	}
	now := c.cfg.Clock()
	c.mu.Lock()
	if c.hold > 0 {
		// The hold grew (or not) under the pressure until now.
		c.hold, c.holdAt = c.envelope(now), now
	}
	c.pressure = min(max(p, 0), 1)
	c.mu.Unlock()
}

// Adjustments returns how many times the damped size has moved.
func (c *Controller) Adjustments() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adjustments
}

// Size returns the number of records to put in the next batch, given the
// average encoded size of a record in bytes (0 if unknown: the size the
// workers reported is used, if any).
//
// At most once per Config.Interval, and only when the merged estimate's size
// for the target latency differs from the current size by more than
// Config.Deadband, the current size moves towards it by at most a factor
// Config.MaxStep. The result is then limited to Config.MaxBytes/avgRecordBytes
// (never below 1) and shrunk under memory pressure. Before any estimate it
// is Config.Initial, so limited.
func (c *Controller) Size(avgRecordBytes int) int {
	now := c.cfg.Clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastBytes = avgRecordBytes
	merged, ok := c.mergedEstimate(now)
	if ok && (c.adjustments == 0 || now.Sub(c.lastAdjust) >= c.cfg.Interval) {
		c.target, c.bound = c.want(merged)
		if c.step(c.target) {
			c.adjustments++
			c.lastAdjust = now
		}
	}
	size, bound := c.limit(c.current, avgRecordBytes, merged)
	return c.held(size, bound, now)
}

// held applies the pressure's hold to size, the limited size Size is about
// to return (bound: what limited it). The hold is the smallest size memory
// pressure limited the batches to, growing back continuously by ×MaxStep
// per Interval since, but not while the pressure is above half the knee:
// a new pressure-limited size below it replaces it; it is forgotten once
// it no longer limits the size (or has grown past Max) with the pressure
// low.
func (c *Controller) held(size int, bound string, now time.Time) int {
	if c.hold > 0 {
		env := c.envelope(now)
		switch {
		case bound == BoundPressure && float64(size) <= env:
			c.hold, c.holdAt = float64(max(size, c.cfg.Min)), now
			return size
		case c.pressure < PressureKnee/2 && (env >= float64(c.cfg.Max) || float64(size) <= env):
			c.hold = 0 // it no longer limits the size
			return size
		}
		return min(size, max(int(env), c.cfg.Min))
	}
	if bound == BoundPressure {
		c.hold, c.holdAt = float64(max(size, c.cfg.Min)), now
	}
	return size
}

// envelope is the hold grown back to now (c.hold > 0): by ×MaxStep per
// Interval since holdAt, unless the pressure is above half the knee.
func (c *Controller) envelope(now time.Time) float64 {
	if c.pressure >= PressureKnee/2 {
		return c.hold
	}
	since := max(now.Sub(c.holdAt), 0)
	return c.hold * math.Pow(c.cfg.MaxStep, float64(since)/float64(c.cfg.Interval))
}

// mergedEstimate returns the merged estimate at now, from the cache when nothing
// changed since it was computed.
func (c *Controller) mergedEstimate(now time.Time) (Estimate, bool) {
	if c.dirty || !now.Before(c.expiry) || now.Before(c.mergedAt) {
		c.merged, c.mergedOK = c.merge(now)
		c.dirty, c.mergedAt = false, now
	}
	return c.merged, c.mergedOK
}

// merge returns the weighted mean of the fresh estimates, forgetting the
// stale ones; ok is false when none carries samples or a hint.
func (c *Controller) merge(now time.Time) (m Estimate, ok bool) {
	var w, fixed, per, bw, bytes, hw, hint float64
	c.expiry = now.Add(c.cfg.MaxAge)
	for k, s := range c.sources {
		age := max(now.Sub(s.at), 0)
		if age >= c.cfg.MaxAge {
			delete(c.sources, k)
			continue
		}
		if exp := s.at.Add(c.cfg.MaxAge); exp.Before(c.expiry) {
			c.expiry = exp
		}
		fresh := 1 - float64(age)/float64(c.cfg.MaxAge)
		sw := float64(min(s.est.Samples, sampleCap)) * fresh
		if s.est.Samples > 0 {
			w += sw
			fixed += sw * s.est.Fixed.Seconds()
			per += sw * s.est.PerRecord.Seconds()
			m.Samples = satAdd(m.Samples, s.est.Samples)
			if s.est.RecordBytes > 0 {
				bw += sw
				bytes += sw * s.est.RecordBytes
			}
		}
		if s.est.Hint > 0 {
			hw += max(sw, fresh) // a hint counts even from a worker without samples
			hint += max(sw, fresh) * float64(s.est.Hint)
		}
	}
	if w > 0 {
		m.Fixed, m.PerRecord = seconds(fixed/w), seconds(per/w)
	}
	if bw > 0 {
		m.RecordBytes = bytes / bw
	}
	if hw > 0 {
		m.Hint = toInt(hint / hw)
	}
	return m, w > 0 || hw > 0
}

// want returns the size m asks for, within [Min, Max], and why.
func (c *Controller) want(m Estimate) (int, string) {
	lo, hi := c.cfg.Min, c.cfg.Max
	if m.Hint > 0 {
		return min(max(m.Hint, lo), hi), BoundHint
	}
	spare := (c.cfg.Target - m.Fixed).Seconds()
	per := m.PerRecord.Seconds()
	switch {
	case spare <= 0:
		return lo, BoundMin
	case per <= 0:
		return hi, BoundMax
	}
	n := spare / per
	switch {
	case n <= float64(lo):
		return lo, BoundMin
	case n >= float64(hi):
		return hi, BoundMax
	}
	return toInt(n), BoundModel
}

// step moves the current size towards target, with hysteresis and a bounded
// step, and reports whether it moved.
func (c *Controller) step(target int) bool {
	cur, t := float64(c.current), float64(target)
	if t >= cur*(1-c.cfg.Deadband) && t <= cur*(1+c.cfg.Deadband) {
		return false
	}
	t = min(max(t, cur/c.cfg.MaxStep), cur*c.cfg.MaxStep)
	next := min(max(toInt(t), c.cfg.Min), c.cfg.Max)
	if next == c.current {
		return false
	}
	c.current = next
	return true
}

// limit applies the byte limit and memory pressure to size and tells which,
// if any, decided the result.
func (c *Controller) limit(size, avgRecordBytes int, m Estimate) (int, string) {
	bound := ""
	recBytes := float64(avgRecordBytes)
	if avgRecordBytes <= 0 {
		recBytes = m.RecordBytes
	}
	if recBytes > 0 {
		if byBytes := max(toInt(math.Floor(float64(c.cfg.MaxBytes)/recBytes)), 1); byBytes < size {
			size, bound = byBytes, BoundBytes
		}
	}
	if byPressure := pressureLimit(size, c.cfg.Min, c.pressure); byPressure < size {
		size, bound = byPressure, BoundPressure
	}
	return size, bound
}

// pressureLimit is the memory-pressure rule: size up to PressureKnee, then
// linearly down to lo at pressure 1. It never returns more than size.
func pressureLimit(size, lo int, p float64) int {
	if !(p > PressureKnee) || size <= lo {
		return size
	}
	f := (1 - min(p, 1)) / (1 - PressureKnee)
	return lo + int(math.Round(float64(size-lo)*f))
}

// Status is a Controller's state, for status pages and reports.
type Status struct {
	// Size is what Size would return now, with the last record size given.
	Size int `json:"size"`
	// Target is the size the merged estimate asked for at the last
	// adjustment opportunity, before damping and limits.
	Target int `json:"target"`
	// Bound tells what decided Size: one of the Bound constants.
	Bound string `json:"bound"`
	// Estimate is the merged estimate of the fresh sources.
	Estimate Estimate `json:"estimate"`
	// Sources is the number of sources whose estimate still counts.
	Sources int `json:"sources"`
	// Pressure is the memory pressure last set.
	Pressure float64 `json:"pressure"`
	// Adjustments counts the moves of the damped size.
	Adjustments int `json:"adjustments"`
	// LastAdjust is when the size last moved, on the controller's clock;
	// the zero Time if it never did.
	LastAdjust time.Time `json:"last_adjust,omitzero"`
}

// Snapshot returns the controller's state. It does not adjust the size.
func (c *Controller) Snapshot() Status {
	now := c.cfg.Clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	m, _ := c.mergedEstimate(now)
	size, bound := c.limit(c.current, c.lastBytes, m)
	if c.hold > 0 {
		if env := c.envelope(now); env < float64(c.cfg.Max) && float64(size) > env {
			size, bound = max(int(env), c.cfg.Min), BoundPressure
		}
	}
	if bound == "" {
		bound = c.bound
	}
	return Status{
		Size:        size,
		Target:      c.target,
		Bound:       bound,
		Estimate:    m,
		Sources:     len(c.sources),
		Pressure:    c.pressure,
		Adjustments: c.adjustments,
		LastAdjust:  c.lastAdjust,
	}
}

// toInt rounds f to the nearest int, saturating; NaN gives 0.
func toInt(f float64) int {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt:
		return math.MaxInt
	case f <= math.MinInt:
		return math.MinInt
	}
	return int(math.Round(f))
}

// satAdd returns a+b for non-negative a and b, saturating at math.MaxInt.
func satAdd(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}
