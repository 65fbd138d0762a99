package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// Code classifies an error, of a record (an Error) or of a request to the
// fleet (client.Error): one set of codes for both. Codes travel in result
// messages as one byte and in replies by name (MarshalText); new codes are
// only ever appended.
type Code uint8

// Error codes. The first ones are errors of records and plugins and match
// the sentinel named beside them; the last four are errors of requests to
// the fleet, which package client matches to its own sentinels.
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
	CodeNoWorkers                 // no healthy worker to run a job (client.ErrNoWorkers)
	CodeJobNotFound               // no such job, or it expired (client.ErrJobNotFound)
	CodeJobClosed                 // the job is sealed, done or cancelled (client.ErrJobClosed)
	CodeBusy                      // the fleet cannot take it now: retry later (client.ErrBusy)
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

var codeNames = [...]string{
	CodeUnknown:   "unknown",
	CodeNoWorkers: "no workers", CodeJobNotFound: "job not found", CodeJobClosed: "job closed", CodeBusy: "busy",
}

// Sentinel returns the sentinel error of c, or nil for CodeUnknown, the
// codes of requests and codes this version does not know.
func (c Code) Sentinel() error {
	if int(c) < len(codeSentinels) {
		return codeSentinels[c]
	}
	return nil
}

// String returns the code's name ("unknown plugin", "busy"...), "code(N)"
// for a code this version does not know.
func (c Code) String() string {
	if s := c.Sentinel(); s != nil {
		return s.Error()[len("plugin: "):]
	}
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// MarshalText implements encoding.TextMarshaler: the name with
// underscores for spaces ("unknown_plugin").
func (c Code) MarshalText() ([]byte, error) {
	return []byte(strings.ReplaceAll(c.String(), " ", "_")), nil
}

// UnmarshalText implements encoding.TextUnmarshaler ("code(N)" included).
// A name this version does not know is CodeUnknown: a newer peer's code
// still reads as an error.
func (c *Code) UnmarshalText(b []byte) error {
	name := strings.ReplaceAll(string(b), "_", " ")
	for i := range 256 {
		if Code(i).String() == name {
			*c = Code(i)
			return nil
		}
	}
	*c = CodeUnknown
	return nil
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
