package client

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
	"github.com/dataflare/dataflare/plugin"
)

var tracer = tracing.Tracer("github.com/dataflare/dataflare/client")

// Source yields the records of a job. Submit copies each record before it
// asks for the next, so a Source may reuse its buffers. An error ends the
// input: the records before it are processed, and the job's results end
// with an error wrapping ErrInput.
type Source = iter.Seq2[plugin.Record, error]

// Records returns a Source over recs.
func Records(recs []plugin.Record) Source {
	return func(yield func(plugin.Record, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// Output is one record's result and its index in the job's input.
type Output struct {
	Index uint64
	plugin.Result
}

// SubmitOption configures one Submit.
type SubmitOption func(*submitOptions) error

type submitOptions struct {
	config    plugin.Config
	version   string
	batchSize int
}

// WithConfig hands cfg to the plugin with every batch of the job.
func WithConfig(cfg plugin.Config) SubmitOption {
	return func(o *submitOptions) error { o.config = cfg; return nil }
}

// WithVersion selects a version of a WebAssembly plugin (default: the
// newest when the job starts; the job keeps that one to its end).
func WithVersion(v string) SubmitOption {
	return func(o *submitOptions) error { o.version = v; return nil }
}

// WithBatchSize fixes the batch size instead of following the fleet's
// sizer. n must be in 1..100000.
func WithBatchSize(n int) SubmitOption {
	return func(o *submitOptions) error {
		if n < 1 || n > batch.DefaultLimits.MaxRecords {
			return invalidOption("batch size %d not in 1..%d", n, batch.DefaultLimits.MaxRecords)
		}
		o.batchSize = n
		return nil
	}
}

// Progress counts a job's records.
type Progress struct {
	// Submitted counts records read from the Source; Results those whose
	// result was handed out, of which Succeeded, Failed and Dropped.
	Submitted uint64 `json:"submitted"`
	Results   uint64 `json:"results"`
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
	// Batches counts the batches accepted by the fleet.
	Batches uint64 `json:"batches"`
}

// Job is a running job. Its results are read with Results (or Wait).
type Job struct {
	c      *Client
	info   proto.Job
	ctx    context.Context
	cancel context.CancelFunc
	span   trace.Span
	start  time.Time
	events chan event
	wg     sync.WaitGroup

	batchSize atomic.Int64
	fixedSize bool
	refreshed atomic.Int64 // when send last asked for the job (UnixNano)

	mu   sync.Mutex
	next uint64   // results handed out so far = the next index to hand out
	ends []uint64 // ends of batches in flight, in submission order
	room chan struct{}

	submitted, results, succeeded, failed, dropped, batches atomic.Uint64
	taken                                                   atomic.Bool
}

// event is what the job's goroutines tell its reader.
type event struct {
	seg    *segment
	sealed bool
	total  uint64
	err    error // with sealed: the input error to report after the last result; else fatal
}

// segment is the results of the records [base, base+len(results)).
type segment struct {
	base    uint64
	results []plugin.Result
}

// Submit starts a job that runs the plugin name over the records of src. It
// returns once the job exists; records are read from src and submitted in
// the background, as fast as the results are read (see Results). The job
// lives until its results are read, it is cancelled, or ctx ends.
//
// Errors: ErrUnknownPlugin, ErrNoWorkers, ErrNoCoordinator, ErrInvalid,
// ErrInvalidOption; later failures come through Results.
func (c *Client) Submit(ctx context.Context, name string, src Source, opts ...SubmitOption) (*Job, error) {
	var so submitOptions
	for _, o := range opts {
		if err := o(&so); err != nil {
			return nil, err
		}
	}
	if !proto.ValidName(name) {
		return nil, fmt.Errorf("%w: plugin name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalid, name)
	}
	ctx, span := tracer.Start(ctx, "client.job", trace.WithAttributes(attribute.String("dataflare.plugin", name)))
	info, err := request[proto.Job](ctx, c, proto.JobCreateSubject(c.opts.owner), proto.JobCreate{Plugin: name, Version: so.version, Config: so.config})
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return nil, err
	}
	span.SetAttributes(attribute.String("dataflare.job", info.ID))
	j := c.newJob(ctx, *info, span)
	if so.batchSize > 0 {
		j.batchSize.Store(int64(so.batchSize))
		j.fixedSize = true
	}
	if err := j.receive(); err != nil {
		j.stop()
		return nil, err
	}
	j.wg.Add(1)
	// Stops when src is exhausted, the job fails, or the job's context ends.
	go func() {
		defer j.wg.Done()
		j.submit(src)
	}()
	return j, nil
}

// Attach returns a handle on a job submitted earlier (by this process or
// another, e.g. before a restart), to read its results. The job must have
// been sealed (all its records submitted) and its results not yet read to
// the end; otherwise the error matches ErrJobClosed. ErrJobNotFound when
// there is no such job.
func (c *Client) Attach(ctx context.Context, id string) (*Job, error) {
	if !proto.ValidJobID(id) {
		return nil, fmt.Errorf("%w: job id %q", ErrInvalid, id)
	}
	info, err := request[proto.Job](ctx, c, proto.JobSubject("get", id), nil)
	if err != nil {
		return nil, err
	}
	switch info.State {
	case proto.JobSealed:
	case proto.JobOpen:
		return nil, &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf(
			"job %s was never sealed: its submitter stopped before the end of its input; submit it again", id)}
	default:
		return nil, &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf("job %s is %s: its results are gone", id, info.State)}
	}
	ctx, span := tracer.Start(ctx, "client.attach", trace.WithAttributes(attribute.String("dataflare.job", id)))
	j := c.newJob(ctx, *info, span)
	j.submitted.Store(info.Records)
	j.batches.Store(info.Batches)
	if err := j.receive(); err != nil {
		j.stop()
		return nil, err
	}
	j.events <- event{sealed: true, total: info.Records}
	return j, nil
}

func (c *Client) newJob(ctx context.Context, info proto.Job, span trace.Span) *Job {
	ctx, cancel := context.WithCancel(ctx)
	j := &Job{
		c: c, info: info, ctx: ctx, cancel: cancel, span: span, start: time.Now(),
		events: make(chan event, 2*c.opts.window+16),
		room:   make(chan struct{}, 1),
	}
	j.batchSize.Store(int64(max(info.BatchSize, 1)))
	return j
}

// ID returns the job's id, for Attach.
func (j *Job) ID() string { return j.info.ID }

// Digest returns the module digest the job pinned ("" for a native plugin).
func (j *Job) Digest() string { return j.info.Digest }

// Progress returns the job's counts so far.
func (j *Job) Progress() Progress {
	return Progress{
		Submitted: j.submitted.Load(), Results: j.results.Load(), Succeeded: j.succeeded.Load(),
		Failed: j.failed.Load(), Dropped: j.dropped.Load(), Batches: j.batches.Load(),
	}
}

// Close stops the job's goroutines in this process without cancelling the
// job in the fleet (Attach can pick it up again once sealed). It is
// idempotent.
func (j *Job) Close() {
	j.stop()
}

func (j *Job) stop() {
	j.cancel()
	j.wg.Wait()
	j.span.End()
}

// Cancel cancels the job in the fleet: its pending batches and unread
// results are removed. Then it stops the job's goroutines.
func (j *Job) Cancel(ctx context.Context) error {
	_, err := request[proto.Job](ctx, j.c, proto.JobSubject("cancel", j.info.ID), struct{}{})
	j.stop()
	return err
}

// Summary is what Wait returns.
type Summary struct {
	Progress
	Duration time.Duration
}

// Wait reads the job's results to the end, discarding them, and returns the
// counts. The error is the job's, as Results would give it.
func (j *Job) Wait() (Summary, error) {
	var err error
	for _, e := range j.Results() {
		if e != nil {
			err = e
		}
	}
	return Summary{Progress: j.Progress(), Duration: time.Since(j.start)}, err
}

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
		var (
			pending segments
			total   = ^uint64(0)
			endErr  error
			next    uint64
		)
		// A job cancelled elsewhere sends nothing more: after a quiet
		// stateCheckEvery, ask.
		check := time.NewTicker(stateCheckEvery)
		defer check.Stop()
		heard := false
		for {
			if next == total {
				j.finish()
				if endErr != nil {
					yield(Output{}, endErr)
				}
				return
			}
			var ev event
			select {
			case ev = <-j.events:
				heard = true
			case <-check.C:
				if heard {
					heard = false
					continue
				}
				if err := j.cancelled(); err != nil {
					yield(Output{}, fmt.Errorf("client: job %s: %w", j.info.ID, err))
					return
				}
				continue
			case <-j.ctx.Done():
				yield(Output{}, fmt.Errorf("client: job %s: %w", j.info.ID, context.Cause(j.ctx)))
				return
			}
			switch {
			case ev.sealed:
				total, endErr = ev.total, ev.err
				continue
			case ev.err != nil:
				j.span.SetStatus(codes.Error, ev.err.Error())
				yield(Output{}, ev.err)
				return
			}
			heap.Push(&pending, ev.seg)
			for pending.Len() > 0 && pending[0].base <= next {
				s := heap.Pop(&pending).(*segment)
				for i := next - s.base; i < uint64(len(s.results)); i++ {
					r := s.results[i]
					j.count(r)
					next++
					if !yield(Output{Index: s.base + i, Result: r}, nil) {
						return
					}
				}
				putResults(s.results)
				j.advance(next)
			}
		}
	}
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

