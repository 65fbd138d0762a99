package proto

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dataflare/dataflare/fleet"
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
	// life; workers renew it with InProgress every AckWait/4 or so. It bounds
	// the time to redeliver the batch of a worker that died. Default 1 s.
	AckWait time.Duration
	// MaxDeliver is how many times a batch is delivered and run: the
	// worker that gets it once more splits it as poison instead of running
	// it (its workers died or stalled every time). JetStream itself never
	// stops delivering a batch: the consumer's MaxDeliver is unlimited and
	// carries this figure in its metadata (PoisonAfter). Default 4.
	MaxDeliver int
	// MaxAckPending bounds the batches in flight of one queue (one owner
	// and priority, or one priority of the shared queue) across all
	// workers: each owner's in-flight quota. Default 1024.
	MaxAckPending int
	// Duplicates is the de-duplication window of DF_BATCHES and
	// DF_RESULTS. Default 10 min.
	Duplicates time.Duration
	// Retention is how long unread results, dead letters, pending batches
	// and job records are kept. Default 24 h.
	Retention time.Duration
	// MaxPendingBytes bounds each owner's batch stream (the shared one
	// without fair sharing): a full stream refuses new batches
	// (DiscardNew), which slows that owner's submitters down — each
	// owner's queued-bytes quota. Default 1 GiB.
	MaxPendingBytes int64
	// MaxResultBytes bounds each owner's result stream the same way: an
	// owner that does not read its results fills its own. Default 4 GiB.
	MaxResultBytes int64
	// MaxResultReaders bounds the consumers reading one owner's results at
	// once (one per job being read). Default 10,000.
	MaxResultReaders int
	// FIFO queues every owner's batches in one stream, served in the order
	// they came (per priority), instead of a stream per owner shared out
	// by weight: the fleet without fair sharing. Chosen when the streams
	// are first created; a fleet does not switch.
	FIFO bool
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
	DefaultAckWait          = time.Second
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

// BatchStream returns the configuration of owner's batch stream, or with
// owner "" of the stream every owner shares (FIFO): a work queue (each batch
// is removed once a worker acknowledges it), refusing new batches when full
// rather than dropping old ones.
//
// Its subjects are exactly its consumers' filters, one per priority, so
// that nothing lands in it that no worker would take (a JetStream API
// answer aimed at one of its subjects, a subject with no priority).
func (t Topology) BatchStream(owner string) jetstream.StreamConfig {
	name := BatchStream(owner)
	if owner == "" {
		name = StreamBatches
	}
	subjects := make([]string, 0, len(fleet.Priorities))
	for _, p := range fleet.Priorities {
		subjects = append(subjects, t.WorkerConsumer(owner, p).FilterSubject)
	}
	return jetstream.StreamConfig{
		Name:        name,
		Description: "DataFlare batches waiting for a worker",
		Subjects:    subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    t.MaxPendingBytes,
		MaxAge:      t.Retention,
		Storage:     t.storage(),
		Replicas:    t.Replicas,
		Duplicates:  t.Duplicates,
	}
}

// ResultStream returns the configuration of owner's result stream: results
// wait here until their client has read them (then the job's subject is
// purged) or Retention passes.
func (t Topology) ResultStream(owner string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:         ResultStream(owner),
		Description:  "DataFlare results waiting for their client",
		Subjects:     []string{SubjectResultPrefix + owner + ".>"},
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

// WorkerConsumer returns the configuration of the durable pull consumer of
// the batches of priority p in owner's batch stream (owner "": the shared
// one), which all workers share.
func (t Topology) WorkerConsumer(owner string, p fleet.Priority) jetstream.ConsumerConfig {
	filter := SubjectBatchPrefix + owner + "." + p.String() + ".>"
	if owner == "" {
		filter = SubjectBatchPrefix + "*." + p.String() + ".>"
	}
	return jetstream.ConsumerConfig{
		Durable:       WorkerConsumer(p),
		Description:   "DataFlare workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    -1,
		Metadata:      map[string]string{MetaMaxDeliver: strconv.Itoa(t.MaxDeliver)},
		MaxAckPending: t.MaxAckPending,
		FilterSubject: filter,
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

// PipelineBucket returns the configuration of the DF_PIPELINES bucket.
func (t Topology) PipelineBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       BucketPipelines,
		Description:  "DataFlare pipelines: definitions, leases, status",
		MaxValueSize: MaxJobRecordBytes,
		Storage:      t.storage(),
		Replicas:     t.Replicas,
		History:      1,
	}
}

// QueueBucket returns the configuration of the DF_QUEUES bucket.
func (t Topology) QueueBucket() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketQueues,
		Description: "DataFlare batch queues: where workers take work from, and each owner's weight",
		Storage:     t.storage(),
		Replicas:    t.Replicas,
		History:     1,
	}
}

