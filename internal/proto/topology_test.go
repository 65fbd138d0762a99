package proto_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/proto"
)

func TestTopologyDefaults(t *testing.T) {
	got, err := proto.Topology{}.WithDefaults()
	if err != nil {
		t.Fatalf("WithDefaults: %v", err)
	}
	// The values docs/operations.md promises.
	want := proto.Topology{
		Replicas:         1,
		AckWait:          5 * time.Second,
		MaxDeliver:       4,
		MaxAckPending:    1024,
		Duplicates:       10 * time.Minute,
		Retention:        24 * time.Hour,
		MaxPendingBytes:  1 << 30,
		MaxResultBytes:   4 << 30,
		MaxResultReaders: 10_000,
		MaxDeadBytes:     1 << 30,
		MaxJobBytes:      256 << 20,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults (-want +got):\n%s", diff)
	}

	set := proto.Topology{
		Replicas: 3, AckWait: time.Minute, MaxDeliver: 9, MaxAckPending: 7, Duplicates: time.Minute,
		Retention: time.Hour, MaxPendingBytes: 100, MaxResultBytes: 200, MaxResultReaders: 5, MaxDeadBytes: 300,
		MaxJobBytes: 400, Memory: true,
	}
	got, err = set.WithDefaults()
	if err != nil {
		t.Fatalf("WithDefaults: %v", err)
	}
	if diff := cmp.Diff(set, got); diff != "" {
		t.Errorf("WithDefaults changed set fields (-want +got):\n%s", diff)
	}
}

func TestTopologyValidation(t *testing.T) {
	tests := []struct {
		name    string
		t       proto.Topology
		wantErr string // "" for a valid topology
	}{
		{"replicas 5", proto.Topology{Replicas: 5}, ""},
		{"replicas 6", proto.Topology{Replicas: 6}, "replicas 6 not in 1..5"},
		{"replicas -1", proto.Topology{Replicas: -1}, "replicas -1 not in 1..5"},
		{"ack wait 100ms", proto.Topology{AckWait: 100 * time.Millisecond}, ""},
		{"ack wait 99ms", proto.Topology{AckWait: 99 * time.Millisecond}, "ack wait 99ms below 100ms"},
		{"ack wait negative", proto.Topology{AckWait: -time.Second}, "ack wait -1s below 100ms"},
		{"max deliver 2", proto.Topology{MaxDeliver: 2}, ""},
		{"max deliver 1", proto.Topology{MaxDeliver: 1}, "max deliver 1 below 2"},
		{"max deliver -1", proto.Topology{MaxDeliver: -1}, "max deliver -1 below 2"},
		{"max ack pending 1", proto.Topology{MaxAckPending: 1}, ""},
		{"max ack pending -1", proto.Topology{MaxAckPending: -1}, "max ack pending -1 below 1"},
		{"duplicates = retention", proto.Topology{Duplicates: time.Hour, Retention: time.Hour}, ""},
		{"duplicates > retention", proto.Topology{Duplicates: 2 * time.Hour, Retention: time.Hour}, "duplicate window 2h0m0s longer than retention 1h0m0s"},
		{"retention below default duplicates", proto.Topology{Retention: time.Minute}, "duplicate window 10m0s longer than retention 1m0s"},
		{"negative retention", proto.Topology{Retention: -time.Hour}, "longer than retention -1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.t.WithDefaults()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("WithDefaults: %v, want no error", err)
				}
				return
			}
			if !errors.Is(err, proto.ErrInvalidTopology) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("WithDefaults error = %v, want one matching ErrInvalidTopology with %q", err, tt.wantErr)
			}
			if err := proto.Ensure(context.Background(), nil, tt.t); !errors.Is(err, proto.ErrInvalidTopology) {
				t.Errorf("Ensure error = %v, want one matching ErrInvalidTopology", err)
			}
		})
	}
}

