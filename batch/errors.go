package batch

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/dataflare/dataflare/plugin"
)

// Sentinel errors. Every error this package returns for a message or a value
// is an *Error wrapping one of them.
var (
	// ErrMalformed: the message is not valid wire format (bad magic,
	// truncated, trailing bytes, unknown flags or status, keys out of
	// order), or a value cannot be encoded (a timestamp outside the range
	// of int64 nanoseconds, a negative duration).
	ErrMalformed = errors.New("batch: malformed message")
	// ErrLimit: a count or a size is over a Limits field. It also matches
	// plugin.ErrTooLarge with errors.Is, so plugin.CodeOf classifies it as
	// plugin.CodeTooLarge.
	ErrLimit error = &aliasError{msg: "batch: limit exceeded", alias: plugin.ErrTooLarge}
	// ErrVersion: the message has the right magic but a version byte this
	// package does not know.
	ErrVersion = errors.New("batch: unknown version")
)

// aliasError is a sentinel that also matches another sentinel.
type aliasError struct {
	msg   string
	alias error
}

func (e *aliasError) Error() string        { return e.msg }
func (e *aliasError) Is(target error) bool { return target == e.alias }

// Error is what is wrong with a message being decoded or a value being
// encoded: which sentinel (Err), where (Index, Field) and the details.
// Match it with errors.Is against ErrMalformed, ErrLimit or ErrVersion, or
// take it apart with errors.As.
type Error struct {
	// Err is ErrMalformed, ErrLimit or ErrVersion.
	Err error
	// Index is the position of the record (in a batch) or of the result
	// entry (in a result message or section) the problem is in, or -1
	// when it is in the message header.
	Index int
	// Field names the field, as in docs/wire-format.md: "record_count",
	// "job", "config key", "key", "value", "header 2 value", "status"…
	Field string
	// Detail says what is wrong with the field.
	Detail string
}

// Error returns "batch: <sentinel>: record <Index>: <Field>: <Detail>",
// leaving out the parts that are empty.
func (e *Error) Error() string {
	s := e.Err.Error()
	if e.Index >= 0 {
		s += ": record " + strconv.Itoa(e.Index)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// noIndex is the Index of an error in a message header.
const noIndex = -1

func malformed(index int, field, format string, args ...any) error {
	return &Error{Err: ErrMalformed, Index: index, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// overLimit reports that field (a count or a size in bytes) is n, over max.
func overLimit(index int, field string, n uint64, max int) error {
	return &Error{Err: ErrLimit, Index: index, Field: field, Detail: fmt.Sprintf("%d > limit %d", n, max)}
}

// truncated reports that field needs need bytes where only left remain.
func truncated(index int, field string, need uint64, left int) error {
	return malformed(index, field, "needs %d bytes, %d left", need, left)
}
