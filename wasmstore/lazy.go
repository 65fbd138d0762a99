package wasmstore

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/wasm"
)

// Lazy is a module source over the store that opens it (with Open: it never
// creates the bucket) on the first Fetch and keeps it: what a worker uses,
// since it may start before a coordinator has created the bucket, and
// needs it only when a batch of a WebAssembly plugin arrives — by then a
// coordinator resolved the plugin there. It satisfies wasm.LimitedSource and
// is safe for concurrent use.
type Lazy struct {
	js   jetstream.JetStream
	opts []Option

	mu sync.Mutex
	s  *Store
}

// NewLazy returns a Lazy source over the bucket on js; opts are Open's.
func NewLazy(js jetstream.JetStream, opts ...Option) *Lazy {
	return &Lazy{js: js, opts: opts}
}

// Fetch opens the store if it is not open yet and returns Store.Fetch's
// result. Until the bucket exists it returns Open's error (matching
// ErrNotFound, which a registry takes for a module that is not there).
func (l *Lazy) Fetch(ctx context.Context, name, digest string) ([]byte, error) {
	s, err := l.store(ctx)
	if err != nil {
		return nil, err
	}
	return s.Fetch(ctx, name, digest)
}

// FetchLimited opens the store if it is not open yet and returns
// Store.FetchLimited's result: what makes a Lazy a wasm.LimitedSource.
func (l *Lazy) FetchLimited(ctx context.Context, name, digest string) ([]byte, wasm.Limits, error) {
	s, err := l.store(ctx)
	if err != nil {
		return nil, wasm.Limits{}, err
	}
	return s.FetchLimited(ctx, name, digest)
}

func (l *Lazy) store(ctx context.Context) (*Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		return l.s, nil
	}
	s, err := Open(ctx, l.js, l.opts...)
	if err != nil {
		return nil, err
	}
	l.s = s
	return s, nil
}