// advance records that the results up to next were handed out, freeing the
// window slots of the batches they complete.
func (j *Job) advance(next uint64) {
	j.mu.Lock()
	j.next = next
	n := 0
	for n < len(j.ends) && j.ends[n] <= next {
		n++
	}
	j.ends = j.ends[n:]
	j.mu.Unlock()
	if n > 0 {
		select {
		case j.room <- struct{}{}:
		default:
		}
	}
}

// reserve waits for a window slot for a batch ending at end.
func (j *Job) reserve(end uint64) error {
	for {
		j.mu.Lock()
		if len(j.ends) < j.c.opts.window {
			j.ends = append(j.ends, end)
			j.mu.Unlock()
			return nil
		}
		j.mu.Unlock()
		select {
		case <-j.room:
		case <-j.ctx.Done():
			return context.Cause(j.ctx)
		}
	}
}

// finish tells the fleet the results were read, so it can drop them.
func (j *Job) finish() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), j.c.opts.timeout)
	defer cancel()
	p := j.Progress()
	_, err := request[proto.Job](ctx, j.c, proto.JobSubject("done", j.info.ID), proto.JobFinish{Progress: proto.Progress{
		Results: p.Results, Succeeded: p.Succeeded, Failed: p.Failed, Dropped: p.Dropped}})
	if err != nil {
		j.c.opts.log.Warn("job done but not recorded", "job", j.info.ID, "err", err)
	}
}

