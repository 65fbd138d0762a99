package sizer

import (
	"math"
	"time"
)

// The original library's example OptimizeBatchSize: its target latency,
// minimum throughput and the sizes between which it moves.
const (
	seedTarget        = 100 * time.Millisecond
	seedMinThroughput = 1000.0
	seedShrinkAbove   = 10
	seedGrowBelow     = 1000
)

// SeedRule is the original library's OptimizeBatchSize rule, with the same
// signature as plugin.BatchPlugin's hook so a plugin can return it from
// there: shrink by 20% when the latency is above 100 ms (and the size above
// 10), else grow by 20% when the throughput is below 1000 records/s (and the
// size below 1000), else keep the size. Sizes below 1 give 0 (no opinion).
//
// It moves by ±20% per call whatever the distance to a good size, and its
// two conditions do not meet: a plugin slower than 1000 records/s at the
// target latency is shrunk and grown in turn forever. The Controller's
// model-based step is what the fleet uses by default.
func SeedRule(current int, latency time.Duration, throughput float64) int {
	switch {
	case current < 1:
		return 0
	case latency > seedTarget && current > seedShrinkAbove:
		if current > math.MaxInt/80 {
			return current / 100 * 80
		}
		return current * 80 / 100
	case throughput < seedMinThroughput && current < seedGrowBelow:
		return current * 120 / 100
	}
	return current
}
