package pool

// TierStats are one tier's statistics (or, in Stats.Total, all tiers' and
// the oversize buffers' together). Counters are cumulative since New; the
// other fields are a snapshot. A Stats is read without stopping Gets and
// Puts, so its fields can disagree by the few operations in flight.
type TierStats struct {
	// Tier is the tier's name ("total" in Stats.Total); Size its buffer
	// size in bytes (0 in Total).
	Tier string `json:"tier"`
	Size int    `json:"size"`
	// Buffers is how many buffers the tier owns, idle or held.
	Buffers int `json:"buffers"`

	// Hits counts Gets served by an idle buffer; Misses counts Gets that
	// allocated (a new pooled buffer, or an unpooled one); HitRate is
	// Hits / (Hits + Misses).
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	HitRate float64 `json:"hit_rate"`
	// Unpooled counts the misses handed out as plain allocations because
	// the tier owned MaxBuffers already, the Budget was spent or the pool
	// was closed. Oversize Gets count here too, in Total.
	Unpooled uint64 `json:"unpooled"`

	// InUse and InUseBytes are the buffers held now (pooled or not) and
	// their capacity; Idle and IdleBytes the pooled ones waiting for a Get;
	// Pinned the pooled held buffers that are pinned.
	InUse      int   `json:"in_use"`
	InUseBytes int64 `json:"in_use_bytes"`
	Idle       int   `json:"idle"`
	IdleBytes  int64 `json:"idle_bytes"`
	Pinned     int   `json:"pinned"`

	// AskedBytes is the sum of the sizes asked for; HandedBytes the sum of
	// the capacities handed out; Efficiency is AskedBytes / HandedBytes
	// (1 means every Get used its whole buffer). All three need
	// Config.Metrics and read 0 without it.
	AskedBytes  uint64  `json:"asked_bytes"`
	HandedBytes uint64  `json:"handed_bytes"`
	Efficiency  float64 `json:"efficiency"`

	// Released counts idle buffers let go by cleanup passes or Close;
	// Abandoned counts held buffers given up after MaxHold; LatePuts counts
	// Puts of abandoned buffers.
	Released  uint64 `json:"released"`
	Abandoned uint64 `json:"abandoned"`
	LatePuts  uint64 `json:"late_puts"`
}

// OversizeStats are the statistics of Gets larger than MaxSize, served by
// plain allocations.
type OversizeStats struct {
	Gets       uint64 `json:"gets"`
	AskedBytes uint64 `json:"asked_bytes"`
	InUse      int    `json:"in_use"`
	InUseBytes int64  `json:"in_use_bytes"`
}

// ErrorStats count the misuses Put, Pin and Unpin reported.
type ErrorStats struct {
	DoublePut uint64 `json:"double_put"` // ErrDoublePut
	Foreign   uint64 `json:"foreign"`    // ErrForeign
	Pinned    uint64 `json:"pinned"`     // ErrPinned (a Put of a pinned buffer)
	NotHeld   uint64 `json:"not_held"`   // ErrNotHeld
	NotPinned uint64 `json:"not_pinned"` // ErrNotPinned
	Total     uint64 `json:"total"`
}

// Stats is a snapshot of a Pool's statistics.
type Stats struct {
	Tiers    [NumTiers]TierStats `json:"tiers"`
	Oversize OversizeStats       `json:"oversize"`
	// Total adds up the tiers and the oversize buffers.
	Total  TierStats  `json:"total"`
	Errors ErrorStats `json:"errors"`

	// Metrics tells whether the per-Get counters were on.
	Metrics bool `json:"metrics"`
	// OwnedBytes is the capacity of all buffers the pool owns, idle or held;
	// it never exceeds BudgetBytes when there is a budget.
	OwnedBytes  int64 `json:"owned_bytes"`
	BudgetBytes int64 `json:"budget_bytes"`
	// Pressure is Total.InUseBytes / BudgetBytes, 0 without a budget.
	Pressure      float64 `json:"pressure"`
	CleanupPasses uint64  `json:"cleanup_passes"`
}

