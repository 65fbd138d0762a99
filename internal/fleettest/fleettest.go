// Package fleettest runs a whole fleet inside a test: a real JetStream
// server, a coordinator and workers, each on its own NATS connection, all
// stopped when the test ends.
package fleettest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/worker"
)

// Config shapes a test fleet. Zero fields take test-friendly defaults.
type Config struct {
	// Workers is the number of workers (default 2; -1 for none).
	Workers int
	// Coordinator is the coordinators' configuration (Topology included).
	Coordinator coordinator.Config
	// Worker is every worker's configuration; ID is set per worker.
	Worker worker.Config
}

// Fleet is a running test fleet.
type Fleet struct {
	tb     testing.TB
	Server *server.Server
	URL    string
	cfg    Config

	mu      sync.Mutex
	daemons map[string]*daemon
	n       int
}

type daemon struct {
	cancel context.CancelFunc
	done   chan error
	nc     *nats.Conn
}

// Start runs a server, a coordinator and the workers, and waits until the
// coordinator sees every worker.
func Start(tb testing.TB, cfg Config) *Fleet {
	tb.Helper()
	s := natstest.RunServer(tb)
	return StartOn(tb, s, s.ClientURL(), cfg)
}

// StartOn is Start on an existing server.
func StartOn(tb testing.TB, s *server.Server, url string, cfg Config) *Fleet {
	tb.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Coordinator.Topology.AckWait == 0 {
		cfg.Coordinator.Topology.AckWait = 2 * time.Second
	}
	if cfg.Coordinator.Heartbeat == 0 {
		cfg.Coordinator.Heartbeat = 100 * time.Millisecond
	}
	if cfg.Worker.Heartbeat == 0 {
		cfg.Worker.Heartbeat = cfg.Coordinator.Heartbeat
	}
	if cfg.Worker.FetchWait == 0 {
		cfg.Worker.FetchWait = 200 * time.Millisecond
	}
	f := &Fleet{tb: tb, Server: s, URL: url, cfg: cfg, daemons: map[string]*daemon{}}
	tb.Cleanup(f.stopAll)
	f.StartCoordinator()
	for range max(cfg.Workers, 0) {
		f.StartWorker()
	}
	if cfg.Workers > 0 {
		f.WaitForWorkers(cfg.Workers)
	}
	return f
}

// Connect returns a new connection to the fleet's server, closed at the end.
func (f *Fleet) Connect(opts ...nats.Option) *nats.Conn {
	return natstest.Connect(f.tb, f.URL, opts...)
}

// Client returns a client on a new connection.
func (f *Fleet) Client(opts ...client.Option) *client.Client {
	f.tb.Helper()
	c, err := client.New(f.Connect(), opts...)
	if err != nil {
		f.tb.Fatal(err)
	}
	return c
}

// StartCoordinator starts a coordinator and returns its name.
func (f *Fleet) StartCoordinator() string {
	f.tb.Helper()
	nc := f.Connect()
	c, err := coordinator.New(nc, f.cfg.Coordinator)
	if err != nil {
		f.tb.Fatalf("fleettest: %v", err)
	}
	name := "coordinator-" + c.ID()
	f.run(name, nc, c.Run)
	// The streams exist once the coordinator answers.
	err = natstest.Eventually(10*time.Second, func() error {
		_, err := nc.Request(proto.SubjectStatus, nil, time.Second)
		return err
	})
	if err != nil {
		f.tb.Fatalf("fleettest: coordinator not answering: %v", err)
	}
	return name
}

// StartWorker starts a worker and returns its id.
func (f *Fleet) StartWorker() string {
	f.tb.Helper()
	f.mu.Lock()
	f.n++
	id := fmt.Sprintf("w%d", f.n)
	f.mu.Unlock()
	cfg := f.cfg.Worker
	cfg.ID = id
	nc := f.Connect()
	w, err := worker.New(nc, cfg)
	if err != nil {
		f.tb.Fatalf("fleettest: %v", err)
	}
	f.run(id, nc, w.Run)
	return id
}

func (f *Fleet) run(name string, nc *nats.Conn, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1), nc: nc}
	f.mu.Lock()
	f.daemons[name] = d
	f.mu.Unlock()
	// Stops when Stop cancels its context.
	go func() { d.done <- run(ctx) }()
}

// Stop stops a daemon gracefully and returns what its Run returned.
func (f *Fleet) Stop(name string) error {
	f.mu.Lock()
	d := f.daemons[name]
	delete(f.daemons, name)
	f.mu.Unlock()
	if d == nil {
		return fmt.Errorf("fleettest: no daemon %q", name)
	}
	d.cancel()
	return <-d.done
}

// Kill stops a daemon abruptly: its connection is closed first, so it
// neither acks nor says goodbye (the in-process stand-in for SIGKILL; the
// e2e tests kill real processes).
func (f *Fleet) Kill(name string) {
	f.mu.Lock()
	d := f.daemons[name]
	delete(f.daemons, name)
	f.mu.Unlock()
	if d == nil {
		return
	}
	d.nc.Close()
	d.cancel()
	<-d.done
}

func (f *Fleet) stopAll() {
	f.mu.Lock()
	names := make([]string, 0, len(f.daemons))
	for n := range f.daemons {
		names = append(names, n)
	}
	f.mu.Unlock()
	// Workers first, then coordinators: senders before receivers.
	var errs []error
	for _, n := range names {
		if n[0] == 'w' {
			errs = append(errs, f.Stop(n))
		}
	}
	for _, n := range names {
		if n[0] != 'w' {
			errs = append(errs, f.Stop(n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		f.tb.Errorf("fleettest: stop: %v", err)
	}
}

// WaitForWorkers waits until a coordinator reports n healthy workers.
func (f *Fleet) WaitForWorkers(n int) {
	f.tb.Helper()
	c := f.Client()
	err := natstest.Eventually(15*time.Second, func() error {
		st, err := c.SystemStatus(context.Background())
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
			return fmt.Errorf("%d healthy workers, want %d", healthy, n)
		}
		return nil
	})
	if err != nil {
		f.tb.Fatalf("fleettest: %v", err)
	}
}
