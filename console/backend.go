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

// Pipelines returns client.Pipelines.
func (b *ClientBackend) Pipelines(ctx context.Context) ([]client.Pipeline, error) {
	return b.client.Pipelines(ctx)
}