func defaults(t *testing.T) proto.Topology {
	t.Helper()
	top, err := proto.Topology{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// TestStreamConfigs checks the settings docs/operations.md promises.
func TestStreamConfigs(t *testing.T) {
	top := defaults(t)
	tests := []struct {
		name      string
		got, want any
	}{
		{"DF_BATCHES", top.BatchStream(), jetstream.StreamConfig{
			Name:        "DF_BATCHES",
			Description: top.BatchStream().Description,
			Subjects:    []string{"df.batch.>"},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxBytes:    1 << 30,
			MaxAge:      24 * time.Hour,
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			Duplicates:  10 * time.Minute,
		}},
		{"DF_RESULTS", top.ResultStream(), jetstream.StreamConfig{
			Name:         "DF_RESULTS",
			Description:  top.ResultStream().Description,
			Subjects:     []string{"df.result.>"},
			Retention:    jetstream.LimitsPolicy,
			Discard:      jetstream.DiscardNew,
			MaxBytes:     4 << 30,
			MaxConsumers: 10_000,
			MaxAge:       24 * time.Hour,
			Storage:      jetstream.FileStorage,
			Replicas:     1,
			Duplicates:   10 * time.Minute,
		}},
		{"DF_DEAD", top.DeadStream(), jetstream.StreamConfig{
			Name:        "DF_DEAD",
			Description: top.DeadStream().Description,
			Subjects:    []string{"df.dead.>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxBytes:    1 << 30,
			MaxMsgSize:  256 << 10,
			MaxAge:      24 * time.Hour,
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			Duplicates:  10 * time.Minute,
		}},
		{"df-workers", top.WorkerConsumer(), jetstream.ConsumerConfig{
			Durable:       "df-workers",
			Description:   top.WorkerConsumer().Description,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       5 * time.Second,
			MaxDeliver:    -1,
			Metadata:      map[string]string{"dataflare_max_deliver": "4"},
			MaxAckPending: 1024,
			FilterSubject: "df.batch.>",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      1,
		}},
		{"DF_JOBS", top.JobBucket(), jetstream.KeyValueConfig{
			Bucket:       "DF_JOBS",
			Description:  top.JobBucket().Description,
			TTL:          24 * time.Hour,
			MaxBytes:     256 << 20,
			MaxValueSize: 64 << 10,
			Storage:      jetstream.FileStorage,
			Replicas:     1,
			History:      1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// Every subject the fleet writes lands in its stream.
	for _, c := range []struct {
		subject string
		stream  jetstream.StreamConfig
	}{
		{proto.BatchSubject("upper", "acme.j1"), top.BatchStream()},
		{proto.ResultSubject("acme.j1"), top.ResultStream()},
		{proto.DeadSubject("acme.j1"), top.DeadStream()},
	} {
		prefix := strings.TrimSuffix(c.stream.Subjects[0], ">")
		if !strings.HasPrefix(c.subject, prefix) {
			t.Errorf("subject %s is not in stream %s (%v)", c.subject, c.stream.Name, c.stream.Subjects)
		}
	}
}

func TestTopologySettingsFollow(t *testing.T) {
	top, err := proto.Topology{Replicas: 3, Memory: true, AckWait: 30 * time.Second, MaxDeliver: 6, Retention: 2 * time.Hour, Duplicates: time.Minute}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []jetstream.StreamConfig{top.BatchStream(), top.ResultStream(), top.DeadStream()} {
		if s.Replicas != 3 || s.Storage != jetstream.MemoryStorage || s.MaxAge != 2*time.Hour || s.Duplicates != time.Minute {
			t.Errorf("%s: replicas %d storage %v max age %v duplicates %v, want 3 memory 2h 1m", s.Name, s.Replicas, s.Storage, s.MaxAge, s.Duplicates)
		}
	}
	c := top.WorkerConsumer()
	if c.Replicas != 3 || c.AckWait != 30*time.Second || proto.PoisonAfter(c) != 6 || c.MaxDeliver != -1 {
		t.Errorf("consumer: replicas %d ack wait %v poison after %d max deliver %d, want 3 30s 6 -1", c.Replicas, c.AckWait, proto.PoisonAfter(c), c.MaxDeliver)
	}
	kv := top.JobBucket()
	if kv.Replicas != 3 || kv.Storage != jetstream.MemoryStorage || kv.TTL != 2*time.Hour {
		t.Errorf("bucket: replicas %d storage %v TTL %v, want 3 memory 2h", kv.Replicas, kv.Storage, kv.TTL)
	}
}

func TestEnsure(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Twice: the second call finds everything in place.
	for i := range 2 {
		if err := proto.Ensure(ctx, js, proto.Topology{}); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	top := defaults(t)
	for _, want := range []jetstream.StreamConfig{top.BatchStream(), top.ResultStream(), top.DeadStream()} {
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.Name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s info: %v", want.Name, err)
		}
		got := info.Config
		if want.MaxBytes == 0 {
			want.MaxBytes = -1 // the server's "no limit"
		}
		if diff := cmp.Diff(want.Subjects, got.Subjects); diff != "" {
			t.Errorf("%s subjects (-want +got):\n%s", want.Name, diff)
		}
		if got.Retention != want.Retention || got.Discard != want.Discard || got.MaxBytes != want.MaxBytes ||
			got.MaxAge != want.MaxAge || got.Duplicates != want.Duplicates || got.Storage != want.Storage || got.Replicas != want.Replicas {
			t.Errorf("%s on the server: retention %v discard %v max bytes %d max age %v duplicates %v storage %v replicas %d; want %v %v %d %v %v %v %d",
				want.Name, got.Retention, got.Discard, got.MaxBytes, got.MaxAge, got.Duplicates, got.Storage, got.Replicas,
				want.Retention, want.Discard, want.MaxBytes, want.MaxAge, want.Duplicates, want.Storage, want.Replicas)
		}
	}
	checkConsumer(ctx, t, js, 5*time.Second, 4)
	kv, err := js.KeyValue(ctx, proto.BucketJobs)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("bucket status: %v", err)
	}
	if st.TTL() != 24*time.Hour || st.History() != 1 {
		t.Errorf("bucket TTL %v history %d, want 24h 1", st.TTL(), st.History())
	}

	// A changed setting is applied to what exists.
	if err := proto.Ensure(ctx, js, proto.Topology{AckWait: 12 * time.Second, MaxDeliver: 7}); err != nil {
		t.Fatalf("Ensure with a new AckWait: %v", err)
	}
	checkConsumer(ctx, t, js, 12*time.Second, 7)

	// Settings the server cannot have are errors naming the object.
	err = proto.Ensure(ctx, js, proto.Topology{Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_BATCHES") {
		t.Errorf("Ensure with 3 replicas on one server: error = %v, want one about stream DF_BATCHES", err)
	}
}

func checkConsumer(ctx context.Context, t *testing.T, js jetstream.JetStream, ackWait time.Duration, maxDeliver int) {
	t.Helper()
	c, err := js.Consumer(ctx, proto.StreamBatches, proto.ConsumerWorker)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	got := info.Config
	// JetStream never gives a batch up (MaxDeliver -1); the workers read
	// theirs from the metadata.
	if got.AckPolicy != jetstream.AckExplicitPolicy || got.AckWait != ackWait || got.MaxDeliver != -1 || proto.PoisonAfter(got) != maxDeliver ||
		got.MaxAckPending != 1024 || got.FilterSubject != "df.batch.>" {
		t.Errorf("consumer on the server: ack %v ack wait %v max deliver %d poison after %d max ack pending %d filter %q; want explicit %v -1 %d 1024 df.batch.>",
			got.AckPolicy, got.AckWait, got.MaxDeliver, proto.PoisonAfter(got), got.MaxAckPending, got.FilterSubject, ackWait, maxDeliver)
	}
}

func TestEnsureConflict(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Someone else's stream on the batch subjects: Ensure cannot make
	// DF_BATCHES and says so.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"df.batch.>"}}); err != nil {
		t.Fatal(err)
	}
	err = proto.Ensure(ctx, js, proto.Topology{Memory: true})
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_BATCHES") {
		t.Errorf("Ensure error = %v, want one about stream DF_BATCHES", err)
	}
}

// TestEnsureTakesOverMaxDeliver: a worker consumer made when JetStream
// itself gave batches up at MaxDeliver (and carried no metadata) is
// updated: JetStream never gives a batch up, and the workers read the
// figure from the metadata.
func TestEnsureTakesOverMaxDeliver(t *testing.T) {
	s := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	top, err := proto.Topology{MaxDeliver: 5}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, top.BatchStream()); err != nil {
		t.Fatal(err)
	}
	old := top.WorkerConsumer()
	old.MaxDeliver, old.Metadata = 4, nil
	if _, err := js.CreateOrUpdateConsumer(ctx, proto.StreamBatches, old); err != nil {
		t.Fatal(err)
	}
	if err := proto.Ensure(ctx, js, top); err != nil {
		t.Fatal(err)
	}
	checkConsumer(ctx, t, js, top.AckWait, 5)
}

// TestPoisonAfterDefault: a consumer without a usable figure gets the
// default.
func TestPoisonAfterDefault(t *testing.T) {
	for _, meta := range []map[string]string{nil, {}, {proto.MetaMaxDeliver: "x"}, {proto.MetaMaxDeliver: "1"}} {
		if got := proto.PoisonAfter(jetstream.ConsumerConfig{Metadata: meta}); got != proto.DefaultMaxDeliver {
			t.Errorf("metadata %v: %d, want the default %d", meta, got, proto.DefaultMaxDeliver)
		}
	}
}
