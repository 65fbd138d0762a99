package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/hist"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// A pipeline runs on one coordinator at a time: the one that holds its
// lease in DF_PIPELINES ("lease.<owner>.<name>"), renewed every leaseEvery
// and given up by a coordinator that cannot renew it; another coordinator
// takes an expired lease within leaseTTL + leaseEvery of its holder's
// death.
//
// The holder runs the pipeline as a job of its owner — a client job (the
// Go client's, so batches, sizes, ids and ordering are the client's)
// whose Source is a durable consumer on the source stream — and for each
// result, in source order, publishes the value on the sink (Nats-Msg-Id
// "<owner>.<name>.<source sequence>", so a sink stream holds one message
// per source message whatever is redone), dead-letters an error, and only
// then acknowledges the source message. A new definition (update, pause)
// ends the job: its batches finish on the old steps, the next job starts
// from the first message not acknowledged. So does a takeover: the new
// holder starts its consumer again from the first unacknowledged message,
// and what the old holder had already published is dropped by the sink's
// de-duplication.
const (
	leaseTTL   = 5 * time.Second
	leaseEvery = time.Second
)

// pipelineRounds is how often a coordinator renews its leases and looks
// for pipelines to take: leaseEvery (a test makes it longer, to show that
// a definition written is taken at once, without a round).
var pipelineRounds = leaseEvery

// lease is the value of a lease key.
type lease struct {
	Coordinator string    `json:"coordinator"`
	Until       time.Time `json:"until"`
}

