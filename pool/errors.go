package pool

import "errors"

var (
	// ErrInvalidConfig is wrapped by every error New returns for a Config
	// that fails validation.
	ErrInvalidConfig = errors.New("pool: invalid config")

	// ErrDoublePut is returned by Put for a Buffer that is not held: it was
	// already put back (and not handed out again since), or released.
	ErrDoublePut = errors.New("pool: buffer put twice")

	// ErrForeign is returned by Put, Pin and Unpin for a nil Buffer or one
	// that another Pool handed out.
	ErrForeign = errors.New("pool: buffer not from this pool")

	// ErrPinned is returned by Put for a pinned Buffer; the caller still
	// holds it and must Unpin it before putting it back.
	ErrPinned = errors.New("pool: buffer is pinned")

	// ErrNotHeld is returned by Pin and Unpin for a Buffer that is not held
	// (it was put back or released).
	ErrNotHeld = errors.New("pool: buffer not held")

	// ErrNotPinned is returned by Unpin for a Buffer that is not pinned.
	ErrNotPinned = errors.New("pool: buffer not pinned")

	// ErrPinLimit is returned by Pin when a Buffer is already pinned
	// MaxPins times.
	ErrPinLimit = errors.New("pool: too many pins")

	// ErrClosed is returned by Warmup on a closed Pool.
	ErrClosed = errors.New("pool: closed")

	// ErrLength is returned by Buffer.SetLen for a length outside
	// [0, Cap()].
	ErrLength = errors.New("pool: length out of range")
)
