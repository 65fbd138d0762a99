package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
	"github.com/dataflare/dataflare/plugin"
)

// Coordinator accepts jobs and keeps the fleet view. Create one
// with New and start it with Run.
type Coordinator struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *metrics
	started time.Time

	jobs *jobCache
	view *view
	reqs *requests
	// chores is housekeeping a request leaves behind, done after its reply
	// (later): one goroutine, while Run runs.
	chores    chan func(context.Context)
	owners    owners
	counts    queueCounts
	kv        jetstream.KeyValue // DF_JOBS, set by Run
	queues    jetstream.KeyValue // DF_QUEUES, set by Run
	pipelines jetstream.KeyValue // DF_PIPELINES, set by Run

	mu      sync.Mutex
	running bool
	ready   atomic.Bool
}

// New returns a Coordinator on nc. It validates cfg (errors wrap
// ErrInvalidConfig) but does not touch the server until Run.
func New(nc *nats.Conn, cfg Config) (*Coordinator, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults(nc.MaxPayload())
	if err != nil {
		return nil, err
	}
	if cfg.ID == "" {
		cfg.ID = "c-" + nuid.Next()[14:]
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	c := &Coordinator{
		cfg:     cfg,
		nc:      nc,
		js:      js,
		log:     cfg.Logger.With("coordinator", cfg.ID),
		metrics: newMetrics(cfg.Registerer),
		jobs:    newJobCache(),
	}
	c.view = newView(cfg, c.metrics)
	if cfg.Registerer != nil {
		// Clients publish batches to the stream themselves: how full it
		// is, read at each scrape, is the fleet's "busy" signal.
		cfg.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dataflare_batch_queue_fill",
			Help: "Bytes in the fullest batch stream over its limit (0 to 1): at 1 its owner's clients are slowed down until workers catch up.",
		}, c.queueFill), queueCollector{c})
	}
	return c, nil
}

// queueFill returns the bytes the fullest batch stream holds over its
// limit, 0 when none can be read.
func (c *Coordinator) queueFill() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	fill := 0.0
	names := c.js.StreamNames(ctx, jetstream.WithStreamListSubject(proto.SubjectBatchPrefix+">"))
	for name := range names.Name() {
		if info := c.streamInfo(ctx, name); info != nil && info.Config.MaxBytes > 0 {
			fill = max(fill, float64(info.State.Bytes)/float64(info.Config.MaxBytes))
		}
	}
	return fill
}

// ID returns the coordinator's id.
func (c *Coordinator) ID() string { return c.cfg.ID }

// ErrRunning is returned by Run when the Coordinator is already running.
var ErrRunning = errors.New("coordinator: already running")

// Run creates the streams, consumer and bucket (idempotently), then serves
// until ctx is cancelled: it stops taking requests, finishes the ones it
// has, and returns nil. It returns an error if it cannot start.
func (c *Coordinator) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return ErrRunning
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	kv, err := c.setup(ctx)
	if err == nil {
		c.kv = kv
		c.queues, err = c.js.KeyValue(ctx, proto.BucketQueues)
	}
	if err == nil {
		c.pipelines, err = c.js.KeyValue(ctx, proto.BucketPipelines)
	}
	if err == nil {
		err = c.setupQueues(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("coordinator: %w", err)
	}
	c.started = c.cfg.Clock()

	// Requests are queued per owner and handled by RequestWorkers
	// goroutines of the errgroup, so a slow JetStream call never blocks
	// the connection's dispatch, and one owner's flood never delays the
	// others. Subscriptions are drained on the way out: what was received
	// is handled before Run returns.
	c.reqs = newRequests(c.cfg.RequestQueue, c.cfg.RequestRate, c.cfg.Clock)
	subs, err := c.subscribe()
	if err != nil {
		return err
	}
	if err := c.nc.Flush(); err != nil {
		unsubscribe(subs)
		return fmt.Errorf("coordinator: %w", err)
	}
	c.ready.Store(true)
	defer c.ready.Store(false)
	c.log.Info("coordinator started", "max_batch_bytes", c.cfg.MaxBatchBytes, "replicas", c.cfg.Topology.Replicas)

	c.chores = make(chan func(context.Context), maxChores)
	choresDone := make(chan struct{})
	// Stops when chores is closed, after the last request was handled.
	go func() {
		defer close(choresDone)
		for f := range c.chores {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvTimeout)
			f(cctx)
			cancel()
		}
	}()
	g, gctx := errgroup.WithContext(context.WithoutCancel(ctx))
	for range c.cfg.RequestWorkers {
		// Stops when the requests are closed and drained.
		g.Go(func() error { c.serve(gctx); return nil })
	}
	pipes, stopPipes := context.WithCancel(ctx)
	defer stopPipes()
	pipesDone := make(chan struct{})
	// Stops when ctx ends: the pipelines it runs stop, their leases lapse.
	go func() { defer close(pipesDone); c.runPipelines(pipes) }()

	<-ctx.Done()
	<-pipesDone
	c.log.Info("coordinator stopping")
	unsubscribe(subs)
	c.reqs.close()
	err = g.Wait()
	close(c.chores)
	<-choresDone
	return err
}