// runPipelines takes and keeps the leases of the pipelines it can, and
// runs those, until ctx ends.
func (c *Coordinator) runPipelines(ctx context.Context) {
	running := map[string]*runner{} // by def key
	defer func() {
		for _, r := range running {
			r.stop()
		}
	}()
	t := time.NewTicker(pipelineRounds)
	defer t.Stop()
	changed := c.watchDefinitions(ctx)
	for {
		c.pipelineRound(ctx, running)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

// watchDefinitions returns a channel that is ready when a pipeline's
// definition was written or removed, so that a new pipeline starts (and a
// change reaches its runner) at once rather than at the next round. It is
// nil, never ready, when the bucket cannot be watched: each round still
// finds every change, a leaseEvery later at most.
func (c *Coordinator) watchDefinitions(ctx context.Context) <-chan struct{} {
	w, err := c.pipelines.Watch(ctx, "def.>", jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		c.log.Debug("pipeline definitions not watched; found each round", "err", err)
		return nil
	}
	changed := make(chan struct{}, 1)
	// Stops when ctx ends or the watch does.
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				select {
				case changed <- struct{}{}:
				default: // a round is due already
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return changed
}

// pipelineRound renews the leases of the running pipelines (stopping those
// whose lease is lost or whose definition is gone), tells them of new
// definitions, and takes the free leases.
func (c *Coordinator) pipelineRound(ctx context.Context, running map[string]*runner) {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	defs := map[string]*proto.Pipeline{}
	if lister, err := c.pipelines.ListKeys(kctx, jetstream.MetaOnly()); err == nil {
		var keys []string
		for k := range lister.Keys() {
			if strings.HasPrefix(k, "def.") {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if e, err := c.pipelines.Get(kctx, k); err == nil {
				var p proto.Pipeline
				if json.Unmarshal(e.Value(), &p) == nil {
					defs[k] = &p
				}
			}
		}
	} else if !errors.Is(err, jetstream.ErrNoKeysFound) {
		// The bucket does not answer: keep what runs while its lease
		// holds, renew nothing.
		for k, r := range running {
			if c.cfg.Clock().Add(time.Second).After(r.leaseUntil) {
				c.log.Warn("pipeline lease not renewed in time; stopping", "pipeline", r.owner+"/"+r.name, "err", err)
				r.stop()
				delete(running, k)
			}
		}
		return
	}
	for k, r := range running {
		p := defs[k]
		if p == nil || !c.renewLease(kctx, r) {
			r.stop()
			delete(running, k)
			continue
		}
		r.define(p)
	}
	for k, p := range defs {
		if running[k] != nil {
			continue
		}
		if rev, ok := c.takeLease(kctx, p); ok {
			r := c.startRunner(ctx, p, rev)
			running[k] = r
		}
	}
}

// takeLease takes pipeline p's lease when it is free or expired, and
// returns its revision.
func (c *Coordinator) takeLease(ctx context.Context, p *proto.Pipeline) (uint64, bool) {
	key := pipelineKey("lease", p.Owner, p.Name)
	mine, _ := json.Marshal(lease{Coordinator: c.cfg.ID, Until: c.cfg.Clock().Add(leaseTTL)})
	rev, err := c.pipelines.Create(ctx, key, mine)
	if err == nil {
		return rev, true
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false
	}
	e, err := c.pipelines.Get(ctx, key)
	if err != nil {
		return 0, false
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && c.cfg.Clock().Before(l.Until) {
		return 0, false // held
	}
	rev, err = c.pipelines.Update(ctx, key, mine, e.Revision())
	return rev, err == nil
}

// renewLease extends r's lease; false when it was lost.
func (c *Coordinator) renewLease(ctx context.Context, r *runner) bool {
	until := c.cfg.Clock().Add(leaseTTL)
	mine, _ := json.Marshal(lease{Coordinator: c.cfg.ID, Until: until})
	rev, err := c.pipelines.Update(ctx, pipelineKey("lease", r.owner, r.name), mine, r.leaseRev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			c.log.Warn("pipeline lease lost", "pipeline", r.owner+"/"+r.name)
			return false
		}
		// The bucket does not answer: keep running while the lease last
		// written holds, and stop a second before another coordinator may
		// take it, so that two never run the pipeline at once.
		if c.cfg.Clock().Add(time.Second).After(r.leaseUntil) {
			c.log.Warn("pipeline lease not renewed in time; stopping", "pipeline", r.owner+"/"+r.name, "err", err)
			return false
		}
		return true
	}
	r.leaseRev, r.leaseUntil = rev, until
	return true
}

// runner runs one pipeline on this coordinator.
type runner struct {
	c           *Coordinator
	owner, name string
	leaseRev    uint64    // owned by runPipelines
	leaseUntil  time.Time // until when the lease last written holds; owned by runPipelines
	cancel      context.CancelFunc
	done        chan struct{}

	mu      sync.Mutex
	def     *proto.Pipeline
	changed chan struct{} // closed when def changes

	processed, errs, dropped atomic.Uint64
	lastSeq                  atomic.Uint64
	job                      atomic.Value  // string: the job id now
	state                    atomic.Value  // string: running, paused, or the last error
	revision                 atomic.Uint64 // of the definition the runner acts on now
	// counted is the last source sequence counted before the running
	// generation (by it or by the previous holder's report): a message up
	// to it that comes again is not counted again. Only the run goroutine
	// uses it.
	counted uint64

	latMu   sync.Mutex
	lat     hist.Histogram // end-to-end latency since latFrom
	latFrom time.Time
}

// startRunner starts running p.
func (c *Coordinator) startRunner(ctx context.Context, p *proto.Pipeline, leaseRev uint64) *runner {
	ctx, cancel := context.WithCancel(ctx)
	r := &runner{c: c, owner: p.Owner, name: p.Name, leaseRev: leaseRev, leaseUntil: c.cfg.Clock().Add(leaseTTL), cancel: cancel, done: make(chan struct{}),
		def: p, changed: make(chan struct{}), latFrom: time.Now()}
	r.job.Store("")
	if st := c.pipelineStatus(ctx, p.Owner, p.Name); st != nil {
		// Counted on from where the last holder's report left them; the
		// messages up to its LastSeq that come again (not acknowledged
		// when it died) are not counted twice (generation), those after
		// it are counted here, even if it had settled them after its
		// report.
		r.processed.Store(st.Processed)
		r.errs.Store(st.Errors)
		r.dropped.Store(st.Dropped)
		r.lastSeq.Store(st.LastSeq)
	}
	c.log.Info("pipeline taken", "pipeline", p.Owner+"/"+p.Name, "revision", p.Revision)
	// Stops when stop cancels ctx (lease lost, definition removed, the
	// coordinator stopping).
	go func() {
		defer close(r.done)
		r.run(ctx)
	}()
	return r
}

// stop stops the runner and waits for it.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// define hands the runner a definition, waking it when it changed.
func (r *runner) define(p *proto.Pipeline) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.Revision == r.def.Revision {
		return
	}
	r.def = p
	close(r.changed)
	r.changed = make(chan struct{})
}

// current returns the definition and the channel its change closes.
func (r *runner) current() (*proto.Pipeline, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.def, r.changed
}

// run runs generation after generation of the pipeline (one per
// definition), reporting its status every second, until ctx ends.
func (r *runner) run(ctx context.Context) {
	stopReports := r.report(ctx)
	defer stopReports()
	backoff := time.Second
	for ctx.Err() == nil {
		p, changed := r.current()
		r.revision.Store(p.Revision)
		if p.State == proto.PipelinePaused {
			r.setState(string(proto.PipelinePaused))
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		r.setState(string(proto.PipelineRunning))
		err := r.generation(ctx, p, changed)
		if err == nil || ctx.Err() != nil {
			backoff = time.Second
			continue
		}
		if errors.Is(err, errSourceGap) {
			// Every result before the gap is in the sink: read again,
			// at once, from the last message acknowledged.
			r.c.log.Info("pipeline source read again", "pipeline", r.owner+"/"+r.name, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(gapPause):
			}
			continue
		}
		r.setState("error: " + err.Error())
		r.c.log.Warn("pipeline failed; retrying", "pipeline", r.owner+"/"+r.name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// generation runs definition p as one job until it changes (changed
// closes: its Source ends, its batches finish), ctx ends, or it fails.
func (r *runner) generation(ctx context.Context, p *proto.Pipeline, changed <-chan struct{}) error {
	// What a previous generation settled without acknowledging it comes
	// again: counted already.
	r.counted = r.lastSeq.Load()
	if err := r.c.checkSource(ctx, p); err != nil {
		return err
	}
	cons, err := r.consumer(ctx, p)
	if err != nil {
		return err
	}
	cl, err := client.New(r.c.nc, client.WithOwner(p.Owner), client.WithLogger(r.c.log))
	if err != nil {
		return err
	}
	steps := make([]client.Step, len(p.Steps))
	for i, st := range p.Steps {
		steps[i] = client.Step{Plugin: st.Plugin, Version: st.Version, Config: st.Config}
	}
	src := &source{cons: cons, changed: changed}
	job, err := cl.Submit(ctx, "", src.records(ctx), client.WithSteps(steps...), client.WithLinger(sourceLinger), client.WithBatchBytes(sourceBatchBytes))
	if err != nil {
		return fmt.Errorf("start job: %w", err)
	}
	defer job.Close()
	r.cancelOldJob(ctx, r.job.Swap(job.ID()).(string))

	// The results come through a goroutine, so that the sink's answers
	// settle (and their source messages are acknowledged) while no new
	// result comes.
	type result struct {
		out client.Output
		err error
	}
	// Buffered, so that results come in runs rather than one goroutine
	// switch each.
	results := make(chan result, 256)
	stop := make(chan struct{})
	purged := make(chan struct{})
	defer func() { <-purged }() // after close(stop)
	defer close(stop)
	// Stops when the generation returns (stop) or ctx ends.
	go func() {
		defer close(purged)
		r.purgeRead(ctx, job, stop)
	}()
	go func() {
		defer close(results)
		for out, err := range job.Results() {
			select {
			case results <- result{out, err}:
			case <-stop:
				return
			}
		}
	}()
	w := newSinkWriter(ctx, r, p, job.ID())
	for {
		ok, fail := w.head()
		select {
		case res, more := <-results:
			if !more {
				return w.drain(ctx)
			}
			if res.err != nil {
				// What came before is settled first: its source messages
				// are not read again.
				if err := w.drain(ctx); err != nil {
					return err
				}
				if src.gap.Load() {
					return fmt.Errorf("%w: %v", errSourceGap, res.err)
				}
				return res.err
			}
			m, ok := src.take(res.out.Index)
			if !ok {
				return fmt.Errorf("result %d has no source message", res.out.Index)
			}
			if err := w.put(ctx, m, res.out); err != nil {
				return err
			}
		case <-ok:
			w.headAnswered(nil)
			if err := w.settle(ctx, false); err != nil {
				return err
			}
		case err := <-fail:
			w.headAnswered(err)
			if err := w.settle(ctx, false); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// purgeRead removes, every resultPurgeEvery until stop closes or ctx
// ends, the job's result messages its reader has taken in: the runner
// holds what it read until the sink has it, and a new generation starts a
// new job from the source rather than read these again. Without it a
// pipeline's results stay in its owner's result stream for the stream's
// retention (a day), and a pipeline that runs for long fills the stream
// (4 GiB by default), after which no result of the owner is stored.
func (r *runner) purgeRead(ctx context.Context, job *client.Job, stop <-chan struct{}) {
	t := time.NewTicker(resultPurgeEvery)
	defer t.Stop()
	stream, subject := proto.ResultStream(proto.JobOwner(job.ID())), proto.ResultSubject(job.ID())
	var done uint64
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq := job.ReadSeq()
		if seq <= done {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, kvTimeout)
		err := r.c.purge(pctx, stream, subject, jetstream.WithPurgeSequence(seq+1)) // below seq+1
		cancel()
		if err == nil {
			done = seq
		}
	}
}

// resultPurgeEvery is how often a pipeline's runner purges the results it
// has read.
const resultPurgeEvery = time.Second

// gapPause is how long a runner waits before it reads its source again
// after a gap: not a backoff (a gap is no failure), only enough not to spin
// should another reader keep taking its messages.
const gapPause = 100 * time.Millisecond

// sourceLinger is how long a pipeline's batch waits for more messages
// before it goes as it is.
const sourceLinger = 20 * time.Millisecond

// sourceBatchBytes caps a pipeline's batches (the sizer still says how many
// records): the sizer's choice for a plugin's one-shot jobs can be many
// megabytes, and batches of that size cost the pipeline more in copies
// through JetStream than they save in messages (BENCHMARKS.md,
// "Pipelines", "After: taken at once…": memmove 28% of its CPU with the
// sizer's 8 MB batches, 17% with 1 MiB).
const sourceBatchBytes = 1 << 20

// consumer returns the pipeline's durable consumer on its source stream,
// made anew from the first message not acknowledged: what a previous
// holder fetched and did not finish comes again, in order.
func (r *runner) consumer(ctx context.Context, p *proto.Pipeline) (jetstream.Consumer, error) {
	name := pipelineConsumer(p.Owner, p.Name)
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "DataFlare pipeline " + p.Owner + "/" + p.Name,
		FilterSubject: p.Filter,
		// The runner settles the messages in order, and acknowledges the
		// last of a run of them for all (sinkWriter.ack).
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       5 * time.Minute,
		MaxAckPending: 100_000,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      r.c.cfg.Topology.Replicas,
	}
	if old, err := r.c.js.Consumer(ctx, p.Source, name); err == nil {
		if floor := old.CachedInfo().AckFloor.Stream; floor > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
		}
		if err := r.c.js.DeleteConsumer(ctx, p.Source, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("reset consumer: %w", err)
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	cons, err := r.c.js.CreateConsumer(ctx, p.Source, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", p.Source, err)
	}
	return cons, nil
}

// source is a pipeline job's Source: the messages of its consumer, as
// records (value: the payload, key: the subject, headers: the message's),
// kept until their result is delivered.
type source struct {
	cons    jetstream.Consumer
	changed <-chan struct{}

	mu sync.Mutex
	// pending are the messages read and not yet taken, in record index
	// order from first: results come in that order.
	pending []sourceMsg
	first   uint64

	// delivered is the consumer sequence of the last message read: the
	// consumer is new, so the first is 1 and each next one is one more.
	delivered uint64
	gap       atomic.Bool // a delivery was missed: the job ends here
}

// errSourceGap reports a message of the source delivered but not read (a
// fetch's answer lost on the way, another reader on the pipeline's
// consumer): it would come again only after the consumer's AckWait, out of
// order, so the runner reads the source again from its last acknowledged
// message instead.
var errSourceGap = errors.New("a source message was delivered but never read")

// records returns the Source of the messages, until changed closes or ctx
// ends.
func (s *source) records(ctx context.Context) client.Source {
	return func(yield func(plugin.Record, error) bool) { s.yieldAll(ctx, yield) }
}

// sourcePull is how many source messages the runner asks for at once.
const sourcePull = 256

// yieldAll is records' body: the consumer's messages through a continuous
// pull, until the definition changes or ctx ends. What the pull fetched and
// was not read then comes again from the consumer made anew.
func (s *source) yieldAll(ctx context.Context, yield func(plugin.Record, error) bool) {
	// A missed heartbeat (a server or this process too busy to answer in
	// time) only has the iterator pull again: a delivery lost meanwhile
	// shows as a gap.
	msgs, err := s.cons.Messages(jetstream.PullMaxMessages(sourcePull), jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		yield(plugin.Record{}, fmt.Errorf("source: %w", err))
		return
	}
	finished := make(chan struct{})
	defer close(finished)
	stopped := make(chan struct{})
	// Stops when the definition changes, ctx ends or yieldAll returns.
	go func() {
		defer close(stopped)
		select {
		case <-s.changed:
		case <-ctx.Done():
		case <-finished:
		}
		msgs.Stop()
	}()
	defer func() { <-stopped }()
	for {
		m, err := msgs.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			yield(plugin.Record{}, fmt.Errorf("source: %w", err))
			return
		}
		meta, err := m.Metadata()
		if err != nil {
			yield(plugin.Record{}, fmt.Errorf("source: %w", err))
			return
		}
		if meta.Sequence.Consumer != s.delivered+1 {
			s.gap.Store(true)
			yield(plugin.Record{}, fmt.Errorf("source: %w: delivery %d, after %d (stream sequence %d)", errSourceGap, meta.Sequence.Consumer, s.delivered, meta.Sequence.Stream))
			return
		}
		s.delivered = meta.Sequence.Consumer
		rec := plugin.Record{Key: []byte(m.Subject()), Value: m.Data(), Timestamp: meta.Timestamp}
		for k, vs := range m.Headers() {
			for _, v := range vs {
				rec.Headers = append(rec.Headers, plugin.Header{Key: []byte(k), Value: []byte(v)})
			}
		}
		s.mu.Lock()
		s.pending = append(s.pending, sourceMsg{m: m, seq: meta.Sequence.Stream, at: meta.Timestamp})
		s.mu.Unlock()
		if !yield(rec, nil) {
			return
		}
	}
}

// sourceMsg is a source message read and not yet settled, with its stream
// sequence and time.
type sourceMsg struct {
	m   jetstream.Msg
	seq uint64
	at  time.Time
}

// take returns and forgets the message of record index.
func (s *source) take(index uint64) (sourceMsg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 || index != s.first {
		return sourceMsg{}, false
	}
	m := s.pending[0]
	s.pending[0] = sourceMsg{} // for the collector
	s.pending = s.pending[1:]
	s.first++
	return m, true
}

// sinkMsg returns the sink message of a result value of source message
// m (sequence seq): the value, the source message's headers and
// Df-Source-Seq, under an id of the pipeline and the source sequence.
func (r *runner) sinkMsg(p *proto.Pipeline, seq uint64, m jetstream.Msg, value []byte) *nats.Msg {
	out := &nats.Msg{Subject: p.Sink, Data: value, Header: nats.Header{}}
	for k, vs := range m.Headers() {
		if k != proto.HeaderMsgID && k != headerExpectedLastMsgID {
			out.Header[k] = vs
		}
	}
	out.Header.Set(HeaderSourceSeq, strconv.FormatUint(seq, 10))
	out.Header.Set(proto.HeaderMsgID, sinkMsgID(p, seq))
	return out
}

// sinkMsgID is the de-duplication id of the result of source message seq
// of p: the same for every attempt at it, whichever coordinator runs p and
// whatever revision, but not the same for a pipeline of the same name
// created again (its results are new, though its source sequences are the
// old one's).
func sinkMsgID(p *proto.Pipeline, seq uint64) string {
	return p.Owner + "." + p.Name + "." + strconv.FormatInt(p.Created.UnixNano(), 36) + "." + strconv.FormatUint(seq, 10)
}

// HeaderSourceSeq is the header of a pipeline's sink messages that carries
// the source message's stream sequence.
const HeaderSourceSeq = "Df-Source-Seq"

// deadLetter stores a record's error in DF_DEAD, naming the step that
// failed it.
func (r *runner) deadLetter(ctx context.Context, p *proto.Pipeline, job string, seq uint64, m jetstream.Msg, cause error) error {
	step := ""
	if n, ok := failedStep(cause.Error()); ok && n <= len(p.Steps) {
		step = p.Steps[n-1].Plugin
	}
	dl := &fleet.DeadLetter{Job: job, Index: seq, Plugin: step, Error: cause.Error(), Key: []byte(m.Subject()), Value: m.Data(),
		Worker: "pipeline " + p.Owner + "/" + p.Name, Attempts: 1, At: time.Now()}
	msg := proto.DeadLetterMsg(dl)
	// Under the pipeline's own id, not the job's: the same for a message
	// failed again after a takeover (under a new job), and apart from
	// the ids of the job's records, which workers' dead letters take.
	msg.Header.Set(proto.HeaderMsgID, sinkMsgID(p, seq)+".dead")
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := r.c.js.PublishMsg(pctx, msg)
	return err
}

// failedStep reads the step number of a chain's record error ("step N
// (plugin): …").
func failedStep(msg string) (int, bool) {
	rest, ok := strings.CutPrefix(msg, "step ")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, " ")
	n, err := strconv.Atoi(num)
	return n, ok && err == nil && n > 0
}

// retry calls f until it succeeds or ctx ends, backing off up to 5 s.
func (r *runner) retry(ctx context.Context, f func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		r.c.log.Warn("pipeline output not stored; retrying", "pipeline", r.owner+"/"+r.name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// cancelOldJob cancels the job a previous generation ran as: its batches
// still queued are removed, its results purged.
func (r *runner) cancelOldJob(ctx context.Context, id string) {
	if id == "" {
		return
	}
	if _, err := r.c.cancelJob(ctx, id, nil); err != nil {
		r.c.log.Debug("old pipeline job not cancelled", "job", id, "err", err)
	}
}

// setState records the runner's state for its next report.
func (r *runner) setState(s string) { r.state.Store(s) }

// report writes the pipeline's status every second until the returned
// function is called (and then once more).
func (r *runner) report(ctx context.Context) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	// Stops when the returned function closes stop, or ctx ends.
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastAt := r.processed.Load(), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-stop:
				return
			case now := <-t.C:
				n := r.processed.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				r.writeStatus(ctx, rate)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// writeStatus stores the pipeline's status and sets its lag metric.
func (r *runner) writeStatus(ctx context.Context, rate float64) {
	p, _ := r.current()
	st := proto.PipelineStatus{Coordinator: r.c.cfg.ID, Job: r.job.Load().(string), Revision: r.revision.Load(),
		At: r.c.cfg.Clock(), Processed: r.processed.Load(), Errors: r.errs.Load(), Dropped: r.dropped.Load(),
		Rate: rate, LastSeq: r.lastSeq.Load()}
	if s, ok := r.state.Load().(string); ok {
		st.State = s
	}
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if cons, err := r.c.js.Consumer(kctx, p.Source, pipelineConsumer(p.Owner, p.Name)); err == nil {
		info := cons.CachedInfo()
		st.Lag = info.NumPending + uint64(info.NumAckPending)
	}
	r.latMu.Lock()
	st.LatencyP50, st.LatencyP99 = r.lat.Quantile(0.5), r.lat.Quantile(0.99)
	if time.Since(r.latFrom) > time.Minute {
		r.lat.Reset()
		r.latFrom = time.Now()
	}
	r.latMu.Unlock()
	r.c.metrics.pipelineLag.WithLabelValues(p.Owner + "/" + p.Name).Set(float64(st.Lag))
	b, _ := json.Marshal(st) // cannot fail: plain data
	if _, err := r.c.pipelines.Put(kctx, pipelineKey("status", p.Owner, p.Name), b); err != nil {
		r.c.log.Debug("pipeline status not written", "pipeline", p.Owner+"/"+p.Name, "err", err)
	}
}
