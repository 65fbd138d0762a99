package proto

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream's error codes for a cluster that cannot place a stream's
// replicas now (peers still joining), for one that cannot serve now (no
// meta or stream leader), and for a message whose id an earlier attempt is
// still being stored under (settled when the stream's leader commits that
// attempt or changes).
const (
	JSClusterNoPeers      jetstream.ErrorCode = 10005
	JSClusterNotAvailable jetstream.ErrorCode = 10008
	JSDuplicateInProgress jetstream.ErrorCode = 10158
)

// Unavailable reports whether err means JetStream cannot answer or store
// now — no quorum, a server restarting, an earlier attempt of the same
// message still undecided — so that the same call is worth making again
// later.
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == JSClusterNotAvailable || apiErr.ErrorCode == JSDuplicateInProgress
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
