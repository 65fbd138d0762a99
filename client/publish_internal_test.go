package client

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/proto"
)

// TestPublishErrorClasses: what a failed batch publish means for the job
// (pure logic: the errors are built as nats.go returns them).
func TestPublishErrorClasses(t *testing.T) {
	apiErr := func(code jetstream.ErrorCode, desc string) error {
		return &jetstream.APIError{Code: 503, ErrorCode: code, Description: desc}
	}
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"queue full", apiErr(10077, "maximum messages exceeded"), true},
		{"queue full, bytes", apiErr(10077, "maximum bytes exceeded"), true},
		{"no quorum", apiErr(proto.JSClusterNotAvailable, "JetStream system temporarily unavailable"), true},
		{"earlier attempt in flight", apiErr(proto.JSDuplicateInProgress, "duplicate message id is in process"), true},
		{"no stream response", jetstream.ErrNoStreamResponse, true},
		{"no responders", nats.ErrNoResponders, true},
		{"timeout", context.DeadlineExceeded, true},
		{"stream not found", apiErr(10059, "stream not found"), false},
		{"wrong stream", apiErr(10060, "expected stream does not match"), false},
		{"closed connection", nats.ErrConnectionClosed, false},
	} {
		got := publishError(tc.err)
		if retryable(got) != tc.retry {
			t.Errorf("%s: %v: retryable = %v, want %v", tc.name, got, !tc.retry, tc.retry)
		}
		if !tc.retry && !errors.Is(got, tc.err) {
			t.Errorf("%s: %v does not wrap the cause", tc.name, got)
		}
	}
}
