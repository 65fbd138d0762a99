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

// submit reads src, cuts it into batches and sends them; then seals the
// job. It runs on its own goroutine.
func (j *Job) submit(src Source) {
	sendq := make(chan *outBatch)
	var senders sync.WaitGroup
	var failed atomic.Bool
	sendErr := func(err error) {
		if failed.CompareAndSwap(false, true) {
			j.fail(err)
		}
	}
	for range j.c.opts.senders {
		senders.Add(1)
		// Stops when sendq is closed, or at the first failure.
		go func() {
			defer senders.Done()
			for ob := range sendq {
				err := j.send(ob)
				encodeBufs.Put(ob.buf)
				if err != nil {
					sendErr(err)
					// Keep draining sendq so the submitter never blocks.
					for ob := range sendq {
						encodeBufs.Put(ob.buf)
					}
					return
				}
			}
		}()
	}

	maxBytes := j.info.MaxBatchBytes - headerRoom
	if maxBytes <= 0 {
		maxBytes = 1<<20 - headerRoom
	}
	// Each record is copied once, straight into the batch message being
	// written (the Source may reuse its buffers once it has yielded).
	hdr := batch.Batch{Job: j.info.ID, Plugin: j.info.Plugin, Digest: j.info.Digest, Config: j.info.Config}
	var (
		w        batch.Writer
		buf      *[]byte // the message being written, nil between batches
		n        int     // records in it
		lastLen  int     // the last message's size, to size the next buffer
		recBytes int
		index    uint64
		seq      uint64
		inputErr error
	)
	// drop discards a message started but holding no record.
	drop := func() {
		if buf != nil && n == 0 {
			encodeBufs.Put(buf)
			buf = nil
		}
	}
	flush := func() bool {
		if n == 0 {
			return true
		}
		base := index - uint64(n)
		if err := j.reserve(index); err != nil {
			return false
		}
		data := w.Bytes()
		*buf = data
		select {
		case sendq <- &outBatch{seq: seq, base: base, n: n, data: data, buf: buf}:
		case <-j.ctx.Done():
			encodeBufs.Put(buf)
			buf = nil
			return false
		}
		seq++
		lastLen = len(data)
		buf, n, recBytes = nil, 0, 0
		return true
	}
	ok := true
	for rec, err := range src {
		if j.ctx.Err() != nil {
			ok = false
			break
		}
		if err != nil {
			inputErr = fmt.Errorf("%w: after record %d: %v", ErrInput, index, err)
			break
		}
		size := batch.RecordSize(&rec)
		fits := size <= maxBytes
		if fits {
			if n > 0 && (n >= int(j.batchSize.Load()) || recBytes+size > maxBytes) {
				if ok = flush(); !ok {
					break
				}
			}
			if buf == nil {
				buf = encodeBuf(max(lastLen, 4<<10))
				hdr.Seq, hdr.Base = seq, index
				if err := w.Reset((*buf)[:0], &hdr); err != nil {
					sendErr(fmt.Errorf("client: encode batch: %w", err))
					ok = false
					break
				}
			}
			fits = w.Add(&rec) == nil
		}
		if !fits {
			// The record cannot travel: it gets its error here, in its
			// place, and the rest of the job goes on.
			if ok = flush(); !ok {
				break
			}
			drop()
			err := batch.DefaultLimits.CheckRecord(&rec)
			if err == nil {
				err = fmt.Errorf("record of %d bytes is over the batch limit of %d", size, maxBytes)
			}
			j.submitted.Add(1)
			if err := j.reject(index, fmt.Sprintf("record %d: %v", index, err)); err != nil {
				if j.ctx.Err() == nil {
					sendErr(fmt.Errorf("client: store the error of record %d: %w", index, err))
				}
				ok = false
				break
			}
			index++
			continue
		}
		n++
		recBytes += size
		index++
		j.submitted.Add(1)
	}
	if ok {
		ok = flush()
	}
	drop()
	close(sendq)
	senders.Wait()
	if !ok || failed.Load() || j.ctx.Err() != nil {
		return
	}
	if _, err := retry(j, func(ctx context.Context) (*proto.Job, error) {
		return request[proto.Job](ctx, j.c, proto.JobSubject("seal", j.info.ID), proto.JobSeal{Batches: seq, Records: index})
	}); err != nil {
		j.fail(fmt.Errorf("client: seal job %s: %w", j.info.ID, err))
		return
	}
	j.emit(event{sealed: true, total: index, err: inputErr})
}

