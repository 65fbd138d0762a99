package worker

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// Poison comes in two kinds. A batch whose plugin fails it as a whole is
// isolated at once, on the worker that ran it (isolate). A batch whose
// workers die or stall every time it runs cannot be isolated by running
// it: after MaxDeliver deliveries in which it ran alone on its worker
// (alone.go: a death beside other batches proves nothing), the worker that
// gets it once more splits it without running it (splitDead). JetStream
// never gives a batch up, so a split that cannot be stored now (a cluster
// without quorum) is simply tried again on the next delivery.

// isolate runs the records of a batch that failed as a whole in halves,
// recursively, until each failing part is a single record: that record gets
// a poison error and a dead-letter entry; the others get their results.
//
// The whole isolation has a budget (one batch timeout): the records of the
// parts not yet run when it is spent get the batch's error — a record
// error, not poison, since nothing proved them bad — so that a batch that
// times out holds its slot for two timeouts at most, not for hours of
// halving. It returns ctx's error when ctx ends (the batch's job was
// cancelled, or the worker stops), and an error when the plugin became
// unavailable meanwhile.
func (w *Worker) isolate(ctx context.Context, b *batch.Batch, cause error, budget time.Duration) (*plugin.BatchResult, error) {
	start := time.Now()
	deadline := start.Add(budget)
	out := make([]plugin.Result, len(b.Records))
	var split func(lo, hi int, cause error) error
	split = func(lo, hi int, cause error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if hi-lo == 1 {
			return w.poison(ctx, b, lo, cause, 1, out)
		}
		mid := (lo + hi) / 2
		for _, r := range [2][2]int{{lo, mid}, {mid, hi}} {
			left := time.Until(deadline)
			if left <= 0 {
				copy(out[r[0]:r[1]], failAll(r[1]-r[0], overBudget(budget, cause)).Results)
				continue
			}
			sub := *b
			sub.Records = b.Records[r[0]:r[1]]
			rctx, cancel := context.WithTimeout(ctx, left)
			res, err := w.run(rctx, &sub, nil)
			cancel()
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err == nil:
				for i, x := range res.Results {
					// Results may alias the plugin's buffers, which the
					// next run reuses.
					x.Value = bytes.Clone(x.Value)
					out[r[0]+i] = x
				}
				w.release(b, res)
			case transient(err):
				return err
			case plugin.CodeOf(err) == plugin.CodeInvalidInput:
				copy(out[r[0]:r[1]], failAll(r[1]-r[0], err).Results)
			default:
				if err := split(r[0], r[1], err); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := split(0, len(b.Records), cause); err != nil {
		return nil, err
	}
	return &plugin.BatchResult{Results: out, Duration: time.Since(start)}, nil
}

// overBudget is the error of records not isolated within budget, after
// their batch failed with cause.
func overBudget(budget time.Duration, cause error) error {
	code := plugin.CodeOf(cause)
	if code == plugin.CodeUnknown {
		code = plugin.CodeProcessing
	}
	return &plugin.Error{Code: code, Message: fmt.Sprintf("not isolated within %v after its batch failed: %v", budget, cause), Err: cause}
}

// poison gives record i of b its poison error and stores it as a dead
// letter, after attempts runs.
func (w *Worker) poison(ctx context.Context, b *batch.Batch, i int, cause error, attempts int, out []plugin.Result) error {
	idx := b.Base + uint64(i)
	perr := &plugin.Error{Code: plugin.CodePoison, Message: fmt.Sprintf("record %d: %v", idx, cause)}
	rec := b.Records[i]
	dl := &fleet.DeadLetter{Job: b.Job, Index: idx, Plugin: b.Plugin, Digest: b.Digest, Error: cause.Error(),
		Key: rec.Key, Value: rec.Value, Worker: w.cfg.ID, Attempts: attempts, At: time.Now()}
	pctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if _, err := w.js.PublishMsg(pctx, proto.DeadLetterMsg(dl)); err != nil {
		return &plugin.Error{Code: plugin.CodeUnavailable, Message: "worker: store dead letter: " + err.Error(), Err: err}
	}
	w.metrics.deadLettered.Inc()
	w.log.Warn("record isolated and dead-lettered", "job", b.Job, "index", idx, "err", cause)
	out[i] = plugin.Fail(perr)
	return nil
}

// splitDead handles a batch that ran alone MaxDeliver times (delivery d):
// the workers running it died or stalled each time. It is not run again.
// It is split in halves, each a new batch at the end of the queue, under
// ids that make a repeated split a duplicate; a single record gets a
// poison error as its result and a dead letter. The batch is acknowledged
// once that is stored, and released for a retry if it cannot be.
func (w *Worker) splitDead(ctx context.Context, m jetstream.Msg, b *batch.Batch, d delivery) {
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	delivered, runs := d.n, d.alone
	log := w.log.With("job", b.Job, "seq", b.Seq, "base", b.Base, "records", len(b.Records), "runs_alone", runs)
	if len(b.Records) == 1 {
		cause := fmt.Errorf("failed on every one of %d deliveries in which it ran alone: the workers running it died or stalled each time", runs)
		res := &plugin.BatchResult{Results: make([]plugin.Result, 1)}
		err := w.poison(sctx, b, 0, cause, runs, res.Results)
		if err == nil {
			err = w.publish(sctx, m, b, res)
		}
		if err != nil {
			w.nak(m, "poison", delivered, err)
			return
		}
	} else {
		if err := w.publishHalves(sctx, m, b); err != nil {
			w.nak(m, "poison", delivered, err)
			return
		}
		w.metrics.splits.Inc()
		log.Warn("batch failed every delivery in which it ran alone: split in halves")
	}
	if err := m.DoubleAck(sctx); err != nil {
		// The next delivery splits it again: the halves are duplicates.
		log.Warn("ack failed after the split was stored", "err", err)
	}
}

// publishHalves publishes b's two halves as new batches on m's subject.
func (w *Worker) publishHalves(ctx context.Context, m jetstream.Msg, b *batch.Batch) error {
	depth, _ := strconv.Atoi(m.Headers().Get(proto.HeaderSplit))
	// The halves' ids derive from the batch's own, which only its
	// submitter (and the workers) know: nobody can publish them first.
	// A copy published to run alone (bounce) has its batch's halves.
	parent := originID(batchMsgID(m, b))
	half := len(b.Records) / 2
	for _, part := range []struct {
		base uint64
		recs []plugin.Record
	}{{b.Base, b.Records[:half]}, {b.Base + uint64(half), b.Records[half:]}} {
		p := *b
		p.Base, p.Records = part.base, part.recs
		data, err := batch.AppendBatch(nil, &p)
		if err != nil {
			return err
		}
		out := &nats.Msg{Subject: m.Subject(), Data: data, Header: nats.Header{}}
		out.Header.Set(proto.HeaderMsgID, proto.PartMsgID(parent, part.base, len(part.recs)))
		out.Header.Set(proto.HeaderSplit, strconv.Itoa(depth+1))
		if tp := m.Headers().Get("traceparent"); tp != "" {
			out.Header.Set("traceparent", tp)
		}
		if _, err := w.js.PublishMsg(ctx, out); err != nil {
			return fmt.Errorf("worker: publish half of a poison batch: %w", err)
		}
	}
	return nil
}
