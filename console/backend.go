package console

import (
	"context"

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
// status and pipelines, and the plugin store for the modules.
type ClientBackend struct {
	client *client.Client
	store  *wasmstore.Store
}

// NewClientBackend returns the Backend that asks c and reads store. A nil
// store shows no modules.
func NewClientBackend(c *client.Client, store *wasmstore.Store) *ClientBackend {
	return &ClientBackend{client: c, store: store}
}

// Status returns client.SystemStatus.
func (b *ClientBackend) Status(ctx context.Context) (*fleet.Status, error) {
	return b.client.SystemStatus(ctx)
}

// Modules returns wasmstore.Store.List, or nothing without a store.
func (b *ClientBackend) Modules(ctx context.Context) ([]wasmstore.Manifest, error) {
	if b.store == nil {
		return nil, nil
	}
	return b.store.List(ctx)
}

// Pipelines returns client.Pipelines.
func (b *ClientBackend) Pipelines(ctx context.Context) ([]client.Pipeline, error) {
	return b.client.Pipelines(ctx)
}
