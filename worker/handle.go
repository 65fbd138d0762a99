package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/batch/batchz"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
)

var tracer = tracing.Tracer("github.com/dataflare/dataflare/worker")

// batchPool recycles decoded batches: decoding reuses their record slices.
var batchPool = sync.Pool{New: func() any { return new(batch.Batch) }}

// settleTimeout bounds publishing a batch's results and acknowledging it.
const settleTimeout = 10 * time.Second

// handle runs one batch message, of delivery d, and settles it.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg, d delivery) {
	w.lease.add(m)
	defer w.lease.remove(m)
	delivered := d.n
	var queued time.Time
	if meta, err := m.Metadata(); err == nil {
		queued = meta.Timestamp
	}
	if delivered > 1 {
		w.metrics.redeliveries.Inc()
	}
	ctx = tracing.Extract(ctx, m.Headers())
	ctx, span := tracer.Start(ctx, "worker.batch", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()

	b := batchPool.Get().(*batch.Batch)
	defer batchPool.Put(b)
	// A compressed batch is decompressed into a pool buffer, kept until
	// the batch is settled: its records alias it, and a WebAssembly guest
	// gets these plain bytes.
	data, err := w.plain(m.Data())
	if data.buf != nil {
		defer w.mgr.Pool().Put(data.buf)
	}
	if err == nil {
		err = batch.DecodeBatch(data.msg, b)
	}
	if err != nil {
		// Clients publish batches with the codec, which checks every
		// limit: this one cannot be run anywhere, so it is removed.
		w.remove(m, "malformed", "undecodable batch", "err", err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	span.SetAttributes(attribute.String("dataflare.job", b.Job), attribute.Int64("dataflare.seq", int64(b.Seq)),
		attribute.Int("dataflare.records", len(b.Records)), attribute.String("dataflare.plugin", b.Plugin),
		attribute.Int64("dataflare.delivery", int64(delivered)))
	job := w.admit(ctx, m, b, delivered)
	if job == nil {
		span.SetStatus(codes.Error, "batch not admitted")
		return
	}
	if delivered == 1 && !queued.IsZero() {
		w.metrics.queueWait.WithLabelValues(proto.JobOwner(b.Job), job.priority.String()).Observe(time.Since(queued).Seconds())
	}
	if d.splitUnrun() {
		// Its workers died or stalled every time it ran alone: run it
		// no more.
		w.splitDead(ctx, m, b, d)
		return
	}

	timeout := w.cfg.BatchTimeout
	if job.timeout > 0 && job.timeout < timeout {
		timeout = job.timeout
	}
	// A plugin out of service here (its circuit breaker is open) does not
	// take the slot: its batch is released for other workers or for later,
	// unless this is its last delivery before it would be split unrun.
	tk := w.breakers.admit(entryKey(b), b.Plugin, d.last(), timeout == w.cfg.BatchTimeout)
	defer tk.finish()
	if !tk.run {
		w.holdOff(m, b, tk.retryIn)
		span.SetStatus(codes.Error, "plugin out of service on this worker")
		return
	}
	if d.mustRunAlone() && !d.solo {
		// Other batches run here: one of them may kill the worker, and
		// this batch's death would then say nothing of it.
		w.bounce(ctx, m, b, d)
		span.SetStatus(codes.Error, "batch to run alone released: other batches run on this worker")
		return
	}

	// The batch runs on a context its job's cancel ends, within the
	// job's timeout (or the worker's, when shorter).
	jctx, done := w.jobs.start(ctx, b.Job)
	defer done()
	if tk.reset && !w.reset(jctx, m, b, tk, timeout) {
		span.SetStatus(codes.Error, "plugin out of service on this worker")
		return
	}
	rctx, cancel := context.WithTimeout(jctx, timeout)
	res, err := w.run(rctx, b, data.msg)
	cancel()
	if err != nil {
		span.RecordError(err)
	}
	w.settle(jctx, m, b, res, err, delivered, timeout, tk)
}

// admit checks a batch against its job before anything of it runs or is
// remembered: its names and digest are well formed, its subject is its
// job's, its job exists, is neither cancelled nor done, and pinned the
// plugin and module the batch names. It returns the job, or settles the
// message itself and returns nil: a batch that can never run is removed
// unrun, one whose job cannot be read now is released to try again.
func (w *Worker) admit(ctx context.Context, m jetstream.Msg, b *batch.Batch, delivered uint64) *jobEntry {
	switch {
	case !proto.ValidJobID(b.Job) || !proto.ValidName(b.Plugin) || (b.Digest != "" && !validDigest(b.Digest)):
		w.remove(m, "malformed", "batch with a malformed job, plugin or digest", "job", b.Job, "plugin", b.Plugin)
		return nil
	case !subjectOfJob(m.Subject(), b) || len(b.Records) == 0:
		// NATS lets an owner publish only under its own jobs' subjects:
		// a batch that names another job (its results would go to that
		// job's owner) or no records is not run.
		w.remove(m, "malformed", "batch whose subject does not match its job, or empty", "subject", m.Subject(), "job", b.Job)
		return nil
	}
	job, err := w.jobs.lookup(ctx, b.Job)
	switch {
	case err != nil:
		w.nak(m, "unavailable", delivered, fmt.Errorf("read job %s: %w", b.Job, err))
	case job == nil && delivered < unknownJobDeliveries:
		// The job's record is stored before its client learns its id,
		// so a batch of it finds it; a replica behind the leader may not
		// have it yet: look again shortly.
		w.nak(m, "unknown_job", delivered, fmt.Errorf("no job %s", b.Job))
	case job == nil:
		w.remove(m, "unknown_job", "batch of a job that does not exist", "job", b.Job)
	case job.state == proto.JobCancelled || job.state == proto.JobDone:
		w.remove(m, "job_closed", "batch of a job that is "+string(job.state), "job", b.Job)
	case job.plugin != b.Plugin || job.digest != b.Digest || m.Subject() != proto.BatchSubject(b.Job, job.priority, b.Plugin):
		w.remove(m, "malformed", "batch naming another plugin, module or priority than its job", "job", b.Job, "plugin", b.Plugin, "digest", b.Digest, "subject", m.Subject())
	default:
		return job
	}
	return nil
}

// subjectOfJob reports whether subject (df.batch.<owner>.<priority>.<plugin>.<id>)
// is one of b's job, whatever its priority: NATS lets an owner publish
// under its own owner token only.
func subjectOfJob(subject string, b *batch.Batch) bool {
	for _, p := range fleet.Priorities {
		if subject == proto.BatchSubject(b.Job, p, b.Plugin) {
			return true
		}
	}
	return false
}

// unknownJobDeliveries is how many deliveries a batch of a job the worker
// cannot find gets before it is removed.
const unknownJobDeliveries = 3

// validDigest reports whether d is "sha256:" and 64 lower-case hex digits.
func validDigest(d string) bool {
	const prefix = "sha256:"
	if len(d) != len(prefix)+64 || d[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(d); i++ {
		if c := d[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// remove terminates a batch that must not run, counting why.
func (w *Worker) remove(m jetstream.Msg, reason, what string, attrs ...any) {
	w.log.Warn(what+": removed unrun", append(attrs, "subject", m.Subject(), "reason", reason)...)
	w.metrics.naks.WithLabelValues(reason).Inc()
	if err := m.Term(); err != nil {
		w.log.Debug("term failed", "err", err)
	}
}

// settle maps a batch's outcome to JetStream, in one place:
//   - success: publish the results (retrying while JetStream cannot store
//     them, the lease kept meanwhile), then double-ack;
//   - its job was cancelled: remove it, with no results;
//   - a transient failure (the plugin is unavailable here, the worker is
//     stopping and gave up on the batch): nak with a delay, so the batch
//     runs later, maybe elsewhere;
//   - the plugin failed the whole batch: isolate the records at fault by
//     halving, within a budget of one batch timeout, then publish and
//     double-ack as on success — unless the plugin is out of service
//     (its circuit breaker is open, or this failure opens it): then the
//     batch is not bisected but released for a retry, or failed whole on
//     its last delivery before it would be split unrun;
//   - a long batch: kept alive by the lease keeper while it runs.
//
// It books what the batch says of its plugin with tk, its passage through
// the plugin's circuit breaker.
func (w *Worker) settle(ctx context.Context, m jetstream.Msg, b *batch.Batch, res *plugin.BatchResult, err error, delivered uint64, timeout time.Duration, tk *ticket) {
	if err == nil {
		tk.succeeded()
	} else {
		switch {
		case cancelled(ctx):
			w.remove(m, "job_closed", "batch of a job cancelled while it ran", "job", b.Job)
			return
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
			cause, own := err, tk.own(err)
			if own {
				if out, retryIn := tk.failedWhole(cause); out {
					// Out of service: no bisection into many runs.
					if !tk.last {
						w.holdOff(m, b, retryIn)
						return
					}
					res = failAll(len(b.Records), w.outOfService(b, cause))
					break
				}
			}
			res, err = w.isolate(ctx, b, cause, timeout)
			switch {
			case cancelled(ctx):
				w.remove(m, "job_closed", "batch of a job cancelled while it ran", "job", b.Job)
				return
			case err != nil:
				w.nak(m, "unavailable", delivered, err)
				return
			case anySucceeded(res):
				tk.succeeded() // the batch holds poison; the plugin works
			case own:
				tk.failed(cause)
			}
		}
	}
	defer w.release(b, res)
	if err := w.store(ctx, m, b, res); err != nil {
		if cancelled(ctx) {
			w.remove(m, "job_closed", "batch of a job cancelled while its results waited", "job", b.Job)
			return
		}
		w.nak(m, "stopping", delivered, err)
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := m.DoubleAck(actx); err != nil {
		// The results are stored; a redelivery only repeats them, and the
		// duplicate is dropped.
		w.log.Warn("ack failed after the results were stored", "job", b.Job, "seq", b.Seq, "err", err)
	}
	w.metrics.observe(b.Plugin, res)
}

// cancelled reports whether ctx ended because its batch's job was
// cancelled.
func cancelled(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errJobCancelled) }

// store publishes a batch's results, and keeps trying while JetStream
// cannot store them (a results stream full, a cluster without quorum):
// the batch keeps its lease meanwhile, so a storage failure never counts
// as a failed delivery, and never turns good results into poison. It gives
// up only when ctx ends (the worker stops, or the job is cancelled).
func (w *Worker) store(ctx context.Context, m jetstream.Msg, b *batch.Batch, res *plugin.BatchResult) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, settleTimeout)
		err := w.publish(sctx, m, b, res)
		cancel()
		if err == nil {
			w.notePressure() // the batch's output still held
			return nil
		}
		if ctx.Err() != nil || w.nc.IsClosed() {
			return err // the worker stops, the job was cancelled, or the connection is gone for good
		}
		w.metrics.storeRetries.Inc()
		if attempt == 1 || attempt%20 == 0 {
			w.log.Warn("results not stored; retrying, the batch keeps its lease", "job", b.Job, "seq", b.Seq, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
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

// anySucceeded reports whether a record of res has a result.
func anySucceeded(res *plugin.BatchResult) bool {
	for i := range res.Results {
		if res.Results[i].Err == nil {
			return true
		}
	}
	return false
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
	if b.Plugin == proto.ChainPlugin {
		return w.runChain(ctx, b)
	}
	name, done, err := w.entry(ctx, b.Plugin, b.Digest)
	if err != nil {
		return nil, err
	}
	defer done()
	return w.mgr.ProcessEncoded(ctx, name, b.Config, msg, b.Records)
}

// runChain runs b's records through its job's steps, in one pass
// (Manager.ProcessChain): each step's plugin is an entry of the Manager
// like any other, and a record's error names the step that failed it.
func (w *Worker) runChain(ctx context.Context, b *batch.Batch) (*plugin.BatchResult, error) {
	job, err := w.jobs.lookup(ctx, b.Job)
	if err != nil || job == nil || len(job.steps) == 0 {
		return nil, &plugin.Error{Code: plugin.CodeUnavailable, Message: fmt.Sprintf("worker: the steps of job %s cannot be read: %v", b.Job, err)}
	}
	steps := make([]manager.ChainStep, len(job.steps))
	for i, st := range job.steps {
		name, done, err := w.entry(ctx, st.Plugin, st.Digest)
		if err != nil {
			return nil, &manager.StepError{Step: i + 1, Plugin: st.Plugin, Err: err}
		}
		defer done()
		steps[i] = manager.ChainStep{Name: name, Config: st.Config, Label: st.Plugin}
	}
	release := func(*plugin.BatchResult) {}
	if w.cfg.Modules != nil {
		release = w.cfg.Modules.ReleaseResult
	}
	return w.mgr.ProcessChain(ctx, steps, b.Records, release)
}

// entry returns the name b's plugin has in the worker's Manager, which
// measures, guards and judges every plugin the worker runs: a native
// plugin's own name, or "name@digest" for the WebAssembly module b's job
// pinned, registered on first use with the plugin Modules gives for it.
// done releases a module's entry: while a batch holds it, it is not
// evicted (see evictModules).
func (w *Worker) entry(ctx context.Context, pluginName, digest string) (name string, done func(), err error) {
	if digest == "" {
		if !w.native[pluginName] {
			return "", nil, &plugin.Error{Code: plugin.CodeUnknownPlugin,
				Message: fmt.Sprintf("worker %s has no native plugin %q", w.cfg.ID, pluginName)}
		}
		return pluginName, func() {}, nil
	}
	if w.cfg.Modules == nil {
		return "", nil, &plugin.Error{Code: plugin.CodeUnknownPlugin,
			Message: fmt.Sprintf("worker %s runs no WebAssembly plugins", w.cfg.ID)}
	}
	key := pluginName + "@" + digest
	if m := w.holdModule(key); m != nil {
		return key, func() { w.releaseModule(m) }, nil
	}
	p, err := w.cfg.Modules.Plugin(ctx, pluginName, digest)
	if err != nil {
		return "", nil, err
	}
	w.modMu.Lock()
	m := w.modules[key]
	if m == nil { // not registered meanwhile by another batch
		if err := w.mgr.RegisterBatch(key, p); err != nil {
			w.modMu.Unlock()
			return "", nil, err
		}
		reset, _ := p.(plugin.Resetter)
		m = &module{name: pluginName, digest: digest, reset: reset}
		w.modules[key] = m
	}
	m.refs++
	m.used = time.Now()
	victims := w.evictModulesLocked()
	w.modMu.Unlock()
	for _, v := range victims {
		if err := w.mgr.Unregister(v); err != nil {
			w.log.Debug("module entry not unregistered", "entry", v, "err", err)
		}
	}
	return key, func() { w.releaseModule(m) }, nil
}

// holdModule takes a hold on the entry key when it is registered.
func (w *Worker) holdModule(key string) *module {
	w.modMu.Lock()
	defer w.modMu.Unlock()
	m := w.modules[key]
	if m != nil {
		m.refs++
		m.used = time.Now()
	}
	return m
}

// releaseModule drops a hold holdModule or entry took.
func (w *Worker) releaseModule(m *module) {
	w.modMu.Lock()
	m.refs--
	w.modMu.Unlock()
}

// maxModuleEntries bounds the WebAssembly modules registered in a
// worker's Manager (each version of each plugin is one): beyond it, the
// least recently used that no batch holds are unregistered, their metrics
// and circuit breakers forgotten. The Registry keeps its own bound on the
// modules loaded.
const maxModuleEntries = 64

// evictModulesLocked removes the least recently used idle module entries
// beyond maxModuleEntries from the map and returns their names, to
// unregister outside the lock; modMu is held.
func (w *Worker) evictModulesLocked() []string {
	var victims []string
	for len(w.modules) > maxModuleEntries {
		oldest := ""
		for key, m := range w.modules {
			if m.refs == 0 && (oldest == "" || m.used.Before(w.modules[oldest].used)) {
				oldest = key
			}
		}
		if oldest == "" {
			break // every entry is in use
		}
		delete(w.modules, oldest)
		w.breakers.forget(oldest)
		victims = append(victims, oldest)
	}
	return victims
}

// module is a WebAssembly module registered in the worker's Manager, with
// the way to re-initialise it (nil when its plugin has none), the batches
// holding it and when one last did.
type module struct {
	name, digest string
	reset        plugin.Resetter
	refs         int
	used         time.Time
}

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
	if w.jobs.compresses(rs.Job) {
		zbuf := w.mgr.Pool().Get(batchz.MaxCompressedLen(len(data)))
		defer w.mgr.Pool().Put(zbuf)
		if z, ok := batchz.Compress(zbuf.Bytes()[:0], data); ok {
			data = z
			w.metrics.compressedResults.Inc()
		}
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

// plainMsg is a batch message as a worker reads it: plain, in buf (from
// the pool) when it arrived compressed.
type plainMsg struct {
	msg []byte
	buf *pool.Buffer
}

// plain returns msg decompressed when it is compressed (batch.FlagS2), into
// a buffer of the worker's pool.
func (w *Worker) plain(msg []byte) (plainMsg, error) {
	if !batchz.Compressed(msg) {
		return plainMsg{msg: msg}, nil
	}
	n, err := batchz.PlainSize(msg)
	if err != nil {
		return plainMsg{}, err
	}
	buf := w.mgr.Pool().Get(n)
	out, err := batchz.Plain(buf.Bytes()[:0], msg)
	if err != nil {
		w.mgr.Pool().Put(buf)
		return plainMsg{}, err
	}
	w.metrics.compressedBatches.Inc()
	return plainMsg{msg: out, buf: buf}, nil
}
