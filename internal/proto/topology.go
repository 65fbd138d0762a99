package proto

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology holds the settings of the fleet's streams, consumer and buckets.
// Every field's zero value means its default; docs/operations.md explains
// each choice.
type Topology struct {
	// Replicas of every stream and bucket: 1 for a single server, 3 in
	// production. Default 1.
	Replicas int
	// AckWait is how long a worker may hold a batch without a sign of
	// life; workers renew it with InProgress every AckWait/3. It bounds
	// the time to redeliver the batch of a worker that died. Default 5 s.
	AckWait time.Duration
	// MaxDeliver is how many times a batch is delivered and run: the
	// worker that gets it once more splits it as poison instead of running
	// it (its workers died or stalled every time). JetStream itself never
	// stops delivering a batch: the consumer's MaxDeliver is unlimited and
	// carries this figure in its metadata (PoisonAfter). Default 4.
	MaxDeliver int
	// MaxAckPending bounds the batches in flight across all workers.
	// Default 1024.
	MaxAckPending int
	// Duplicates is the de-duplication window of DF_BATCHES and
	// DF_RESULTS. Default 10 min.
	Duplicates time.Duration
	// Retention is how long unread results, dead letters, pending batches
	// and job records are kept. Default 24 h.
	Retention time.Duration
	// MaxPendingBytes bounds DF_BATCHES; a full stream refuses new
	// batches (DiscardNew), which slows submitters down. Default 1 GiB.
	MaxPendingBytes int64
	// MaxResultBytes bounds DF_RESULTS the same way. Default 4 GiB.
	MaxResultBytes int64
	// MaxResultReaders bounds the consumers reading DF_RESULTS at once
	// (one per job being read). Default 10,000.
	MaxResultReaders int
	// MaxDeadBytes bounds DF_DEAD; when it is full the oldest dead
	// letters go first. Default 1 GiB.
	MaxDeadBytes int64
	// MaxJobBytes bounds the DF_JOBS bucket. Default 256 MiB.
	MaxJobBytes int64
	// Memory keeps streams in memory instead of files (tests and bench
	// only: nothing survives a server restart). Default false.
	Memory bool
}

// Defaults of Topology.
const (
	DefaultAckWait          = 5 * time.Second
	DefaultMaxDeliver       = 4
	DefaultMaxAckPending    = 1024
	DefaultDuplicates       = 10 * time.Minute
	DefaultRetention        = 24 * time.Hour
	DefaultMaxPendingBytes  = 1 << 30
	DefaultMaxResultBytes   = 4 << 30
	DefaultMaxResultReaders = 10_000
	DefaultMaxDeadBytes     = 1 << 30
	DefaultMaxJobBytes      = 256 << 20
	// MaxJobRecordBytes is the largest job record DF_JOBS takes.
	MaxJobRecordBytes = 64 << 10
	// MaxDeadLetterBytes is the largest dead-letter entry DF_DEAD takes:
	// a record's key and value are cut to fit (DeadLetterMsg).
	MaxDeadLetterBytes = 256 << 10
)

// ErrInvalidTopology is wrapped by errors about a Topology that cannot work.
var ErrInvalidTopology = errors.New("proto: invalid topology")

