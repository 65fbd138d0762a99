package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/batch/batchz"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
	"github.com/dataflare/dataflare/plugin"
)

// headerRoom is what a batch message's header may take beside its records.
const headerRoom = 16 << 10

// outBatch is an encoded batch waiting to be sent.
type outBatch struct {
	seq, base uint64
	n         int
	data      []byte
	buf       *[]byte // data's buffer, back to encodeBufs once sent
}

// encodeBufs recycles the buffers batches are encoded into: a buffer is
// free again once its batch was sent (the connection copies what it
// publishes), so a job of many batches does not allocate one per batch.
var encodeBufs sync.Pool // of *[]byte

// encodeBuf returns an empty buffer of at least size bytes.
func encodeBuf(size int) *[]byte {
	if p, ok := encodeBufs.Get().(*[]byte); ok {
		if cap(*p) >= size {
			*p = (*p)[:0]
			return p
		}
	}
	b := make([]byte, 0, size)
	return &b
}

// batcher is a job's submission: it cuts the records of a Source into
// batches, hands them to the job's senders, gives a record too large to
// travel its error in its place, and seals the job once the Source ends. Its
// cutting side runs on the submission goroutine; the senders and their
// shared state (failed, batchSize, refreshed) run beside it.
type batcher struct {
	j        *Job
	key      string      // the secret in the batches' message ids (proto.BatchMsgID)
	maxBytes int         // the most a batch's records may take
	hdr      batch.Batch // the header of every batch, Seq and Base set per batch

	// The cutting side.
	w        batch.Writer
	buf      *[]byte       // the message being written, nil between batches
	n        int           // records in it
	recBytes int           // their size
	lastLen  int           // the last message's size, to size the next buffer
	index    uint64        // records read = the index of the next
	seq      uint64        // batches cut = the seq of the next
	inputErr error         // the Source's error, reported after the last result
	linger   time.Duration // WithLinger: send a partial batch after this long without a record
	fill     int           // a batch is full at this many bytes of records (maxBytes, or less: WithBatchBytes)

	// The sending side.
	sendq     chan *outBatch
	senders   sync.WaitGroup
	failed    atomic.Bool  // a sender failed: the job was told, stop cutting
	batchSize atomic.Int64 // records per batch, as the sizer last said
	fixedSize bool         // WithBatchSize: the sizer is not asked
	refreshed atomic.Int64 // when a sender last asked for the job (UnixNano)
	hinted    atomic.Int64 // when a sender last hinted the workers (UnixNano)
}

// newBatchKey makes the secret of a job's batch ids (tests fix it).
var newBatchKey = proto.NewToken

// newBatcher returns the submission of j; fixed > 0 fixes the batch size
// (WithBatchSize).
func newBatcher(j *Job, fixed int) *batcher {
	maxBytes := j.info.MaxBatchBytes - headerRoom
	if maxBytes <= 0 {
		maxBytes = 1<<20 - headerRoom
	}
	b := &batcher{
		key: newBatchKey(),
		j:   j, maxBytes: maxBytes, fill: maxBytes,
		hdr:   batch.Batch{Job: j.info.ID, Plugin: j.info.Plugin, Digest: j.info.Digest, Config: j.info.Config},
		sendq: make(chan *outBatch),
	}
	b.batchSize.Store(int64(max(j.info.BatchSize, 1)))
	if fixed > 0 {
		b.batchSize.Store(int64(fixed))
		b.fixedSize = true
	}
	return b
}

// submit reads src, cuts it into batches and sends them; then seals the
// job. It runs on its own goroutine, with the job's context.
func (b *batcher) submit(ctx context.Context, src Source) {
	b.startSenders(ctx)
	stopLease := b.keepLease(ctx)
	ok := b.cut(ctx, src)
	b.stopSenders()
	stopLease()
	if !ok || b.failed.Load() || ctx.Err() != nil {
		return
	}
	b.seal(ctx)
}

// leaseEvery is how often a submission reports what it has sent, which
// tells the fleet (and a reader that attached) that the submitter is still
// there (tests shorten it).
var leaseEvery = 2 * time.Second

