package pool

import (
	"fmt"
	"time"
)

// Config configures a Pool. Start from DefaultConfig and change what you
// need; New validates it. A Config is a value: New keeps a copy.
type Config struct {
	// MaxBuffers is, per tier, the most buffers the tier owns, idle or held.
	// When a tier owns that many and none is idle, Get hands out a plain
	// allocation instead (counted as a miss and as unpooled), which Put lets
	// go to the garbage collector. So the idle buffers of a tier never
	// exceed MaxBuffers. 0 turns pooling off for the tier.
	// Default: 1000, 500, 100, 50, 10 (256 B … 4 MiB; at most ~99 MiB owned).
	MaxBuffers [NumTiers]int

	// Warm is, per tier, how many buffers Warmup pre-allocates, capped by
	// MaxBuffers. Default: a tenth of MaxBuffers (100, 50, 10, 5, 1: ~10 MiB).
	Warm [NumTiers]int

	// CleanupInterval is how often the cleanup goroutine runs a pass.
	// Default 1 minute; must be > 0.
	CleanupInterval time.Duration

	// MaxIdle is how long a buffer may sit idle before a cleanup pass
	// releases it. Idle time is measured by the passes themselves (a pass
	// notes each buffer's state and the time; a buffer found unchanged is
	// as old as that note), so a buffer is released between MaxIdle and
	// MaxIdle + 2·CleanupInterval after it was put back, never sooner.
	// Default 5 minutes; must be > 0.
	MaxIdle time.Duration

	// MaxHold is how long a buffer may be held, unpinned, without being put
	// back before a cleanup pass declares it abandoned: the pool stops
	// owning it (it no longer counts against MaxBuffers or in the in-use
	// bytes), the holder keeps a valid buffer, and a late Put is accepted
	// and drops it. Pinned buffers are exempt. Measured like MaxIdle.
	// 0 never abandons. Default 10 minutes.
	MaxHold time.Duration

	// Metrics turns on the per-Get count of bytes asked, which gives
	// Stats its AskedBytes, HandedBytes and Efficiency (0 when off). It
	// costs one atomic add per Get. Hits, misses, in-use and idle bytes,
	// errors and pressure are always kept. Default true.
	Metrics bool

	// Budget is the memory budget in bytes. The pool never owns more than
	// Budget bytes of buffers (beyond it Get hands out plain allocations),
	// and Pressure reports the bytes in use, pooled or not, over Budget.
	// 0 means no budget (Pressure reads 0). Default 0.
	Budget int64

	// Clock tells the cleanup passes the time; tests inject a fake one.
	// nil means time.Now. It is never called on the Get/Put path.
	Clock func() time.Time
}

// DefaultConfig returns the documented defaults, the seed's: per-tier
// MaxBuffers 1000, 500, 100, 50, 10; Warm a tenth of those; cleanup every
// minute; MaxIdle 5 minutes; MaxHold 10 minutes; metrics on; no budget.
func DefaultConfig() Config {
	return Config{
		MaxBuffers:      [NumTiers]int{1000, 500, 100, 50, 10},
		Warm:            [NumTiers]int{100, 50, 10, 5, 1},
		CleanupInterval: time.Minute,
		MaxIdle:         5 * time.Minute,
		MaxHold:         10 * time.Minute,
		Metrics:         true,
	}
}

// validate returns an error wrapping ErrInvalidConfig for the first field
// that is out of range.
func (c Config) validate() error {
	for t := Tier(0); t < NumTiers; t++ {
		if c.MaxBuffers[t] < 0 {
			return fmt.Errorf("%w: MaxBuffers[%v] = %d, must be >= 0", ErrInvalidConfig, t, c.MaxBuffers[t])
		}
		if c.Warm[t] < 0 {
			return fmt.Errorf("%w: Warm[%v] = %d, must be >= 0", ErrInvalidConfig, t, c.Warm[t])
		}
	}
	switch {
	case c.CleanupInterval <= 0:
		return fmt.Errorf("%w: CleanupInterval = %v, must be > 0", ErrInvalidConfig, c.CleanupInterval)
	case c.MaxIdle <= 0:
		return fmt.Errorf("%w: MaxIdle = %v, must be > 0", ErrInvalidConfig, c.MaxIdle)
	case c.MaxHold < 0:
		return fmt.Errorf("%w: MaxHold = %v, must be >= 0", ErrInvalidConfig, c.MaxHold)
	case c.Budget < 0:
		return fmt.Errorf("%w: Budget = %d, must be >= 0", ErrInvalidConfig, c.Budget)
	}
	return nil
}