// emit passes an event to the reader unless the job has ended.
func (j *Job) emit(ev event) bool {
	select {
	case j.events <- ev:
		return true
	case <-j.ctx.Done():
		return false
	}
}

// fail reports a fatal error and stops the submission.
func (j *Job) fail(err error) {
	j.emit(event{err: err})
}

// receive starts reading the job's results from DF_RESULTS.
func (j *Job) receive() error {
	cons, err := j.c.js.OrderedConsumer(j.ctx, proto.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{proto.ResultSubject(j.info.ID)},
	})
	if err != nil {
		return fmt.Errorf("client: read results: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("client: read results: %w", err)
	}
	stop := context.AfterFunc(j.ctx, it.Stop)
	j.wg.Add(1)
	// Stops when the job's context ends (which stops the iterator).
	go func() {
		defer j.wg.Done()
		defer stop()
		for {
			m, err := it.Next()
			if err != nil {
				if j.ctx.Err() == nil {
					j.fail(fmt.Errorf("client: read results: %w", err))
				}
				return
			}
			rs := batch.ResultSet{Results: getResults()}
			if err := batch.DecodeResults(m.Data(), &rs); err != nil {
				j.fail(fmt.Errorf("client: malformed result message: %w", err))
				return
			}
			if rs.Job != j.info.ID {
				continue
			}
			_, span := tracer.Start(tracing.Extract(j.ctx, m.Headers()), "client.results", trace.WithAttributes(
				attribute.Int64("dataflare.seq", int64(rs.Seq)), attribute.Int("dataflare.records", len(rs.Results))))
			span.End()
			if !j.emit(event{seg: &segment{base: rs.Base, results: rs.Results}}) {
				return
			}
		}
	}()
	return nil
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
