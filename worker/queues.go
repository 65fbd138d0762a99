package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
)

// queues is the worker's view of the batch queues it takes work from: the
// entries of DF_QUEUES (a batch stream per owner, or the one every owner
// shares), each with a consumer per priority, bound on first use. A watch
// keeps it fresh; the pull loop reads it.
type queues struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	log *slog.Logger

	mu      sync.Mutex
	byName  map[string]*batchQueue // by stream
	version uint64                 // counts changes, so the pull loop sees them
	changed chan struct{}          // a change happened (capacity 1)
}

// batchQueue is one batch stream and its consumers.
type batchQueue struct {
	proto.Queue
	cons [len(fleet.Priorities)]jetstream.Consumer // by index in fleet.Priorities; nil until bound
}

// openQueues binds to DF_QUEUES, waiting for a coordinator to have created
// it. Its entries come from watch, which starts with every entry there is.
func openQueues(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*queues, error) {
	logged := false
	for {
		kv, err := js.KeyValue(ctx, proto.BucketQueues)
		if err == nil {
			return &queues{js: js, kv: kv, log: log, byName: make(map[string]*batchQueue), changed: make(chan struct{}, 1)}, nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) && !proto.Unavailable(err) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, err
		}
		if !logged {
			log.Info("waiting for a coordinator to create the streams", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// watch applies every entry of the bucket, then its changes, until ctx
// ends; a watch that breaks is started again, with every entry again (so
// nothing written meanwhile is missed).
func (q *queues) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := q.kv.WatchAll(ctx)
		if err != nil {
			q.log.Warn("watching the queues failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e != nil {
				q.apply(e)
			}
		}
		w.Stop()
	}
}

// apply records one entry, or its removal.
func (q *queues) apply(e jetstream.KeyValueEntry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var entry proto.Queue
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &entry) != nil || entry.Stream != e.Key() {
		delete(q.byName, e.Key())
	} else if old := q.byName[e.Key()]; old != nil {
		old.Queue = entry
	} else {
		q.byName[e.Key()] = &batchQueue{Queue: entry}
	}
	q.version++
	select {
	case q.changed <- struct{}{}:
	default:
	}
}

// maxDeliver returns the MaxDeliver of stream's queue (the deliveries
// after which a batch is split unrun), proto.DefaultMaxDeliver when the
// queue is unknown.
func (q *queues) maxDeliver(stream string) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if bq := q.byName[stream]; bq != nil && bq.MaxDeliver >= 2 {
		return uint64(bq.MaxDeliver)
	}
	return proto.DefaultMaxDeliver
}

// minAckWait returns the shortest AckWait of the queues: the lease
// keeper renews by it. proto.DefaultAckWait without
// queues.
func (q *queues) minAckWait() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := time.Duration(0)
	for _, bq := range q.byName {
		if bq.AckWait > 0 && (d == 0 || bq.AckWait < d) {
			d = bq.AckWait
		}
	}
	if d == 0 {
		return proto.DefaultAckWait
	}
	return d
}

// snapshot returns the queues and the version they are at.
func (q *queues) snapshot() (map[string]proto.Queue, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]proto.Queue, len(q.byName))
	for name, bq := range q.byName {
		out[name] = bq.Queue
	}
	return out, q.version
}

// consumer returns the consumer of stream for the priority of index p,
// binding it on first use.
func (q *queues) consumer(ctx context.Context, stream string, p int) (jetstream.Consumer, error) {
	q.mu.Lock()
	bq := q.byName[stream]
	if bq == nil {
		q.mu.Unlock()
		return nil, jetstream.ErrConsumerNotFound
	}
	if c := bq.cons[p]; c != nil {
		q.mu.Unlock()
		return c, nil
	}
	q.mu.Unlock()
	c, err := q.js.Consumer(ctx, stream, proto.WorkerConsumer(fleet.Priorities[p]))
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	if bq := q.byName[stream]; bq != nil {
		bq.cons[p] = c
	}
	q.mu.Unlock()
	return c, nil
}

// forget unbinds stream's consumers (one was deleted, or the stream).
func (q *queues) forget(stream string) {
	q.mu.Lock()
	if bq := q.byName[stream]; bq != nil {
		bq.cons = [len(fleet.Priorities)]jetstream.Consumer{}
	}
	q.mu.Unlock()
}

// hintTarget returns the queue (stream) and priority index a work hint on
// subject (df.work.<owner>.<priority>) is about, given the queues: the
// owner's stream, or the shared one.
func hintTarget(subject string, known map[string]proto.Queue) (string, int, bool) {
	rest, ok := strings.CutPrefix(subject, proto.SubjectWorkPrefix)
	owner, prio, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", 0, false
	}
	p, err := fleet.ParsePriority(prio)
	if err != nil {
		return "", 0, false
	}
	idx := priorityIndex(p)
	if _, ok := known[proto.BatchStream(owner)]; ok {
		return proto.BatchStream(owner), idx, true
	}
	if _, ok := known[proto.StreamBatches]; ok {
		return proto.StreamBatches, idx, true
	}
	return "", 0, false
}

// priorityIndex returns p's index in fleet.Priorities.
func priorityIndex(p fleet.Priority) int {
	for i, x := range fleet.Priorities {
		if x == p {
			return i
		}
	}
	return 1
}

// subscribeHints delivers work hints to ch, dropping them when it is full
// (a hint only hurries a look the pull loop makes anyway).
func subscribeHints(nc *nats.Conn, ch chan string) (*nats.Subscription, error) {
	return nc.Subscribe(proto.SubjectWorkPrefix+">", func(m *nats.Msg) {
		select {
		case ch <- m.Subject:
		default:
		}
	})
}
