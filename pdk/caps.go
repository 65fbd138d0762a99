package pdk

import (
	"errors"
	"fmt"
	"slices"

	"github.com/dataflare/dataflare/plugin"
)

// Errors of the capabilities. The errors KVGet and Log return match one of
// them with errors.Is, and are *plugin.Error values whose code says what
// the worker does with a record or batch failing with them: ErrUnavailable
// is plugin.CodeUnavailable (a batch failing with it is retried), the
// others plugin.CodeInvalidInput.
var (
	// ErrKeyNotFound: the key has no value in the bucket.
	ErrKeyNotFound = errors.New("pdk: key not found")
	// ErrNotGranted: the module's policy does not grant the capability or
	// the bucket (dataflare plugin push --grant).
	ErrNotGranted = errors.New("pdk: capability not granted")
	// ErrBadArgument: a key NATS does not allow, or an argument over its
	// bound.
	ErrBadArgument = errors.New("pdk: bad argument")
	// ErrUnavailable: the bucket could not be read now (it does not exist,
	// or NATS did not answer in time); the worker's log says why.
	ErrUnavailable = errors.New("pdk: capability unavailable")
)

// Results of the host functions (docs/abi.md, "Capabilities").
const (
	kvNotFound    = -1
	capDenied     = -2
	capBadArgs    = -3
	kvUnavailable = -4
	logDropped    = 1
)

// KVGet returns the value of key in the NATS KV bucket, read through the
// worker's cache: the module must be pushed with --grant kv:BUCKET, and
// must import kv_get (any call of KVGet or KVGetAppend does). A key
// without a value is an error matching ErrKeyNotFound.
func KVGet(bucket, key string) ([]byte, error) { return KVGetAppend(nil, bucket, key) }

// KVGetAppend is KVGet appending the value to dst: with room in dst, the
// value is written there and nothing is allocated.
func KVGetAppend(dst []byte, bucket, key string) ([]byte, error) {
	for {
		free := dst[len(dst):cap(dst)]
		n := hostKVGet(bucket, key, free)
		switch {
		case n >= 0 && int(n) <= len(free):
			return dst[:len(dst)+int(n)], nil
		case n >= 0:
			// Grown as append grows, so that values appended one after
			// another are copied a constant number of times on average.
			dst = slices.Grow(dst, int(n))
			continue // the value may have changed since: ask again
		}
		return dst, capError(n, fmt.Sprintf("bucket %q, key %q", bucket, key), "kv:"+bucket)
	}
}

// Level is a log line's level.
type Level int32

// Levels of Log.
const (
	LevelDebug Level = iota
	LevelInfo
	LevelWarn
	LevelError
)

// Log writes msg as one line into the worker's log, with the module named:
// the module must be pushed with --grant log. Lines over the module's rate
// on the worker (10 a second by default) are dropped and counted, and Log
// then returns false; the next line written says how many were dropped.
// Lines are cut at 1,024 bytes.
func Log(level Level, msg string) (written bool, err error) {
	switch n := hostLog(level, msg); n {
	case 0:
		return true, nil
	case logDropped:
		return false, nil
	default:
		return false, capError(n, "log", "log")
	}
}

// capError returns the error of a host function's negative result n.
func capError(n int32, what, grant string) error {
	switch n {
	case kvNotFound:
		return &plugin.Error{Code: plugin.CodeInvalidInput, Message: "pdk: " + what + ": not found", Err: ErrKeyNotFound}
	case capDenied:
		return &plugin.Error{Code: plugin.CodeInvalidInput, Message: fmt.Sprintf("pdk: %s: not granted to this module (push it with --grant %s)", what, grant), Err: ErrNotGranted}
	case capBadArgs:
		return &plugin.Error{Code: plugin.CodeInvalidInput, Message: "pdk: " + what + ": refused by the host (a key NATS does not allow: letters, digits and -/_=., no leading, trailing or double dot)", Err: ErrBadArgument}
	default:
		return &plugin.Error{Code: plugin.CodeUnavailable, Message: "pdk: " + what + ": unavailable now (the worker's log says why)", Err: ErrUnavailable}
	}
}
