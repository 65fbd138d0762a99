package fleet

import "time"

// Estimate is a worker's cost model of one plugin, as it travels in
// heartbeats to the coordinators' batch sizers: a batch of n records is
// predicted to take Fixed + n·PerRecord. Package sizer fits and uses it.
type Estimate struct {
	// Fixed is the cost of a batch, whatever its size.
	Fixed time.Duration `json:"fixed_ns"`
	// PerRecord is the cost of each record.
	PerRecord time.Duration `json:"per_record_ns"`
	// RecordBytes is the mean size of a record seen.
	RecordBytes float64 `json:"record_bytes,omitempty"`
	// Samples is how many batches the fit rests on (0: no model yet).
	Samples int `json:"samples"`
	// Hint is the plugin's own preferred size (its OptimizeBatchSize),
	// 0 when it has none.
	Hint int `json:"hint,omitempty"`
}

// SizerStatus is why a plugin's batches are cut at the size they are.
type SizerStatus struct {
	// Size is the size batches are cut at now.
	Size int `json:"size"`
	// Target is the size the cost model aims at, before damping.
	Target int `json:"target"`
	// Bound names what decided Size: "initial" (no estimate yet), "model"
	// (the cost model's size for the target latency), "hint" (the
	// plugin's own), "min", "max", "bytes" (the message size limit) or
	// "pressure" (the workers' memory pressure).
	Bound string `json:"bound"`
	// Estimate merges the workers' cost models.
	Estimate Estimate `json:"estimate"`
	// Sources is how many workers' models are merged.
	Sources int `json:"sources"`
	// Pressure is the highest memory pressure the workers report.
	Pressure float64 `json:"pressure"`
	// Adjustments counts changes of Size; LastAdjust is the last one.
	Adjustments int       `json:"adjustments"`
	LastAdjust  time.Time `json:"last_adjust,omitzero"`
}

// PoolStats is a worker's memory pool at a glance (package pool has the
// whole picture, in process).
type PoolStats struct {
	// Tiers are the pool's size classes, smallest first.
	Tiers []PoolTier `json:"tiers"`
	// Hits and Misses count Gets served from the pool and allocated.
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	// HitRate is Hits / (Hits + Misses).
	HitRate float64 `json:"hit_rate"`
	// Efficiency is bytes asked / bytes handed out.
	Efficiency float64 `json:"efficiency"`
	// InUseBytes are handed out now, IdleBytes kept for reuse,
	// OwnedBytes both, against a budget of BudgetBytes (0: none).
	InUseBytes  int64 `json:"in_use_bytes"`
	IdleBytes   int64 `json:"idle_bytes"`
	OwnedBytes  int64 `json:"owned_bytes"`
	BudgetBytes int64 `json:"budget_bytes"`
	// Errors counts misuses caught (a double Put, a foreign buffer...).
	Errors uint64 `json:"errors"`
	// Pressure is InUseBytes / BudgetBytes, 0..1 (0 without a budget).
	Pressure float64 `json:"pressure"`
}

// PoolTier is one size class of a PoolStats.
type PoolTier struct {
	Tier       string  `json:"tier"`
	Size       int     `json:"size"`
	Hits       uint64  `json:"hits"`
	Misses     uint64  `json:"misses"`
	HitRate    float64 `json:"hit_rate"`
	InUse      int     `json:"in_use"`
	InUseBytes int64   `json:"in_use_bytes"`
	Idle       int     `json:"idle"`
	IdleBytes  int64   `json:"idle_bytes"`
}
