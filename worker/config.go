package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
)

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("worker: invalid config")

// Modules gives the worker its WebAssembly plugins: for a batch whose job
// pinned module name@digest, the plugin that runs exactly that module. The
// worker registers it in its Manager on first use and runs every batch of
// the module through it (a plugin that is also a
// plugin.EncodedBatchPlugin gets the batch message whole). A
// *wasm.Registry satisfies it.
type Modules interface {
	// Plugin returns the plugin of module name@digest, loading it as
	// needed; it must stay usable for as long as the worker runs. An
	// error matching plugin.ErrUnavailable is transient (the batch is
	// retried later); any other error fails the batch's records.
	Plugin(ctx context.Context, name, digest string) (plugin.BatchPlugin, error)
	// ReleaseResult is called with every result of these plugins once it
	// is published, so that their values may live in pooled buffers.
	ReleaseResult(*plugin.BatchResult)
}

// DefaultBatchTimeout is a worker's default BatchTimeout: long for a
// batch the sizer aims at 100 ms, short enough that a stuck plugin does
// not hold a slot for long.
const DefaultBatchTimeout = time.Minute

// Config configures a Worker. Zero fields take their defaults.
type Config struct {
	// ID names the worker in heartbeats, results and logs: 1-64 of
	// [A-Za-z0-9_-]. Default: host name and a random suffix.
	ID string
	// Parallel is how many batches run at once. Default GOMAXPROCS.
	Parallel int
	// Heartbeat is the interval between heartbeats. Default 1 s.
	Heartbeat time.Duration
	// Plugins are the native plugins, by name. Default: the built-in
	// ones (identity, upper, delay, fail).
	Plugins map[string]plugin.BatchPlugin
	// Modules runs WebAssembly plugins; nil means native plugins only.
	Modules Modules
	// Pool is the memory pool for result encoding (and, shared with the
	// WebAssembly runtime, guest output); its statistics and pressure go
	// in the heartbeats. Default: a pool of the worker's own.
	Pool *pool.Pool
	// BatchTimeout bounds one batch's run, and caps the timeout a job
	// asks for. Default DefaultBatchTimeout.
	BatchTimeout time.Duration
	// DrainTimeout bounds how long a stopping worker waits for its running
	// batches; batches still running then are released for redelivery.
	// Default 30 s.
	DrainTimeout time.Duration
	// FetchWait is how long one pull request waits for batches. Default 1 s.
	FetchWait time.Duration
	// Breaker configures the circuit breakers that take a plugin failing
	// batch after batch out of service on this worker. Default: open
	// after 5 failed batches in a row, try again after 1 s, doubling up
	// to 1 min.
	Breaker BreakerConfig
	// Registerer receives the worker's Prometheus metrics, labelled with
	// the worker id; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Logger receives the worker's logs. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = sanitize(host) + "-" + nuid.Next()[16:]
	}
	if c.Parallel == 0 {
		c.Parallel = runtime.GOMAXPROCS(0)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = proto.DefaultHeartbeat
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var err error
	if c.Breaker, err = c.Breaker.withDefaults(); err != nil {
		return c, err
	}
	switch {
	case !proto.ValidName(c.ID):
		return c, fmt.Errorf("%w: id %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalidConfig, c.ID)
	case c.Parallel < 1:
		return c, fmt.Errorf("%w: parallel %d below 1", ErrInvalidConfig, c.Parallel)
	case c.Heartbeat < 10*time.Millisecond:
		return c, fmt.Errorf("%w: heartbeat %v below 10ms", ErrInvalidConfig, c.Heartbeat)
	case c.FetchWait < 10*time.Millisecond:
		return c, fmt.Errorf("%w: fetch wait %v below 10ms", ErrInvalidConfig, c.FetchWait)
	}
	return c, nil
}

// sanitize keeps the characters of s allowed in a worker id.
func sanitize(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "worker"
	}
	return string(out[:min(len(out), 40)])
}
