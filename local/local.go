package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/kvcache"
	"github.com/dataflare/dataflare/internal/natsrv"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// ErrNoDaemon is returned by Stop and Kill for a name that runs nothing.
var ErrNoDaemon = errors.New("local: no such daemon")

// Config describes a local fleet. Zero fields take the defaults given.
type Config struct {
	// URL is an existing NATS server (with JetStream) to run on; empty
	// embeds one.
	URL string
	// Listen is the embedded server's HOST:PORT. Default 127.0.0.1 on a
	// free port.
	Listen string
	// StoreDir keeps JetStream's files and the compiled WebAssembly
	// modules, so that a fleet restarted on it finds its jobs and plugins;
	// empty means a temporary directory that Close removes.
	StoreDir string
	// Workers is the number of workers Start starts (0: none, for workers
	// started later or attached as processes).
	Workers int
	// Coordinator is the coordinators' configuration. Modules defaults to
	// the fleet's plugin store, Logger and Registerer to the fleet's.
	Coordinator coordinator.Config
	// Worker is every worker's configuration; ID is set per worker
	// ("worker-1"...). Modules defaults to the fleet's WebAssembly runtime
	// (one for all its workers, so that each module compiles once), Pool
	// to one pool the workers share with it, Logger and Registerer to the
	// fleet's.
	Worker worker.Config
	// TrustedKeys, when set, makes the fleet's workers run only modules
	// signed by one of these public keys (wasmstore.WithTrustedKeys), as
	// `dataflare worker --trusted-key` does. It applies to the runtime the
	// fleet makes, not to a Worker.Modules given.
	TrustedKeys []string
	// Registerer receives every daemon's Prometheus metrics and the
	// WebAssembly runtime's; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Logger receives the fleet's logs. Default: discard.
	Logger *slog.Logger
}

// Fleet is a running local fleet. Its methods are safe for concurrent use.
type Fleet struct {
	// Server is the embedded server (nil on Config.URL), URL its address.
	Server *server.Server
	URL    string

	cfg   Config
	tmp   string // a temporary StoreDir, removed by Close
	js    jetstream.JetStream
	store *wasmstore.Store
	rt    *wasm.Runtime
	reg   *wasm.Registry
	kv    *kvcache.Cache // what the modules granted kv:BUCKET read
	bufs  *pool.Pool     // the workers' pool when the fleet made it

	mu      sync.Mutex
	conns   []*nats.Conn
	daemons map[string]*daemon
	order   []string // daemon names, in start order
	workers int      // workers started, for their ids
	coords  int
	closed  bool
}

// daemon is a coordinator or worker running in the fleet.
type daemon struct {
	worker bool
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// Start starts the server (unless Config.URL names one), the plugin store,
// a coordinator and Config.Workers workers, and returns once the
// coordinator answers and sees the workers. Close stops them. The error
// names the part that failed; a Listen address that is taken says so.
func Start(ctx context.Context, cfg Config) (_ *Fleet, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, URL: cfg.URL, daemons: make(map[string]*daemon)}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if cfg.StoreDir == "" {
		if f.tmp, err = os.MkdirTemp("", "dataflare-"); err != nil {
			return nil, fmt.Errorf("local: %w", err)
		}
		f.cfg.StoreDir = f.tmp
	}
	if f.URL == "" {
		if f.Server, err = startServer(cfg.Listen, f.cfg.StoreDir); err != nil {
			return nil, err
		}
		f.URL = f.Server.ClientURL()
	}
	if err := f.startWASM(ctx); err != nil {
		return nil, err
	}
	if _, err := f.StartCoordinator(ctx); err != nil {
		return nil, err
	}
	for range cfg.Workers {
		if _, err := f.StartWorker(); err != nil {
			return nil, err
		}
	}
	if cfg.Workers > 0 {
		if err := f.WaitForWorkers(ctx, cfg.Workers); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// startServer starts the embedded server on listen, with JetStream in dir.
func startServer(listen, dir string) (*server.Server, error) {
	ncfg := natsrv.Config{StoreDir: dir, Name: "dataflare-local"}
	if listen != "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("local: listen address %q: %v", listen, err)
		}
		if ncfg.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("local: listen port %q: %v", port, err)
		}
		ncfg.Host = host
		if ncfg.Port != 0 {
			// Say plainly that the port is taken (another server
			// running?) rather than time out waiting for ours.
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return nil, fmt.Errorf("local: %v (is another NATS server or 'dataflare dev' running? use --listen)", err)
			}
			ln.Close()
		}
	}
	s, err := natsrv.Start(ncfg)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return s, nil
}

