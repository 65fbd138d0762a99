// Package localtest starts a local fleet (package local) for a test: with
// timings that make tests quick (heartbeats every 100 ms, AckWait 2 s,
// pulls of 200 ms), stopped when the test ends, and methods that fail the
// test instead of returning errors.
//
//	f := localtest.Start(t, local.Config{Workers: 1})
//	res, err := f.Client().ProcessBatch(ctx, "upper", nil, recs)
package localtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/local"
)

// Fleet is a local fleet bound to a test.
type Fleet struct {
	*local.Fleet
	tb testing.TB
}

// Start starts a fleet with cfg, its zero timings set for tests, and
// stops it when the test ends (failing the test if a daemon's Run failed).
func Start(tb testing.TB, cfg local.Config) *Fleet {
	tb.Helper()
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
	f, err := local.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("localtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("localtest: stop: %v", err)
		}
	})
	return &Fleet{Fleet: f, tb: tb}
}

// Connect returns a new connection to the fleet's server.
func (f *Fleet) Connect(opts ...nats.Option) *nats.Conn {
	f.tb.Helper()
	nc, err := f.Conn("test", opts...)
	if err != nil {
		f.tb.Fatal(err)
	}
	return nc
}

// Client returns a client on a new connection.
func (f *Fleet) Client(opts ...client.Option) *client.Client {
	f.tb.Helper()
	c, err := f.Fleet.Client(opts...)
	if err != nil {
		f.tb.Fatal(err)
	}
	return c
}

// StartCoordinator starts a coordinator and returns its name.
func (f *Fleet) StartCoordinator() string {
	f.tb.Helper()
	name, err := f.Fleet.StartCoordinator(context.Background())
	if err != nil {
		f.tb.Fatal(err)
	}
	return name
}

// StartWorker starts a worker and returns its id.
func (f *Fleet) StartWorker() string {
	f.tb.Helper()
	id, err := f.Fleet.StartWorker()
	if err != nil {
		f.tb.Fatal(err)
	}
	return id
}

// Kill stops a daemon abruptly (see local.Fleet.Kill).
func (f *Fleet) Kill(name string) {
	f.tb.Helper()
	if err := f.Fleet.Kill(name); err != nil {
		f.tb.Fatal(err)
	}
}

// WaitForWorkers waits until a coordinator reports n healthy workers.
func (f *Fleet) WaitForWorkers(n int) {
	f.tb.Helper()
	if err := f.Fleet.WaitForWorkers(context.Background(), n); err != nil {
		f.tb.Fatal(err)
	}
}
