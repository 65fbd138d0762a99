package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/plugin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// upper is a record-at-a-time plugin for the tests: it upper-cases a value,
// panics on "panic", fails on "fail" and drops "drop".
type upper struct{}

func (upper) Info() plugin.Info {
	return plugin.Info{Name: "upper", Version: "1.0.0", Type: plugin.Transformer, APIVersion: plugin.APIVersion}
}
func (upper) Process(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
	switch string(r.Value) {
	case "panic":
		panic("boom")
	case "fail":
		return plugin.Result{}, plugin.Errorf(plugin.CodeProcessing, "upper: cannot process %q", r.Value)
	case "drop":
		return plugin.Drop(), nil
	}
	return plugin.Value(bytes.ToUpper(r.Value)), nil
}

// processFunc is a Plugin made of a function, reporting itself Running.
type processFunc func(ctx context.Context, cfg plugin.Config, r plugin.Record) (plugin.Result, error)

func (processFunc) Info() plugin.Info   { return plugin.Info{Name: "func", Version: "0.1.0"} }
func (processFunc) State() plugin.State { return plugin.Running }
func (f processFunc) Process(ctx context.Context, cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
	return f(ctx, cfg, r)
}

// tuned is a Plugin with the optional OptimizeBatchSize hook.
type tuned struct{ upper }

func (tuned) OptimizeBatchSize(current int, latency time.Duration, throughput float64) int {
	if latency > time.Second || throughput < 1 {
		return current / 2
	}
	return current * 2
}

func records(n int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i] = plugin.Record{Value: fmt.Appendf(nil, "rec-%d", i)}
	}
	return recs
}

func TestAdapterOrder(t *testing.T) {
	sizes := []int{0, 1, 2, 3, 7, 13, 15, 17, 63, 64, 65, 129, 1001}
	for _, par := range []int{1, 2, 3, 8} {
		bp, err := plugin.NewAdapter(upper{}, plugin.WithParallelism(par))
		if err != nil {
			t.Fatalf("NewAdapter(WithParallelism(%d)): %v", par, err)
		}
		for _, n := range sizes {
			t.Run(fmt.Sprintf("parallel=%d/records=%d", par, n), func(t *testing.T) {
				res, err := bp.ProcessBatch(context.Background(), nil, records(n))
				if err != nil {
					t.Fatalf("ProcessBatch: %v", err)
				}
				if got := len(res.Results); got != n {
					t.Fatalf("got %d results, want %d", got, n)
				}
				for i, r := range res.Results {
					want := fmt.Sprintf("REC-%d", i)
					if r.Err != nil || r.Dropped || string(r.Value) != want {
						t.Fatalf("result %d = {%q dropped=%v err=%v}, want %q", i, r.Value, r.Dropped, r.Err, want)
					}
				}
				if res.Duration < 0 {
					t.Errorf("Duration = %v, want ≥ 0", res.Duration)
				}
			})
		}
	}
}

func TestAdapterPerRecordOutcomes(t *testing.T) {
	for _, par := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("parallel=%d", par), func(t *testing.T) {
			recs := records(40)
			recs[0].Value = []byte("panic")
			recs[7].Value = []byte("panic")
			recs[21].Value = []byte("fail")
			recs[39].Value = []byte("drop")
			bp := plugin.Adapt(upper{}, plugin.WithParallelism(par))
			res, err := bp.ProcessBatch(context.Background(), nil, recs)
			if err != nil {
				t.Fatalf("ProcessBatch: %v", err)
			}
			if got := len(res.Results); got != len(recs) {
				t.Fatalf("got %d results, want %d", got, len(recs))
			}
			for i, r := range res.Results {
				switch i {
				case 0, 7:
					if !errors.Is(r.Err, plugin.ErrPanic) {
						t.Errorf("result %d: err = %v, want one matching ErrPanic", i, r.Err)
					}
					if got := plugin.CodeOf(r.Err); got != plugin.CodePanic {
						t.Errorf("result %d: CodeOf = %v, want %v", i, got, plugin.CodePanic)
					}
				case 21:
					if !errors.Is(r.Err, plugin.ErrProcessing) {
						t.Errorf("result %d: err = %v, want one matching ErrProcessing", i, r.Err)
					}
				case 39:
					if r.Err != nil || !r.Dropped {
						t.Errorf("result %d = {dropped=%v err=%v}, want dropped", i, r.Dropped, r.Err)
					}
				default:
					if want := fmt.Sprintf("REC-%d", i); r.Err != nil || string(r.Value) != want {
						t.Errorf("result %d = {%q err=%v}, want %q", i, r.Value, r.Err, want)
					}
				}
			}
			if got, want := res.Failed(), 3; got != want {
				t.Errorf("Failed() = %d, want %d", got, want)
			}
		})
	}
}

func TestAdapterClearsResultErr(t *testing.T) {
	// A Plugin reports failures as Process's error; an Err left in a
	// Result it returns with a nil error is not a failure.
	p := processFunc(func(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
		return plugin.Result{Value: r.Value, Err: errors.New("stray")}, nil
	})
	res, err := plugin.Adapt(p).ProcessBatch(context.Background(), nil, records(3))
	if err != nil {
		t.Fatalf("ProcessBatch: %v", err)
	}
	if got := res.Failed(); got != 0 {
		t.Errorf("Failed() = %d, want 0", got)
	}
}