// startWASM creates the plugin store, and unless Config.Worker.Modules is
// set, the WebAssembly runtime the workers share, with its compiled-module
// cache in the store directory.
func (f *Fleet) startWASM(ctx context.Context) error {
	nc, err := f.Conn("plugins")
	if err != nil {
		return err
	}
	if f.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	if f.store, err = wasmstore.New(ctx, f.js); err != nil {
		return fmt.Errorf("local: plugin store: %w", err)
	}
	if f.cfg.Worker.Modules != nil {
		return nil
	}
	if f.cfg.Worker.Pool == nil {
		if f.bufs, err = pool.New(pool.DefaultConfig()); err != nil {
			return fmt.Errorf("local: %w", err)
		}
		f.cfg.Worker.Pool = f.bufs
	}
	parallel := f.cfg.Worker.Parallel
	if parallel < 1 {
		parallel = runtime.GOMAXPROCS(0)
	}
	f.kv = kvcache.New(f.js, kvcache.WithLogger(f.cfg.Logger))
	f.rt, err = wasm.NewRuntime(ctx, wasm.WithInstances(parallel), wasm.WithBufferPool(f.cfg.Worker.Pool),
		wasm.WithCacheDir(filepath.Join(f.cfg.StoreDir, "wasm-cache")),
		wasm.WithKV(f.kv), wasm.WithLogger(f.cfg.Logger))
	if err != nil {
		return fmt.Errorf("local: WebAssembly runtime: %w", err)
	}
	var src wasm.ModuleSource = f.store
	if len(f.cfg.TrustedKeys) > 0 {
		if src, err = wasmstore.Open(ctx, f.js, wasmstore.WithTrustedKeys(f.cfg.TrustedKeys...)); err != nil {
			return fmt.Errorf("local: plugin store: %w", err)
		}
	}
	if f.reg, err = wasm.NewRegistry(f.rt, src); err != nil {
		return fmt.Errorf("local: WebAssembly registry: %w", err)
	}
	if f.cfg.Registerer != nil {
		if err := f.cfg.Registerer.Register(f.reg); err != nil {
			return fmt.Errorf("local: WebAssembly metrics: %w", err)
		}
		if err := f.cfg.Registerer.Register(f.kv); err != nil {
			return fmt.Errorf("local: KV cache metrics: %w", err)
		}
	}
	f.cfg.Worker.Modules = f.reg
	return nil
}

// Store returns the fleet's plugin store.
func (f *Fleet) Store() *wasmstore.Store { return f.store }

// Push checks module as `dataflare plugin push` does (it must compile, stay
// in the sandbox and speak the ABI), filling the compiled-module cache on
// the way, and stores it as the plugin name, in the version its own info
// gives. Pushing the same module again is a no-op. The errors are
// wasm.Runtime.Validate's and wasmstore.Store.Push's.
func (f *Fleet) Push(ctx context.Context, name string, module []byte) (wasmstore.Manifest, error) {
	return f.PushWith(ctx, name, module, wasmstore.PushOptions{})
}

// PushWith is Push with a policy and, optionally, a signature, as
// `dataflare plugin push --timeout/--memory/--grant/--sign` does: the
// module is validated under the policy (a module importing a capability
// the policy does not grant is refused). The errors are
// wasmstore.Store.PushWith's.
func (f *Fleet) PushWith(ctx context.Context, name string, module []byte, po wasmstore.PushOptions) (wasmstore.Manifest, error) {
	rt := f.rt
	if rt == nil {
		var err error
		if rt, err = wasm.NewRuntime(ctx, wasm.WithInstances(1), wasm.WithCacheDir(filepath.Join(f.cfg.StoreDir, "wasm-cache"))); err != nil {
			return wasmstore.Manifest{}, fmt.Errorf("local: WebAssembly runtime: %w", err)
		}
		defer rt.Close(context.WithoutCancel(ctx))
	}
	s, err := wasmstore.New(ctx, f.js, wasmstore.WithValidator(rt))
	if err != nil {
		return wasmstore.Manifest{}, fmt.Errorf("local: plugin store: %w", err)
	}
	return s.PushWith(ctx, name, "", module, po)
}

// Conn returns a new connection to the fleet's server, closed by Close.
func (f *Fleet) Conn(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name("dataflare " + name), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(f.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("local: connect: %w", err)
	}
	f.mu.Lock()
	f.conns = append(f.conns, nc)
	f.mu.Unlock()
	return nc, nil
}

// Client returns a client on a new connection.
func (f *Fleet) Client(opts ...client.Option) (*client.Client, error) {
	nc, err := f.Conn("client")
	if err != nil {
		return nil, err
	}
	return client.New(nc, opts...)
}

