package manager

import "errors"

// Sentinel errors. Errors about a plugin's work (unknown plugin, panic,
// unavailable) are *plugin.Error values matching the plugin package's
// sentinels, so they keep their meaning across the wire.
var (
	// ErrInvalidConfig is wrapped by every error New returns for a Config
	// it cannot use.
	ErrInvalidConfig = errors.New("manager: invalid config")
	// ErrDuplicate: a plugin of that name is already registered.
	ErrDuplicate = errors.New("manager: duplicate plugin name")
	// ErrClosed: the Manager is closed. Errors wrapping it from
	// ProcessBatch and ProcessRecord also match plugin.ErrUnavailable.
	ErrClosed = errors.New("manager: closed")
)