func TestAdapterPassesConfig(t *testing.T) {
	var seen atomic.Int64
	p := processFunc(func(_ context.Context, cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
		if cfg.Get("mode") == "x" {
			seen.Add(1)
		}
		return plugin.Value(r.Value), nil
	})
	bp := plugin.Adapt(p, plugin.WithParallelism(4))
	if _, err := bp.ProcessBatch(context.Background(), plugin.Config{"mode": "x"}, records(50)); err != nil {
		t.Fatalf("ProcessBatch: %v", err)
	}
	if got := seen.Load(); got != 50 {
		t.Errorf("Process saw the config %d times, want 50", got)
	}
}

func TestAdapterContext(t *testing.T) {
	// n gives each of up to 8 goroutines more than one context check.
	const n = 600
	tests := []struct {
		name string
		// run calls ProcessBatch of an adapter with parallelism par,
		// with a context that ends before or during the batch.
		run  func(par int) error
		want []error
	}{
		{
			name: "cancelled before",
			run: func(par int) error {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_, err := plugin.Adapt(upper{}, plugin.WithParallelism(par)).ProcessBatch(ctx, nil, records(n))
				return err
			},
			want: []error{context.Canceled, plugin.ErrUnavailable},
		},
		{
			name: "cancelled mid-batch",
			run: func(par int) error {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				return processWith(ctx, par, n, func(i int) {
					if i == 10 {
						cancel()
					}
				})
			},
			want: []error{context.Canceled, plugin.ErrUnavailable},
		},
		{
			name: "deadline before",
			run: func(par int) error {
				ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
				defer cancel()
				_, err := plugin.Adapt(upper{}, plugin.WithParallelism(par)).ProcessBatch(ctx, nil, records(n))
				return err
			},
			want: []error{context.DeadlineExceeded, plugin.ErrTimeout},
		},
		{
			name: "deadline mid-batch",
			run: func(par int) error {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				return processWith(ctx, par, n, func(i int) {
					if i == 10 {
						<-ctx.Done()
					}
				})
			},
			want: []error{context.DeadlineExceeded, plugin.ErrTimeout},
		},
	}
	for _, par := range []int{1, 2, 8} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("parallel=%d/%s", par, tt.name), func(t *testing.T) {
				err := tt.run(par)
				if err == nil {
					t.Fatal("ProcessBatch: got no error")
				}
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("ProcessBatch: got %v, want one matching %v", err, w)
					}
				}
			})
		}
	}
}

// processWith runs a batch of n records through an adapter (parallelism
// par) of a plugin that calls hook with each record's index first.
func processWith(ctx context.Context, par, n int, hook func(i int)) error {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Key = []byte{byte(i), byte(i >> 8)}
	}
	p := processFunc(func(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
		hook(int(r.Key[0]) | int(r.Key[1])<<8)
		return plugin.Value(r.Value), nil
	})
	_, err := plugin.Adapt(p, plugin.WithParallelism(par)).ProcessBatch(ctx, nil, recs)
	return err
}

func TestAdapterContextEndsOnRecordError(t *testing.T) {
	// A plugin that honours ctx fails the record it was on when the
	// deadline passes: that is the batch's deadline, not the record's
	// failure, even when no context check follows in the batch.
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		cancel bool
		want   error
	}{
		{
			name: "deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 10*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
		{
			name:   "cancel",
			ctx:    func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			cancel: true,
			want:   context.Canceled,
		},
	}
	for _, par := range []int{1, 4} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("parallel=%d/%s", par, tt.name), func(t *testing.T) {
				ctx, cancel := tt.ctx()
				defer cancel()
				p := processFunc(func(ctx context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
					if string(r.Value) == "rec-3" {
						if tt.cancel {
							cancel()
						}
						<-ctx.Done()
						return plugin.Result{}, ctx.Err()
					}
					return plugin.Value(r.Value), nil
				})
				res, err := plugin.Adapt(p, plugin.WithParallelism(par)).ProcessBatch(ctx, nil, records(10))
				if !errors.Is(err, tt.want) {
					t.Fatalf("ProcessBatch = (%v, %v), want an error matching %v", res, err, tt.want)
				}
				if res != nil {
					t.Errorf("ProcessBatch returned a result with its error: %+v", res)
				}
			})
		}
	}
}

func TestNewAdapterInvalidParallelism(t *testing.T) {
	for _, n := range []int{0, -1, -100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bp, err := plugin.NewAdapter(upper{}, plugin.WithParallelism(n))
			if !errors.Is(err, plugin.ErrInvalidInput) {
				t.Errorf("NewAdapter(WithParallelism(%d)) error = %v, want one matching ErrInvalidInput", n, err)
			}
			if bp != nil {
				t.Errorf("NewAdapter(WithParallelism(%d)) returned an adapter with its error", n)
			}
		})
	}
}

