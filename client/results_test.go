package client_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
)

// TestResultsReadAgainThroughNewConsumer: when the consumer reading a job's
// results cannot be made again under its name (here a consumer of that name
// already exists with another configuration; in a cluster, its assignment to
// a server just lost), the job reads its results through a new consumer
// from where it stopped, and gets every result once, in order. Without it
// the ordered consumer tries the same name for ever and the job stalls.
func TestResultsReadAgainThroughNewConsumer(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const first, n = 300, 600
	recs := records(n, 50)
	more := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		for i, r := range recs {
			if i == first {
				select {
				case <-more:
				case <-ctx.Done():
					return
				}
			}
			if !yield(r, nil) {
				return
			}
		}
	}
	job, err := c.Submit(ctx, "upper", src, client.WithBatchSize(50), client.WithLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan client.Output, n)
	failed := make(chan error, 1)
	// Stops when the job's results end.
	go func() {
		defer close(got)
		for out, err := range job.Results() {
			if err != nil {
				failed <- err
				return
			}
			got <- out
		}
	}()
	var outs []client.Output
	for len(outs) < first {
		select {
		case out := <-got:
			outs = append(outs, out)
		case err := <-failed:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatalf("%d results of the first %d", len(outs), first)
		}
	}

	// The job's one reader: its ordered consumer, "<prefix>_1".
	stream, err := js.Stream(ctx, proto.ResultStream(proto.JobOwner(job.ID())))
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for n := range stream.ConsumerNames(ctx).Name() {
		name = n
	}
	prefix, ok := strings.CutSuffix(name, "_1")
	if !ok {
		t.Fatalf("result reader %q: want an ordered consumer's first name", name)
	}
	// The name it would be made again under is taken, with a configuration
	// it cannot be updated to; then the consumer goes.
	if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: prefix + "_2", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: proto.ResultSubject(job.ID())}); err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteConsumer(ctx, name); err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 30*time.Second, func() error {
		if client.Reopened(job) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the results were not read again through a new consumer: %v", err)
	}
	close(more)
	for out := range got {
		outs = append(outs, out)
	}
	select {
	case err := <-failed:
		t.Fatal(err)
	default:
	}
	if len(outs) != n {
		t.Fatalf("%d results, want %d", len(outs), n)
	}
	for i, out := range outs {
		if out.Index != uint64(i) || !bytes.Equal(out.Value, bytes.ToUpper(recs[i].Value)) {
			t.Fatalf("result %d: index %d, value %q", i, out.Index, out.Value)
		}
	}
}