// StartCoordinator starts a coordinator, waits until one answers, and
// returns its name ("coordinator-1"...).
func (f *Fleet) StartCoordinator(ctx context.Context) (string, error) {
	f.mu.Lock()
	f.coords++
	name := "coordinator-" + strconv.Itoa(f.coords)
	f.mu.Unlock()
	nc, err := f.Conn(name)
	if err != nil {
		return "", err
	}
	cfg := f.cfg.Coordinator
	if cfg.ID == "" {
		cfg.ID = name
	}
	if cfg.Modules == nil {
		cfg.Modules = wasmstore.Resolver(f.store)
	}
	if cfg.Logger == nil {
		cfg.Logger = f.cfg.Logger
	}
	if cfg.Registerer == nil {
		cfg.Registerer = f.cfg.Registerer
	}
	c, err := coordinator.New(nc, cfg)
	if err != nil {
		return "", fmt.Errorf("local: %w", err)
	}
	f.run(name, false, nc, c.Run)
	// The streams exist once a coordinator answers.
	err = poll.Until(ctx, 30*time.Second, func() error {
		_, err := nc.Request(proto.SubjectStatus, nil, time.Second)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("local: coordinator not answering: %w", err)
	}
	return name, nil
}

// StartWorker starts a worker and returns its id ("worker-1"...).
func (f *Fleet) StartWorker() (string, error) {
	f.mu.Lock()
	f.workers++
	id := "worker-" + strconv.Itoa(f.workers)
	f.mu.Unlock()
	nc, err := f.Conn(id)
	if err != nil {
		return "", err
	}
	cfg := f.cfg.Worker
	cfg.ID = id
	if cfg.Logger == nil {
		cfg.Logger = f.cfg.Logger
	}
	if cfg.Registerer == nil {
		cfg.Registerer = f.cfg.Registerer
	}
	w, err := worker.New(nc, cfg)
	if err != nil {
		return "", fmt.Errorf("local: %w", err)
	}
	f.run(id, true, nc, w.Run)
	return id, nil
}

// run runs a daemon until Stop, Kill or Close.
func (f *Fleet) run(name string, isWorker bool, nc *nats.Conn, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{worker: isWorker, nc: nc, cancel: cancel, done: make(chan error, 1)}
	f.mu.Lock()
	f.daemons[name] = d
	f.order = append(f.order, name)
	f.mu.Unlock()
	// Stops when Stop, Kill or Close cancels ctx.
	go func() { d.done <- run(ctx) }()
}

func (f *Fleet) take(name string) *daemon {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.daemons[name]
	delete(f.daemons, name)
	return d
}

// Stop stops a daemon gracefully (a worker drains) and returns what its
// Run returned, or ErrNoDaemon.
func (f *Fleet) Stop(name string) error {
	d := f.take(name)
	if d == nil {
		return fmt.Errorf("%w: %q", ErrNoDaemon, name)
	}
	d.cancel()
	return <-d.done
}

// Kill stops a daemon abruptly: its connection is closed first, so that it
// neither acknowledges nor says goodbye (the in-process stand-in for
// SIGKILL; the e2e tests kill real processes). It returns ErrNoDaemon for
// a name that runs nothing.
func (f *Fleet) Kill(name string) error {
	d := f.take(name)
	if d == nil {
		return fmt.Errorf("%w: %q", ErrNoDaemon, name)
	}
	d.nc.Close()
	d.cancel()
	<-d.done
	return nil
}

// WaitForWorkers waits until a coordinator reports n healthy workers, or
// ctx ends (at most 30 s).
func (f *Fleet) WaitForWorkers(ctx context.Context, n int) error {
	c, err := f.Client()
	if err != nil {
		return err
	}
	return poll.Until(ctx, 30*time.Second, func() error {
		st, err := c.SystemStatus(ctx)
		if err != nil {
			return err
		}
		healthy := 0
		for _, w := range st.Workers {
			if w.Health == fleet.Healthy {
				healthy++
			}
		}
		if healthy < n {
			return fmt.Errorf("local: %d healthy workers, want %d", healthy, n)
		}
		return nil
	})
}

// Close stops the workers (they drain), then the coordinators (senders
// before receivers), then the WebAssembly runtime and the server, and
// removes a temporary store directory. It returns the daemons' errors.
// Close is idempotent.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	names := append([]string(nil), f.order...)
	f.mu.Unlock()
	var errs []error
	for _, workers := range []bool{true, false} {
		for _, name := range names {
			f.mu.Lock()
			d := f.daemons[name]
			f.mu.Unlock()
			if d != nil && d.worker == workers {
				if err := f.Stop(name); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				}
			}
		}
	}
	if f.reg != nil {
		f.reg.Close()
		if f.cfg.Registerer != nil {
			f.cfg.Registerer.Unregister(f.reg)
		}
	}
	if f.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f.rt.Close(ctx)
		cancel()
	}
	if f.kv != nil {
		if f.cfg.Registerer != nil {
			f.cfg.Registerer.Unregister(f.kv)
		}
		f.kv.Close()
	}
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, nc := range conns {
		nc.Close()
	}
	if f.bufs != nil {
		f.bufs.Close()
	}
	if f.Server != nil {
		f.Server.Shutdown()
		f.Server.WaitForShutdown()
	}
	if f.tmp != "" {
		os.RemoveAll(f.tmp)
	}
	return errors.Join(errs...)
}

// String returns the fleet's URL.
func (f *Fleet) String() string { return strings.TrimSpace(f.URL) }
