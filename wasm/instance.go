package wasm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

// instance is one instantiation of a module. It runs one call at a time.
type instance struct {
	mod     api.Module
	mem     api.Memory
	alloc   api.Function
	process api.Function
	// inPtr and inCap are the input region df_alloc gave the host.
	inPtr, inCap uint32
	stack        [2]uint64
	output       *tail
	// refused is the largest memory size, in bytes, the module policy's
	// cap refused a memory.grow of (0: none; see withCappedMemory).
	refused *atomic.Uint64
}

// allocRound is the granularity of input regions asked of df_alloc, so that
// batches of slowly growing size do not call it every time.
const allocRound = 64 << 10

// abiError is a guest output that breaks the ABI.
type abiError struct{ msg string }

func (e *abiError) Error() string { return e.msg }

func abiErrorf(format string, args ...any) error { return &abiError{fmt.Sprintf(format, args...)} }

// guestError is a batch-level error the guest returned (bit 63).
type guestError struct {
	code plugin.Code
	msg  string
	// memory: the guest found no memory for the batch (df_alloc returned
	// 0).
	memory bool
}

func (e *guestError) Error() string { return e.msg }

// hostError is a batch error found on the host side before the guest ran
// (an input over a limit); the instance is unaffected.
type hostError struct{ err error }

func (e *hostError) Error() string { return e.err.Error() }
func (e *hostError) Unwrap() error { return e.err }

// call hands the guest a batch message of size bytes, written into its
// memory by write, and returns the output region. The output is a view of
// guest memory, valid until the next call on the instance. Errors:
// *hostError (write failed, nothing ran), *guestError (the guest refused the
// batch; the instance is fine), *abiError (bad pointers), or what wazero
// returned (a trap, or a *sys.ExitError for exit and deadline).
func (in *instance) call(ctx context.Context, size int, write func(dst []byte) error) ([]byte, error) {
	if size > math.MaxInt32 {
		return nil, &hostError{fmt.Errorf("%w: batch message of %d bytes", plugin.ErrTooLarge, size)}
	}
	if uint32(size) > in.inCap {
		want := (uint64(size) + allocRound - 1) / allocRound * allocRound
		if want > math.MaxInt32 {
			want = uint64(size)
		}
		in.stack[0] = want
		if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
			return nil, err
		}
		ptr := uint32(in.stack[0])
		if ptr == 0 {
			return nil, &guestError{code: plugin.CodeTooLarge, msg: fmt.Sprintf("df_alloc(%d) returned 0: the guest has no room for the batch", want), memory: true}
		}
		if uint64(ptr)+want > uint64(in.mem.Size()) {
			return nil, abiErrorf("df_alloc(%d) returned %#x, past the end of memory (%d bytes)", want, ptr, in.mem.Size())
		}
		in.inPtr, in.inCap = ptr, uint32(want)
	}
	dst, ok := in.mem.Read(in.inPtr, uint32(size))
	if !ok {
		return nil, abiErrorf("input region %#x+%d is past the end of memory", in.inPtr, size)
	}
	if err := write(dst); err != nil {
		return nil, &hostError{err}
	}
	in.stack[0], in.stack[1] = uint64(in.inPtr), uint64(size)
	if err := in.process.CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, err
	}
	r := in.stack[0]
	ptr, n := uint32(r>>32)&0x7fffffff, uint32(r)
	out, ok := in.mem.Read(ptr, n)
	if !ok {
		return nil, abiErrorf("df_process returned region %#x+%d, past the end of memory (%d bytes)", ptr, n, in.mem.Size())
	}
	if r>>63 == 0 {
		return out, nil
	}
	return nil, batchError(out)
}

// batchError decodes the single status-2 entry of a batch-level error.
func batchError(out []byte) error {
	var res [1]plugin.Result
	if err := batch.DecodeEntries(out, make([]plugin.Record, 1), res[:]); err != nil {
		return abiErrorf("batch error is not one result entry: %v", err)
	}
	pe, ok := res[0].Err.(*plugin.Error)
	if !ok {
		return abiErrorf("batch error entry has status %s, want 2 (error)", entryKind(res[0]))
	}
	return &guestError{code: pe.Code, msg: pe.Message}
}

func entryKind(r plugin.Result) string {
	if r.Dropped {
		return "1 (dropped)"
	}
	return "0 or 3 (a value)"
}

func (in *instance) close(ctx context.Context) {
	_ = in.mod.Close(ctx)
}

// tail keeps the first bytes a guest wrote to stdout and stderr during a
// batch, to quote in the error of a failed batch (a runtime's fatal error
// comes first, its goroutine dump after), and forwards everything to w.
type tail struct {
	w   io.Writer
	buf []byte
}

// tailSize is how much guest output a batch error can quote.
const tailSize = 512

func (t *tail) Write(p []byte) (int, error) {
	if t.w != nil {
		_, _ = t.w.Write(p)
	}
	if room := tailSize - len(t.buf); room > 0 {
		t.buf = append(t.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (t *tail) reset() { t.buf = t.buf[:0] }

// String returns up to the first three non-empty lines of the output,
// joined by " | ".
func (t *tail) String() string {
	var lines []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
		if len(lines) == 3 {
			break
		}
	}
	return strings.Join(lines, " | ")
}

// firstLine returns the first line of a wazero error (the rest is the wasm
// stack trace).
func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// exitCode returns the exit code of a *sys.ExitError in err.
func exitCode(err error) (uint32, bool) {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), true
	}
	return 0, false
}
