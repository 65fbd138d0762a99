package fleet

import "time"

// BreakerState is the state of a plugin's circuit breaker on a worker.
type BreakerState string

// Breaker states, from best to worst.
const (
	// BreakerClosed: the plugin runs its batches.
	BreakerClosed BreakerState = "closed"
	// BreakerHalfOpen: the breaker's backoff has passed; the plugin was
	// re-initialised and its next batch runs as a probe, whose success
	// closes the breaker and whose failure opens it again for longer.
	BreakerHalfOpen BreakerState = "half-open"
	// BreakerOpen: the plugin failed too many batches in a row; the worker
	// releases its batches unrun, for other workers or for later.
	BreakerOpen BreakerState = "open"
)

// Valid reports whether s is one of the three states.
func (s BreakerState) Valid() bool {
	return s == BreakerClosed || s == BreakerHalfOpen || s == BreakerOpen
}

// rank orders the states from best to worst.
func (s BreakerState) rank() int {
	switch s {
	case BreakerHalfOpen:
		return 1
	case BreakerOpen:
		return 2
	}
	return 0
}

// Breaker is a plugin's circuit breaker on a worker (package worker;
// docs/operations.md, "Circuit breakers"), or several merged: a
// WebAssembly plugin's modules on one worker, a plugin on every worker.
type Breaker struct {
	// State is the breaker's state, Since when it entered it.
	State BreakerState `json:"state"`
	Since time.Time    `json:"since"`
	// Until is when an open breaker lets a probe through.
	Until time.Time `json:"until,omitzero"`
	// Failures counts the batches the plugin failed in a row, for
	// reasons of its own, up to the one that opened the breaker.
	Failures int `json:"failures,omitempty"`
	// Opens counts the times the breaker opened from closed (a failed
	// probe opening it again is not counted).
	Opens uint64 `json:"opens"`
	// LastRecovery is how long the plugin was last out of service, from
	// the breaker opening to its closing; RecoveredAt is when it closed.
	LastRecovery time.Duration `json:"last_recovery_ns,omitempty"`
	RecoveredAt  time.Time     `json:"recovered_at,omitzero"`
}

// Merge folds o into b: the worse state (open, half-open, closed) with its
// times — of two equal states, the earlier Since and the later Until —
// the opens summed, the most failures, and the latest recovery.
func (b *Breaker) Merge(o *Breaker) {
	switch {
	case o.State.rank() > b.State.rank() || b.State == "":
		b.State, b.Since, b.Until = o.State, o.Since, o.Until
	case o.State == b.State:
		if o.Since.Before(b.Since) {
			b.Since = o.Since
		}
		if o.Until.After(b.Until) {
			b.Until = o.Until
		}
	}
	b.Failures = max(b.Failures, o.Failures)
	b.Opens += o.Opens
	if o.RecoveredAt.After(b.RecoveredAt) {
		b.LastRecovery, b.RecoveredAt = o.LastRecovery, o.RecoveredAt
	}
}

// PluginBreaker is a plugin's circuit breaker on one worker, in a Worker.
type PluginBreaker struct {
	Plugin string `json:"plugin"`
	Breaker
}
