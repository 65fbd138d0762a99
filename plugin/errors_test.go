package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/dataflare/dataflare/plugin"
)

// codes lists every known Code with its sentinel and name.
var codes = []struct {
	code     plugin.Code
	sentinel error
	name     string
}{
	{plugin.CodeInvalidInput, plugin.ErrInvalidInput, "invalid input"},
	{plugin.CodeProcessing, plugin.ErrProcessing, "processing failed"},
	{plugin.CodePanic, plugin.ErrPanic, "panic"},
	{plugin.CodeTimeout, plugin.ErrTimeout, "deadline exceeded"},
	{plugin.CodeTooLarge, plugin.ErrTooLarge, "too large"},
	{plugin.CodeUnknownPlugin, plugin.ErrUnknownPlugin, "unknown plugin"},
	{plugin.CodeTrap, plugin.ErrTrap, "wasm trap"},
	{plugin.CodePoison, plugin.ErrPoison, "poison record"},
	{plugin.CodeUnavailable, plugin.ErrUnavailable, "unavailable"},
}

func TestErrorIs(t *testing.T) {
	for _, c := range codes {
		t.Run(c.name, func(t *testing.T) {
			err := &plugin.Error{Code: c.code, Message: "remote: " + c.name}
			for _, other := range codes {
				got := errors.Is(err, other.sentinel)
				if want := other.code == c.code; got != want {
					t.Errorf("errors.Is(%v error, %v) = %v, want %v", c.code, other.sentinel, got, want)
				}
			}
			// Wrapped, as it is on its way up.
			if !errors.Is(fmt.Errorf("worker: %w", err), c.sentinel) {
				t.Errorf("a wrapped %v error does not match %v", c.code, c.sentinel)
			}
			got := errors.Is(err, context.DeadlineExceeded)
			if want := c.code == plugin.CodeTimeout; got != want {
				t.Errorf("errors.Is(%v error, context.DeadlineExceeded) = %v, want %v", c.code, got, want)
			}
			if errors.Is(err, context.Canceled) {
				t.Errorf("errors.Is(%v error, context.Canceled) = true, want false", c.code)
			}
			if got := c.code.Sentinel(); got != c.sentinel {
				t.Errorf("%v.Sentinel() = %v, want %v", c.code, got, c.sentinel)
			}
		})
	}
}

func TestErrorUnknownCodes(t *testing.T) {
	for _, c := range []plugin.Code{plugin.CodeUnknown, 10, 200, 255} {
		t.Run(c.String(), func(t *testing.T) {
			if s := c.Sentinel(); s != nil {
				t.Errorf("Sentinel() = %v, want nil", s)
			}
			err := &plugin.Error{Code: c}
			for _, k := range codes {
				if errors.Is(err, k.sentinel) {
					t.Errorf("an error of %v matches %v", c, k.sentinel)
				}
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("an error of %v matches context.DeadlineExceeded", c)
			}
			if got := plugin.CodeOf(err); got != c {
				t.Errorf("CodeOf = %v, want %v (a code from a newer peer survives)", got, c)
			}
		})
	}
}

