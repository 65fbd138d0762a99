package fleet

import (
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/plugin"
)

// Health is a verdict on a plugin or a worker. Plugins are Healthy,
// Degraded or Failed (package manager says when); workers, as a
// coordinator sees them from their heartbeats, are Healthy, Draining,
// Suspect or Dead. The values are ordered from best to worst, so that the
// verdict on several things is the Worst of theirs.
type Health uint8

// Health values, from best to worst.
const (
	// Healthy: working normally.
	Healthy Health = iota
	// Degraded: a plugin that works but fails or panics too often.
	Degraded
	// Draining: a worker that stopped taking work to shut down.
	Draining
	// Suspect: a worker whose last heartbeat is more than SuspectAfter
	// intervals old.
	Suspect
	// Failed: a plugin that is not usable (it reports itself failed or
	// stopped, or its own health check fails).
	Failed
	// Dead: a worker whose last heartbeat is more than DeadAfter intervals
	// old.
	Dead
)

// ErrUnhealthy: a health check (a Manager's, or a fleet's through the
// client) found a plugin degraded or failed.
var ErrUnhealthy = errors.New("fleet: unhealthy")

// SuspectAfter and DeadAfter are the heartbeat ages, in heartbeat
// intervals, after which a worker is Suspect and Dead.
const (
	SuspectAfter = 3
	DeadAfter    = 10
)

var healthNames = [...]string{"healthy", "degraded", "draining", "suspect", "failed", "dead"}

// String returns the lower-case name.
func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return fmt.Sprintf("health(%d)", uint8(h))
}

// Worst returns the worse of h and o.
func (h Health) Worst(o Health) Health { return max(h, o) }

// MarshalText implements encoding.TextMarshaler.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; an unknown name is an
// error wrapping plugin.ErrInvalidInput.
func (h *Health) UnmarshalText(b []byte) error {
	for i, n := range healthNames {
		if n == string(b) {
			*h = Health(i)
			return nil
		}
	}
	return fmt.Errorf("%w: unknown health %q", plugin.ErrInvalidInput, b)
}
