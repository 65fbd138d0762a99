package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
	"github.com/dataflare/dataflare/plugin"
)

var tracer = tracing.Tracer("github.com/dataflare/dataflare/worker")

// batchPool recycles decoded batches: decoding reuses their record slices.
var batchPool = sync.Pool{New: func() any { return new(batch.Batch) }}

// settleTimeout bounds publishing a batch's results and acknowledging it.
const settleTimeout = 10 * time.Second

// handle runs one batch message and settles it.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	w.lease.add(m)
	defer w.lease.remove(m)
	delivered := uint64(1)
	if meta, err := m.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	if delivered > 1 {
		w.metrics.redeliveries.Inc()
	}
	ctx = tracing.Extract(ctx, m.Headers())
	ctx, span := tracer.Start(ctx, "worker.batch", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()

	b := batchPool.Get().(*batch.Batch)
	defer batchPool.Put(b)
	if err := batch.DecodeBatch(m.Data(), b); err != nil {
		// Clients publish batches with the codec, which checks every
		// limit: this one cannot be run anywhere, so it is removed.
		w.log.Error("undecodable batch terminated", "subject", m.Subject(), "err", err)
		span.SetStatus(codes.Error, err.Error())
		w.metrics.naks.WithLabelValues("malformed").Inc()
		m.Term()
		return
	}
	if want := proto.BatchSubject(b.Plugin, b.Job); m.Subject() != want || len(b.Records) == 0 {
		// NATS lets an owner publish only under its own jobs' subjects:
		// a batch that names another job (its results would go to that
		// job's owner) or no records is not run.
		w.log.Error("batch terminated: its subject does not match its job, or it is empty", "subject", m.Subject(), "job", b.Job, "plugin", b.Plugin)
		span.SetStatus(codes.Error, "batch subject mismatch")
		w.metrics.naks.WithLabelValues("malformed").Inc()
		m.Term()
		return
	}
	span.SetAttributes(attribute.String("dataflare.job", b.Job), attribute.Int64("dataflare.seq", int64(b.Seq)),
		attribute.Int("dataflare.records", len(b.Records)), attribute.String("dataflare.plugin", b.Plugin),
		attribute.Int64("dataflare.delivery", int64(delivered)))
	if delivered > uint64(w.poisonAfter) {
		// Its workers died or stalled on every delivery: run it no more.
		w.splitDead(ctx, m, b, delivered)
		return
	}

	rctx, cancel := context.WithTimeout(ctx, w.cfg.BatchTimeout)
	res, err := w.run(rctx, b, m.Data())
	cancel()
	if err != nil {
		span.RecordError(err)
	}
	w.settle(ctx, m, b, res, err, delivered)
}