func TestCodeString(t *testing.T) {
	tests := []struct {
		code plugin.Code
		want string
	}{
		{plugin.CodeUnknown, "unknown"},
		{plugin.CodeNoWorkers, "no workers"},
		{plugin.CodeJobNotFound, "job not found"},
		{plugin.CodeJobClosed, "job closed"},
		{plugin.CodeBusy, "busy"},
		{plugin.Code(14), "code(14)"},
		{plugin.Code(255), "code(255)"},
	}
	for _, c := range codes {
		tests = append(tests, struct {
			code plugin.Code
			want string
		}{c.code, c.name})
	}
	for _, tt := range tests {
		if got := tt.code.String(); got != tt.want {
			t.Errorf("Code(%d).String() = %q, want %q", uint8(tt.code), got, tt.want)
		}
		// By name in replies: every code reads back as itself.
		text, _ := tt.code.MarshalText()
		var back plugin.Code
		if err := back.UnmarshalText(text); err != nil {
			t.Fatal(err)
		}
		if back != tt.code {
			t.Errorf("Code(%d) as %q reads back as %v", uint8(tt.code), text, back)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *plugin.Error
		want string
	}{
		{&plugin.Error{Code: plugin.CodeTrap, Message: "wasm: unreachable"}, "wasm: unreachable"},
		{&plugin.Error{Code: plugin.CodeTrap}, "plugin: wasm trap"},
		{&plugin.Error{Code: plugin.CodeTooLarge}, "plugin: too large"},
		{&plugin.Error{}, "plugin: unknown"},
		{&plugin.Error{Code: 42}, "plugin: code(42)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want plugin.Code
	}{
		{"nil", nil, plugin.CodeUnknown},
		{"plain", errors.New("disk on fire"), plugin.CodeUnknown},
		{"io.EOF", io.EOF, plugin.CodeUnknown},
		{"canceled", context.Canceled, plugin.CodeUnknown},
		{"deadline", context.DeadlineExceeded, plugin.CodeTimeout},
		{"wrapped deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), plugin.CodeTimeout},
		{"sentinel", plugin.ErrTooLarge, plugin.CodeTooLarge},
		{"wrapped sentinel", fmt.Errorf("%w: 5 MiB > 1 MiB", plugin.ErrTooLarge), plugin.CodeTooLarge},
		{"Error", &plugin.Error{Code: plugin.CodeTrap}, plugin.CodeTrap},
		{"wrapped Error", fmt.Errorf("worker: %w", &plugin.Error{Code: plugin.CodePoison}), plugin.CodePoison},
		{"RecordError", plugin.RecordError{Index: 3, Err: plugin.ErrInvalidInput}, plugin.CodeInvalidInput},
		{"joined", errors.Join(errors.New("x"), plugin.ErrUnknownPlugin), plugin.CodeUnknownPlugin},
		{"Error wins over its cause", &plugin.Error{Code: plugin.CodeProcessing, Err: io.EOF}, plugin.CodeProcessing},
		{"ContextError canceled", plugin.ContextError(context.Canceled), plugin.CodeUnavailable},
		{"ContextError deadline", plugin.ContextError(context.DeadlineExceeded), plugin.CodeTimeout},
	}
	for _, c := range codes {
		tests = append(tests, struct {
			name string
			err  error
			want plugin.Code
		}{"sentinel " + c.name, c.sentinel, c.code})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plugin.CodeOf(tt.err); got != tt.want {
				t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	cause := errors.New("short read")
	other := errors.New("bad checksum")
	tests := []struct {
		name    string
		err     *plugin.Error
		code    plugin.Code
		message string
		causes  []error // errors.Is must match each
		noErr   bool    // Err must be nil
	}{
		{
			name: "no cause", err: plugin.Errorf(plugin.CodeInvalidInput, "field %q missing", "id"),
			code: plugin.CodeInvalidInput, message: `field "id" missing`, noErr: true,
		},
		{
			name: "%w", err: plugin.Errorf(plugin.CodeProcessing, "decode: %w", cause),
			code: plugin.CodeProcessing, message: "decode: short read", causes: []error{cause, plugin.ErrProcessing},
		},
		{
			name: "%v is not a cause", err: plugin.Errorf(plugin.CodeProcessing, "decode: %v", cause),
			code: plugin.CodeProcessing, message: "decode: short read", noErr: true,
		},
		{
			name: "two %w", err: plugin.Errorf(plugin.CodeTrap, "%w, then %w", cause, other),
			code: plugin.CodeTrap, message: "short read, then bad checksum", causes: []error{cause, other, plugin.ErrTrap},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Code != tt.code {
				t.Errorf("Code = %v, want %v", tt.err.Code, tt.code)
			}
			if tt.err.Message != tt.message {
				t.Errorf("Message = %q, want %q", tt.err.Message, tt.message)
			}
			if tt.noErr && tt.err.Err != nil {
				t.Errorf("Err = %v, want nil", tt.err.Err)
			}
			if !tt.noErr && tt.err.Err == nil {
				t.Error("Err = nil, want the cause")
			}
			for _, c := range tt.causes {
				if !errors.Is(tt.err, c) {
					t.Errorf("errors.Is(%v, %v) = false, want true", tt.err, c)
				}
			}
		})
	}
	if got := plugin.Errorf(plugin.CodeTimeout, "slow: %w", cause); !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("a CodeTimeout Errorf does not match context.DeadlineExceeded")
	}
}

func TestRecordError(t *testing.T) {
	inner := &plugin.Error{Code: plugin.CodeTrap, Message: "wasm: out of bounds"}
	err := error(plugin.RecordError{Index: 12, Err: inner})
	if got, want := err.Error(), "record 12: wasm: out of bounds"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, plugin.ErrTrap) {
		t.Error("RecordError does not match its error's sentinel")
	}
	var pe *plugin.Error
	if !errors.As(err, &pe) || pe != inner {
		t.Errorf("errors.As(*plugin.Error) = %v, want %v", pe, inner)
	}
}
