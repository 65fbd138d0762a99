package coordinator

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// requests is how a coordinator takes its requests: each owner has a
// queue, and a few goroutines serve the owners in turn, so that one
// owner's flood waits behind itself and never delays another owner's job
// create. Each owner also has a rate: requests beyond it, or beyond a full
// queue, are answered "busy" at once — a request is never dropped
// unanswered. Requests that name no owner (the fleet's status and report)
// share one queue of their own.
type requests struct {
	perOwner int     // queue bound per owner
	rate     float64 // requests per second per owner
	burst    float64
	clock    func() time.Time

	mu     sync.Mutex
	wake   *sync.Cond
	queues map[string]*ownerQueue
	turn   []string // owners with queued requests, served in turn
	closed bool
}

// ownerQueue is one owner's waiting requests and rate allowance.
type ownerQueue struct {
	msgs   []*nats.Msg
	tokens float64
	last   time.Time
}

// fleetKey is the queue of requests that name no owner.
const fleetKey = "*"

func newRequests(perOwner int, rate float64, clock func() time.Time) *requests {
	r := &requests{perOwner: perOwner, rate: rate, burst: max(rate, 1), clock: clock, queues: make(map[string]*ownerQueue)}
	r.wake = sync.NewCond(&r.mu)
	return r
}

// ownerOf returns the owner a request subject names, fleetKey for none.
func ownerOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, proto.SubjectJobPrefix)
	if !ok {
		rest, ok = strings.CutPrefix(subject, proto.SubjectPipelinePrefix)
	}
	if !ok {
		rest, ok = strings.CutPrefix(subject, proto.SubjectDeadLetterPrefix)
	}
	if !ok {
		return fleetKey
	}
	// create.<owner>, <verb>.<owner>.<id>, list.<owner>, <verb>.<owner>.<name>,
	// get.<owner>.<seq>
	_, rest, _ = strings.Cut(rest, ".")
	owner, _, _ := strings.Cut(rest, ".")
	if !proto.ValidName(owner) {
		return fleetKey
	}
	return owner
}

// add queues m, or returns false when its owner is over its rate or its
// queue is full (the caller answers "busy").
func (r *requests) add(m *nats.Msg) bool {
	key := ownerOf(m.Subject)
	now := r.clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	q := r.queues[key]
	if q == nil {
		q = &ownerQueue{tokens: r.burst, last: now}
		r.queues[key] = q
	}
	q.tokens = min(r.burst, q.tokens+now.Sub(q.last).Seconds()*r.rate)
	q.last = now
	if q.tokens < 1 || len(q.msgs) >= r.perOwner {
		return false
	}
	q.tokens--
	if len(q.msgs) == 0 {
		r.turn = append(r.turn, key)
	}
	q.msgs = append(q.msgs, m)
	r.wake.Signal()
	return true
}

// next returns the next request, taking the owners in turn; it waits for
// one, and returns nil once closed and empty.
func (r *requests) next() *nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.turn) == 0 {
		if r.closed {
			return nil
		}
		r.wake.Wait()
	}
	key := r.turn[0]
	r.turn = r.turn[1:]
	q := r.queues[key]
	m := q.msgs[0]
	q.msgs[0] = nil
	q.msgs = q.msgs[1:]
	if len(q.msgs) > 0 {
		r.turn = append(r.turn, key) // to the back: the others go first
	} else if q.tokens >= r.burst {
		delete(r.queues, key) // idle and full of allowance: forget it
	}
	return m
}

// close stops taking requests; next drains what is queued, then returns
// nil.
func (r *requests) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wake.Broadcast()
}

// serve answers requests until they are closed and drained.
func (c *Coordinator) serve(ctx context.Context) {
	for m := c.reqs.next(); m != nil; m = c.reqs.next() {
		c.handleControl(ctx, m)
	}
}

// take is the subscriptions' handler: it queues a request, or answers
// "busy" when its owner asks too much.
//
// A request whose reply subject is not an inbox is dropped unread, before
// anything of it is done: NATS lets anyone make the server publish on a
// subject of their choosing (a JetStream API answer sent to a reply
// subject they name), so a message on a request subject that nobody can
// be answered on is no one's request (docs/security.md).
func (c *Coordinator) take(m *nats.Msg) {
	if !strings.HasPrefix(m.Reply, inboxPrefix) {
		c.metrics.badRequests.Inc()
		c.log.Warn("request without an inbox to answer ignored", "subject", m.Subject, "reply", m.Reply)
		return
	}
	if c.reqs.add(m) {
		return
	}
	c.metrics.refused.Inc()
	respond[proto.Job](c, m, nil, proto.Errorf(plugin.CodeBusy, "coordinator: too many requests from %s: retry later", ownerOf(m.Subject)))
}
