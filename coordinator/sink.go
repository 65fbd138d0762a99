package coordinator

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
)

// sinkWindow is how many results a pipeline has on their way to the sink
// at once: enough that the sink's acknowledgements, each some
// milliseconds away when the server is busy, do not set the pace.
const sinkWindow = 1024

// chainMismatches is how many times in one job the sink refuses a result
// whose predecessor is not the stream's last message before the runner
// takes the sink for one with other writers and publishes one result at a
// time.
const chainMismatches = 3

// errCodeWrongLastMsgID is JetStream's error code for a message refused
// for Nats-Expected-Last-Msg-Id (nats-server's JSStreamWrongLastMsgIDErr;
// nats.go names no constant for it).
const errCodeWrongLastMsgID jetstream.ErrorCode = 10070

// headerExpectedLastMsgID makes JetStream refuse a message unless the
// stream's last message has that id.
const headerExpectedLastMsgID = "Nats-Expected-Last-Msg-Id"

// sinkWriter puts one job's results on the sink in source order, with up
// to sinkWindow of them on their way at once where the chain may be used
// (a sink stream of one replica; newSinkWriter says why), else one at a
// time. Each result after the
// first carries the id of the one before as Nats-Expected-Last-Msg-Id, so
// that the stream stores none whose predecessor it does not have: a result
// lost with a connection cannot be overtaken by the next one (which nats.go
// may send after a reconnect), and publishing them all again from the
// first unsettled one, one at a time, keeps the order (those the stream
// has are duplicates). The stream checks duplicates first, so a result sent
// again is a duplicate, not a mismatch. A sink stream with other writers
// refuses the chain: after chainMismatches the writer publishes one at a
// time, each waiting for its acknowledgement.
//
// Results settle in order, and the counts are kept as they do. Their
// source messages are acknowledged together: the source's consumer
// acknowledges all messages up to the one acknowledged (AckAll), and the
// writer acknowledges the last settled one once sourceAckEvery have
// settled since the last acknowledgement, or nothing is left on its way.
type sinkWriter struct {
	r   *runner
	p   *proto.Pipeline
	job string

	q          []*sinkItem // in order; each published or settled
	last       string      // id of the last result published, "" before the first
	chain      bool        // results carry the id of the one before
	mismatches int
	core       bool // no stream captures the sink: plain messages

	// toAck is the last settled source message not acknowledged yet,
	// nil when there is none; owed counts the settled messages it
	// stands for.
	toAck jetstream.Msg
	owed  int

	// The pipeline's dataflare_pipeline_messages_total, by outcome.
	published, failed, dropped prometheus.Counter
}

// sinkItem is one result on its way: published (f) or, for a dropped or
// dead-lettered record, settled already.
type sinkItem struct {
	out     client.Output
	m       jetstream.Msg
	seq     uint64
	arrived time.Time
	msg     *nats.Msg // the sink message; nil for no result value
	f       jetstream.PubAckFuture
	// answered once f's answer was taken (a future answers once); err
	// is the answer's error.
	answered bool
	err      error
}

// answer takes it's answer, waiting for it when wait is set (until ctx
// ends); it reports whether there is one. An item without a publication
// has answered.
func (it *sinkItem) answer(ctx context.Context, wait bool) bool {
	if it.f == nil || it.answered {
		return true
	}
	var done <-chan struct{}
	if wait {
		done = ctx.Done()
	} else {
		closed := make(chan struct{})
		close(closed)
		done = closed
	}
	select {
	case <-it.f.Ok():
	case err := <-it.f.Err():
		it.err = err
	case <-done:
		return false
	}
	it.answered = true
	return true
}

