package plugin

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// AdapterOption configures Adapt.
type AdapterOption func(*adapter) error

// WithParallelism sets how many goroutines process one batch (default 1).
// A batch smaller than 2×n records runs on fewer goroutines. n must be ≥ 1.
func WithParallelism(n int) AdapterOption {
	return func(a *adapter) error {
		if n < 1 {
			return fmt.Errorf("%w: parallelism %d < 1", ErrInvalidInput, n)
		}
		a.parallel = n
		return nil
	}
}

// Adapt turns a record-at-a-time Plugin into a BatchPlugin. A record whose
// Process panics gets an ErrPanic error; the rest of the batch goes on. When
// ctx ends during a batch (seen every 64 records, and whenever a record
// fails), the batch fails with ContextError(ctx.Err()). The BatchPlugin
// returned also implements Stater and BatchSizer: it forwards to p's State
// and OptimizeBatchSize methods when p has them, and otherwise reports Ready
// and no opinion (0). Adapt panics on an invalid option (a programmer
// error); use NewAdapter to get the error instead.
func Adapt(p Plugin, opts ...AdapterOption) BatchPlugin {
	bp, err := NewAdapter(p, opts...)
	if err != nil {
		panic(err)
	}
	return bp
}

// NewAdapter is Adapt returning an invalid option as an error wrapping
// ErrInvalidInput.
func NewAdapter(p Plugin, opts ...AdapterOption) (BatchPlugin, error) {
	a := &adapter{p: p, parallel: 1}
	a.stater, _ = p.(Stater)
	a.sizer, _ = p.(BatchSizer)
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// The adapter passes p's optional methods on.
var (
	_ Stater     = (*adapter)(nil)
	_ BatchSizer = (*adapter)(nil)
)

type adapter struct {
	p        Plugin
	stater   Stater     // p, when it has a State method
	sizer    BatchSizer // p, when it has an OptimizeBatchSize method
	parallel int
}

func (a *adapter) Info() Info { return a.p.Info() }

// State implements Stater: p's State, or Ready when p has none.
func (a *adapter) State() State {
	if a.stater == nil {
		return Ready
	}
	return a.stater.State()
}

// OptimizeBatchSize implements BatchSizer: p's answer, or 0 (no opinion)
// when p has no such method.
func (a *adapter) OptimizeBatchSize(current int, latency time.Duration, throughput float64) int {
	if a.sizer == nil {
		return 0
	}
	return a.sizer.OptimizeBatchSize(current, latency, throughput)
}

// ctxCheckEvery is how many records run between two checks of the context.
const ctxCheckEvery = 64

func (a *adapter) ProcessBatch(ctx context.Context, cfg Config, recs []Record) (*BatchResult, error) {
	start := time.Now()
	res := &BatchResult{Results: make([]Result, len(recs))}
	workers := min(a.parallel, len(recs)/2)
	if workers <= 1 {
		if err := a.run(ctx, cfg, recs, res.Results); err != nil {
			return nil, err
		}
		res.Duration = time.Since(start)
		return res, nil
	}
	// Balanced chunks of at least 2 records: rounding the chunk size up
	// instead could start the last chunks past the end of recs.
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo := w * len(recs) / workers
		hi := (w + 1) * len(recs) / workers
		wg.Add(1)
		// Stops when its chunk is done or ctx is cancelled.
		go func() {
			defer wg.Done()
			errs[w] = a.run(ctx, cfg, recs[lo:hi], res.Results[lo:hi])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

func (a *adapter) run(ctx context.Context, cfg Config, recs []Record, out []Result) error {
	for i := range recs {
		if i%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return ContextError(err)
			}
		}
		out[i] = a.one(ctx, cfg, recs[i])
		if out[i].Err != nil {
			// A record that failed as its context ended most likely
			// failed of it: that is the batch's failure, not the
			// record's.
			if err := ctx.Err(); err != nil {
				return ContextError(err)
			}
		}
	}
	return nil
}

func (a *adapter) one(ctx context.Context, cfg Config, r Record) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			res = Fail(PanicError(v))
		}
	}()
	res, err := a.p.Process(ctx, cfg, r)
	if err != nil {
		return Fail(err)
	}
	res.Err = nil
	return res
}

// PanicError turns a recovered panic value into an *Error of CodePanic.
func PanicError(v any) *Error {
	return &Error{Code: CodePanic, Message: fmt.Sprintf("plugin: panic: %v", v)}
}

// ContextError turns a context error into an *Error: CodeTimeout for a
// deadline (it still matches context.DeadlineExceeded), CodeUnavailable for a
// cancellation (it wraps context.Canceled).
func ContextError(err error) *Error {
	if err == context.DeadlineExceeded {
		return &Error{Code: CodeTimeout, Message: "plugin: deadline exceeded", Err: err}
	}
	return &Error{Code: CodeUnavailable, Message: "plugin: " + err.Error(), Err: err}
}
