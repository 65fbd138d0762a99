package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunServerJetStream(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "t.a", []byte("x"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Sequence != 1 {
		t.Errorf("sequence = %d, want 1", ack.Sequence)
	}
}

func TestClusterSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := natstest.RunCluster(t, 3)
	nc := natstest.Connect(t, c.URLs())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Replicas: 3}); err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	if _, err := js.Publish(ctx, "r.a", []byte("1")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("stream created and written in %v", time.Since(start))
	c.Stop(0)
	start = time.Now()
	err = poll.Until(context.Background(), 30*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "r.a", []byte("2"), jetstream.WithMsgID("two"))
		return err
	})
	t.Logf("published with a node down after %v", time.Since(start))
	if err != nil {
		t.Fatalf("publish with a node down: %v", err)
	}
	c.Start(0)
	c.WaitForLeader(30 * time.Second)
	s, err := js.Stream(ctx, "R")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != 2 {
		t.Errorf("messages = %d, want 2", got)
	}
}
