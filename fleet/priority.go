package fleet

import (
	"fmt"

	"github.com/dataflare/dataflare/plugin"
)

// Priority orders the jobs of one owner: an owner's high-priority batches
// run before its queued normal ones, its low ones after them. Between
// owners, the fleet shares its workers by weight whatever the priorities
// (a priority cannot take another owner's share).
type Priority uint8

// Priorities; the zero value is Normal.
const (
	Normal Priority = iota
	High
	Low
)

// Priorities lists the priorities in the order a worker takes an owner's
// batches: High, Normal, Low.
var Priorities = [...]Priority{High, Normal, Low}

var priorityNames = [...]string{"normal", "high", "low"}

// String returns "high", "normal" or "low".
func (p Priority) String() string {
	if int(p) < len(priorityNames) {
		return priorityNames[p]
	}
	return fmt.Sprintf("priority(%d)", uint8(p))
}

// Valid reports whether p is one of the three priorities.
func (p Priority) Valid() bool { return int(p) < len(priorityNames) }

// ParsePriority returns the priority named s, or an error wrapping
// plugin.ErrInvalidInput.
func ParsePriority(s string) (Priority, error) {
	for i, n := range priorityNames {
		if n == s {
			return Priority(i), nil
		}
	}
	return Normal, fmt.Errorf("%w: unknown priority %q: use high, normal or low", plugin.ErrInvalidInput, s)
}

// MarshalText implements encoding.TextMarshaler.
func (p Priority) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Priority) UnmarshalText(b []byte) error {
	v, err := ParsePriority(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Queue is one queue of batches in a Status: an owner's batches of one
// priority (or every owner's, on a fleet that does not share by owner).
type Queue struct {
	// Owner is the queue's owner, empty for the queue every owner shares.
	Owner    string   `json:"owner,omitempty"`
	Priority Priority `json:"priority"`
	// Weight is the owner's share of the workers, relative to the others'.
	Weight float64 `json:"weight"`
	// Pending batches wait for a worker; InFlight run now.
	Pending  uint64 `json:"pending"`
	InFlight int    `json:"in_flight"`
}
