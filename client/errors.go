package client

import (
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/nats-io/nats.go"
)

// Sentinel errors. Errors from the fleet are *Error values that match these
// with errors.Is.
var (
	// ErrInvalidOption: an option's value cannot work.
	ErrInvalidOption = errors.New("client: invalid option")
	// ErrUnknownPlugin: no worker has a native plugin of that name and no
	// module of that name was pushed. It also matches
	// plugin.ErrUnknownPlugin.
	ErrUnknownPlugin = errors.New("client: unknown plugin")
	// ErrNoWorkers: no healthy worker to run the job.
	ErrNoWorkers = errors.New("client: no workers")
	// ErrNoCoordinator: no coordinator answered in time.
	ErrNoCoordinator = errors.New("client: no coordinator answered")
	// ErrTooLarge: a record or batch is over a size limit. It also matches
	// plugin.ErrTooLarge.
	ErrTooLarge = errors.New("client: too large")
	// ErrJobNotFound: no such job, or it expired.
	ErrJobNotFound = errors.New("client: job not found")
	// ErrJobClosed: the job is sealed, done or cancelled and cannot take
	// what was asked.
	ErrJobClosed = errors.New("client: job closed")
	// ErrBusy: the fleet's queue stayed full for longer than the retry
	// budget.
	ErrBusy = errors.New("client: fleet busy")
	// ErrInput: the Source returned an error; the records before it were
	// processed.
	ErrInput = errors.New("client: input error")
	// ErrInvalid: the fleet refused a malformed request.
	ErrInvalid = errors.New("client: invalid request")
	// ErrDuplicate: JetStream took a batch's first publication for a
	// duplicate of another message: the batch would never have run, so
	// the job fails instead.
	ErrDuplicate = errors.New("client: batch taken for a duplicate")
)

// Error is an error reported by the fleet.
type Error struct {
	// Code classifies the error, and Is matches it: plugin.CodeInvalidInput
	// (ErrInvalid: a malformed request), plugin.CodeUnknownPlugin
	// (ErrUnknownPlugin), plugin.CodeTooLarge (ErrTooLarge),
	// plugin.CodeNoWorkers (ErrNoWorkers), plugin.CodeJobNotFound
	// (ErrJobNotFound), plugin.CodeJobClosed (ErrJobClosed),
	// plugin.CodeBusy (ErrBusy), or plugin.CodeUnknown for anything else
	// (an internal failure of the fleet, retried like ErrBusy).
	Code plugin.Code
	// Message is the fleet's message.
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is matches the sentinel of e's code.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case plugin.CodeUnknownPlugin:
		return target == ErrUnknownPlugin || target == plugin.ErrUnknownPlugin
	case plugin.CodeNoWorkers:
		return target == ErrNoWorkers
	case plugin.CodeTooLarge:
		return target == ErrTooLarge || target == plugin.ErrTooLarge
	case plugin.CodeJobNotFound:
		return target == ErrJobNotFound
	case plugin.CodeJobClosed:
		return target == ErrJobClosed
	case plugin.CodeBusy:
		return target == ErrBusy
	case plugin.CodeInvalidInput:
		return target == ErrInvalid
	}
	return false
}

// fromProto turns a reply's error into an *Error; other errors pass.
func fromProto(err error) error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return &Error{Code: pe.Code, Message: pe.Message}
	}
	return err
}

// retryable reports whether a failed request may succeed if sent again.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Code == plugin.CodeBusy || e.Code == plugin.CodeUnknown
	}
	// No coordinator answering in time (one died with the request) is
	// worth another try; none listening at all is not a blip.
	return errors.Is(err, ErrNoCoordinator) && !errors.Is(err, nats.ErrNoResponders)
}

func invalidOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
}
