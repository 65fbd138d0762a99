package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// Worker pulls and runs batches. Create one with New and start it with Run.
type Worker struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	mgr     *manager.Manager
	native  map[string]bool
	metrics *metrics
	started time.Time
	jobs    *jobs // set by Run before the first batch is fetched

	// breakers take plugins failing batch after batch out of service.
	breakers *breakers

	inflight atomic.Int64
	draining atomic.Bool
	ready    atomic.Bool
	hbSeq    atomic.Uint64
	lease    lease
	// poisonAfter is MaxDeliver, as the worker consumer carries it: set by
	// Run before the first batch is fetched.
	poisonAfter int

	modMu   sync.Mutex
	modules map[string]module // by name in the Manager ("name@digest")

	runMu   sync.Mutex
	running bool
	closed  bool
}

// New returns a Worker on nc with its own Manager holding the native
// plugins. It validates cfg (errors wrap ErrInvalidConfig) but does not
// touch the server until Run.
func New(nc *nats.Conn, cfg Config) (*Worker, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	// The coordinator chose the batch's size: the Manager runs it whole,
	// measures it, guards it against panics and judges the plugin's health.
	mcfg := manager.DefaultConfig()
	mcfg.AutoOptimize = false
	mcfg.Batch.DefaultSize = batch.DefaultLimits.MaxRecords
	mcfg.Batch.MaxSize = batch.DefaultLimits.MaxRecords
	mcfg.Batch.Parallelism = 1
	mcfg.Logger = cfg.Logger
	mcfg.SharedPool = cfg.Pool
	mgr, err := manager.New(mcfg)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	plugins := cfg.Plugins
	if plugins == nil {
		plugins = builtin.All()
	}
	w := &Worker{
		cfg:     cfg,
		nc:      nc,
		js:      js,
		log:     cfg.Logger.With("worker", cfg.ID),
		mgr:     mgr,
		native:  make(map[string]bool, len(plugins)),
		modules: make(map[string]module),
	}
	for name, p := range plugins {
		if err := mgr.RegisterBatch(name, p); err != nil {
			mgr.Close()
			return nil, fmt.Errorf("%w: plugin %s: %v", ErrInvalidConfig, name, err)
		}
		w.native[name] = true
	}
	w.metrics = newMetrics(cfg.Registerer, cfg.ID, mgr.Pool(), func() float64 { return float64(w.inflight.Load()) })
	w.breakers = newBreakers(cfg.Breaker, plugins, cfg.Registerer, cfg.ID, w.log)
	return w, nil
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Manager returns the worker's Manager: its plugins' metrics and health.
func (w *Worker) Manager() *manager.Manager { return w.mgr }

// Ready reports whether the worker is pulling work: it found the workers'
// consumer and is not draining. For a readiness probe.
func (w *Worker) Ready() bool { return w.ready.Load() && !w.draining.Load() }

// Errors Run returns.
var (
	// ErrRunning: Run was called while the Worker runs.
	ErrRunning = errors.New("worker: already running")
	// ErrClosed: Run was called after it returned once.
	ErrClosed = errors.New("worker: closed")
)

// Run pulls and runs batches until ctx is cancelled, then drains: it stops
// pulling, finishes the batches it runs (for up to DrainTimeout), says
// goodbye in a last heartbeat and returns nil. A Worker runs once; Run
// returns ErrRunning or ErrClosed on a second call. It waits for the
// coordinator to have created the streams.
func (w *Worker) Run(ctx context.Context) error {
	w.runMu.Lock()
	switch {
	case w.running:
		w.runMu.Unlock()
		return ErrRunning
	case w.closed:
		w.runMu.Unlock()
		return ErrClosed
	}
	w.running = true
	w.runMu.Unlock()
	defer func() {
		w.runMu.Lock()
		w.running, w.closed = false, true
		w.runMu.Unlock()
		w.mgr.Close()
	}()

	cons, err := w.consumer(ctx)
	if err == nil {
		w.jobs, err = openJobs(ctx, w.js, w.log)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	ackWait := cons.CachedInfo().Config.AckWait
	w.poisonAfter = proto.PoisonAfter(cons.CachedInfo().Config)
	w.started = time.Now()
	w.ready.Store(true)
	defer w.ready.Store(false)
	w.log.Info("worker started", "parallel", w.cfg.Parallel, "ack_wait", ackWait, "max_deliver", w.poisonAfter)

	// Batches run on a context of their own: cancelling ctx stops the
	// pulling, not the batches running; they get DrainTimeout to finish.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()

	var g errgroup.Group
	// Stops when bg is cancelled, after the drain.
	g.Go(func() error { w.heartbeats(bg); return nil })
	// Stops when bg is cancelled, after the drain.
	g.Go(func() error { w.lease.keep(bg, max(ackWait/3, 10*time.Millisecond), w.log); return nil })
	// Stops when bg is cancelled, after the drain.
	g.Go(func() error { w.jobs.watch(bg); return nil })

	var batches sync.WaitGroup
	w.pull(ctx, work, cons, &batches)

	w.draining.Store(true)
	w.sendHeartbeat(false)
	w.log.Info("worker draining", "in_flight", w.inflight.Load())
	done := make(chan struct{})
	// Stops when every batch has settled.
	go func() { batches.Wait(); close(done) }()
	t := time.NewTimer(w.cfg.DrainTimeout)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		w.log.Warn("drain timed out: releasing the batches still running", "in_flight", w.inflight.Load())
		stopWork()
		<-done
	}
	stopBg()
	g.Wait()
	w.sendHeartbeat(true)
	if err := w.nc.Flush(); err != nil {
		w.log.Debug("flush on exit", "err", err)
	}
	w.log.Info("worker stopped")
	return nil
}

// consumer returns the workers' consumer, waiting for it to exist.
func (w *Worker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	logged := false
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := w.js.Consumer(cctx, proto.StreamBatches, proto.ConsumerWorker)
		cancel()
		if err == nil {
			return cons, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) &&
			!proto.Unavailable(err) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, fmt.Errorf("worker: consumer: %w", err)
		}
		if !logged {
			w.log.Info("waiting for a coordinator to create the streams", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// pull fetches batches while ctx lives and runs each on its own goroutine,
// at most Parallel at once.
func (w *Worker) pull(ctx, work context.Context, cons jetstream.Consumer, batches *sync.WaitGroup) {
	slots := make(chan struct{}, w.cfg.Parallel)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// Wait for at least one free slot, then ask for as many batches
		// as there are free slots: the worker never holds a batch it
		// cannot start, so no lease runs out while a batch waits here.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
		for free < w.cfg.Parallel {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		fctx, cancel := context.WithTimeout(ctx, w.cfg.FetchWait)
		msgs, err := cons.Fetch(free, jetstream.FetchContext(fctx))
		got := 0
		if err == nil {
			for m := range msgs.Messages() {
				got++
				batches.Add(1)
				w.inflight.Add(1)
				// Stops when the batch has settled (ack or nak).
				go func() {
					defer func() { <-slots; w.inflight.Add(-1); batches.Done() }()
					w.handle(work, m)
				}()
			}
			err = msgs.Error()
		}
		cancel()
		for range free - got {
			<-slots
		}
		switch {
		case err == nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			backoff = 100 * time.Millisecond
		default:
			// The server is away (a restart, a network blip): try again,
			// more slowly each time, up to 2 s.
			w.metrics.fetchErrors.Inc()
			w.log.Warn("fetch failed", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// lease keeps the batches in flight alive: every third of AckWait it tells
// JetStream they are still being worked on.
type lease struct {
	mu   sync.Mutex
	msgs map[jetstream.Msg]struct{}
}

func (l *lease) add(m jetstream.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs = make(map[jetstream.Msg]struct{})
	}
	l.msgs[m] = struct{}{}
}

func (l *lease) remove(m jetstream.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.msgs, m)
}

func (l *lease) keep(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(l.msgs))
		for m := range l.msgs {
			msgs = append(msgs, m)
		}
		l.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil {
				log.Debug("in-progress ack failed", "subject", m.Subject(), "err", err)
			}
		}
	}
}

// hostname is resolved once for heartbeats.
var hostname, _ = os.Hostname()