// newSinkWriter returns the writer of a job's results. It chains them only
// on a sink stream of one replica: nats-server (2.15.2) checks
// Nats-Expected-Last-Msg-Id again on each replica as it applies a message,
// and a replica restarted with an older last id fails the write for good
// ("critical write error": seen with a node restarted under a chained
// window, TestChaosPipelineNodeRestart), so a replicated sink gets one
// result at a time.
func newSinkWriter(ctx context.Context, r *runner, p *proto.Pipeline, job string) *sinkWriter {
	label := p.Owner + "/" + p.Name
	w := &sinkWriter{r: r, p: p, job: job,
		published: r.c.metrics.pipelineMessages.WithLabelValues(label, "published"),
		failed:    r.c.metrics.pipelineMessages.WithLabelValues(label, "failed"),
		dropped:   r.c.metrics.pipelineMessages.WithLabelValues(label, "dropped")}
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	switch name, err := r.c.js.StreamNameBySubject(kctx, p.Sink); {
	case err == nil:
		if s, err := r.c.js.Stream(kctx, name); err == nil {
			w.chain = s.CachedInfo().Config.Replicas <= 1
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		w.core = true
	}
	return w
}

// noStream reports whether JetStream says that no stream captures the
// sink. A publication without an answer from a stream (no responders) is
// not enough: a stream electing a leader, after a server's loss, answers
// so too, and taking it for a sink without a stream would publish the
// results as plain messages, nobody's to keep, and acknowledge their
// source messages (TestChaosPipelineNodeRestart lost a run of 511 so).
func (w *sinkWriter) noStream(ctx context.Context) bool {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	_, err := w.r.c.js.StreamNameBySubject(kctx, w.p.Sink)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// put takes the result of source message m: dead-letters an error at once,
// publishes a value, and settles the oldest results once the window is
// full.
func (w *sinkWriter) put(ctx context.Context, sm sourceMsg, out client.Output) error {
	m := sm.m
	it := &sinkItem{out: out, m: m, seq: sm.seq, arrived: sm.at}
	switch {
	case out.Err != nil:
		if err := w.r.retry(ctx, func(ctx context.Context) error { return w.r.deadLetter(ctx, w.p, w.job, it.seq, m, out.Err) }); err != nil {
			return err
		}
	case out.Dropped:
	default:
		it.msg = w.r.sinkMsg(w.p, it.seq, m, out.Value)
		if err := w.send(ctx, it); err != nil {
			return err
		}
	}
	w.q = append(w.q, it)
	return w.settle(ctx, len(w.q) >= sinkWindow)
}

// settle settles the oldest results that have their answer, and with
// wait, waits for at least the oldest one.
func (w *sinkWriter) settle(ctx context.Context, wait bool) error {
	for len(w.q) > 0 {
		it := w.q[0]
		if !it.answer(ctx, wait) {
			return ctx.Err() // nil when not waiting
		}
		if it.err != nil {
			return w.recover(ctx, it.err)
		}
		w.done(it)
		w.q = w.q[1:]
		wait = false
	}
	w.ack()
	return nil
}

// head returns the channels the oldest result's answer comes on, nil
// when there is nothing to wait for.
func (w *sinkWriter) head() (<-chan *jetstream.PubAck, <-chan error) {
	if len(w.q) == 0 || w.q[0].f == nil || w.q[0].answered {
		return nil, nil
	}
	return w.q[0].f.Ok(), w.q[0].f.Err()
}

// headAnswered records the oldest result's answer, taken from the
// channels head returned.
func (w *sinkWriter) headAnswered(err error) {
	w.q[0].answered, w.q[0].err = true, err
}

// send publishes it's message: chained and without waiting while the
// chain holds, else waiting for the stream's acknowledgement.
func (w *sinkWriter) send(ctx context.Context, it *sinkItem) error {
	if w.chain && !w.core && w.last != "" {
		it.msg.Header.Set(headerExpectedLastMsgID, w.last)
		f, err := w.r.c.js.PublishMsgAsync(it.msg)
		if err == nil {
			it.f = f
			w.last = it.msg.Header.Get(proto.HeaderMsgID)
			return nil
		}
		// Too many on their way (the client's own limit): settle them,
		// then publish this one as the first of a new chain.
		if err := w.drain(ctx); err != nil {
			return err
		}
	}
	it.msg.Header.Del(headerExpectedLastMsgID)
	if err := w.r.retry(ctx, func(ctx context.Context) error { return w.publishNow(ctx, it.msg) }); err != nil {
		return err
	}
	w.last = it.msg.Header.Get(proto.HeaderMsgID)
	return nil
}

// publishNow publishes msg and waits for the stream's acknowledgement; a
// sink no stream captures gets it as a plain message.
func (w *sinkWriter) publishNow(ctx context.Context, msg *nats.Msg) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !w.core {
		_, err := w.r.c.js.PublishMsg(pctx, msg)
		if !errors.Is(err, jetstream.ErrNoStreamResponse) || !w.noStream(ctx) {
			return err
		}
		w.core = true
	}
	msg.Header.Del(proto.HeaderMsgID)
	if err := w.r.c.nc.PublishMsg(msg); err != nil {
		return err
	}
	return w.r.c.nc.FlushWithContext(pctx)
}

// recover sends every result still on its way again, one at a time and
// waiting for each, from the oldest: what the stream has comes back a
// duplicate, what it lacks is stored after its predecessor.
func (w *sinkWriter) recover(ctx context.Context, cause error) error {
	var apiErr *jetstream.APIError
	if errors.As(cause, &apiErr) && apiErr.ErrorCode == errCodeWrongLastMsgID {
		w.mismatches++
		if w.mismatches >= chainMismatches && w.chain {
			w.chain = false
			w.r.c.log.Warn("pipeline sink has other writers; publishing one result at a time", "pipeline", w.p.Owner+"/"+w.p.Name, "sink", w.p.Sink)
		}
	} else if errors.Is(cause, jetstream.ErrNoStreamResponse) && w.noStream(ctx) {
		w.core = true
	}
	// Let every answer come first, so that nothing sent before is still
	// on its way while the results go again.
	for _, it := range w.q {
		if !it.answer(ctx, true) {
			return ctx.Err()
		}
	}
	w.r.c.log.Debug("pipeline results sent again", "pipeline", w.p.Owner+"/"+w.p.Name, "from_seq", w.q[0].seq, "results", len(w.q), "cause", cause)
	for _, it := range w.q {
		if it.msg != nil {
			it.msg.Header.Del(headerExpectedLastMsgID)
			if err := w.r.retry(ctx, func(ctx context.Context) error { return w.publishNow(ctx, it.msg) }); err != nil {
				return err
			}
			w.last = it.msg.Header.Get(proto.HeaderMsgID)
		}
		w.done(it)
	}
	w.q = w.q[:0]
	w.ack()
	return nil
}

// drain settles every result on its way.
func (w *sinkWriter) drain(ctx context.Context) error {
	for len(w.q) > 0 {
		if err := w.settle(ctx, true); err != nil {
			return err
		}
	}
	return nil
}

// sourceAckEvery is how many settled source messages one acknowledgement
// stands for at most while results are on their way: one per message was
// one more message through the server per record, beside its delivery and
// its result's publication (BENCHMARKS.md, "Pipelines", "Acknowledged a
// run at a time…").
const sourceAckEvery = 64

// done counts it as settled (in the pipeline's status unless the previous
// holder's report counted it) and owes its source message's
// acknowledgement (ack pays it).
func (w *sinkWriter) done(it *sinkItem) {
	r := w.r
	again := it.seq <= r.counted // in the previous holder's counts already
	switch {
	case it.out.Err != nil:
		if !again {
			r.errs.Add(1)
		}
		w.failed.Inc()
	case it.out.Dropped:
		if !again {
			r.dropped.Add(1)
		}
		w.dropped.Inc()
	default:
		w.published.Inc()
	}
	w.toAck, w.owed = it.m, w.owed+1
	if !again {
		r.processed.Add(1)
	}
	r.lastSeq.Store(max(r.lastSeq.Load(), it.seq))
	r.latMu.Lock()
	r.lat.Record(time.Since(it.arrived))
	r.latMu.Unlock()
}

// ack acknowledges the last settled source message, and with it every
// one before (the consumer's AckAll), when nothing is on its way any more
// or sourceAckEvery are owed. The acknowledgement is not waited for: one
// lost only brings its messages again to the next holder, whose results
// the sink then takes for the duplicates they are.
func (w *sinkWriter) ack() {
	if w.toAck == nil || (len(w.q) > 0 && w.owed < sourceAckEvery) {
		return
	}
	if err := w.toAck.Ack(); err != nil {
		w.r.c.log.Debug("pipeline source messages not acknowledged", "pipeline", w.r.owner+"/"+w.r.name, "err", err)
	}
	w.toAck, w.owed = nil, 0
}