// maxChores bounds the housekeeping waiting to be done; beyond it a
// request does its own before replying.
const maxChores = 1024

// later does f after the current request's reply, on the chores
// goroutine; now, under ctx, when too many wait or Run is not running.
func (c *Coordinator) later(ctx context.Context, f func(context.Context)) {
	if c.chores != nil {
		select {
		case c.chores <- f:
			return
		default:
		}
	}
	f(ctx)
}

// subscribe queues the requests and observes the heartbeats. On an error
// it leaves no subscription behind.
func (c *Coordinator) subscribe() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	sub := func(s *nats.Subscription, err error) error {
		if err != nil {
			return fmt.Errorf("coordinator: subscribe: %w", err)
		}
		subs = append(subs, s)
		return nil
	}
	q := proto.QueueCoordinators
	if err := errors.Join(
		sub(c.nc.QueueSubscribe(proto.SubjectJobCreatePrefix+"*", q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectJobPrefix+"*.*.*", q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectStatus, q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectReport, q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectPipelinePrefix+">", q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectJobList+"*", q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectDeadLetterPrefix+">", q, c.take)),
		sub(c.nc.QueueSubscribe(proto.SubjectAdminPrefix+">", q, c.take)),
		// Every coordinator sees every heartbeat: each keeps the whole
		// fleet view.
		sub(c.nc.Subscribe(proto.SubjectHeartbeatPrefix+"*", c.onHeartbeat)),
	); err != nil {
		unsubscribe(subs)
		return nil, err
	}
	return subs, nil
}

// unsubscribe ends subs.
func unsubscribe(subs []*nats.Subscription) {
	for _, s := range subs {
		s.Unsubscribe()
	}
}

// Ready reports whether the coordinator runs: streams and bucket in place,
// requests being served. For a readiness probe.
func (c *Coordinator) Ready() bool { return c.ready.Load() }

