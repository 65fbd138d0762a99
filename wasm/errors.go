package wasm

import (
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/plugin"
)

// Sentinel errors of loading a module and of configuring a Runtime. Errors of
// a batch are *plugin.Error values instead (see Plugin.ProcessEncoded).
var (
	// ErrInvalidOption: an Option or a Registry option has a value out of
	// range.
	ErrInvalidOption = errors.New("wasm: invalid option")
	// ErrInvalidModule: the bytes are not a valid WebAssembly module, or it
	// does not fit the runtime's limits (see ErrLimit).
	ErrInvalidModule = errors.New("wasm: invalid module")
	// ErrLimit: the module is over one of the sandbox's limits on what it
	// may make the host allocate (docs/security.md): its size, a memory
	// above the page limit, tables above the table bound, too many locals
	// in a function, too many functions, globals, segments or names. It
	// also matches ErrInvalidModule.
	ErrLimit error = &aliasError{"wasm: module over a sandbox limit", ErrInvalidModule}
	// ErrForbiddenImport: the module imports a function the sandbox does not
	// provide (a filesystem or network call, or an unknown host module).
	ErrForbiddenImport = errors.New("wasm: forbidden import")
	// ErrABI: the module does not implement the plugin ABI of docs/abi.md (a
	// missing or mistyped export, another ABI version, unreadable info).
	ErrABI = errors.New("wasm: module does not implement the plugin ABI")
	// ErrInstantiate: the module compiled but could not be instantiated: its
	// start function or _initialize trapped or ran past the deadline, or a
	// data segment does not fit its memory.
	ErrInstantiate = errors.New("wasm: instantiation failed")
	// ErrDigestMismatch: module bytes do not hash to the digest they were
	// asked for under.
	ErrDigestMismatch = errors.New("wasm: digest mismatch")
	// ErrUnsafeCacheDir: the compiled-module cache directory (WithCacheDir)
	// is not private to this process's user: it belongs to another user, or
	// group or others may write to it. The cache holds machine code the
	// runtime executes.
	ErrUnsafeCacheDir = errors.New("wasm: cache directory is not private")
	// ErrClosed: the Runtime, Plugin or Registry is closed.
	ErrClosed = errors.New("wasm: closed")
)

// errPolicyTimeout is the cause of a batch context ended by the module
// policy's timeout.
var errPolicyTimeout = errors.New("wasm: the module policy's timeout")

// aliasError is a sentinel that also matches another sentinel.
type aliasError struct {
	msg   string
	alias error
}

func (e *aliasError) Error() string        { return e.msg }
func (e *aliasError) Is(target error) bool { return target == e.alias }

// unavailable is the batch error of a closed plugin: it matches both
// plugin.ErrUnavailable and ErrClosed.
func unavailable(what string) error {
	return &plugin.Error{Code: plugin.CodeUnavailable, Message: "wasm: " + what + " is closed", Err: ErrClosed}
}

func invalidOption(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}
