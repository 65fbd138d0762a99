package plugin

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. An *Error matches the sentinel of its Code with errors.Is,
// on either side of the wire.
var (
	// ErrInvalidInput: the record or request is malformed for this plugin.
	ErrInvalidInput = errors.New("plugin: invalid input")
	// ErrProcessing: the plugin could not process the record.
	ErrProcessing = errors.New("plugin: processing failed")
	// ErrPanic: the plugin panicked; the runtime recovered.
	ErrPanic = errors.New("plugin: panic")
	// ErrTimeout: the plugin ran past its deadline. Also matches
	// context.DeadlineExceeded.
	ErrTimeout = errors.New("plugin: deadline exceeded")
	// ErrTooLarge: a record or result is over a size limit.
	ErrTooLarge = errors.New("plugin: too large")
	// ErrUnknownPlugin: no plugin of that name (or version) is registered.
	ErrUnknownPlugin = errors.New("plugin: unknown plugin")
	// ErrTrap: a WebAssembly plugin trapped (or broke its ABI).
	ErrTrap = errors.New("plugin: wasm trap")
	// ErrPoison: the record failed on every delivery and was set aside in the
	// dead-letter store.
	ErrPoison = errors.New("plugin: poison record")
	// ErrUnavailable: the plugin is not accepting work (failed or stopped).
	ErrUnavailable = errors.New("plugin: unavailable")
)

// Code classifies an Error. Codes travel on the wire as one byte; new codes
// are only ever appended.
type Code uint8

// Error codes.
const (
	CodeUnknown       Code = iota // anything else
	CodeInvalidInput              // ErrInvalidInput
	CodeProcessing                // ErrProcessing
	CodePanic                     // ErrPanic
	CodeTimeout                   // ErrTimeout
	CodeTooLarge                  // ErrTooLarge
	CodeUnknownPlugin             // ErrUnknownPlugin
	CodeTrap                      // ErrTrap
	CodePoison                    // ErrPoison
	CodeUnavailable               // ErrUnavailable
)

var codeSentinels = [...]error{
	CodeInvalidInput:  ErrInvalidInput,
	CodeProcessing:    ErrProcessing,
	CodePanic:         ErrPanic,
	CodeTimeout:       ErrTimeout,
	CodeTooLarge:      ErrTooLarge,
	CodeUnknownPlugin: ErrUnknownPlugin,
	CodeTrap:          ErrTrap,
	CodePoison:        ErrPoison,
	CodeUnavailable:   ErrUnavailable,
}

// Sentinel returns the sentinel error of c, or nil for CodeUnknown and codes
// this version does not know.
func (c Code) Sentinel() error {
	if int(c) < len(codeSentinels) {
		return codeSentinels[c]
	}
	return nil
}

// String returns the code's name: "unknown" for CodeUnknown, "code(N)" for
// a code this version does not know.
func (c Code) String() string {
	if s := c.Sentinel(); s != nil {
		return s.Error()[len("plugin: "):]
	}
	if c == CodeUnknown {
		return "unknown"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Error is a classified plugin error. It is what a per-record error looks like
// after it has crossed the wire: Code and Message survive, Err (the local
// cause) does not.
type Error struct {
	Code    Code
	Message string
	Err     error
}

// Errorf returns an *Error of code c with a formatted message. A %w verb in
// format sets Err to its operand; several %w verbs set it to an error that
// wraps them all.
func Errorf(c Code, format string, args ...any) *Error {
	e := fmt.Errorf(format, args...)
	err := errors.Unwrap(e)
	if m, ok := e.(interface{ Unwrap() []error }); ok && len(m.Unwrap()) > 0 {
		err = e
	}
	return &Error{Code: c, Message: e.Error(), Err: err}
}

// Error returns the message, or the code's name when there is none.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return "plugin: " + e.Code.String()
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's Code. A CodeTimeout error
// also matches context.DeadlineExceeded.
func (e *Error) Is(target error) bool {
	if s := e.Code.Sentinel(); s != nil && target == s {
		return true
	}
	return e.Code == CodeTimeout && target == context.DeadlineExceeded
}

// CodeOf classifies err: the Code of an *Error in its chain, else the code of
// the first sentinel it matches, else CodeUnknown. Deadline errors are
// CodeTimeout.
func CodeOf(err error) Code {
	if err == nil {
		return CodeUnknown
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	for c, s := range codeSentinels {
		if s != nil && errors.Is(err, s) {
			return Code(c)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return CodeTimeout
	}
	return CodeUnknown
}

// RecordError is the error of one record of a batch.
type RecordError struct {
	// Index is the record's position in the batch.
	Index int
	// Err is the record's error.
	Err error
}

// Error returns "record N: message".
func (e RecordError) Error() string { return fmt.Sprintf("record %d: %v", e.Index, e.Err) }

// Unwrap returns the record's error.
func (e RecordError) Unwrap() error { return e.Err }