// setup creates the streams, consumer and bucket and returns the bucket.
// JetStream that does not answer (a cluster still forming, or electing
// after a node loss; two coordinators creating the same replicated stream
// at once) is retried, each attempt with a short timeout, until ctx ends;
// any other error is returned.
//
// A cluster that cannot place the replicas yet (peers still joining) is
// retried for a minute, then reported: with too few nodes for the replicas
// asked it never will.
func (c *Coordinator) setup(ctx context.Context) (jetstream.KeyValue, error) {
	backoff := 250 * time.Millisecond
	start := time.Now()
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := proto.Ensure(actx, c.js, c.cfg.Topology)
		var kv jetstream.KeyValue
		if err == nil {
			kv, err = c.js.KeyValue(actx, proto.BucketJobs)
		}
		cancel()
		if err == nil {
			return kv, nil
		}
		var apiErr *jetstream.APIError
		placing := errors.As(err, &apiErr) && (apiErr.ErrorCode == proto.JSClusterNoPeers || apiErr.ErrorCode == proto.JSClusterNotAvailable)
		switch {
		case placing:
			if time.Since(start) >= time.Minute {
				return nil, fmt.Errorf("coordinator: %w", err)
			}
		case proto.Unavailable(err), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		default:
			return nil, fmt.Errorf("coordinator: %w", err)
		}
		c.log.Warn("JetStream not answering; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// tracer names the coordinator's spans.
var tracer = tracing.Tracer("github.com/dataflare/dataflare/coordinator")

// requestTimeout bounds the handling of one request.
const requestTimeout = 10 * time.Second

// handleControl routes every request: the operators' (ops.go), the
// fleet's status and report, or a request on a job.
func (c *Coordinator) handleControl(ctx context.Context, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	switch {
	case c.handleOps(ctx, m):
	case m.Subject == proto.SubjectStatus:
		st, err := c.status(ctx)
		respond(c, m, st, err)
	case m.Subject == proto.SubjectReport:
		r, err := c.report(ctx)
		respond(c, m, r, err)
	case strings.HasPrefix(m.Subject, proto.SubjectPipelinePrefix):
		c.handlePipeline(ctx, m)
	default:
		job, err := c.handleJob(ctx, m)
		respond(c, m, job, err)
	}
}

// jobVerbs holds the method that answers each job request verb: called
// with the owner for create (df.job.create.<owner>), with the job id for
// the others (df.job.<verb>.<owner>.<id>), and with the request's body.
var jobVerbs = map[string]func(c *Coordinator, ctx context.Context, target string, body []byte) (*proto.Job, error){
	"create":   (*Coordinator).createJob,
	"get":      (*Coordinator).getJob,
	"seal":     (*Coordinator).sealJob,
	"done":     (*Coordinator).finishJob,
	"reject":   (*Coordinator).rejectRecord,
	"cancel":   (*Coordinator).cancelJob,
	"progress": (*Coordinator).reportProgress,
}

// handleJob answers a request on a job, in a span of the trace the request
// carries (a client's job: creation, size and state checks, seal).
func (c *Coordinator) handleJob(ctx context.Context, m *nats.Msg) (*proto.Job, error) {
	verb, target, err := parseJobSubject(m.Subject)
	ctx, span := c.jobSpan(ctx, m, verb)
	var job *proto.Job
	if err == nil {
		job, err = c.answerJob(ctx, verb, target, m.Data)
	}
	endSpan(span, err)
	return job, err
}

// answerJob calls the method of verb in jobVerbs.
func (c *Coordinator) answerJob(ctx context.Context, verb, target string, body []byte) (*proto.Job, error) {
	answer, ok := jobVerbs[verb]
	if !ok {
		return nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: unknown job request %q", verb)
	}
	return answer(c, ctx, target, body)
}

// parseJobSubject splits df.job.create.<owner> into "create" and the
// owner, and df.job.<verb>.<owner>.<id> into the verb and the job id. A
// subject without a valid job id is invalid input; its verb is still
// returned, to name the span.
func parseJobSubject(subject string) (verb, target string, err error) {
	if strings.HasPrefix(subject, proto.SubjectJobCreatePrefix) {
		return "create", proto.LastToken(subject), nil
	}
	verb, id, _ := strings.Cut(strings.TrimPrefix(subject, proto.SubjectJobPrefix), ".")
	if !proto.ValidJobID(id) {
		return verb, "", proto.Errorf(plugin.CodeInvalidInput, "coordinator: bad job subject %q", subject)
	}
	return verb, id, nil
}

// jobSpan starts the span of a job request, in the trace the request
// carries.
func (c *Coordinator) jobSpan(ctx context.Context, m *nats.Msg, verb string) (context.Context, trace.Span) {
	return tracer.Start(tracing.Extract(ctx, m.Header), "coordinator.job",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("dataflare.request", verb)))
}

// endSpan records err, if any, on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// inboxPrefix starts every subject a coordinator answers on: nats.go's
// default inboxes (_INBOX.) and the per-user ones deploy/nats sets up
// (_INBOX_<user>.).
const inboxPrefix = "_INBOX"

// respond sends data, or err, as the reply to m. The requester chooses the
// reply subject: an answer goes to an inbox only, never to a subject the
// coordinator may publish on and the requester may not (a stream's subject,
// a JetStream API call).
func respond[T any](c *Coordinator, m *nats.Msg, data *T, err error) {
	if m.Reply == "" {
		return
	}
	if !strings.HasPrefix(m.Reply, inboxPrefix) {
		c.log.Warn("request not answered: its reply subject is not an inbox", "subject", m.Subject, "reply", m.Reply)
		return
	}
	if err := m.Respond(proto.EncodeReply(data, err)); err != nil {
		c.log.Debug("reply not sent", "subject", m.Subject, "err", err)
	}
}
