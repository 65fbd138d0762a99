package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// moduleResolver returns the coordinator's view of the WebAssembly plugin
// store, creating the store's bucket with replicas when it does not exist.
// JetStream that does not answer (a cluster forming or electing; another
// coordinator creating the same bucket) is retried, each attempt with a
// short timeout, until ctx ends.
func (e *env) moduleResolver(ctx context.Context, nc *nats.Conn, replicas int) (coordinator.ModuleResolver, error) {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := openStore(actx, nc, replicas, true)
		cancel()
		if err == nil {
			return wasmstore.Resolver(s), nil
		}
		if ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// wasmRuntime is a worker's WebAssembly side: a wazero runtime and a
// registry of the modules it loaded, fetched from the plugin store on first
// use. It satisfies worker.Modules.
type wasmRuntime struct {
	rt  *wasm.Runtime
	reg *wasm.Registry
}

var _ worker.Modules = (*wasm.Registry)(nil)

// newWasmRuntime returns a runtime that runs up to parallel batches of a
// module at once, caching compiled code in cacheDir ("" for none), with
// modules fetched from the plugin store on nc and guest output copied into
// buffers of bufs (the workers' pool; the worker gives them back after
// publishing). Its metrics go to reg (nil for none).
func newWasmRuntime(ctx context.Context, nc *nats.Conn, cacheDir string, parallel int, bufs *pool.Pool, reg prometheus.Registerer) (*wasmRuntime, error) {
	if parallel < 1 {
		parallel = runtime.GOMAXPROCS(0)
	}
	opts := []wasm.Option{wasm.WithInstances(parallel), wasm.WithBufferPool(bufs)}
	if cacheDir != "" {
		opts = append(opts, wasm.WithCacheDir(cacheDir))
	}
	rt, err := wasm.NewRuntime(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("WebAssembly runtime: %w", err)
	}
	registry, err := wasm.NewRegistry(rt, &lazyStore{nc: nc})
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("WebAssembly registry: %w", err)
	}
	w := &wasmRuntime{rt: rt, reg: registry}
	if reg != nil {
		if err := reg.Register(w); err != nil {
			w.close()
			return nil, fmt.Errorf("WebAssembly metrics: %w", err)
		}
	}
	return w, nil
}

// close closes the registry and the runtime, waiting a little for batches
// still running (the worker has drained by then).
func (w *wasmRuntime) close() {
	w.reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.rt.Close(ctx)
}

var (
	descModules  = prometheus.NewDesc("dataflare_wasm_modules_loaded", "WebAssembly modules loaded now.", nil, nil)
	descLoads    = prometheus.NewDesc("dataflare_wasm_module_loads_total", "WebAssembly modules fetched and compiled.", nil, nil)
	descEvicted  = prometheus.NewDesc("dataflare_wasm_modules_evicted_total", "Idle WebAssembly modules closed to make room.", nil, nil)
	descCompiles = prometheus.NewDesc("dataflare_wasm_compiles_total", "WebAssembly modules compiled (or read from the compilation cache).", nil, nil)
	descCompile  = prometheus.NewDesc("dataflare_wasm_compile_seconds_total", "Time spent compiling WebAssembly modules.", nil, nil)
)

// Describe implements prometheus.Collector.
func (w *wasmRuntime) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descModules, descLoads, descEvicted, descCompiles, descCompile} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (w *wasmRuntime) Collect(ch chan<- prometheus.Metric) {
	st := w.reg.Stats()
	n, took := w.rt.CompileStats()
	ch <- prometheus.MustNewConstMetric(descModules, prometheus.GaugeValue, float64(st.Modules))
	ch <- prometheus.MustNewConstMetric(descLoads, prometheus.CounterValue, float64(st.Loads))
	ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(descCompiles, prometheus.CounterValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descCompile, prometheus.CounterValue, took.Seconds())
}

// lazyStore is the plugin store, opened on the first fetch: by the time a
// batch of a WebAssembly plugin arrives, a coordinator has created the
// bucket (it resolved the plugin there). A worker never creates it.
type lazyStore struct {
	nc *nats.Conn
	mu sync.Mutex
	s  *wasmstore.Store
}

// Fetch implements wasm.ModuleSource.
func (l *lazyStore) Fetch(ctx context.Context, name, digest string) ([]byte, error) {
	s, err := l.store(ctx)
	if err != nil {
		return nil, err
	}
	return s.Fetch(ctx, name, digest)
}

func (l *lazyStore) store(ctx context.Context) (*wasmstore.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		return l.s, nil
	}
	js, err := jetstream.New(l.nc)
	if err != nil {
		return nil, fmt.Errorf("plugin store: %w", err)
	}
	// Open, not New: a worker reads the bucket and may not administer it.
	s, err := wasmstore.Open(ctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: the plugin store %s does not exist", wasmstore.ErrNotFound, proto.BucketPlugins)
	}
	if err != nil {
		return nil, fmt.Errorf("plugin store: %w", err)
	}
	l.s = s
	return s, nil
}

// workerModules returns the worker's WebAssembly runtime over the plugin
// store, and a function to close it.
func (e *env) workerModules(ctx context.Context, nc *nats.Conn, cacheDir string, parallel int, bufs *pool.Pool, reg prometheus.Registerer, log *slog.Logger) (worker.Modules, func(), error) {
	w, err := newWasmRuntime(ctx, nc, cacheDir, parallel, bufs, reg)
	if err != nil {
		return nil, nil, err
	}
	log.Debug("WebAssembly runtime ready", "instances_per_module", parallel, "cache_dir", cacheDir)
	return w.reg, w.close, nil
}

// lateResolver is a ModuleResolver whose store is set after the server
// starts.
type lateResolver struct {
	r atomic.Pointer[coordinator.ModuleResolver]
}

func (l *lateResolver) set(r coordinator.ModuleResolver) { l.r.Store(&r) }

func (l *lateResolver) resolve(ctx context.Context, name, version string) (string, string, error) {
	r := l.r.Load()
	if r == nil || *r == nil {
		return "", "", nil
	}
	return (*r)(ctx, name, version)
}
