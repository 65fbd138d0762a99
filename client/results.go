package client

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/batch/batchz"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
	"github.com/dataflare/dataflare/plugin"
)

// stateCheckEvery is how long a reader waits without news before it asks
// whether its job was cancelled elsewhere.
const stateCheckEvery = time.Second

// Results yields one Output per input record, in input order, as the fleet
// produces them. If the job fails — the fleet refuses it, the Source
// errs, the context ends, another process cancels it (ErrJobClosed) — the
// last pair carries the error; every Output
// before it stands. Stopping the iteration early stops the job's goroutines
// in this process (the fleet job runs on; Cancel it to stop it). Results
// can be ranged over once.
func (j *Job) Results() iter.Seq2[Output, error] {
	return func(yield func(Output, error) bool) {
		if !j.taken.CompareAndSwap(false, true) {
			yield(Output{}, errors.New("client: Results can be read only once per job"))
			return
		}
		defer j.stop()
		r := reader{j: j, total: ^uint64(0)}
		r.run(yield)
	}
}

// reader hands out a job's results in input order. It lives in Results, on
// the caller's goroutine.
type reader struct {
	j       *Job
	pending segments // segments received ahead of their turn
	next    uint64   // results handed out = the index of the next
	total   uint64   // the job's records once sealed, ^0 before
	endErr  error    // the input error to give after the last result
	heard   bool     // an event came since the last state tick
}

// run yields the job's results to the last, then the input error if any;
// or up to the job's failure, then that.
func (r *reader) run(yield func(Output, error) bool) {
	// A job cancelled elsewhere sends nothing more: after a quiet
	// stateCheckEvery, ask.
	check := time.NewTicker(stateCheckEvery)
	defer check.Stop()
	for r.next != r.total {
		ev, err := r.wait(check.C)
		switch {
		case err != nil:
			yield(Output{}, err)
			return
		case ev.sealed:
			r.total, r.endErr = ev.total, ev.err
		case ev.abandoned != nil:
			if d := ev.abandoned; d.QueuedBatches == 0 && r.j.received.Load() >= d.ResultMessages {
				r.endAbandoned(yield, d)
				return
			}
		case ev.err != nil:
			if !ev.gone {
				r.j.span.SetStatus(codes.Error, ev.err.Error())
			}
			yield(Output{}, ev.err)
			return
		default:
			heap.Push(&r.pending, ev.seg)
			if !r.handOut(yield) {
				return
			}
		}
	}
	r.j.finish()
	if r.endErr != nil {
		yield(Output{}, r.endErr)
	}
}

// endAbandoned ends the results of an attached job its submitter left
// open, once every result it will have is here: it hands out the results
// received, a record missing between them getting an error as its result,
// and ends with an error that says from which record on none was sent.
func (r *reader) endAbandoned(yield func(Output, error) bool, d *proto.JobDetail) {
	id := r.j.info.ID
	for r.pending.Len() > 0 {
		for r.next < r.pending[0].base {
			never := &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf(
				"record %d was never sent: the submitter of job %s stopped before it reached the fleet", r.next, id)}
			res := plugin.Fail(never)
			r.j.count(res)
			if !yield(Output{Index: r.next, Result: res}, nil) {
				return
			}
			r.next++
		}
		if !r.handOut(yield) {
			return
		}
	}
	yield(Output{}, &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf(
		"job %s was never sealed: its submitter stopped (it last reported %d records sent); records from %d on have no result: they were never sent, submit them again",
		id, d.Job.Sent.Records, r.next)})
}

// wait returns the next event. When a tick finds that none came since the
// last, it has the watcher ask whether the job was cancelled elsewhere. The
// error says why the job's context ended.
func (r *reader) wait(tick <-chan time.Time) (event, error) {
	for {
		select {
		case ev := <-r.j.events:
			r.heard = true
			return ev, nil
		case <-tick:
			if !r.heard {
				r.j.askState()
			}
			r.heard = false
		case <-r.j.ended:
			return event{}, fmt.Errorf("client: job %s: %w", r.j.info.ID, r.j.endErr)
		}
	}
}

// handOut yields the results whose turn has come, freeing the window slots
// of the batches they complete. It returns false when yield does.
func (r *reader) handOut(yield func(Output, error) bool) bool {
	for r.pending.Len() > 0 && r.pending[0].base <= r.next {
		s := heap.Pop(&r.pending).(*segment)
		for i := r.next - s.base; i < uint64(len(s.results)); i++ {
			res := s.results[i]
			r.j.count(res)
			r.next++
			if !yield(Output{Index: s.base + i, Result: res}, nil) {
				return false
			}
		}
		putResults(s.results)
		r.j.advance(r.next)
	}
	return true
}

func (j *Job) count(r plugin.Result) {
	j.results.Add(1)
	switch {
	case r.Err != nil:
		j.failed.Add(1)
	case r.Dropped:
		j.dropped.Add(1)
	default:
		j.succeeded.Add(1)
	}
}

// finish tells the fleet the results were read, so it can drop them. It
// runs whether or not the job's context ended: the request carries the
// job's span and the request timeout only.
func (j *Job) finish() {
	ctx, cancel := context.WithTimeout(trace.ContextWithSpan(context.Background(), j.span), j.c.opts.timeout)
	defer cancel()
	p := j.Progress()
	_, err := request[proto.Job](ctx, j.c, proto.JobSubject("done", j.info.ID), proto.JobFinish{Progress: proto.Progress{
		Results: p.Results, Succeeded: p.Succeeded, Failed: p.Failed, Dropped: p.Dropped}})
	if err != nil {
		j.c.opts.log.Warn("job done but not recorded", "job", j.info.ID, "err", err)
	}
}