// Queue is an entry of DF_QUEUES, keyed by its batch stream's name: a
// batch stream whose workers' consumers (one per priority) workers take
// batches from.
type Queue struct {
	// Owner is the stream's owner, "" for the stream every owner shares.
	Owner string `json:"owner,omitempty"`
	// Stream is the batch stream.
	Stream string `json:"stream"`
	// Weight is the owner's share of the workers, relative to the
	// others' (1 unless a coordinator is told otherwise).
	Weight float64 `json:"weight"`
	// AckWait and MaxDeliver are the Topology's, which the queue's
	// consumers were made with: how often a worker renews a batch's lease,
	// and after how many deliveries it splits a batch unrun.
	AckWait    time.Duration `json:"ack_wait_ns"`
	MaxDeliver int           `json:"max_deliver"`
}

// Ensure creates or updates the streams, consumers and buckets every fleet
// has: DF_DEAD, DF_JOBS, DF_QUEUES and DF_PIPELINES, and with FIFO the shared batch
// stream with its consumers. It is idempotent: coordinators call it when
// they start. Owners' streams come with their first job (EnsureOwner).
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	t, err := t.WithDefaults()
	if err != nil {
		return err
	}
	if err := checkLayout(ctx, js); err != nil {
		return err
	}
	if err := ensureStream(ctx, js, t.DeadStream()); err != nil {
		return fmt.Errorf("proto: stream %s: %w", StreamDead, err)
	}
	for _, kv := range []jetstream.KeyValueConfig{t.JobBucket(), t.QueueBucket(), t.PipelineBucket()} {
		if err := ensureBucket(ctx, js, kv); err != nil {
			return fmt.Errorf("proto: bucket %s: %w", kv.Bucket, err)
		}
	}
	if t.FIFO {
		return ensureBatches(ctx, js, t, "")
	}
	return nil
}

// ErrOldLayout reports streams of an earlier version of the fleet, which
// held every owner's batches and results in one stream each (DF_BATCHES
// on df.batch.>, DF_RESULTS on df.result.>): they capture the subjects of
// today's streams, so those cannot be made until the old ones are drained
// and removed (docs/deploy.md, "Upgrading").
var ErrOldLayout = errors.New("proto: streams of an earlier version are in place")

// oldResultStream is the one result stream of versions before owners had
// their own.
const oldResultStream = "DF_RESULTS"

// checkLayout returns ErrOldLayout, naming the streams, when the old
// shared streams are in place.
func checkLayout(ctx context.Context, js jetstream.JetStream) error {
	var old []string
	if _, err := js.Stream(ctx, oldResultStream); err == nil {
		old = append(old, oldResultStream)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("proto: stream %s: %w", oldResultStream, err)
	}
	s, err := js.Stream(ctx, StreamBatches)
	switch {
	case err == nil:
		if slices.Contains(s.CachedInfo().Config.Subjects, SubjectBatchPrefix+">") {
			old = append(old, StreamBatches)
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("proto: stream %s: %w", StreamBatches, err)
	}
	if len(old) > 0 {
		return fmt.Errorf("%w: %s; let their jobs end, remove them (nats stream rm), then start the coordinators again", ErrOldLayout, strings.Join(old, ", "))
	}
	return nil
}

// EnsureOwner creates or updates owner's result stream and, unless FIFO,
// its batch stream and consumers. It is idempotent.
func EnsureOwner(ctx context.Context, js jetstream.JetStream, t Topology, owner string) error {
	t, err := t.WithDefaults()
	if err != nil {
		return err
	}
	if err := ensureStream(ctx, js, t.ResultStream(owner)); err != nil {
		return fmt.Errorf("proto: stream %s: %w", ResultStream(owner), err)
	}
	if t.FIFO {
		return nil
	}
	return ensureBatches(ctx, js, t, owner)
}

// ensureStream creates stream cfg, or updates it when it exists with
// another configuration. One that exists with this configuration is left
// alone (JetStream answers such a create with the stream): an update that
// changes nothing still rewrites the stream's store configuration, which
// nats-server 2.15.2 does unguarded against a consumer being created on
// the stream at the same moment (a data race the race detector found in
// TestRequestFlood, a coordinator provisioning an owner while a client
// opened its results), and nats.go's CreateOrUpdateStream updates first.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	_, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		_, err = js.UpdateStream(ctx, cfg)
	}
	return err
}

// ensureBucket is ensureStream for a key-value bucket (a stream too).
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	_, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		_, err = js.UpdateKeyValue(ctx, cfg)
	}
	return err
}

// ensureBatches creates or updates a batch stream and its consumers.
func ensureBatches(ctx context.Context, js jetstream.JetStream, t Topology, owner string) error {
	cfg := t.BatchStream(owner)
	if err := ensureStream(ctx, js, cfg); err != nil {
		return fmt.Errorf("proto: stream %s: %w", cfg.Name, err)
	}
	for _, p := range fleet.Priorities {
		if _, err := js.CreateOrUpdateConsumer(ctx, cfg.Name, t.WorkerConsumer(owner, p)); err != nil {
			return fmt.Errorf("proto: consumer %s of %s: %w", WorkerConsumer(p), cfg.Name, err)
		}
	}
	return nil
}
