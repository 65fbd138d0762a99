package proto_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/fleet"
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
		AckWait:          time.Second, // failover within a heartbeat or so
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

// TestStreamConfigs checks the settings docs/operations.md promises: an
// owner's batch and result streams, the shared batch stream of a FIFO
// fleet, and the consumers of each priority in both.
func TestStreamConfigs(t *testing.T) {
	top := defaults(t)
	// A batch stream's subjects are its consumers' filters, one per
	// priority: nothing lands there that no worker would take.
	batches := func(name, prefix string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: top.BatchStream("").Description,
			Subjects:    []string{prefix + ".high.>", prefix + ".normal.>", prefix + ".low.>"},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxBytes:    1 << 30,
			MaxAge:      24 * time.Hour,
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			Duplicates:  10 * time.Minute,
		}
	}
	consumer := func(durable, filter string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable:       durable,
			Description:   top.WorkerConsumer("", fleet.Normal).Description,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Second,
			MaxDeliver:    -1,
			Metadata:      map[string]string{"dataflare_max_deliver": "4"},
			MaxAckPending: 1024,
			FilterSubject: filter,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      1,
		}
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"DF_BATCHES_acme", top.BatchStream("acme"), batches("DF_BATCHES_acme", "df.batch.acme")},
		{"DF_BATCHES (FIFO)", top.BatchStream(""), batches("DF_BATCHES", "df.batch.*")},
		{"DF_RESULTS_acme", top.ResultStream("acme"), jetstream.StreamConfig{
			Name:         "DF_RESULTS_acme",
			Description:  top.ResultStream("acme").Description,
			Subjects:     []string{"df.result.acme.>"},
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
		{"df-workers-high of acme", top.WorkerConsumer("acme", fleet.High), consumer("df-workers-high", "df.batch.acme.high.>")},
		{"df-workers-normal of acme", top.WorkerConsumer("acme", fleet.Normal), consumer("df-workers-normal", "df.batch.acme.normal.>")},
		{"df-workers-low of acme", top.WorkerConsumer("acme", fleet.Low), consumer("df-workers-low", "df.batch.acme.low.>")},
		{"df-workers-high (FIFO)", top.WorkerConsumer("", fleet.High), consumer("df-workers-high", "df.batch.*.high.>")},
		{"df-workers-normal (FIFO)", top.WorkerConsumer("", fleet.Normal), consumer("df-workers-normal", "df.batch.*.normal.>")},
		{"df-workers-low (FIFO)", top.WorkerConsumer("", fleet.Low), consumer("df-workers-low", "df.batch.*.low.>")},
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
		{"DF_QUEUES", top.QueueBucket(), jetstream.KeyValueConfig{
			Bucket:      "DF_QUEUES",
			Description: top.QueueBucket().Description,
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			History:     1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSubjectsLand: every subject the fleet writes lands in its owner's
// stream and no other owner's, in the shared stream of a FIFO fleet, and
// in the consumer of its priority only; owners' streams never overlap (a
// server refuses streams that do).
func TestSubjectsLand(t *testing.T) {
	top := defaults(t)
	in := func(subject string, s jetstream.StreamConfig) bool {
		for _, f := range s.Subjects {
			if server.SubjectMatchesFilter(subject, f) {
				return true
			}
		}
		return false
	}
	// acme2 starts like acme: owners are whole tokens, not prefixes.
	owners := []string{"acme", "acme2", "bob", proto.DefaultOwner}
	for _, owner := range owners {
		job := proto.JobID(owner, "j1")
		for _, p := range fleet.Priorities {
			subject := proto.BatchSubject(job, p, "upper")
			if !server.IsValidLiteralSubject(subject) {
				t.Errorf("batch subject %q is not a literal subject", subject)
			}
			if !in(subject, top.BatchStream("")) {
				t.Errorf("%s is not in the shared stream %v", subject, top.BatchStream("").Subjects)
			}
			for _, other := range owners {
				if got := in(subject, top.BatchStream(other)); got != (other == owner) {
					t.Errorf("%s in %s: %v, want %v", subject, proto.BatchStream(other), got, other == owner)
				}
			}
			for _, q := range fleet.Priorities {
				if got := server.SubjectMatchesFilter(subject, top.WorkerConsumer(owner, q).FilterSubject); got != (p == q) {
					t.Errorf("%s taken by %s of %s: %v, want %v", subject, proto.WorkerConsumer(q), proto.BatchStream(owner), got, p == q)
				}
				if got := server.SubjectMatchesFilter(subject, top.WorkerConsumer("", q).FilterSubject); got != (p == q) {
					t.Errorf("%s taken by %s of %s: %v, want %v", subject, proto.WorkerConsumer(q), proto.StreamBatches, got, p == q)
				}
			}
		}
		// A batch subject without a priority the workers know lands
		// nowhere: no consumer would ever take it.
		for _, bad := range []string{"df.batch." + owner + ".urgent.upper.j1", "df.batch." + owner + ".high"} {
			for _, s := range []jetstream.StreamConfig{top.BatchStream(owner), top.BatchStream("")} {
				if in(bad, s) {
					t.Errorf("%s is captured by %s %v", bad, s.Name, s.Subjects)
				}
			}
		}
		for _, other := range owners {
			if got := in(proto.ResultSubject(job), top.ResultStream(other)); got != (other == owner) {
				t.Errorf("%s in %s: %v, want %v", proto.ResultSubject(job), proto.ResultStream(other), got, other == owner)
			}
			if other != owner {
				if collide(top.BatchStream(owner), top.BatchStream(other)) {
					t.Errorf("the batch streams of %s and %s overlap", owner, other)
				}
				if collide(top.ResultStream(owner), top.ResultStream(other)) {
					t.Errorf("the result streams of %s and %s overlap", owner, other)
				}
			}
		}
		if !in(proto.DeadSubject(job), top.DeadStream()) {
			t.Errorf("%s is not in %s", proto.DeadSubject(job), proto.StreamDead)
		}
		// Hints are core NATS: no stream may capture them.
		for _, s := range []jetstream.StreamConfig{top.BatchStream(""), top.BatchStream(owner), top.ResultStream(owner), top.DeadStream()} {
			if hint := proto.WorkSubject(owner, fleet.High); in(hint, s) {
				t.Errorf("work hint %s is captured by %s", hint, s.Name)
			}
		}
	}
	// The consumers of one stream take disjoint subjects: a work queue
	// stream refuses overlapping ones.
	for _, owner := range []string{"acme", ""} {
		for i, p := range fleet.Priorities {
			for _, q := range fleet.Priorities[i+1:] {
				if server.SubjectsCollide(top.WorkerConsumer(owner, p).FilterSubject, top.WorkerConsumer(owner, q).FilterSubject) {
					t.Errorf("owner %q: the consumers of %v and %v overlap", owner, p, q)
				}
			}
		}
	}
}

// collide reports whether streams a and b have overlapping subjects.
func collide(a, b jetstream.StreamConfig) bool {
	for _, x := range a.Subjects {
		for _, y := range b.Subjects {
			if server.SubjectsCollide(x, y) {
				return true
			}
		}
	}
	return false
}

func TestTopologySettingsFollow(t *testing.T) {
	top, err := proto.Topology{Replicas: 3, Memory: true, AckWait: 30 * time.Second, MaxDeliver: 6, MaxAckPending: 9,
		Retention: 2 * time.Hour, Duplicates: time.Minute, MaxPendingBytes: 1000, MaxResultBytes: 2000}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []jetstream.StreamConfig{top.BatchStream("acme"), top.BatchStream(""), top.ResultStream("acme"), top.DeadStream()} {
		if s.Replicas != 3 || s.Storage != jetstream.MemoryStorage || s.MaxAge != 2*time.Hour || s.Duplicates != time.Minute {
			t.Errorf("%s: replicas %d storage %v max age %v duplicates %v, want 3 memory 2h 1m", s.Name, s.Replicas, s.Storage, s.MaxAge, s.Duplicates)
		}
	}
	// Each owner's quotas.
	if b, r := top.BatchStream("acme").MaxBytes, top.ResultStream("acme").MaxBytes; b != 1000 || r != 2000 {
		t.Errorf("acme's streams: max bytes %d and %d, want 1000 and 2000", b, r)
	}
	for _, owner := range []string{"acme", ""} {
		for _, p := range fleet.Priorities {
			c := top.WorkerConsumer(owner, p)
			if c.Replicas != 3 || c.AckWait != 30*time.Second || proto.PoisonAfter(c) != 6 || c.MaxDeliver != -1 || c.MaxAckPending != 9 {
				t.Errorf("consumer %s of %q: replicas %d ack wait %v poison after %d max deliver %d max ack pending %d, want 3 30s 6 -1 9",
					c.Durable, owner, c.Replicas, c.AckWait, proto.PoisonAfter(c), c.MaxDeliver, c.MaxAckPending)
			}
		}
	}
	for _, kv := range []jetstream.KeyValueConfig{top.JobBucket(), top.QueueBucket()} {
		if kv.Replicas != 3 || kv.Storage != jetstream.MemoryStorage {
			t.Errorf("bucket %s: replicas %d storage %v, want 3 memory", kv.Bucket, kv.Replicas, kv.Storage)
		}
	}
	if kv := top.JobBucket(); kv.TTL != 2*time.Hour {
		t.Errorf("bucket %s: TTL %v, want 2h", kv.Bucket, kv.TTL)
	}
}

// jetStream runs a JetStream server for the test and returns a JetStream
// context on it, with a context for the test's requests.
func jetStream(t *testing.T) (context.Context, jetstream.JetStream) {
	t.Helper()
	s := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx, js
}

// streamNames returns the names of the streams capturing subject.
func streamNames(ctx context.Context, t *testing.T, js jetstream.JetStream, subject string) []string {
	t.Helper()
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject(subject))
	var out []string
	for name := range names.Name() {
		out = append(out, name)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("stream names: %v", err)
	}
	slices.Sort(out)
	return out
}

// checkStream checks the settings of stream want.Name on the server.
func checkStream(ctx context.Context, t *testing.T, js jetstream.JetStream, want jetstream.StreamConfig) {
	t.Helper()
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

// checkConsumers checks the workers' consumers of every priority in
// owner's batch stream (owner "": the shared one) on the server.
func checkConsumers(ctx context.Context, t *testing.T, js jetstream.JetStream, owner string, ackWait time.Duration, maxDeliver int) {
	t.Helper()
	stream, filter := proto.BatchStream(owner), "df.batch."+owner+".%s.>"
	if owner == "" {
		stream, filter = proto.StreamBatches, "df.batch.*.%s.>"
	}
	for _, p := range fleet.Priorities {
		c, err := js.Consumer(ctx, stream, proto.WorkerConsumer(p))
		if err != nil {
			t.Fatalf("consumer %s of %s: %v", proto.WorkerConsumer(p), stream, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatalf("consumer %s of %s info: %v", proto.WorkerConsumer(p), stream, err)
		}
		got, wantFilter := info.Config, fmt.Sprintf(filter, p)
		// JetStream never gives a batch up (MaxDeliver -1); the workers
		// read theirs from the metadata.
		if got.AckPolicy != jetstream.AckExplicitPolicy || got.AckWait != ackWait || got.MaxDeliver != -1 || proto.PoisonAfter(got) != maxDeliver ||
			got.MaxAckPending != 1024 || got.FilterSubject != wantFilter {
			t.Errorf("consumer %s of %s on the server: ack %v ack wait %v max deliver %d poison after %d max ack pending %d filter %q; want explicit %v -1 %d 1024 %s",
				proto.WorkerConsumer(p), stream, got.AckPolicy, got.AckWait, got.MaxDeliver, proto.PoisonAfter(got), got.MaxAckPending, got.FilterSubject,
				ackWait, maxDeliver, wantFilter)
		}
	}
}

// TestEnsure: Ensure makes what every fleet has and no owner's streams;
// EnsureOwner makes an owner's batch stream, its consumers and its result
// stream. Both are idempotent, apply changed settings to what exists and
// name what they cannot make.
func TestEnsure(t *testing.T) {
	ctx, js := jetStream(t)
	top := defaults(t)

	// Twice: the second call finds everything in place.
	for i := range 2 {
		if err := proto.Ensure(ctx, js, proto.Topology{}); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	checkStream(ctx, t, js, top.DeadStream())
	for _, b := range []jetstream.KeyValueConfig{top.JobBucket(), top.QueueBucket()} {
		if _, err := js.KeyValue(ctx, b.Bucket); err != nil {
			t.Fatalf("bucket %s: %v", b.Bucket, err)
		}
	}
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
	// Owners' streams come with their first job: none yet.
	if got := streamNames(ctx, t, js, "df.batch.>"); len(got) != 0 {
		t.Errorf("batch streams after Ensure: %v, want none", got)
	}
	if got := streamNames(ctx, t, js, "df.result.>"); len(got) != 0 {
		t.Errorf("result streams after Ensure: %v, want none", got)
	}

	// Twice for acme, once for each other: owners' streams live side by
	// side, whatever valid name the owner has.
	long := strings.Repeat("x", 64)
	owners := []string{"a-b_9", "acme", "bob", long}
	for _, owner := range append([]string{"acme"}, owners...) {
		if err := proto.EnsureOwner(ctx, js, proto.Topology{}, owner); err != nil {
			t.Fatalf("EnsureOwner %s: %v", owner, err)
		}
	}
	var batchStreams, resultStreams []string
	for _, owner := range owners {
		checkStream(ctx, t, js, top.BatchStream(owner))
		checkStream(ctx, t, js, top.ResultStream(owner))
		checkConsumers(ctx, t, js, owner, proto.DefaultAckWait, 4)
		batchStreams = append(batchStreams, "DF_BATCHES_"+owner)
		resultStreams = append(resultStreams, "DF_RESULTS_"+owner)
	}
	if diff := cmp.Diff(batchStreams, streamNames(ctx, t, js, "df.batch.>")); diff != "" {
		t.Errorf("batch streams (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(resultStreams, streamNames(ctx, t, js, "df.result.>")); diff != "" {
		t.Errorf("result streams (-want +got):\n%s", diff)
	}

	// A changed setting is applied to what exists: to an owner's
	// consumers by EnsureOwner (Ensure leaves them alone).
	changed := proto.Topology{AckWait: 12 * time.Second, MaxDeliver: 7}
	if err := proto.Ensure(ctx, js, changed); err != nil {
		t.Fatalf("Ensure with a new AckWait: %v", err)
	}
	checkConsumers(ctx, t, js, "acme", proto.DefaultAckWait, 4)
	if err := proto.EnsureOwner(ctx, js, changed, "acme"); err != nil {
		t.Fatalf("EnsureOwner with a new AckWait: %v", err)
	}
	checkConsumers(ctx, t, js, "acme", 12*time.Second, 7)
	checkConsumers(ctx, t, js, "bob", proto.DefaultAckWait, 4)

	// Settings the server cannot have are errors naming the object.
	err = proto.Ensure(ctx, js, proto.Topology{Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_DEAD") {
		t.Errorf("Ensure with 3 replicas on one server: error = %v, want one about stream DF_DEAD", err)
	}
	err = proto.EnsureOwner(ctx, js, proto.Topology{Replicas: 3}, "acme")
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_RESULTS_acme") {
		t.Errorf("EnsureOwner with 3 replicas on one server: error = %v, want one about stream DF_RESULTS_acme", err)
	}
	// An invalid topology is refused before anything is asked.
	if err := proto.EnsureOwner(ctx, js, proto.Topology{MaxDeliver: 1}, "acme"); !errors.Is(err, proto.ErrInvalidTopology) {
		t.Errorf("EnsureOwner with MaxDeliver 1: error = %v, want one matching ErrInvalidTopology", err)
	}
}

// TestEnsureFIFO: a FIFO fleet's Ensure makes the shared batch stream and
// its consumers; EnsureOwner then makes an owner's result stream only.
func TestEnsureFIFO(t *testing.T) {
	ctx, js := jetStream(t)
	top, err := proto.Topology{FIFO: true}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := proto.Ensure(ctx, js, top); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	checkStream(ctx, t, js, top.BatchStream(""))
	checkStream(ctx, t, js, top.DeadStream())
	checkConsumers(ctx, t, js, "", proto.DefaultAckWait, 4)
	for i := range 2 {
		if err := proto.EnsureOwner(ctx, js, top, "acme"); err != nil {
			t.Fatalf("EnsureOwner #%d: %v", i+1, err)
		}
	}
	checkStream(ctx, t, js, top.ResultStream("acme"))
	if diff := cmp.Diff([]string{"DF_BATCHES"}, streamNames(ctx, t, js, "df.batch.>")); diff != "" {
		t.Errorf("batch streams of a FIFO fleet (-want +got):\n%s", diff)
	}

	// A changed setting is applied to the shared consumers.
	top.AckWait, top.MaxDeliver = 12*time.Second, 7
	if err := proto.Ensure(ctx, js, top); err != nil {
		t.Fatalf("Ensure with a new AckWait: %v", err)
	}
	checkConsumers(ctx, t, js, "", 12*time.Second, 7)

	// A fleet does not switch: an owner's stream would overlap the
	// shared one, and the server says so.
	top.FIFO = false
	err = proto.EnsureOwner(ctx, js, top, "acme")
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_BATCHES_acme") {
		t.Errorf("EnsureOwner without FIFO on a FIFO fleet: error = %v, want one about stream DF_BATCHES_acme", err)
	}
}

func TestEnsureConflict(t *testing.T) {
	ctx, js := jetStream(t)
	// Someone else's stream on the batch subjects: neither an owner's
	// stream nor the shared one can be made, and the error says which.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"df.batch.>"}}); err != nil {
		t.Fatal(err)
	}
	// What every fleet has does not touch the batch subjects.
	if err := proto.Ensure(ctx, js, proto.Topology{Memory: true}); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	err := proto.EnsureOwner(ctx, js, proto.Topology{Memory: true}, "acme")
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_BATCHES_acme") {
		t.Errorf("EnsureOwner error = %v, want one about stream DF_BATCHES_acme", err)
	}
	err = proto.Ensure(ctx, js, proto.Topology{Memory: true, FIFO: true})
	if err == nil || !strings.Contains(err.Error(), "proto: stream DF_BATCHES") {
		t.Errorf("Ensure (FIFO) error = %v, want one about stream DF_BATCHES", err)
	}
}

// TestEnsureTakesOverMaxDeliver: a worker consumer made when JetStream
// itself gave batches up at MaxDeliver (and carried no metadata) is
// updated, in an owner's stream by EnsureOwner and in the shared one by
// Ensure: JetStream never gives a batch up, and the workers read the
// figure from the metadata.
func TestEnsureTakesOverMaxDeliver(t *testing.T) {
	for _, tt := range []struct {
		name  string
		owner string // "": the shared stream of a FIFO fleet
	}{{"owner", "acme"}, {"FIFO", ""}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, js := jetStream(t)
			top, err := proto.Topology{MaxDeliver: 5, FIFO: tt.owner == ""}.WithDefaults()
			if err != nil {
				t.Fatal(err)
			}
			stream := top.BatchStream(tt.owner)
			if _, err := js.CreateOrUpdateStream(ctx, stream); err != nil {
				t.Fatal(err)
			}
			for _, p := range fleet.Priorities {
				old := top.WorkerConsumer(tt.owner, p)
				old.MaxDeliver, old.Metadata = 4, nil
				if _, err := js.CreateOrUpdateConsumer(ctx, stream.Name, old); err != nil {
					t.Fatal(err)
				}
			}
			if err := proto.Ensure(ctx, js, top); err != nil {
				t.Fatal(err)
			}
			if tt.owner != "" {
				if err := proto.EnsureOwner(ctx, js, top, tt.owner); err != nil {
					t.Fatal(err)
				}
			}
			checkConsumers(ctx, t, js, tt.owner, top.AckWait, 5)
		})
	}
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

// TestEnsureOldLayout: the shared streams of an earlier version capture
// today's subjects; Ensure names them instead of failing on whichever
// stream comes first, and goes on once they are gone.
func TestEnsureOldLayout(t *testing.T) {
	ctx, js := jetStream(t)
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "DF_BATCHES", Subjects: []string{"df.batch.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.MemoryStorage},
		{Name: "DF_RESULTS", Subjects: []string{"df.result.>"}, Storage: jetstream.MemoryStorage},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for _, fifo := range []bool{false, true} {
		err := proto.Ensure(ctx, js, proto.Topology{Memory: true, FIFO: fifo})
		if !errors.Is(err, proto.ErrOldLayout) || !strings.Contains(err.Error(), "DF_RESULTS, DF_BATCHES") {
			t.Errorf("Ensure (FIFO %v) = %v, want ErrOldLayout naming DF_RESULTS and DF_BATCHES", fifo, err)
		}
	}
	for _, name := range []string{"DF_BATCHES", "DF_RESULTS"} {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := proto.Ensure(ctx, js, proto.Topology{Memory: true, FIFO: true}); err != nil {
		t.Fatalf("Ensure after removing them: %v", err)
	}
	// Today's shared stream is no old layout.
	if err := proto.Ensure(ctx, js, proto.Topology{Memory: true, FIFO: true}); err != nil {
		t.Fatalf("Ensure again: %v", err)
	}
}

// TestEnsureOwnerLeavesItsStreamsAlone provisions an owner twice: the second
// time updates no stream (an update that changes nothing raced with
// consumers created beside it inside nats-server); a changed topology
// does update them.
func TestEnsureOwnerLeavesItsStreamsAlone(t *testing.T) {
	ctx, js := jetStream(t)
	updated, err := js.Conn().SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	if err != nil {
		t.Fatal(err)
	}
	topo := proto.Topology{Memory: true}
	for range 2 {
		if err := proto.Ensure(ctx, js, topo); err != nil {
			t.Fatal(err)
		}
		if err := proto.EnsureOwner(ctx, js, topo, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	// The advisories come in order: the first must be that of the change
	// below, not one of provisioning again.
	topo.MaxResultBytes = 64 << 20
	if err := proto.EnsureOwner(ctx, js, topo, "alice"); err != nil {
		t.Fatal(err)
	}
	m, err := updated.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("a changed topology updated nothing: %v", err)
	}
	if want := "$JS.EVENT.ADVISORY.STREAM.UPDATED." + proto.ResultStream("alice"); m.Subject != want {
		t.Fatalf("first update advisory on %s, want %s: provisioning again updated a stream", m.Subject, want)
	}
}