// receive starts reading the job's results from DF_RESULTS, until ctx, the
// job's context, ends.
//
// The reader is an ordered consumer, which nats.go makes anew, under the
// same name, when its deliveries stop (a server lost, a consumer deleted).
// Making it again under that name can keep failing: in TestComposeFaults a
// job's reader retried it for minutes after a NATS node was killed (most
// likely the name's assignment to that node, made before the cluster saw it
// go), and the job stalled with its results stored and unread. So the
// ordered consumer gives up after resultResets tries, and the job reads its
// results through a new one, under a new name, from the message after the
// last one it took in.
func (j *Job) receive(ctx context.Context) error {
	it, err := j.openResults(ctx)
	if err != nil {
		return fmt.Errorf("client: read results: %w", err)
	}
	j.wg.Add(1)
	// Stops when the job's context ends (which stops the iterator), or at
	// the first failure that reading again does not mend.
	go func() {
		defer j.wg.Done()
		backoff := resultsBackoff
		for {
			from := j.readSeq.Load()
			stop := context.AfterFunc(ctx, it.Stop)
			err := j.deliver(ctx, it)
			stop()
			if err == nil || ctx.Err() != nil {
				return
			}
			if j.readSeq.Load() > from {
				// The reader opened last worked for a while: a failure
				// now is a new one, not the last one going on.
				backoff = resultsBackoff
			}
			it.Stop()
			j.c.opts.log.Warn("job's results read again through a new consumer", "job", j.info.ID, "after_seq", j.readSeq.Load(), "err", err)
			for {
				if it, err = j.openResults(ctx); err == nil {
					break
				}
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					j.fail(ctx, fmt.Errorf("client: read results: %w", err))
					return
				}
				j.c.opts.log.Warn("job's results not read; trying again", "job", j.info.ID, "err", err, "in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
			j.reopened.Add(1)
		}
	}()
	return nil
}

// resultResets is how many times a job's ordered consumer tries to make
// its consumer anew before the job reads through a new one (receive).
const resultResets = 2

// resultsBackoff is the first pause between a job's tries to read its
// results through a new consumer.
const resultsBackoff = 100 * time.Millisecond

// openResults returns an iterator over the job's result messages, through
// a new ordered consumer, from the message after the last one it took in.
func (j *Job) openResults(ctx context.Context) (jetstream.MessagesContext, error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:   []string{proto.ResultSubject(j.info.ID)},
		MaxResetAttempts: resultResets,
	}
	if seq := j.readSeq.Load(); seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := j.c.js.OrderedConsumer(ctx, proto.ResultStream(proto.JobOwner(j.info.ID)), cfg)
	if err != nil {
		return nil, err
	}
	return cons.Messages()
}

// deliver decodes the job's result messages from it and passes them to the
// reader, until it stops, the reader is gone (nil), or reading fails (the
// error).
func (j *Job) deliver(ctx context.Context, it jetstream.MessagesContext) error {
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		j.received.Add(1)
		if md, err := m.Metadata(); err == nil {
			j.readSeq.Store(md.Sequence.Stream)
		}
		rs := batch.ResultSet{Results: getResults()}
		// A compressed message is decompressed into a buffer of its own:
		// the results' values alias it, as they alias a plain message.
		data, err := batchz.Plain(nil, m.Data())
		if err == nil {
			err = batch.DecodeResults(data, &rs)
		}
		if err != nil || rs.Job != j.info.ID {
			// Not a result of this job (only workers and coordinators
			// publish here, but one bad message must not end a job):
			// skipped and counted; a record's missing result still
			// comes from its batch.
			j.skipped.Add(1)
			j.c.opts.log.Warn("message on the job's result subject skipped", "job", j.info.ID, "err", err)
			putResults(rs.Results)
			continue
		}
		_, span := tracer.Start(tracing.Extract(ctx, m.Headers()), "client.results", trace.WithAttributes(
			attribute.Int64("dataflare.seq", int64(rs.Seq)), attribute.Int("dataflare.records", len(rs.Results))))
		span.End()
		if !j.emit(ctx, event{seg: &segment{base: rs.Base, results: rs.Results}}) {
			return nil
		}
	}
}

// resultSlices recycles the result slices of segments: once a segment's
// results are handed out (each Output is a copy), its slice decodes the
// next result message.
var resultSlices sync.Pool // of *[]plugin.Result

func getResults() []plugin.Result {
	if p, ok := resultSlices.Get().(*[]plugin.Result); ok {
		return (*p)[:0]
	}
	return nil
}

// putResults gives rs back, cleared so that it keeps no message alive.
func putResults(rs []plugin.Result) {
	if cap(rs) == 0 {
		return
	}
	clear(rs)
	resultSlices.Put(&rs)
}

// segments is a min-heap of segments by base.
type segments []*segment

func (s segments) Len() int           { return len(s) }
func (s segments) Less(a, b int) bool { return s[a].base < s[b].base }
func (s segments) Swap(a, b int)      { s[a], s[b] = s[b], s[a] }
func (s *segments) Push(x any)        { *s = append(*s, x.(*segment)) }
func (s *segments) Pop() any {
	old := *s
	x := old[len(old)-1]
	*s = old[:len(old)-1]
	return x
}
