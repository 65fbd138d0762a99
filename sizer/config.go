package sizer

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("sizer: invalid config")

// Defaults applied by New to the zero fields of a Config. Target, Initial and
// Max are the original library's defaults.
const (
	DefaultTarget   = 100 * time.Millisecond // the batch latency aimed for
	DefaultInitial  = 100                    // the size before any estimate
	DefaultMin      = 1                      // the smallest size chosen
	DefaultMax      = 1000                   // the largest size chosen
	DefaultMaxBytes = 1<<20 - 64<<10         // NATS's default max_payload less room for the batch header
	DefaultInterval = time.Second            // one heartbeat between adjustments
	DefaultMaxAge   = 5 * time.Second        // how long a reported estimate counts
	DefaultDeadband = 0.1                    // moves smaller than 10% are not made
	DefaultMaxStep  = 2.0                    // at most ×2 or ÷2 per adjustment
)

// PressureKnee is the memory pressure above which the batch size shrinks:
// from the unshrunk size at PressureKnee linearly down to Config.Min at
// pressure 1.
const PressureKnee = 0.8

// Config configures a Controller. The zero value of every field means its
// default; New copies the Config, so changing it afterwards has no effect.
type Config struct {
	// Target is the batch latency to aim for. Default DefaultTarget (100 ms).
	Target time.Duration
	// Initial is the size returned until the first estimate arrives.
	// Default DefaultInitial (100), moved into [Min, Max] when outside.
	Initial int
	// Min is the smallest size the controller chooses (a single record over
	// the byte limit can still force a smaller one). Default 1.
	Min int
	// Max is the largest size the controller chooses. Default DefaultMax
	// (1000); a fleet usually raises it (the batch codec allows 100,000).
	Max int
	// MaxBytes is the most record bytes one batch may carry: the message
	// size limit less the batch header. Default DefaultMaxBytes.
	MaxBytes int
	// Interval is the shortest time between two adjustments, measured on
	// Clock. Default DefaultInterval (1 s, one heartbeat).
	Interval time.Duration
	// MaxAge is how long a reported Estimate counts: its weight fades
	// linearly to zero over MaxAge, then it is forgotten. Default
	// DefaultMaxAge (5 s).
	MaxAge time.Duration
	// Deadband is the hysteresis: the size moves only when the model's
	// size differs from the current one by more than this fraction.
	// Between 0 and 1; default DefaultDeadband (0.1).
	Deadband float64
	// MaxStep bounds one adjustment: the size grows at most ×MaxStep and
	// shrinks at most ÷MaxStep. Above 1; default DefaultMaxStep (2).
	MaxStep float64
	// Clock tells the time. Default time.Now.
	Clock func() time.Time
}

// DefaultConfig returns the Config with every default filled in.
func DefaultConfig() Config {
	c, _ := Config{}.withDefaults()
	return c
}

// withDefaults returns c with its zero fields set to their defaults, and an
// error wrapping ErrInvalidConfig when a field is out of range.
func (c Config) withDefaults() (Config, error) {
	if c.Target == 0 {
		c.Target = DefaultTarget
	}
	if c.Min == 0 {
		c.Min = DefaultMin
	}
	if c.Max == 0 {
		c.Max = max(DefaultMax, c.Min)
	}
	if c.Initial == 0 {
		c.Initial = min(max(DefaultInitial, c.Min), c.Max)
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Deadband == 0 {
		c.Deadband = DefaultDeadband
	}
	if c.MaxStep == 0 {
		c.MaxStep = DefaultMaxStep
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	switch {
	case c.Target < 0:
		return c, fmt.Errorf("%w: Target %v is negative", ErrInvalidConfig, c.Target)
	case c.Min < 1:
		return c, fmt.Errorf("%w: Min %d is below 1", ErrInvalidConfig, c.Min)
	case c.Max < c.Min:
		return c, fmt.Errorf("%w: Max %d is below Min %d", ErrInvalidConfig, c.Max, c.Min)
	case c.Initial < c.Min || c.Initial > c.Max:
		return c, fmt.Errorf("%w: Initial %d is outside [Min %d, Max %d]", ErrInvalidConfig, c.Initial, c.Min, c.Max)
	case c.MaxBytes < 0:
		return c, fmt.Errorf("%w: MaxBytes %d is negative", ErrInvalidConfig, c.MaxBytes)
	case c.Interval < 0:
		return c, fmt.Errorf("%w: Interval %v is negative", ErrInvalidConfig, c.Interval)
	case c.MaxAge < 0:
		return c, fmt.Errorf("%w: MaxAge %v is negative", ErrInvalidConfig, c.MaxAge)
	case !(c.Deadband > 0 && c.Deadband < 1): // also refuses NaN
		return c, fmt.Errorf("%w: Deadband %v is outside (0, 1)", ErrInvalidConfig, c.Deadband)
	case !(c.MaxStep > 1) || math.IsInf(c.MaxStep, 1):
		return c, fmt.Errorf("%w: MaxStep %v is not a finite number above 1", ErrInvalidConfig, c.MaxStep)
	}
	return c, nil
}
