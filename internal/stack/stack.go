package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/natsrv"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/worker"
)

// Config describes a stack.
type Config struct {
	// Listen is the server's HOST:PORT (default 127.0.0.1 on a free port).
	Listen string
	// StoreDir keeps JetStream's files; empty means a temporary directory
	// removed by Close.
	StoreDir string
	// Workers is the number of embedded workers; 0 runs none (attach
	// worker processes instead).
	Workers int
	// Coordinator configures the coordinator (Logger, Registerer and
	// Modules are set by the caller).
	Coordinator coordinator.Config
	// Worker configures every worker; ID is set per worker, and Modules
	// by NewModules when given.
	Worker worker.Config
	// NewModules, when set, gives each worker its WebAssembly runtime (and
	// a function that closes it).
	NewModules func(nc *nats.Conn, id string) (worker.Modules, func(), error)
	// Logger receives the stack's logs.
	Logger *slog.Logger
}

// Stack is a running stack.
type Stack struct {
	// Server is the embedded nats-server, URL its client URL.
	Server *server.Server
	URL    string

	cfg       Config
	tmp       string
	conns     []*nats.Conn
	stopCoord context.CancelFunc
	stopWork  context.CancelFunc
	workCtx   context.Context
	coordWG   sync.WaitGroup
	workWG    sync.WaitGroup
	errMu     sync.Mutex
	errs      []error
	closers   []func()
	after     []func()
}

// Start starts the server, the coordinator and the workers, and returns once
// the coordinator answers. Close stops them.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Stack{cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	store := cfg.StoreDir
	if store == "" {
		if s.tmp, err = os.MkdirTemp("", "dataflare-"); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		store = s.tmp
	}
	ncfg := natsrv.Config{StoreDir: store, Name: "dataflare-dev"}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("stack: listen address %q: %v", cfg.Listen, err)
		}
		if ncfg.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("stack: listen port %q: %v", port, err)
		}
		ncfg.Host = host
		if ncfg.Port != 0 {
			// Say plainly that the port is taken (another server running?)
			// rather than time out waiting for ours.
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return nil, fmt.Errorf("stack: %v (is another NATS server or 'dataflare dev' running? use --listen)", err)
			}
			ln.Close()
		}
	}
	if s.Server, err = natsrv.Start(ncfg); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	s.URL = s.Server.ClientURL()
	coordCtx, stopCoord := context.WithCancel(context.WithoutCancel(ctx))
	s.stopCoord = stopCoord
	s.workCtx, s.stopWork = context.WithCancel(context.WithoutCancel(ctx))

	nc, err := s.connect("coordinator")
	if err != nil {
		return nil, err
	}
	ccfg := cfg.Coordinator
	if ccfg.Logger == nil {
		ccfg.Logger = cfg.Logger
	}
	c, err := coordinator.New(nc, ccfg)
	if err != nil {
		return nil, err
	}
	s.run(coordCtx, &s.coordWG, c.Run)
	if err := waitCoordinator(ctx, nc); err != nil {
		return nil, err
	}
	for i := range cfg.Workers {
		if err := s.AddWorker(fmt.Sprintf("worker-%d", i+1)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Conn returns a new connection to the stack's server, closed by Close.
func (s *Stack) Conn(name string) (*nats.Conn, error) { return s.connect(name) }

func (s *Stack) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(s.URL, nats.Name("dataflare "+name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("stack: connect: %w", err)
	}
	s.conns = append(s.conns, nc)
	return nc, nil
}

// AddWorker starts an embedded worker called id.
func (s *Stack) AddWorker(id string) error {
	nc, err := s.connect(id)
	if err != nil {
		return err
	}
	wcfg := s.cfg.Worker
	wcfg.ID = id
	if wcfg.Logger == nil {
		wcfg.Logger = s.cfg.Logger
	}
	if s.cfg.NewModules != nil {
		mods, closeMods, err := s.cfg.NewModules(nc, id)
		if err != nil {
			return err
		}
		wcfg.Modules = mods
		s.closers = append(s.closers, closeMods)
	}
	w, err := worker.New(nc, wcfg)
	if err != nil {
		return err
	}
	s.run(s.workCtx, &s.workWG, w.Run)
	return nil
}

func (s *Stack) run(ctx context.Context, wg *sync.WaitGroup, run func(context.Context) error) {
	wg.Add(1)
	// Stops when Close cancels ctx.
	go func() {
		defer wg.Done()
		if err := run(ctx); err != nil {
			s.errMu.Lock()
			s.errs = append(s.errs, err)
			s.errMu.Unlock()
		}
	}()
}

// waitCoordinator waits until a coordinator answers status requests.
func waitCoordinator(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := nc.Request(proto.SubjectStatus, nil, time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("stack: coordinator not answering: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// AfterClose makes Close call f once everything else has stopped: for
// what the caller set up around the stack (a compilation cache, say).
func (s *Stack) AfterClose(f func()) { s.after = append(s.after, f) }

// Close stops the workers (they drain), then the coordinator, then the
// server, and removes a temporary store. It returns the daemons' errors.
func (s *Stack) Close() error {
	if s.stopWork != nil {
		s.stopWork()
	}
	s.workWG.Wait()
	if s.stopCoord != nil {
		s.stopCoord()
	}
	s.coordWG.Wait()
	for _, c := range s.closers {
		c()
	}
	for _, nc := range s.conns {
		nc.Close()
	}
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
	for _, f := range s.after {
		f()
	}
	s.after = nil
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.errs...)
}