// keepLease reports, every leaseEvery until the returned function is
// called, what the job has sent so far. A report that fails changes
// nothing: the senders learn of a cancelled job by themselves.
func (b *batcher) keepLease(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	// Stops when stop is called (the submission ended) or ctx ends.
	go func() {
		defer wg.Done()
		t := time.NewTicker(leaseEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
			j := b.j
			rctx, cancel := context.WithTimeout(ctx, min(j.c.opts.timeout, leaseEvery))
			_, err := request[proto.Job](rctx, j.c, proto.JobSubject("progress", j.info.ID),
				proto.JobSeal{Batches: j.batches.Load(), Records: j.sent.Load()})
			cancel()
			if err != nil {
				j.c.opts.log.Debug("progress not reported", "job", j.info.ID, "err", err)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// startSenders starts the job's senders.
func (b *batcher) startSenders(ctx context.Context) {
	for range b.j.c.opts.senders {
		b.senders.Add(1)
		// Stops when sendq is closed (stopSenders), or at the first failure.
		go func() {
			defer b.senders.Done()
			b.sendAll(ctx)
		}()
	}
}

// stopSenders lets the senders send what was handed to them, and waits for
// them.
func (b *batcher) stopSenders() {
	b.dropEmpty()
	close(b.sendq)
	b.senders.Wait()
}

// sendAll is one sender: it sends the batches of sendq until it is closed
// or a send fails.
func (b *batcher) sendAll(ctx context.Context) {
	for ob := range b.sendq {
		err := b.send(ctx, ob)
		encodeBufs.Put(ob.buf)
		if err != nil {
			b.fail(ctx, err)
			// Keep draining sendq so the submitter never blocks.
			for ob := range b.sendq {
				encodeBufs.Put(ob.buf)
			}
			return
		}
	}
}

// fail reports the submission's first failure to the reader.
func (b *batcher) fail(ctx context.Context, err error) {
	if b.failed.CompareAndSwap(false, true) {
		b.j.fail(ctx, err)
	}
}

// cut reads src to its end (or its error, kept for the seal) and cuts it
// into batches. It returns false when the submission stopped short: the job
// failed or its context ended.
func (b *batcher) cut(ctx context.Context, src Source) bool {
	if b.linger > 0 {
		return b.cutLingering(ctx, src)
	}
	for rec, err := range src {
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			b.inputErr = fmt.Errorf("%w: after record %d: %v", ErrInput, b.index, err)
			break
		}
		if !b.add(ctx, &rec) {
			return false
		}
	}
	return b.flush(ctx)
}

// cutLingering is cut for a Source that may pause between records: a
// goroutine reads it, handing over one record at a time (the Source may
// reuse a record's buffers once its yield returns, so it returns only once
// the record is copied), and a batch whose first record came linger ago is
// sent as it is.
func (b *batcher) cutLingering(ctx context.Context, src Source) bool {
	type item struct {
		rec plugin.Record
		err error
	}
	items := make(chan item)
	taken := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	// Stops when the Source ends or fails, or when cut returns (stop).
	go func() {
		defer close(items)
		for rec, err := range src {
			select {
			case items <- item{rec, err}:
			case <-stop:
				return
			}
			select {
			case <-taken:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// Armed at a batch's first record.
	age := time.NewTimer(b.linger)
	age.Stop()
	defer age.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-age.C:
			if b.n > 0 && !b.flush(ctx) {
				return false
			}
		case it, ok := <-items:
			if !ok {
				return b.flush(ctx)
			}
			if it.err != nil {
				b.inputErr = fmt.Errorf("%w: after record %d: %v", ErrInput, b.index, it.err)
				taken <- struct{}{}
				return b.flush(ctx)
			}
			added := b.add(ctx, &it.rec)
			taken <- struct{}{}
			if !added {
				return false
			}
			if b.n == 1 { // the first of a new batch (add may have sent the last)
				age.Reset(b.linger)
			}
		}
	}
}

// add copies rec, once, straight into the batch message being written (the
// Source may reuse its buffers once it has yielded), first handing that
// batch to the senders if rec would overflow it. A record that cannot
// travel is rejected in its place. It returns false when the submission
// must stop.
func (b *batcher) add(ctx context.Context, rec *plugin.Record) bool {
	size := batch.RecordSize(rec)
	if size > b.maxBytes {
		return b.reject(ctx, rec, size)
	}
	if b.full(size) && !b.flush(ctx) {
		return false
	}
	if b.buf == nil && !b.begin(ctx) {
		return false
	}
	if b.w.Add(rec) != nil {
		return b.reject(ctx, rec, size)
	}
	b.n++
	b.recBytes += size
	b.index++
	b.j.submitted.Add(1)
	return true
}

// full reports whether the batch being written has no room for a record of
// size bytes.
func (b *batcher) full(size int) bool {
	return b.n > 0 && (b.n >= int(b.batchSize.Load()) || b.recBytes+size > b.fill)
}

// begin starts a batch message, at the next seq and index.
func (b *batcher) begin(ctx context.Context) bool {
	b.buf = encodeBuf(max(b.lastLen, 4<<10))
	b.hdr.Seq, b.hdr.Base = b.seq, b.index
	if err := b.w.Reset((*b.buf)[:0], &b.hdr); err != nil {
		b.fail(ctx, fmt.Errorf("client: encode batch: %w", err))
		return false
	}
	return true
}

// flush hands the batch being written, if it holds records, to the senders
// once the window has room for it. It returns false when the job's context
// ended meanwhile.
func (b *batcher) flush(ctx context.Context) bool {
	if b.n == 0 {
		return true
	}
	if err := b.j.reserve(ctx, b.index); err != nil {
		return false
	}
	data := b.w.Bytes()
	*b.buf = data
	select {
	case b.sendq <- &outBatch{seq: b.seq, base: b.index - uint64(b.n), n: b.n, data: data, buf: b.buf}:
	case <-ctx.Done():
		encodeBufs.Put(b.buf)
		b.buf = nil
		return false
	}
	b.seq++
	b.lastLen = len(data)
	b.buf, b.n, b.recBytes = nil, 0, 0
	return true
}

// dropEmpty discards a message started but holding no record.
func (b *batcher) dropEmpty() {
	if b.buf != nil && b.n == 0 {
		encodeBufs.Put(b.buf)
		b.buf = nil
	}
}

// reject handles a record that cannot travel (size bytes, over the batch
// limit): after the batch before it is sent, it gets its error here, in its
// place, and the rest of the job goes on. It returns false when the
// submission must stop.
func (b *batcher) reject(ctx context.Context, rec *plugin.Record, size int) bool {
	if !b.flush(ctx) {
		return false
	}
	b.dropEmpty()
	err := batch.DefaultLimits.CheckRecord(rec)
	if err == nil {
		err = fmt.Errorf("record of %d bytes is over the batch limit of %d", size, b.maxBytes)
	}
	b.j.submitted.Add(1)
	if err := b.storeError(ctx, b.index, fmt.Sprintf("record %d: %v", b.index, err)); err != nil {
		if ctx.Err() == nil {
			b.fail(ctx, fmt.Errorf("client: store the error of record %d: %w", b.index, err))
		}
		return false
	}
	b.index++
	return true
}

// storeError has a coordinator store the error of record index, which
// cannot be sent, as its result: it takes its place among the job's results
// like any other, for this reader and for one that attaches later.
func (b *batcher) storeError(ctx context.Context, index uint64, msg string) error {
	j := b.j
	if err := j.reserve(ctx, index+1); err != nil {
		return err
	}
	_, err := retry(ctx, j.c, j.info.ID, func(ctx context.Context) (*proto.Job, error) {
		return request[proto.Job](ctx, j.c, proto.JobSubject("reject", j.info.ID), proto.JobReject{Index: index, Message: msg})
	})
	return err
}

// seal tells a coordinator the job has all its records, then the reader
// how many (and the Source's error, if it ended with one).
func (b *batcher) seal(ctx context.Context) {
	j := b.j
	if _, err := retry(ctx, j.c, j.info.ID, func(ctx context.Context) (*proto.Job, error) {
		return request[proto.Job](ctx, j.c, proto.JobSubject("seal", j.info.ID), proto.JobSeal{Batches: b.seq, Records: b.index})
	}); err != nil {
		j.fail(ctx, fmt.Errorf("client: seal job %s: %w", j.info.ID, err))
		return
	}
	j.emit(ctx, event{sealed: true, total: b.index, err: b.inputErr})
}

// send publishes one batch to the batch stream itself, under the job's
// subject (df.batch.<owner>.<priority>.<plugin>.<id>: NATS permissions let
// an owner publish there and nowhere else) and its message id, retrying
// while JetStream does not answer (a retry of a batch that did land is
// dropped as a duplicate), and for as long as the job lives while the
// owner's queue is full (its quota: the submission slows down, nothing
// fails). Then it hints the workers that the queue has work. Every so
// often it asks a coordinator for the job: the batch size the sizer wants
// now, and whether the job was cancelled meanwhile.
func (b *batcher) send(ctx context.Context, ob *outBatch) error {
	j := b.j
	sctx, span := tracer.Start(ctx, "client.batch")
	span.SetAttributes(attribute.Int64("dataflare.seq", int64(ob.seq)), attribute.Int("dataflare.records", ob.n))
	defer span.End()
	data := ob.data
	if !j.c.opts.plain {
		zbuf := encodeBuf(batchz.MaxCompressedLen(len(data)))
		if z, ok := batchz.Compress(*zbuf, data); ok {
			data, *zbuf = z, z
		}
		defer encodeBufs.Put(zbuf)
	}
	attempts := 0
	_, err := retryFull(ctx, j.c, j.info.ID, func(_ context.Context) (*jetstream.PubAck, error) {
		attempts++
		m := &nats.Msg{Subject: proto.BatchSubject(j.info.ID, j.info.Priority, j.info.Plugin), Data: data, Header: nats.Header{}}
		m.Header.Set(proto.HeaderMsgID, proto.BatchMsgID(j.info.ID, b.key, ob.seq))
		tracing.Inject(sctx, m.Header)
		// Each attempt gets the request timeout, whatever the job's
		// deadline.
		rctx, cancel := context.WithTimeout(sctx, j.c.opts.timeout)
		defer cancel()
		ack, err := j.c.js.PublishMsg(rctx, m, jetstream.WithExpectStream(j.info.BatchStream))
		switch {
		case err != nil:
			return nil, publishError(err)
		case ack.Duplicate && attempts == 1:
			// Only a retry (after an attempt that may have landed) can
			// meet its own batch: on a first attempt, another message
			// holds the id, and the batch would silently never run.
			return nil, fmt.Errorf("%w: batch %d of job %s: JetStream holds another message with its id", ErrDuplicate, ob.seq, j.info.ID)
		}
		return ack, nil
	})
	if err != nil {
		return fmt.Errorf("client: batch %d of job %s: %w", ob.seq, j.info.ID, err)
	}
	j.batches.Add(1)
	j.sent.Add(uint64(ob.n))
	b.hint()
	if err := b.refresh(ctx); err != nil {
		return fmt.Errorf("client: job %s: %w", j.info.ID, err)
	}
	return nil
}

// hint tells the workers that the job's queue has work, at most every
// hintEvery: an idle worker looks there at once instead of at its next
// periodic look. A lost hint costs only that wait.
func (b *batcher) hint() {
	now := time.Now().UnixNano()
	last := b.hinted.Load()
	if now-last < int64(hintEvery) || !b.hinted.CompareAndSwap(last, now) {
		return
	}
	owner := proto.JobOwner(b.j.info.ID)
	if err := b.j.c.nc.Publish(proto.WorkSubject(owner, b.j.info.Priority), nil); err != nil {
		b.j.c.opts.log.Debug("work hint not sent", "job", b.j.info.ID, "err", err)
	}
}

// hintEvery is how often, at most, a job hints the workers.
const hintEvery = 5 * time.Millisecond

// refreshEvery is how often a submitting job asks for its batch size and
// state.
const refreshEvery = 250 * time.Millisecond

// refresh asks a coordinator for the job, at most every refreshEvery: the
// batch size the sizer wants for the next batches, and the job's state — a
// job cancelled meanwhile (by another process: this one stops sending when
// it cancels) fails with ErrJobClosed. A coordinator that does not answer
// changes nothing: the batches go on at the size they had.
func (b *batcher) refresh(ctx context.Context) error {
	now := time.Now().UnixNano()
	last := b.refreshed.Load()
	if now-last < int64(refreshEvery) || !b.refreshed.CompareAndSwap(last, now) {
		return nil
	}
	info, err := b.j.get(ctx)
	switch {
	case err != nil:
		return nil
	case info.State != proto.JobOpen:
		return &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf("job %s is %s", b.j.info.ID, info.State)}
	}
	if !b.fixedSize && info.BatchSize > 0 {
		b.batchSize.Store(int64(info.BatchSize))
	}
	return nil
}

// get asks a coordinator for the job, briefly: the caller waits.
func (j *Job) get(ctx context.Context) (*proto.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, min(j.c.opts.timeout, time.Second))
	defer cancel()
	return request[proto.Job](ctx, j.c, proto.JobSubject("get", j.info.ID), nil)
}

// checkState asks a coordinator for the job, for a reader that heard
// nothing for a while, and tells the reader what changed: the job was
// cancelled (by another process: its batches and results are gone, so none
// will come); and for an attached job, that it was sealed, done by
// another reader, or abandoned by its submitter. A coordinator that does
// not answer changes nothing.
func (j *Job) checkState(ctx context.Context) {
	info, err := j.get(ctx)
	if err != nil {
		return
	}
	gone := func(format string) {
		err := &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf(format, j.info.ID)}
		j.emit(ctx, event{err: fmt.Errorf("client: job %s: %w", j.info.ID, err), gone: true})
	}
	switch {
	case info.State == proto.JobCancelled:
		gone("job %s was cancelled")
	case !j.attached:
	case info.State == proto.JobDone:
		gone("job %s is done: another reader read its results to the end")
	case info.State == proto.JobSealed && !j.sealSeen:
		j.sealSeen = true
		j.submitted.Store(info.Records)
		j.batches.Store(info.Batches)
		j.emit(ctx, event{sealed: true, total: info.Records})
	case info.Abandoned:
		dctx, cancel := context.WithTimeout(ctx, j.c.opts.timeout)
		defer cancel()
		if d, err := request[proto.JobDetail](dctx, j.c, proto.JobSubject("info", j.info.ID), nil); err == nil {
			j.emit(ctx, event{abandoned: d})
		}
	}
}

// publishError classifies a failed publish to the batch stream: a full
// queue, JetStream not answering (no quorum, a server restarting), or an
// earlier attempt of the same batch still in flight is ErrBusy, retried;
// anything else is final.
func publishError(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum"):
		return &Error{Code: plugin.CodeBusy, Message: "the batch queue is full (" + apiErr.Description + "): retry later"}
	case proto.Unavailable(err):
		return &Error{Code: plugin.CodeBusy, Message: "JetStream cannot store the batch now (a cluster without quorum?): " + err.Error()}
	}
	return fmt.Errorf("client: publish batch: %w", err)
}

