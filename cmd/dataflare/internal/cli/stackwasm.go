package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// stackWasm is the WebAssembly side of the embedded stack: one runtime and
// registry shared by its workers, so each module is compiled once, and a
// compilation cache on disk that pushing the example plugins fills, so the
// workers' first batch does not wait for the compiler. The cache lives in
// the stack's store directory when it has one (it survives restarts with
// it), else in a temporary directory removed by close.
type stackWasm struct {
	// bufs is the embedded workers' pool: result encoding and guest
	// output.
	bufs     *pool.Pool
	parallel int
	reg      prometheus.Registerer
	cacheDir string
	tmp      bool

	mu     sync.Mutex
	shared *wasmRuntime
	closed bool
}

// newStackWasm prepares the stack's WebAssembly side; storeDir is the
// stack's --store ("" for a temporary store).
func newStackWasm(storeDir string, parallel int, reg prometheus.Registerer) (*stackWasm, error) {
	bufs, err := pool.New(pool.DefaultConfig())
	if err != nil {
		return nil, err
	}
	sw := &stackWasm{bufs: bufs, parallel: parallel, reg: reg}
	if storeDir != "" {
		sw.cacheDir = filepath.Join(storeDir, "wasm-cache")
		return sw, nil
	}
	dir, err := os.MkdirTemp("", "dataflare-wasm-cache-")
	if err != nil {
		return nil, fmt.Errorf("WebAssembly compilation cache: %w", err)
	}
	sw.cacheDir, sw.tmp = dir, true
	return sw, nil
}

// newModules is the stack's stack.Config.NewModules: every worker gets the
// shared registry; the first worker's connection fetches modules.
func (sw *stackWasm) newModules(nc *nats.Conn, _ string) (worker.Modules, func(), error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.shared == nil {
		w, err := newWasmRuntime(context.Background(), nc, sw.cacheDir, sw.parallel, sw.bufs, sw.reg)
		if err != nil {
			return nil, nil, err
		}
		sw.shared = w
	}
	// The stack closes everything through close, after its workers.
	return sw.shared.reg, func() {}, nil
}

// validate checks a module as plugin push does, filling the compilation
// cache on the way.
func (sw *stackWasm) validate(ctx context.Context, module []byte) (plugin.Info, error) {
	sw.mu.Lock()
	shared := sw.shared
	sw.mu.Unlock()
	if shared != nil {
		return shared.rt.Validate(ctx, module)
	}
	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(1), wasm.WithCacheDir(sw.cacheDir))
	if err != nil {
		return plugin.Info{}, err
	}
	defer rt.Close(context.WithoutCancel(ctx))
	return rt.Validate(ctx, module)
}

// close closes the shared runtime and removes a temporary cache.
func (sw *stackWasm) close() {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return
	}
	sw.closed = true
	if sw.shared != nil {
		sw.shared.close()
	}
	sw.bufs.Close()
	if sw.tmp {
		os.RemoveAll(sw.cacheDir)
	}
}

// pushExamples validates the example WebAssembly plugins and pushes them to
// the store on nc, and returns their names. Pushing them again (a dev
// stack restarted on its store) is a no-op.
func (sw *stackWasm) pushExamples(ctx context.Context, nc *nats.Conn, log *slog.Logger) ([]string, error) {
	examples := []struct {
		name   string
		module []byte
	}{{twins.UpperName, twins.Upper}}
	var names []string
	for _, ex := range examples {
		info, err := sw.validate(ctx, ex.module)
		if err != nil {
			return nil, fmt.Errorf("example plugin %s: %w", ex.name, err)
		}
		s, err := openStore(ctx, nc, 1, false, wasmstore.WithValidator(validated(info)))
		if err != nil {
			return nil, err
		}
		m, err := s.Push(ctx, ex.name, "", ex.module)
		if err != nil {
			return nil, fmt.Errorf("push example plugin %s: %w", ex.name, err)
		}
		log.Info("example plugin pushed", "plugin", m.Name, "version", m.Version, "digest", m.Digest)
		names = append(names, ex.name)
	}
	return names, nil
}
