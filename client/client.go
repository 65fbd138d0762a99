package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
)

// Client submits work to a fleet. It is safe for concurrent use.
type Client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts options
}

type options struct {
	timeout time.Duration
	retry   time.Duration
	window  int
	senders int
	owner   string
	log     *slog.Logger
	// plain turns compression off (WithCompression(false)).
	plain bool
}

// Option configures a Client.
type Option func(*options) error

// WithTimeout sets how long one request waits for its reply (default 5
// s; sooner when the caller's context says so): requests that fail for want
// of an answer are sent again, within WithRetry. d must be positive.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return invalidOption("timeout %v is not positive", d)
		}
		o.timeout = d
		return nil
	}
}

// WithRetry sets how long a submission keeps retrying while no coordinator
// answers, JetStream does not acknowledge a batch, or the batch queue is
// full (default 2 min). d must not be negative.
func WithRetry(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return invalidOption("retry %v is negative", d)
		}
		o.retry = d
		return nil
	}
}

// WithWindow sets how many batches a job may have submitted beyond the
// results read (default 32): the bound on a job's memory and on how far
// submission runs ahead. n must be at least 1.
func WithWindow(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalidOption("window %d below 1", n)
		}
		o.window = n
		return nil
	}
}

// WithSenders sets how many batches a job sends at once (default 4).
func WithSenders(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 256 {
			return invalidOption("senders %d not in 1..256", n)
		}
		o.senders = n
		return nil
	}
}

// WithOwner names the owner of the jobs this client submits (default
// "anon"): 1-64 of [A-Za-z0-9_-]. Job ids start with it, and so do the
// subjects of their results, so a NATS account can be allowed to read its
// owner's results only (see deploy/nats).
func WithOwner(name string) Option {
	return func(o *options) error {
		if !proto.ValidName(name) {
			return invalidOption("owner %q: use 1-64 of [A-Za-z0-9_-]", name)
		}
		o.owner = name
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return invalidOption("nil logger")
		}
		o.log = l
		return nil
	}
}

// WithCompression says whether the client compresses the batches it
// publishes and asks workers to compress its jobs' results (default true).
// Either way only messages that a sample shows compressible are
// compressed, with S2 (docs/wire-format.md, "Compression"), and the client
// reads compressed results of any job. Turn it off to spend no CPU on
// trying when records are known to be incompressible.
func WithCompression(on bool) Option {
	return func(o *options) error {
		o.plain = !on
		return nil
	}
}

// New returns a Client on nc. Invalid options give errors wrapping
// ErrInvalidOption.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, invalidOption("nil connection")
	}
	o := options{
		timeout: 5 * time.Second,
		retry:   2 * time.Minute,
		window:  32,
		senders: 4,
		owner:   proto.DefaultOwner,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	o.senders = min(o.senders, o.window)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{nc: nc, js: js, opts: o}, nil
}

// withTimeout bounds one request by the client's timeout, or ctx's
// deadline when it is sooner: a request that no coordinator answers (one
// died with it) fails in time to be sent again, whatever the caller's
// deadline for the whole operation.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.timeout)
}

// request sends a JSON request to a coordinator and decodes its reply.
func request[T any](ctx context.Context, c *Client, subject string, req any) (*T, error) {
	var data []byte
	if req != nil {
		var err error
		if data, err = json.Marshal(req); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	tracing.Inject(ctx, msg.Header)
	m, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, requestError(err)
	}
	out, err := proto.DecodeReply[T](m.Data)
	if err != nil {
		return nil, fromProto(err)
	}
	return out, nil
}

// requestError classifies a failed request: no coordinator listening, or
// none answering in time, is ErrNoCoordinator.
func requestError(err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: nobody listens (is a coordinator running?): %w", ErrNoCoordinator, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: %v", ErrNoCoordinator, err)
	}
	return fmt.Errorf("client: %w", err)
}
