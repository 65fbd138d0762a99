package client

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/fleet"
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
	timeout   time.Duration
	priority  fleet.Priority
	steps     []Step
	linger    time.Duration
	fill      int // WithBatchBytes
}

// request returns the job request of a Submit of plugin name with these
// options: a chain when WithSteps was given (then name must be "").
func (so *submitOptions) request(name string) (proto.JobCreate, error) {
	req := proto.JobCreate{Plugin: name, Version: so.version, Config: so.config, Timeout: so.timeout, Priority: so.priority, Compress: proto.CompressS2}
	if len(so.steps) == 0 {
		if !proto.ValidName(name) {
			return req, fmt.Errorf("%w: plugin name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalid, name)
		}
		return req, nil
	}
	if name != "" || so.version != "" || so.config != nil {
		return req, fmt.Errorf("%w: a job has a plugin or steps, not both (give \"\" as the name with WithSteps)", ErrInvalid)
	}
	req.Plugin = ""
	for i, st := range so.steps {
		if !proto.ValidName(st.Plugin) {
			return req, fmt.Errorf("%w: step %d: plugin name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalid, i+1, st.Plugin)
		}
		req.Steps = append(req.Steps, proto.Step{Plugin: st.Plugin, Version: st.Version, Config: st.Config})
	}
	return req, nil
}

// WithLinger sends a batch that is not full once its first record waited
// d, instead of waiting for the batch to fill or the Source to end: for a
// Source that is a stream, whose records come at their own pace, so that
// none waits longer than d for its batch to go (a steady trickle would
// otherwise fill every batch to the sizer's size, seconds at a low rate).
// d must be in (0, 1 min].
func WithLinger(d time.Duration) SubmitOption {
	return func(o *submitOptions) error {
		if d <= 0 || d > time.Minute {
			return invalidOption("linger %v not in (0, 1m]", d)
		}
		o.linger = d
		return nil
	}
}

// Step is one plugin of a chain (WithSteps).
type Step struct {
	// Plugin is the plugin's name, Version a WebAssembly plugin's version
	// ("" for the newest when the job starts).
	Plugin, Version string
	// Config is handed to the plugin with every batch.
	Config plugin.Config
}

// WithSteps makes the job a chain: every record runs through the steps in
// turn, in one pass on a worker (no round trip between steps). A record
// dropped by a step leaves the chain; one failed by a step gets an error
// naming it ("step 2 (redact): …"). Submit's name must then be "". At most
// 16 steps.
func WithSteps(steps ...Step) SubmitOption {
	return func(o *submitOptions) error {
		if len(steps) == 0 || len(steps) > proto.MaxSteps {
			return invalidOption("%d steps: give 1 to %d", len(steps), proto.MaxSteps)
		}
		o.steps = steps
		return nil
	}
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

// WithPriority orders the job among its owner's (default fleet.Normal): a
// high-priority job's batches run before the queued normal ones of the same
// owner, a low one's after them. Between owners the fleet shares its
// workers by weight, whatever the priorities.
func WithPriority(p fleet.Priority) SubmitOption {
	return func(o *submitOptions) error {
		if !p.Valid() {
			return invalidOption("priority %d is not high, normal or low", p)
		}
		o.priority = p
		return nil
	}
}

// WithBatchTimeout bounds how long one batch of the job may run on a
// worker (default, and upper bound: the worker's own, 1 min unless set).
// A batch that runs longer fails; the records of it that do not finish
// within one more timeout of isolating the culprits get that error. d must
// be in (0, 1h].
func WithBatchTimeout(d time.Duration) SubmitOption {
	return func(o *submitOptions) error {
		if d <= 0 || d > time.Hour {
			return invalidOption("batch timeout %v not in (0, 1h]", d)
		}
		o.timeout = d
		return nil
	}
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

// WithBatchBytes caps the records' bytes in one of the job's batches
// below the fleet's largest batch message: the sizer still says how many
// records go in a batch, and a batch goes once it holds that many or n
// bytes of them. A record bigger than n still goes, alone, up to the
// fleet's largest. Smaller batches cost more messages and less memory
// per batch on their way, and a record waits less for its batch to fill
// (a continuous pipeline's batches take 1 MiB). n must be at least 1.
func WithBatchBytes(n int) SubmitOption {
	return func(o *submitOptions) error {
		if n < 1 {
			return invalidOption("batch bytes %d below 1", n)
		}
		o.fill = n
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
	// Skipped counts messages on the job's result subject that were not
	// results (undecodable): they are skipped, and the job goes on.
	Skipped uint64 `json:"skipped,omitempty"`
}

// Job is a running job. Its results are read with Results (or Wait).
//
// Its goroutines (the submission, the results' receiver, the watcher) get
// the job's context as a parameter when they start; the Job keeps only the
// means to end it (cancel) and to learn that it ended (ended, endErr).
type Job struct {
	c      *Client
	info   proto.Job
	cancel context.CancelFunc // ends the job's context: stops its goroutines
	ended  chan struct{}      // closed by the watcher once the job's context ended
	endErr error              // why it ended; set before ended is closed
	check  chan struct{}      // the reader asks the watcher for the job's state
	span   trace.Span
	start  time.Time
	events chan event
	wg     sync.WaitGroup

	mu   sync.Mutex
	ends []uint64 // ends of batches in flight, in submission order
	room chan struct{}

	submitted, results, succeeded, failed, dropped, batches, skipped atomic.Uint64
	received                                                         atomic.Uint64 // result messages, skipped or not
	readSeq                                                          atomic.Uint64 // the stream sequence of the last result message taken in
	sent                                                             atomic.Uint64 // records in batches the fleet accepted
	reopened                                                         atomic.Uint64 // times the results were read again through a new consumer
	taken                                                            atomic.Bool
	// attached: read by Attach, not submitted here; the watcher learns
	// when the job is sealed, or abandoned by its submitter.
	attached bool
	sealSeen bool // the watcher's: the sealed event was sent
}

// event is what the job's goroutines tell its reader.
type event struct {
	seg    *segment
	sealed bool
	total  uint64
	err    error // with sealed: the input error to report after the last result; else fatal
	gone   bool  // err: the job was cancelled by another process, no failure of this one
	// abandoned: an attached job's submitter stopped before sealing it;
	// when nothing of it is queued and every result message came, its
	// results are all there are.
	abandoned *proto.JobDetail
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
	req, err := so.request(name)
	if err != nil {
		return nil, err
	}
	req.Lease = leaseEvery
	if c.opts.plain {
		req.Compress = ""
	}
	ctx, span := tracer.Start(ctx, "client.job", trace.WithAttributes(attribute.String("dataflare.plugin", req.Plugin)))
	// A coordinator that dies with the request leaves it unanswered: it is
	// sent again (a job created twice leaves the first one open and empty,
	// expiring with its retention).
	info, err := retry(ctx, c, "new", func(ctx context.Context) (*proto.Job, error) {
		return request[proto.Job](ctx, c, proto.JobCreateSubject(c.opts.owner), req)
	})
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return nil, err
	}
	span.SetAttributes(attribute.String("dataflare.job", info.ID))
	j, ctx := c.newJob(ctx, *info, span)
	if err := j.receive(ctx); err != nil {
		j.stop()
		return nil, err
	}
	b := newBatcher(j, so.batchSize)
	b.linger = so.linger
	if so.fill > 0 {
		b.fill = min(so.fill, b.maxBytes)
	}
	j.wg.Add(1)
	// Stops when src is exhausted, the job fails, or the job's context ends.
	go func() {
		defer j.wg.Done()
		b.submit(ctx, src)
	}()
	return j, nil
}

// Attach returns a handle on a job submitted earlier (by this process or
// another, e.g. before a restart), to read its results from the first, in
// order. A sealed job's results end with its last record. An open job's
// results come as its submitter sends records; they end when it seals the
// job, or — when the submitter stopped (its process died, or lost the
// fleet) and so left the job open — once the batches it did send have run:
// a record it never sent has no result, and Results ends with an error
// matching ErrJobClosed that says from which record on; a record missing
// between sent ones (a batch whose publication never landed) gets that
// error as its result. Such a job stays open, to be attached again,
// until it is cancelled or expires.
//
// A job done (its results read to the end) or cancelled has no results
// left: the error matches ErrJobClosed. ErrJobNotFound when there is no
// such job.
func (c *Client) Attach(ctx context.Context, id string) (*Job, error) {
	if !proto.ValidJobID(id) {
		return nil, fmt.Errorf("%w: job id %q", ErrInvalid, id)
	}
	info, err := request[proto.Job](ctx, c, proto.JobSubject("get", id), nil)
	if err != nil {
		return nil, c.denied(proto.JobSubject("get", id), err)
	}
	switch info.State {
	case proto.JobSealed, proto.JobOpen:
	default:
		return nil, &Error{Code: plugin.CodeJobClosed, Message: fmt.Sprintf("job %s is %s: its results are gone", id, info.State)}
	}
	ctx, span := tracer.Start(ctx, "client.attach", trace.WithAttributes(attribute.String("dataflare.job", id)))
	j, ctx := c.newJob(ctx, *info, span)
	j.attached = true
	if err := j.receive(ctx); err != nil {
		j.stop()
		return nil, err
	}
	if info.State == proto.JobSealed {
		j.sealSeen = true
		j.submitted.Store(info.Records)
		j.batches.Store(info.Batches)
		j.events <- event{sealed: true, total: info.Records}
	}
	return j, nil
}

// newJob returns a job and its context, derived from ctx: the job's
// goroutines take it as a parameter, and stop (Close, Cancel, the end of
// Results) ends it. It starts the job's watcher.
func (c *Client) newJob(ctx context.Context, info proto.Job, span trace.Span) (*Job, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	j := &Job{
		c: c, info: info, cancel: cancel, span: span, start: time.Now(),
		ended:  make(chan struct{}),
		check:  make(chan struct{}, 1),
		events: make(chan event, 2*c.opts.window+16),
		room:   make(chan struct{}, 1),
	}
	j.wg.Add(1)
	// Stops when the job's context ends: stop cancels it, or the caller's
	// ctx ends.
	go func() {
		defer j.wg.Done()
		j.watch(ctx)
	}()
	return j, ctx
}

// watch runs for the job's reader with the job's context, which the reader
// does not hold: when the reader, hearing nothing, asks (askState), it asks
// a coordinator whether the job was cancelled elsewhere and, if so, tells
// the reader; when the context ends, it records why and closes ended.
func (j *Job) watch(ctx context.Context) {
	for {
		select {
		case <-j.check:
			j.checkState(ctx)
		case <-ctx.Done():
			j.endErr = context.Cause(ctx)
			close(j.ended)
			return
		}
	}
}

// askState has the watcher ask whether the job was cancelled elsewhere,
// unless it is asking already.
func (j *Job) askState() {
	select {
	case j.check <- struct{}{}:
	default:
	}
}

// ID returns the job's id, for Attach.
func (j *Job) ID() string { return j.info.ID }

// ReadSeq returns the stream sequence, in the job's result stream
// (proto.ResultStream of its owner), of the last result message its reader
// has taken in; 0 before the first. The reader never asks for a message
// at or below it again: a process that keeps the results it reads (a
// pipeline's runner, which starts a new job rather than read one again)
// may purge the job's result subject up to it, so that a job that never
// ends does not fill its owner's result stream.
func (j *Job) ReadSeq() uint64 { return j.readSeq.Load() }

// Digest returns the module digest the job pinned ("" for a native plugin).
func (j *Job) Digest() string { return j.info.Digest }

// Progress returns the job's counts so far.
func (j *Job) Progress() Progress {
	return Progress{
		Submitted: j.submitted.Load(), Results: j.results.Load(), Succeeded: j.succeeded.Load(),
		Failed: j.failed.Load(), Dropped: j.dropped.Load(), Batches: j.batches.Load(), Skipped: j.skipped.Load(),
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

// advance records that the results up to next were handed out, freeing the
// window slots of the batches they complete.
func (j *Job) advance(next uint64) {
	j.mu.Lock()
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
func (j *Job) reserve(ctx context.Context, end uint64) error {
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
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// emit passes an event to the reader unless the job's context, ctx, has
// ended.
func (j *Job) emit(ctx context.Context, ev event) bool {
	select {
	case j.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// fail reports a fatal error and stops the submission.
func (j *Job) fail(ctx context.Context, err error) {
	j.emit(ctx, event{err: err})
}