// retryFull is retry, except that while f fails because a queue is full
// (ErrBusy: the owner's quota) it goes on for as long as ctx lives,
// backing off up to 2 s: backpressure, not failure.
func retryFull[T any](ctx context.Context, c *Client, job string, f func(context.Context) (*T, error)) (*T, error) {
	for {
		out, err := retry(ctx, c, job, f)
		if err == nil || !errors.Is(err, ErrBusy) || ctx.Err() != nil {
			return out, err
		}
		c.opts.log.Info("the queue is full: waiting", "job", job, "err", err)
	}
}

// retry calls f with ctx until it succeeds, fails for good, the retry
// budget of client c is spent or ctx ends (job names what it is for, in
// logs), backing off from 50 ms to 2 s
// between attempts.
func retry[T any](ctx context.Context, c *Client, job string, f func(context.Context) (*T, error)) (*T, error) {
	deadline := time.Now().Add(c.opts.retry)
	backoff := 50 * time.Millisecond
	for {
		out, err := f(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return out, err
		}
		if time.Now().After(deadline) {
			if errors.Is(err, ErrBusy) {
				return nil, err
			}
			return nil, fmt.Errorf("gave up after %v: %w", c.opts.retry, err)
		}
		c.opts.log.Debug("retrying", "job", job, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