// settle maps a batch's outcome to JetStream, in one place:
//   - success: publish the results, then double-ack;
//   - a transient failure (the plugin is unavailable here, the worker is
//     stopping and gave up on the batch): nak with a delay, so the batch
//     runs later, maybe elsewhere;
//   - the plugin failed the whole batch: isolate the records at fault by
//     halving, then publish and double-ack as on success;
//   - a long batch: kept alive by the lease keeper while it runs.
func (w *Worker) settle(ctx context.Context, m jetstream.Msg, b *batch.Batch, res *plugin.BatchResult, err error, delivered uint64) {
	if err != nil {
		switch {
		case ctx.Err() != nil:
			// The worker stops and gave up waiting for the batch: its
			// failure says nothing of its records.
			w.nak(m, "stopping", delivered, err)
			return
		case b.Digest != "" && plugin.CodeOf(err) == plugin.CodeUnknownPlugin:
			// Every worker fetches modules from the same store: a module
			// missing there, or refused on load, fails the job's records
			// alike, with the reason, rather than going round the fleet.
			res = failAll(len(b.Records), err)
		case transient(err):
			w.nak(m, "unavailable", delivered, err)
			return
		case plugin.CodeOf(err) == plugin.CodeInvalidInput:
			// A bad configuration fails every record alike.
			res = failAll(len(b.Records), err)
		default:
			res, err = w.isolate(ctx, b, err)
			if err != nil {
				w.nak(m, "unavailable", delivered, err)
				return
			}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	defer w.release(b, res)
	if err := w.publish(sctx, m, b, res); err != nil {
		w.nak(m, "publish", delivered, err)
		return
	}
	if err := m.DoubleAck(sctx); err != nil {
		// The results are stored; a redelivery only repeats them, and the
		// duplicate is dropped.
		w.log.Warn("ack failed after the results were stored", "job", b.Job, "seq", b.Seq, "err", err)
	}
	w.metrics.observe(b.Plugin, res)
}

// release gives a WebAssembly batch's result buffers back once the result
// is encoded and published.
func (w *Worker) release(b *batch.Batch, res *plugin.BatchResult) {
	if b.Digest != "" && w.cfg.Modules != nil {
		w.cfg.Modules.ReleaseResult(res)
	}
}

// transient reports whether err is worth retrying as it is: the plugin
// cannot run here and now, rather than failing on the data.
func transient(err error) bool {
	switch plugin.CodeOf(err) {
	case plugin.CodeUnavailable, plugin.CodeUnknownPlugin:
		return true
	}
	return false
}

func (w *Worker) nak(m jetstream.Msg, reason string, delivered uint64, err error) {
	delay := time.Duration(min(delivered, 10)) * time.Second
	w.log.Warn("batch released for a retry", "subject", m.Subject(), "reason", reason, "retry_in", delay, "err", err)
	w.metrics.naks.WithLabelValues(reason).Inc()
	if err := m.NakWithDelay(delay); err != nil {
		w.log.Debug("nak failed", "err", err)
	}
}

func failAll(n int, err error) *plugin.BatchResult {
	res := &plugin.BatchResult{Results: make([]plugin.Result, n)}
	for i := range res.Results {
		res.Results[i] = plugin.Fail(err)
	}
	return res
}

// run runs b's records through its plugin: a native plugin by its name, a
// WebAssembly plugin as the module its job pinned. msg is the batch message
// b was decoded from, for a plugin that reads it whole (a WebAssembly guest
// gets it copied into its memory); nil when b is a part of a batch.
func (w *Worker) run(ctx context.Context, b *batch.Batch, msg []byte) (*plugin.BatchResult, error) {
	name, err := w.entry(ctx, b)
	if err != nil {
		return nil, err
	}
	return w.mgr.ProcessEncoded(ctx, name, b.Config, msg, b.Records)
}

// entry returns the name b's plugin has in the worker's Manager, which
// measures, guards and judges every plugin the worker runs: a native
// plugin's own name, or "name@digest" for the WebAssembly module b's job
// pinned, registered on first use with the plugin Modules gives for it.
func (w *Worker) entry(ctx context.Context, b *batch.Batch) (string, error) {
	if b.Digest == "" {
		if !w.native[b.Plugin] {
			return "", &plugin.Error{Code: plugin.CodeUnknownPlugin,
				Message: fmt.Sprintf("worker %s has no native plugin %q", w.cfg.ID, b.Plugin)}
		}
		return b.Plugin, nil
	}
	if w.cfg.Modules == nil {
		return "", &plugin.Error{Code: plugin.CodeUnknownPlugin,
			Message: fmt.Sprintf("worker %s runs no WebAssembly plugins", w.cfg.ID)}
	}
	key := b.Plugin + "@" + b.Digest
	w.modMu.Lock()
	_, ok := w.modules[key]
	w.modMu.Unlock()
	if ok {
		return key, nil
	}
	p, err := w.cfg.Modules.Plugin(ctx, b.Plugin, b.Digest)
	if err != nil {
		return "", err
	}
	w.modMu.Lock()
	defer w.modMu.Unlock()
	if _, ok := w.modules[key]; ok {
		return key, nil // another batch registered it meanwhile
	}
	if err := w.mgr.RegisterBatch(key, p); err != nil {
		return "", err
	}
	w.modules[key] = module{name: b.Plugin, digest: b.Digest}
	return key, nil
}

// module is a WebAssembly module registered in the worker's Manager.
type module struct{ name, digest string }

// publish stores a batch's results in DF_RESULTS under the batch's id. A
// result set over the message size limit goes in several messages, each
// covering a range of records (a client places results by record index);
// a single result over the limit becomes an ErrTooLarge error.
func (w *Worker) publish(ctx context.Context, m jetstream.Msg, b *batch.Batch, res *plugin.BatchResult) error {
	rs := batch.ResultSet{Job: b.Job, Worker: w.cfg.ID, Seq: b.Seq, Base: b.Base, Duration: res.Duration, Results: res.Results}
	limit := int(w.nc.MaxPayload()) - resultHeaderRoom
	whole := m.Headers().Get(proto.HeaderSplit) == ""
	if batch.ResultsSize(&rs) <= limit {
		return w.publishPart(ctx, m, &rs, whole)
	}
	overhead := batch.ResultsSize(&batch.ResultSet{Job: b.Job, Worker: w.cfg.ID})
	for lo := 0; lo < len(res.Results); {
		size, hi := overhead, lo
		for hi < len(res.Results) {
			es := batch.EntrySize(res.Results[hi])
			if es+overhead > limit {
				res.Results[hi] = plugin.Fail(&plugin.Error{Code: plugin.CodeTooLarge,
					Message: fmt.Sprintf("result of record %d is %d bytes, over the message limit of %d", b.Base+uint64(hi), es, limit)})
				es = batch.EntrySize(res.Results[hi])
			}
			if size+es > limit {
				break
			}
			size += es
			hi++
		}
		part := rs
		part.Base, part.Results = b.Base+uint64(lo), res.Results[lo:hi]
		if err := w.publishPart(ctx, m, &part, false); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// resultHeaderRoom is what NATS headers of a result message may take.
const resultHeaderRoom = 1024

func (w *Worker) publishPart(ctx context.Context, m jetstream.Msg, rs *batch.ResultSet, whole bool) error {
	buf := w.mgr.Pool().Get(batch.ResultsSize(rs))
	defer w.mgr.Pool().Put(buf)
	data, err := batch.AppendResults(buf.Bytes()[:0], rs)
	if err != nil {
		return err
	}
	out := &nats.Msg{Subject: proto.ResultSubject(rs.Job), Data: data, Header: nats.Header{}}
	id := proto.ResultMsgID(rs.Job, rs.Seq)
	if !whole {
		id = proto.PartMsgID(id, rs.Base, len(rs.Results))
	}
	out.Header.Set(proto.HeaderMsgID, id)
	tracing.Inject(ctx, out.Header)
	ack, err := w.js.PublishMsg(ctx, out)
	if err != nil {
		return err
	}
	if ack.Duplicate {
		w.metrics.duplicateResults.Inc()
	}
	return nil
}