// WithDefaults returns t with its zero fields set to their defaults, and an
// error wrapping ErrInvalidTopology for a value that cannot work.
func (t Topology) WithDefaults() (Topology, error) {
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.AckWait == 0 {
		t.AckWait = DefaultAckWait
	}
	if t.MaxDeliver == 0 {
		t.MaxDeliver = DefaultMaxDeliver
	}
	if t.MaxAckPending == 0 {
		t.MaxAckPending = DefaultMaxAckPending
	}
	if t.Duplicates == 0 {
		t.Duplicates = DefaultDuplicates
	}
	if t.Retention == 0 {
		t.Retention = DefaultRetention
	}
	if t.MaxPendingBytes == 0 {
		t.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if t.MaxResultBytes == 0 {
		t.MaxResultBytes = DefaultMaxResultBytes
	}
	if t.MaxResultReaders == 0 {
		t.MaxResultReaders = DefaultMaxResultReaders
	}
	if t.MaxDeadBytes == 0 {
		t.MaxDeadBytes = DefaultMaxDeadBytes
	}
	if t.MaxJobBytes == 0 {
		t.MaxJobBytes = DefaultMaxJobBytes
	}
	switch {
	case t.Replicas < 1 || t.Replicas > 5:
		return t, fmt.Errorf("%w: replicas %d not in 1..5", ErrInvalidTopology, t.Replicas)
	case t.AckWait < 100*time.Millisecond:
		return t, fmt.Errorf("%w: ack wait %v below 100ms", ErrInvalidTopology, t.AckWait)
	case t.MaxDeliver < 2:
		return t, fmt.Errorf("%w: max deliver %d below 2", ErrInvalidTopology, t.MaxDeliver)
	case t.MaxAckPending < 1:
		return t, fmt.Errorf("%w: max ack pending %d below 1", ErrInvalidTopology, t.MaxAckPending)
	case t.Duplicates > t.Retention:
		return t, fmt.Errorf("%w: duplicate window %v longer than retention %v", ErrInvalidTopology, t.Duplicates, t.Retention)
	}
	return t, nil
}

func (t Topology) storage() jetstream.StorageType {
	if t.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// BatchStream returns the configuration of DF_BATCHES: a work queue (each
// batch is removed once a worker acknowledges it), refusing new batches when
// full rather than dropping old ones.
func (t Topology) BatchStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamBatches,
		Description: "DataFlare batches waiting for a worker",
		Subjects:    []string{SubjectBatchPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    t.MaxPendingBytes,
		MaxAge:      t.Retention,
		Storage:     t.storage(),
		Replicas:    t.Replicas,
		Duplicates:  t.Duplicates,
	}
}

// ResultStream returns the configuration of DF_RESULTS: results wait here
// until their client has read them (then the client purges its job's
// subject) or Retention passes.
func (t Topology) ResultStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:         StreamResults,
		Description:  "DataFlare results waiting for their client",
		Subjects:     []string{SubjectResultPrefix + ">"},
		Retention:    jetstream.LimitsPolicy,
		Discard:      jetstream.DiscardNew,
		MaxBytes:     t.MaxResultBytes,
		MaxConsumers: t.MaxResultReaders,
		MaxAge:       t.Retention,
		Storage:      t.storage(),
		Replicas:     t.Replicas,
		Duplicates:   t.Duplicates,
	}
}

// DeadStream returns the configuration of DF_DEAD, the dead-letter store:
// one entry per record that failed on every delivery.
func (t Topology) DeadStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamDead,
		Description: "DataFlare dead letters: records that failed on every delivery",
		Subjects:    []string{SubjectDeadPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    t.MaxDeadBytes,
		MaxMsgSize:  MaxDeadLetterBytes,
		MaxAge:      t.Retention,
		Storage:     t.storage(),
		Replicas:    t.Replicas,
		Duplicates:  t.Duplicates,
	}
}

// WorkerConsumer returns the configuration of the durable pull consumer all
// workers share.
func (t Topology) WorkerConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerWorker,
		Description:   "DataFlare workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    -1,
		Metadata:      map[string]string{MetaMaxDeliver: strconv.Itoa(t.MaxDeliver)},
		MaxAckPending: t.MaxAckPending,
		FilterSubject: SubjectBatchPrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      t.Replicas,
	}
}

// MetaMaxDeliver is the worker consumer's metadata key that carries
// Topology.MaxDeliver to the workers.
const MetaMaxDeliver = "dataflare_max_deliver"

// PoisonAfter returns the deliveries after which a worker splits a batch
// as poison, as the worker consumer's configuration carries it:
// DefaultMaxDeliver when it carries none.
func PoisonAfter(cfg jetstream.ConsumerConfig) int {
	if n, err := strconv.Atoi(cfg.Metadata[MetaMaxDeliver]); err == nil && n >= 2 {
		return n
	}
	return DefaultMaxDeliver
}

// JobBucket returns the configuration of the DF_JOBS key-value bucket.
func (t Topology) JobBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       BucketJobs,
		Description:  "DataFlare jobs",
		TTL:          t.Retention,
		MaxBytes:     t.MaxJobBytes,
		MaxValueSize: MaxJobRecordBytes,
		Storage:      t.storage(),
		Replicas:     t.Replicas,
		History:      1,
	}
}

// Ensure creates or updates every stream, the worker consumer and the job
// bucket. It is idempotent: coordinators call it when they start.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	t, err := t.WithDefaults()
	if err != nil {
		return err
	}
	for _, cfg := range []jetstream.StreamConfig{t.BatchStream(), t.ResultStream(), t.DeadStream()} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("proto: stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, StreamBatches, t.WorkerConsumer()); err != nil {
		return fmt.Errorf("proto: consumer %s: %w", ConsumerWorker, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, t.JobBucket()); err != nil {
		return fmt.Errorf("proto: bucket %s: %w", BucketJobs, err)
	}
	return nil
}
