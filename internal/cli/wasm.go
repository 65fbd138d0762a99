package cli

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// moduleResolver returns the coordinator's view of the WebAssembly plugin
// store, creating the store's bucket with replicas when it does not exist.
func (e *env) moduleResolver(ctx context.Context, nc *nats.Conn, replicas int) (coordinator.ModuleResolver, error) {
	s, err := openStore(ctx, nc, replicas, true)
	if err != nil {
		return nil, err
	}
	return wasmstore.Resolver(s), nil
}

// workerModules returns the worker's WebAssembly runtime over the plugin
// store, and a function to close it.
func (e *env) workerModules(ctx context.Context, nc *nats.Conn, cacheDir string, parallel int, reg prometheus.Registerer, log *slog.Logger) (worker.Modules, func(), error) {
	return nil, func() {}, nil
}

// stackModules returns the embedded workers' WebAssembly runtime factory.
func (e *env) stackModules(parallel int, reg any, log *slog.Logger) (func(nc *nats.Conn, id string) (worker.Modules, func(), error), error) {
	return nil, nil
}

// pushExamples pushes the example WebAssembly plugins and returns their
// names.
func pushExamples(ctx context.Context, nc *nats.Conn, log *slog.Logger) ([]string, error) {
	return nil, nil
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
