//go:build !client

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/kvcache"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
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

// workerModules returns a worker's WebAssembly side: a runtime that runs up
// to parallel batches of a module at once, caching compiled code in
// cacheDir ("" for none), with guest output in buffers of bufs, and a
// registry of the modules it loads, fetched from the plugin store on first
// use. With trusted keys, the store hands out only modules signed by one of
// them. Modules granted kv:BUCKET read through a cache of the buckets, and
// those granted log write into log. Its metrics go to reg. close closes both, waiting a little for
// batches still running (the worker has drained by then).
func workerModules(ctx context.Context, nc *nats.Conn, cacheDir string, parallel int, bufs *pool.Pool, reg prometheus.Registerer, log *slog.Logger, trusted ...string) (_ *wasm.Registry, close func(), err error) {
	if parallel < 1 {
		parallel = runtime.GOMAXPROCS(0)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("plugin store: %w", err)
	}
	kv := kvcache.New(js, kvcache.WithLogger(log))
	opts := []wasm.Option{wasm.WithInstances(parallel), wasm.WithBufferPool(bufs), wasm.WithKV(kv), wasm.WithLogger(log)}
	if cacheDir != "" {
		opts = append(opts, wasm.WithCacheDir(cacheDir))
	}
	rt, err := wasm.NewRuntime(ctx, opts...)
	if err != nil {
		kv.Close()
		return nil, nil, fmt.Errorf("WebAssembly runtime: %w", err)
	}
	closeRT := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rt.Close(ctx)
		kv.Close()
	}
	var storeOpts []wasmstore.Option
	if len(trusted) > 0 {
		storeOpts = append(storeOpts, wasmstore.WithTrustedKeys(trusted...))
	}
	modules, err := wasm.NewRegistry(rt, wasmstore.NewLazy(js, storeOpts...))
	if err != nil {
		closeRT()
		return nil, nil, fmt.Errorf("WebAssembly registry: %w", err)
	}
	if err := reg.Register(modules); err != nil {
		modules.Close()
		closeRT()
		return nil, nil, fmt.Errorf("WebAssembly metrics: %w", err)
	}
	if err := reg.Register(kv); err != nil {
		modules.Close()
		closeRT()
		return nil, nil, fmt.Errorf("KV cache metrics: %w", err)
	}
	log.Debug("WebAssembly runtime ready", "instances_per_module", parallel, "cache_dir", cacheDir, "trusted_keys", len(trusted))
	return modules, func() { modules.Close(); closeRT() }, nil
}