func TestAdaptPanicsOnInvalidOption(t *testing.T) {
	defer func() {
		v := recover()
		err, ok := v.(error)
		if !ok || !errors.Is(err, plugin.ErrInvalidInput) {
			t.Errorf("Adapt(WithParallelism(0)) panicked with %v, want an error matching ErrInvalidInput", v)
		}
	}()
	plugin.Adapt(upper{}, plugin.WithParallelism(0))
	t.Error("Adapt(WithParallelism(0)) did not panic")
}

func TestAdapterForwards(t *testing.T) {
	t.Run("Info", func(t *testing.T) {
		bp := plugin.Adapt(processFunc(nil))
		if got, want := bp.Info().String(), "func@0.1.0"; got != want {
			t.Errorf("Info() = %s, want %s", got, want)
		}
	})
	for _, tt := range []struct {
		name string
		p    plugin.Plugin
		want plugin.State
	}{
		{"with State", processFunc(nil), plugin.Running},
		{"without State", upper{}, plugin.Ready},
	} {
		t.Run("State/"+tt.name, func(t *testing.T) {
			st, ok := plugin.Adapt(tt.p).(plugin.Stater)
			if !ok {
				t.Fatal("the adapter does not implement Stater")
			}
			if got := st.State(); got != tt.want {
				t.Errorf("State() = %v, want %v", got, tt.want)
			}
		})
	}
	tests := []struct {
		name       string
		p          plugin.Plugin
		current    int
		latency    time.Duration
		throughput float64
		want       int
	}{
		{"with hook, fast", tuned{}, 100, time.Millisecond, 1e5, 200},
		{"with hook, slow", tuned{}, 100, 2 * time.Second, 50, 50},
		{"without hook", upper{}, 100, time.Millisecond, 1e5, 0},
	}
	for _, tt := range tests {
		t.Run("OptimizeBatchSize/"+tt.name, func(t *testing.T) {
			bs, ok := plugin.Adapt(tt.p, plugin.WithParallelism(2)).(plugin.BatchSizer)
			if !ok {
				t.Fatal("the adapter does not implement BatchSizer")
			}
			if got := bs.OptimizeBatchSize(tt.current, tt.latency, tt.throughput); got != tt.want {
				t.Errorf("OptimizeBatchSize(%d, %v, %v) = %d, want %d", tt.current, tt.latency, tt.throughput, got, tt.want)
			}
		})
	}
}

// TestAdapterHammer calls ProcessBatch on one adapter from many goroutines;
// run it with -race.
func TestAdapterHammer(t *testing.T) {
	const (
		goroutines = 16
		calls      = 40
	)
	bp := plugin.Adapt(upper{}, plugin.WithParallelism(4))
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		// Stops after its calls.
		go func() {
			defer wg.Done()
			for c := range calls {
				n := (g*calls + c) % 97
				recs := records(n)
				if n > 5 {
					recs[n/2].Value = []byte("panic")
				}
				res, err := bp.ProcessBatch(context.Background(), nil, recs)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d call %d: %w", g, c, err)
					return
				}
				if len(res.Results) != n {
					errs <- fmt.Errorf("goroutine %d call %d: got %d results, want %d", g, c, len(res.Results), n)
					return
				}
				for i, r := range res.Results {
					if n > 5 && i == n/2 {
						if !errors.Is(r.Err, plugin.ErrPanic) {
							errs <- fmt.Errorf("goroutine %d call %d: result %d err = %v, want ErrPanic", g, c, i, r.Err)
							return
						}
						continue
					}
					if want := fmt.Sprintf("REC-%d", i); string(r.Value) != want {
						errs <- fmt.Errorf("goroutine %d call %d: result %d = %q, want %q", g, c, i, r.Value, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPanicError(t *testing.T) {
	err := plugin.PanicError(fmt.Errorf("nil map"))
	if got, want := err.Error(), "plugin: panic: nil map"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, plugin.ErrPanic) {
		t.Errorf("PanicError does not match ErrPanic")
	}
}

func TestContextError(t *testing.T) {
	tests := []struct {
		in       error
		wantCode plugin.Code
		match    []error
		noMatch  []error
	}{
		{context.DeadlineExceeded, plugin.CodeTimeout,
			[]error{context.DeadlineExceeded, plugin.ErrTimeout}, []error{context.Canceled, plugin.ErrUnavailable}},
		{context.Canceled, plugin.CodeUnavailable,
			[]error{context.Canceled, plugin.ErrUnavailable}, []error{context.DeadlineExceeded, plugin.ErrTimeout}},
	}
	for _, tt := range tests {
		t.Run(tt.in.Error(), func(t *testing.T) {
			err := plugin.ContextError(tt.in)
			if err.Code != tt.wantCode {
				t.Errorf("Code = %v, want %v", err.Code, tt.wantCode)
			}
			for _, w := range tt.match {
				if !errors.Is(err, w) {
					t.Errorf("%v does not match %v", err, w)
				}
			}
			for _, w := range tt.noMatch {
				if errors.Is(err, w) {
					t.Errorf("%v matches %v", err, w)
				}
			}
		})
	}
}
