package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
)

// owners provisions each owner's streams and queue entry on its first job,
// once per coordinator process: its result stream, and unless the fleet is
// FIFO, its batch stream with a consumer per priority and its entry in
// DF_QUEUES (with its weight), which the workers watch to know where to
// take work from.
type owners struct {
	mu    sync.Mutex
	ready map[string]bool
}

// weight returns owner's weight: the configured one, else 1.
func (c *Coordinator) weight(owner string) float64 {
	if w, ok := c.cfg.Weights[owner]; ok {
		return w
	}
	return 1
}

// ensureOwner provisions owner (see owners) and returns the stream its
// batches go to.
func (c *Coordinator) ensureOwner(ctx context.Context, owner string) (string, error) {
	stream := proto.BatchStream(owner)
	if c.cfg.Topology.FIFO {
		stream = proto.StreamBatches
	}
	c.owners.mu.Lock()
	ready := c.owners.ready[owner]
	c.owners.mu.Unlock()
	if ready {
		return stream, nil
	}
	kctx, cancel := context.WithTimeout(ctx, 2*kvTimeout)
	defer cancel()
	if err := proto.EnsureOwner(kctx, c.js, c.cfg.Topology, owner); err != nil {
		return "", kvError("provision owner "+owner, err)
	}
	if !c.cfg.Topology.FIFO {
		if err := c.putQueue(kctx, c.queue(owner)); err != nil {
			return "", kvError("record the queue of owner "+owner, err)
		}
	}
	c.owners.mu.Lock()
	if c.owners.ready == nil {
		c.owners.ready = make(map[string]bool)
	}
	c.owners.ready[owner] = true
	c.owners.mu.Unlock()
	return stream, nil
}

// queue returns the DF_QUEUES entry of owner's batch stream ("": the
// shared one).
func (c *Coordinator) queue(owner string) proto.Queue {
	q := proto.Queue{Owner: owner, Stream: proto.BatchStream(owner), Weight: c.weight(owner),
		AckWait: c.cfg.Topology.AckWait, MaxDeliver: c.cfg.Topology.MaxDeliver}
	if owner == "" {
		q.Stream, q.Weight = proto.StreamBatches, 1
	}
	return q
}

// putQueue records q in DF_QUEUES, unless it is there already as it is.
func (c *Coordinator) putQueue(ctx context.Context, q proto.Queue) error {
	b, _ := json.Marshal(q) // cannot fail: plain data
	if e, err := c.queues.Get(ctx, q.Stream); err == nil && string(e.Value()) == string(b) {
		return nil
	}
	_, err := c.queues.Put(ctx, q.Stream, b)
	return err
}

// setupQueues records the shared queue of a FIFO fleet, and the weights
// this coordinator is configured with for owners that have queues already
// (so that changed weights take effect without waiting for a new job).
func (c *Coordinator) setupQueues(ctx context.Context) error {
	if c.cfg.Topology.FIFO {
		return c.putQueue(ctx, c.queue(""))
	}
	for owner := range c.cfg.Weights {
		stream := proto.BatchStream(owner)
		if _, err := c.queues.Get(ctx, stream); errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if err := c.putQueue(ctx, c.queue(owner)); err != nil {
			return err
		}
	}
	return nil
}

// queueCounts caches the state of the fleet's queues and streams for the
// status: reading them costs JetStream requests, which a flood of status
// requests must not multiply.
type queueCounts struct {
	mu      sync.Mutex
	at      time.Time
	queues  []fleet.Queue
	pending uint64
	results uint64
	dead    uint64
}

// countsTTL is how old the counts of a status may be.
const countsTTL = 500 * time.Millisecond

// get returns the counts, reading them when the cached ones are older than
// countsTTL; what cannot be read counts as nothing.
func (q *queueCounts) get(ctx context.Context, c *Coordinator) ([]fleet.Queue, uint64, uint64, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.at) > countsTTL {
		q.queues, q.pending = c.readQueues(ctx)
		q.results = c.streamsMsgs(ctx, proto.SubjectResultPrefix+">")
		q.dead = c.streamMsgs(ctx, proto.StreamDead)
		q.at = time.Now()
	}
	return q.queues, q.pending, q.results, q.dead
}

// readQueues returns the queues with batches pending or in flight, and the
// batches pending in all.
func (c *Coordinator) readQueues(ctx context.Context) ([]fleet.Queue, uint64) {
	var out []fleet.Queue
	var pending uint64
	lister, err := c.queues.ListKeys(ctx)
	if err != nil {
		return nil, 0
	}
	var streams []string
	for k := range lister.Keys() {
		streams = append(streams, k)
	}
	slices.Sort(streams)
	for _, stream := range streams {
		e, err := c.queues.Get(ctx, stream)
		if err != nil {
			continue
		}
		var q proto.Queue
		if json.Unmarshal(e.Value(), &q) != nil {
			continue
		}
		for _, p := range fleet.Priorities {
			cons, err := c.js.Consumer(ctx, stream, proto.WorkerConsumer(p))
			if err != nil {
				continue
			}
			info := cons.CachedInfo() // fresh: Consumer just asked for it
			pending += info.NumPending
			if info.NumPending > 0 || info.NumAckPending > 0 {
				out = append(out, fleet.Queue{Owner: q.Owner, Priority: p, Weight: q.Weight,
					Pending: info.NumPending, InFlight: info.NumAckPending})
			}
		}
	}
	return out, pending
}

// streamsMsgs returns how many messages the streams capturing subject hold.
func (c *Coordinator) streamsMsgs(ctx context.Context, subject string) uint64 {
	var n uint64
	names := c.js.StreamNames(ctx, jetstream.WithStreamListSubject(subject))
	for name := range names.Name() {
		n += c.streamMsgs(ctx, name)
	}
	return n
}

var (
	descQueueBatches  = prometheus.NewDesc("dataflare_queue_batches", "Batches waiting for a worker, by owner and priority (owner \"\": the shared queue).", []string{"owner", "priority"}, nil)
	descQueueInFlight = prometheus.NewDesc("dataflare_queue_in_flight_batches", "Batches running, by owner and priority.", []string{"owner", "priority"}, nil)
)

// queueCollector exports the queues of the status as gauges, read at each
// scrape (from the counts cached for countsTTL).
type queueCollector struct{ c *Coordinator }

// Describe implements prometheus.Collector.
func (q queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueueBatches
	ch <- descQueueInFlight
}

// Collect implements prometheus.Collector: the queues with work (a queue
// that had some keeps being reported, at 0, only while it has).
func (q queueCollector) Collect(ch chan<- prometheus.Metric) {
	if !q.c.Ready() {
		return // not running yet: no queues to read
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	queues, _, _, _ := q.c.counts.get(ctx, q.c)
	for _, qu := range queues {
		ch <- prometheus.MustNewConstMetric(descQueueBatches, prometheus.GaugeValue, float64(qu.Pending), qu.Owner, qu.Priority.String())
		ch <- prometheus.MustNewConstMetric(descQueueInFlight, prometheus.GaugeValue, float64(qu.InFlight), qu.Owner, qu.Priority.String())
	}
}
