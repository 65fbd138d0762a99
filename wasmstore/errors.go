package wasmstore

import (
	"errors"

	"github.com/dataflare/dataflare/plugin"
)

// Sentinel errors.
var (
	// ErrInvalidOption: an Option has a value out of range.
	ErrInvalidOption = errors.New("wasmstore: invalid option")
	// ErrInvalidName: a plugin name or version is not acceptable (see
	// ValidName and ValidVersion).
	ErrInvalidName = errors.New("wasmstore: invalid name or version")
	// ErrInvalidModule: Push refused the module: it is not WebAssembly, or
	// the Validator refused it (the error also wraps the Validator's).
	ErrInvalidModule = errors.New("wasmstore: invalid module")
	// ErrTooLarge: the module is over the store's size limit. It also
	// matches plugin.ErrTooLarge.
	ErrTooLarge error = &aliasError{"wasmstore: module too large", plugin.ErrTooLarge}
	// ErrVersionExists: that name and version already hold a different
	// module. Versions are immutable; push a new one.
	ErrVersionExists = errors.New("wasmstore: version exists with a different module")
	// ErrNotFound: no module of that name, version or digest. It also
	// matches plugin.ErrUnknownPlugin.
	ErrNotFound error = &aliasError{"wasmstore: module not found", plugin.ErrUnknownPlugin}
	// ErrDigestMismatch: the stored bytes do not hash to the digest asked
	// for or recorded (a tampered or corrupt object). Nothing was returned
	// to compile. It also matches plugin.ErrUnknownPlugin: the pinned
	// module is not available as pinned, and retrying will not change that.
	ErrDigestMismatch error = &aliasError{"wasmstore: digest mismatch", plugin.ErrUnknownPlugin}
	// ErrBadManifest: a manifest (or an object's metadata) is not valid.
	ErrBadManifest = errors.New("wasmstore: bad manifest")
	// ErrBadPolicy: a module policy (or a size or grant in one) is not
	// acceptable; see Policy.Validate.
	ErrBadPolicy = errors.New("wasmstore: bad policy")
	// ErrBadKey: a signing key or a trusted public key is not an nkeys
	// account key.
	ErrBadKey = errors.New("wasmstore: bad signing key")
	// ErrUntrusted: a store with trusted keys (WithTrustedKeys) refused a
	// module that is not signed by one of them, or whose signature does not
	// cover its name, version, digest and policy as stored. Nothing was
	// fetched to compile. It also matches plugin.ErrUnknownPlugin: the
	// module cannot be run here, and retrying will not change that.
	ErrUntrusted error = &aliasError{"wasmstore: untrusted module", plugin.ErrUnknownPlugin}
)

// aliasError is a sentinel that also matches another sentinel.
type aliasError struct {
	msg   string
	alias error
}

func (e *aliasError) Error() string        { return e.msg }
func (e *aliasError) Is(target error) bool { return target == e.alias }
