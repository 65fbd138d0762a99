package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/sizer"
)

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("coordinator: invalid config")

// ModuleResolver finds the module a WebAssembly plugin name (and version,
// "" for the newest) stands for. It returns the module's digest and
// version, or an empty digest and no error when there is no such module.
// *wasmstore.Store satisfies it through wasmstore.Resolver.
type ModuleResolver func(ctx context.Context, name, version string) (digest, resolvedVersion string, err error)

// Config configures a Coordinator. Zero fields take their defaults.
type Config struct {
	// ID names the coordinator in logs and status. Default: a random id.
	ID string
	// Topology is the streams' settings; the coordinator creates or
	// updates them when it starts.
	Topology proto.Topology
	// Heartbeat is the interval workers send heartbeats at. Default
	// proto.DefaultHeartbeat (1 s).
	Heartbeat time.Duration
	// Sizer configures the per-plugin batch-size controllers. Its zero
	// fields take the sizer's defaults, except Max (default 10,000) and
	// MaxBytes (default: MaxBatchBytes less header room).
	Sizer sizer.Config
	// MaxBatchBytes is the largest batch message clients may send: jobs
	// carry it, and clients cut their batches below it. Default: the
	// server's max payload.
	MaxBatchBytes int
	// Modules resolves WebAssembly plugins; nil means native plugins only.
	Modules ModuleResolver
	// Weights are owners' shares of the workers, relative to one another:
	// an owner not named has weight 1. With several owners' work queued,
	// each gets workers in proportion to its weight (unless the Topology
	// is FIFO). Every coordinator of a fleet should be given the same.
	Weights map[string]float64
	// PipelineGrants, when not nil, are the only pipelines the
	// coordinator runs: a pipeline's owner, source stream and sink must
	// match one grant. Nil lets every owner read any stream but the
	// fleet's own and write any subject outside the fleet's (df.) and the
	// server's ($) namespaces: for a fleet with one owner, or owners who
	// trust one another. A shared fleet sets them (docs/security.md,
	// "Pipelines"). Every coordinator of a fleet should be given the same.
	PipelineGrants []PipelineGrant
	// RequestWorkers is how many requests are handled at once. Default 8.
	RequestWorkers int
	// RequestRate is how many requests per second each owner may make
	// (all requests without an owner, status and report, share one
	// rate); beyond it, and beyond RequestQueue waiting requests of one
	// owner, requests are answered "busy" at once. Defaults 1000 and 256.
	RequestRate  float64
	RequestQueue int
	// StartupGrace is how long after its start a coordinator waits for
	// heartbeats before it answers "no workers". Default 2 heartbeats.
	StartupGrace time.Duration
	// Registerer receives the coordinator's Prometheus metrics; nil means
	// they are kept unregistered.
	Registerer prometheus.Registerer
	// Logger receives the coordinator's logs. Default: discard.
	Logger *slog.Logger
	// Clock tells the time for worker health. Default time.Now.
	Clock func() time.Time
}

func (c Config) withDefaults(maxPayload int64) (Config, error) {
	var err error
	if c.Topology, err = c.Topology.WithDefaults(); err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	for _, g := range c.PipelineGrants {
		if err := g.check(); err != nil {
			return c, err
		}
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = proto.DefaultHeartbeat
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = int(maxPayload)
	}
	if c.Sizer.Max == 0 {
		c.Sizer.Max = 10000
	}
	if c.Sizer.MaxBytes == 0 {
		c.Sizer.MaxBytes = c.MaxBatchBytes - headerRoom
	}
	if c.Sizer.Interval == 0 {
		c.Sizer.Interval = c.Heartbeat
	}
	if c.RequestWorkers == 0 {
		c.RequestWorkers = 8
	}
	if c.RequestRate == 0 {
		c.RequestRate = 1000
	}
	if c.RequestQueue == 0 {
		c.RequestQueue = 256
	}
	if c.StartupGrace == 0 {
		c.StartupGrace = 2 * c.Heartbeat
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Clock != nil && c.Sizer.Clock == nil {
		c.Sizer.Clock = c.Clock
	}
	switch {
	case badWeights(c.Weights) != "":
		return c, fmt.Errorf("%w: weight of owner %q must be a positive number and the owner 1-64 of [A-Za-z0-9_-]", ErrInvalidConfig, badWeights(c.Weights))
	case c.RequestWorkers < 1 || c.RequestRate <= 0 || c.RequestQueue < 1:
		return c, fmt.Errorf("%w: request workers %d, rate %v and queue %d must be positive", ErrInvalidConfig, c.RequestWorkers, c.RequestRate, c.RequestQueue)
	case c.Heartbeat < 10*time.Millisecond:
		return c, fmt.Errorf("%w: heartbeat %v below 10ms", ErrInvalidConfig, c.Heartbeat)
	case c.MaxBatchBytes < 4096:
		return c, fmt.Errorf("%w: max batch bytes %d below 4096", ErrInvalidConfig, c.MaxBatchBytes)
	case int64(c.MaxBatchBytes) > maxPayload:
		return c, fmt.Errorf("%w: max batch bytes %d above the server's max payload %d", ErrInvalidConfig, c.MaxBatchBytes, maxPayload)
	}
	if _, err := sizer.New(c.Sizer); err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return c, nil
}

// headerRoom is what a batch message needs beyond its records: the fixed
// header, the job, plugin and digest, and a typical configuration.
const headerRoom = 16 << 10

// badWeights returns an owner whose weight cannot be, or "".
func badWeights(w map[string]float64) string {
	for owner, v := range w {
		if !proto.ValidName(owner) || !(v > 0) || v > 1e6 {
			return owner
		}
	}
	return ""
}

// PipelineGrant lets the pipelines of Owner read stream Source and publish
// on the subjects Sink matches. Owner and Source take "*" for any; Sink is
// a subject pattern ("enriched.>", "*" for any one-token subject, ">" for
// any subject outside the fleet's and the server's namespaces).
type PipelineGrant struct {
	Owner, Source, Sink string
}

// ParsePipelineGrant parses OWNER:STREAM:SINK, the form the coordinator's
// --pipeline-grant flag takes.
func ParsePipelineGrant(s string) (PipelineGrant, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return PipelineGrant{}, fmt.Errorf("%w: pipeline grant %q is not OWNER:STREAM:SINK", ErrInvalidConfig, s)
	}
	g := PipelineGrant{Owner: parts[0], Source: parts[1], Sink: parts[2]}
	return g, g.check()
}

func (g PipelineGrant) check() error {
	switch {
	case g.Owner != "*" && !proto.ValidName(g.Owner):
		return fmt.Errorf("%w: pipeline grant: owner %q is not a name or *", ErrInvalidConfig, g.Owner)
	case g.Source != "*" && !validStreamName(g.Source):
		return fmt.Errorf("%w: pipeline grant: source %q is not a stream name or *", ErrInvalidConfig, g.Source)
	case !validSubject(g.Sink, true):
		return fmt.Errorf("%w: pipeline grant: sink %q is not a subject pattern", ErrInvalidConfig, g.Sink)
	}
	return nil
}

// allows reports whether g lets owner's pipeline read source and write
// sink.
func (g PipelineGrant) allows(owner, source, sink string) bool {
	return (g.Owner == "*" || g.Owner == owner) &&
		(g.Source == "*" || g.Source == source) &&
		subjectMatches(g.Sink, sink)
}
