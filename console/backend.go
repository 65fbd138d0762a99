package console

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/wasmstore"
)

// Backend is where the console's data comes from. Every method is called
// while a page renders, or by the sampler, with a context bounded by
// Config.Timeout; errors are shown on the page.
type Backend interface {
	// Status returns the fleet's status as a coordinator sees it.
	Status(ctx context.Context) (*fleet.Status, error)
	// Modules returns the stored WebAssembly plugin modules, every
	// version, newest first.
	Modules(ctx context.Context) ([]wasmstore.Manifest, error)
	// Pipelines returns the pipelines and how they go.
	Pipelines(ctx context.Context) ([]client.Pipeline, error)
	// Jobs returns every owner's jobs, most recently changed first.
	Jobs(ctx context.Context) ([]client.JobInfo, error)
	// JobInfo returns one job with its live counts; an error matching
	// client.ErrJobNotFound when there is none.
	JobInfo(ctx context.Context, id string) (*client.JobInfo, error)
	// CancelJob cancels a job.
	CancelJob(ctx context.Context, id string) error
	// DeadLetters returns dead letters, newest first, their keys and
	// values cut to a preview.
	DeadLetters(ctx context.Context, f client.DeadFilter) ([]client.DeadLetterInfo, error)
	// Replay runs dead letters again and reports what became of them.
	Replay(ctx context.Context, spec client.ReplaySpec) (*client.ReplayReport, error)
}

// ClientBackend is the Backend of a real fleet: a client for the fleet's
// status, jobs, dead letters and pipelines, and the plugin store for the
// modules. Safe for concurrent use.
type ClientBackend struct {
	client *client.Client
	js     jetstream.JetStream

	mu    sync.Mutex
	store *wasmstore.Store
}

// NewClientBackend returns the Backend that asks c, and reads the plugin
// store through js (opened on first use, never created: until a
// coordinator creates it, there are no modules).
func NewClientBackend(c *client.Client, js jetstream.JetStream) *ClientBackend {
	return &ClientBackend{client: c, js: js}
}

// Status returns client.SystemStatus.
func (b *ClientBackend) Status(ctx context.Context) (*fleet.Status, error) {
	return b.client.SystemStatus(ctx)
}

// Modules returns wasmstore.Store.List, or nothing while the store does
// not exist.
func (b *ClientBackend) Modules(ctx context.Context) ([]wasmstore.Manifest, error) {
	b.mu.Lock()
	s := b.store
	if s == nil {
		var err error
		if s, err = wasmstore.Open(ctx, b.js); err != nil {
			b.mu.Unlock()
			if errors.Is(err, wasmstore.ErrNotFound) {
				return nil, nil
			}
			return nil, err
		}
		b.store = s
	}
	b.mu.Unlock()
	return s.List(ctx)
}

// Pipelines returns client.AllPipelines, every owner's (as Jobs).
func (b *ClientBackend) Pipelines(ctx context.Context) ([]client.Pipeline, error) {
	return b.client.AllPipelines(ctx)
}

// Jobs returns client.Jobs of every owner (the console is the operators'):
// the client's NATS user needs the admin role where permissions are on.
func (b *ClientBackend) Jobs(ctx context.Context) ([]client.JobInfo, error) {
	return b.client.Jobs(ctx, true)
}

// JobInfo returns client.JobInfo.
func (b *ClientBackend) JobInfo(ctx context.Context, id string) (*client.JobInfo, error) {
	return b.client.JobInfo(ctx, id)
}

// CancelJob returns client.CancelJob's error.
func (b *ClientBackend) CancelJob(ctx context.Context, id string) error {
	return b.client.CancelJob(ctx, id)
}

// DeadLetters returns client.DeadLetters.
func (b *ClientBackend) DeadLetters(ctx context.Context, f client.DeadFilter) ([]client.DeadLetterInfo, error) {
	return b.client.DeadLetters(ctx, f)
}

// Replay returns client.Replay.
func (b *ClientBackend) Replay(ctx context.Context, spec client.ReplaySpec) (*client.ReplayReport, error) {
	return b.client.Replay(ctx, spec)
}