// reject has a coordinator store the error of record index, which cannot
// be sent, as its result: it takes its place among the job's results like
// any other, for this reader and for one that attaches later.
func (j *Job) reject(index uint64, msg string) error {
	if err := j.reserve(index + 1); err != nil {
		return err
	}
	_, err := retry(j, func(ctx context.Context) (*proto.Job, error) {
		return request[proto.Job](ctx, j.c, proto.JobSubject("reject", j.info.ID), proto.JobReject{Index: index, Message: msg})
	})
	return err
}

// send publishes one batch to the batch stream itself, under the job's
// subject (df.batch.<plugin>.<owner>.<id>: NATS permissions let an owner
// publish there and nowhere else) and its message id, retrying while
// JetStream does not answer or the queue is full (a retry of a batch that
// did land is dropped as a duplicate). Every so often it asks a coordinator
// for the job: the batch size the sizer wants now, and whether the job was
// cancelled meanwhile.
func (j *Job) send(ob *outBatch) error {
	ctx, span := tracer.Start(j.ctx, "client.batch")
	span.SetAttributes(attribute.Int64("dataflare.seq", int64(ob.seq)), attribute.Int("dataflare.records", ob.n))
	defer span.End()
	_, err := retry(j, func(_ context.Context) (*jetstream.PubAck, error) {
		m := &nats.Msg{Subject: proto.BatchSubject(j.info.Plugin, j.info.ID), Data: ob.data, Header: nats.Header{}}
		m.Header.Set(proto.HeaderMsgID, proto.MsgID(j.info.ID, ob.seq))
		tracing.Inject(ctx, m.Header)
		// Each attempt gets the request timeout, whatever the job's
		// deadline.
		rctx, cancel := context.WithTimeout(ctx, j.c.opts.timeout)
		defer cancel()
		ack, err := j.c.js.PublishMsg(rctx, m, jetstream.WithExpectStream(proto.StreamBatches))
		if err != nil {
			return nil, publishError(err)
		}
		return ack, nil
	})
	if err != nil {
		return fmt.Errorf("client: batch %d of job %s: %w", ob.seq, j.info.ID, err)
	}
	j.batches.Add(1)
	if err := j.refresh(); err != nil {
		return fmt.Errorf("client: job %s: %w", j.info.ID, err)
	}
	return nil
}

// refreshEvery is how often a submitting job asks for its batch size and
// state.
const refreshEvery = 250 * time.Millisecond

// refresh asks a coordinator for the job, at most every refreshEvery: the
// batch size the sizer wants for the next batches, and the job's state — a
// job cancelled meanwhile (by another process: this one stops sending when
// it cancels) fails with ErrJobClosed. A coordinator that does not answer
// changes nothing: the batches go on at the size they had.
func (j *Job) refresh() error {
	now := time.Now().UnixNano()
	last := j.refreshed.Load()
	if now-last < int64(refreshEvery) || !j.refreshed.CompareAndSwap(last, now) {
		return nil
	}
	info, err := j.get()
	switch {
	case err != nil:
		return nil
	case info.State != proto.JobOpen:
		return &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf("job %s is %s", j.info.ID, info.State)}
	}
	if !j.fixedSize && info.BatchSize > 0 {
		j.batchSize.Store(int64(info.BatchSize))
	}
	return nil
}

// get asks a coordinator for the job, briefly: the caller waits.
func (j *Job) get() (*proto.Job, error) {
	ctx, cancel := context.WithTimeout(j.ctx, min(j.c.opts.timeout, time.Second))
	defer cancel()
	return request[proto.Job](ctx, j.c, proto.JobSubject("get", j.info.ID), nil)
}

// cancelled returns ErrJobClosed when the job was cancelled (by another
// process: its batches and results are gone, so none will come), nil
// otherwise — and when no coordinator answers.
func (j *Job) cancelled() error {
	if info, err := j.get(); err == nil && info.State == proto.JobCancelled {
		return &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf("job %s was cancelled", j.info.ID)}
	}
	return nil
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

// retry calls f until it succeeds, fails for good, or the retry budget is
// spent, backing off from 50 ms to 2 s between attempts.
func retry[T any](j *Job, f func(context.Context) (*T, error)) (*T, error) {
	deadline := time.Now().Add(j.c.opts.retry)
	backoff := 50 * time.Millisecond
	for {
		out, err := f(j.ctx)
		if err == nil || !retryable(err) || j.ctx.Err() != nil {
			return out, err
		}
		if time.Now().After(deadline) {
			if errors.Is(err, ErrBusy) {
				return nil, err
			}
			return nil, fmt.Errorf("gave up after %v: %w", j.c.opts.retry, err)
		}
		j.c.opts.log.Debug("retrying", "job", j.info.ID, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-j.ctx.Done():
			t.Stop()
			return nil, context.Cause(j.ctx)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