// Stats returns a snapshot of the pool's statistics. It takes each tier's
// lock briefly, so it is cheap enough for a heartbeat but not meant for every
// Get. A nil Pool has zero Stats.
func (p *Pool) Stats() Stats {
	var s Stats
	if p == nil {
		return s
	}
	s.Metrics = p.metrics
	s.BudgetBytes = p.cfg.Budget
	s.OwnedBytes = p.owned.Load()
	s.CleanupPasses = p.passes.Load()
	tot := &s.Total
	tot.Tier = "total"
	for t := Tier(0); t < NumTiers; t++ {
		ts := &s.Tiers[t]
		p.tierStats(t, ts)
		tot.Buffers += ts.Buffers
		tot.Hits += ts.Hits
		tot.Misses += ts.Misses
		tot.Unpooled += ts.Unpooled
		tot.InUse += ts.InUse
		tot.InUseBytes += ts.InUseBytes
		tot.Idle += ts.Idle
		tot.IdleBytes += ts.IdleBytes
		tot.Pinned += ts.Pinned
		tot.AskedBytes += ts.AskedBytes
		tot.HandedBytes += ts.HandedBytes
		tot.Released += ts.Released
		tot.Abandoned += ts.Abandoned
		tot.LatePuts += ts.LatePuts
	}
	o := &s.Oversize
	o.Gets = p.over.gets.Load()
	o.AskedBytes = p.over.asked.Load()
	o.InUse = int(p.over.held.Load())
	o.InUseBytes = p.over.heldBytes.Load()
	tot.Misses += o.Gets
	tot.Unpooled += o.Gets
	tot.InUse += o.InUse
	tot.InUseBytes += o.InUseBytes
	if p.metrics {
		tot.AskedBytes += o.AskedBytes
		tot.HandedBytes += o.AskedBytes
	}
	tot.HitRate = ratio(tot.Hits, tot.Hits+tot.Misses)
	tot.Efficiency = ratio(tot.AskedBytes, tot.HandedBytes)
	if p.cfg.Budget > 0 {
		s.Pressure = float64(tot.InUseBytes) / float64(p.cfg.Budget)
	}
	e := &s.Errors
	e.DoublePut = p.errs.doublePut.Load()
	e.Foreign = p.errs.foreign.Load()
	e.Pinned = p.errs.pinned.Load()
	e.NotHeld = p.errs.notHeld.Load()
	e.NotPinned = p.errs.notPinned.Load()
	e.Total = e.DoublePut + e.Foreign + e.Pinned + e.NotHeld + e.NotPinned
	return s
}

// tierStats fills ts for tier t.
func (p *Pool) tierStats(t Tier, ts *TierStats) {
	tr := &p.tiers[t]
	size := t.Size()
	ts.Tier = t.String()
	ts.Size = size
	tr.mu.Lock()
	ts.Buffers = len(tr.reg)
	hits, asked := tr.hits, tr.retiredAsked
	for _, b := range tr.reg {
		s := b.state.Load()
		hits += usesSince(b.folded, usesOf(s))
		switch kindOf(s) {
		case kindIdle:
			ts.Idle++
		case kindHeld:
			ts.InUse++
			if pinsOf(s) > 0 {
				ts.Pinned++
			}
		}
		asked += b.asked.Load()
	}
	ts.Released = tr.released
	ts.Abandoned = tr.abandoned
	tr.mu.Unlock()

	ts.Misses = tr.misses.Load()
	ts.Unpooled = tr.unpooled.Load()
	ts.LatePuts = tr.latePuts.Load()
	ts.InUse += int(tr.unpooledHeld.Load())
	ts.InUseBytes = int64(ts.InUse) * int64(size)
	ts.IdleBytes = int64(ts.Idle) * int64(size)
	ts.Hits = hits
	ts.HitRate = ratio(hits, hits+ts.Misses)
	if p.metrics {
		ts.AskedBytes = asked + tr.unpooledAsked.Load()
		ts.HandedBytes = (hits + ts.Misses) * uint64(size)
		ts.Efficiency = ratio(ts.AskedBytes, ts.HandedBytes)
	}
}

// Pressure returns the bytes held now (pooled, unpooled and oversize) over
// Config.Budget, or 0 without a budget. Above 1 the holders together exceed
// the budget. It costs a short lock per tier, like Stats.
func (p *Pool) Pressure() float64 {
	if p == nil || p.cfg.Budget == 0 {
		return 0
	}
	var held int64
	for t := Tier(0); t < NumTiers; t++ {
		tr := &p.tiers[t]
		n := tr.unpooledHeld.Load()
		tr.mu.Lock()
		for _, b := range tr.reg {
			if kindOf(b.state.Load()) == kindHeld {
				n++
			}
		}
		tr.mu.Unlock()
		held += n * int64(t.Size())
	}
	held += p.over.heldBytes.Load()
	return float64(held) / float64(p.cfg.Budget)
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
