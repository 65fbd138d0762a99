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
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/fleet"
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
	// peakPressure is the highest pool pressure a batch saw since the
	// last heartbeat (math.Float64bits); see notePressure.
	peakPressure atomic.Uint64
	lease        lease
	queues       *queues // set by Run before the first batch is fetched

	modMu   sync.Mutex
	modules map[string]*module // by name in the Manager ("name@digest")

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
		modules: make(map[string]*module),
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

	var err error
	w.queues, err = openQueues(ctx, w.js, w.log)
	if err == nil {
		w.jobs, err = openJobs(ctx, w.js, w.log)
	}
	var hints chan string
	if err == nil {
		hints = make(chan string, 1024)
		var sub *nats.Subscription
		if sub, err = subscribeHints(w.nc, hints); err == nil {
			defer sub.Unsubscribe()
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("worker: %w", err)
	}
	w.started = time.Now()
	w.ready.Store(true)
	defer w.ready.Store(false)
	w.log.Info("worker started", "parallel", w.cfg.Parallel)

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
	g.Go(func() error {
		w.lease.keep(bg, w.queues.minAckWait, w.metrics.leaseRenewals, w.log)
		return nil
	})
	// Stops when bg is cancelled, after the drain.
	g.Go(func() error { w.queues.watch(bg); return nil })
	// Stops when bg is cancelled, after the drain.
	g.Go(func() error { w.jobs.watch(bg); return nil })

	var batches sync.WaitGroup
	w.pull(ctx, work, hints, &batches)

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

// lookEvery is how often an idle worker looks at every queue, in case a
// hint of work was lost.
const lookEvery = 250 * time.Millisecond

// pull takes batches while ctx lives and runs each on its own goroutine,
// at most Parallel at once: for each free slot, from the queue the fair
// queue puts first (the owner furthest behind its share, its highest
// priority with work), asking only for what it can start at once — no
// batch waits in a worker's hands, so no lease runs out unseen.
//
// Beyond its Parallel slots a worker has one spare, for a queue (an owner
// and priority) with no batch running on it, of the owner first in the
// fair order: when every slot is busy with other owners' batches, or with
// the owner's own of a lower priority, a small job does not wait for one
// to end (slots running batches of equal length all free at once, a batch
// time apart), it starts at once. A batch that must run alone (alone.go)
// holds every slot: an idle worker takes one batch before any other, and
// takes none while such a batch runs. When no queue has work, the loop waits
// for a slot to free, a hint, a change of the queues, or its next look.
func (w *Worker) pull(ctx, work context.Context, hints <-chan string, batches *sync.WaitGroup) {
	p := &puller{w: w, work: work, batches: batches, fair: newFairQueue(),
		slots: make(chan struct{}, w.cfg.Parallel), spare: make(chan struct{}, 1), freed: make(chan struct{}, 1),
		running: make(map[candidate]int)}
	look := time.NewTicker(lookEvery)
	defer look.Stop()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		p.sync()
		p.drainHints(hints)
		took, err := p.fetchRegular(ctx)
		if err == nil && took == 0 {
			took, err = p.fetchSpare(ctx)
		}
		if err != nil {
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
			continue
		}
		backoff = 100 * time.Millisecond
		if took > 0 {
			continue
		}
		var again <-chan time.Time
		if d, ok := p.nextRecheck(); ok {
			again = time.After(d) // at most recheckAfter: nothing builds up
		}
		select {
		case <-ctx.Done():
			return
		case <-p.freed:
		case <-again:
			p.recheckDue()
		case h := <-hints:
			if d := p.hint(h); d > 0 {
				// The queue was found empty a moment ago: a flood of
				// hints (anyone may send them) costs at most one look
				// per hintCooldown.
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		case <-w.queues.changed:
			p.fair.hintAll()
		case <-look.C:
			p.fair.hintAll()
		}
	}
}

// puller is the pull loop's state.
type puller struct {
	w       *Worker
	work    context.Context // the batches' context
	batches *sync.WaitGroup
	fair    *fairQueue
	slots   chan struct{} // a token per batch running in a regular slot
	spare   chan struct{} // the token of the spare slot
	freed   chan struct{} // a slot freed (capacity 1)
	known   map[string]proto.Queue
	version uint64
	emptyAt map[candidate]time.Time // when a fetch last found the queue empty
	hinted  map[candidate]bool      // hinted since last found empty
	recheck map[candidate]time.Time // found empty just after a hint: look again then

	mu      sync.Mutex
	running map[candidate]int // batches running on this worker, by queue and priority
	total   int               // batches running on this worker
	solo    bool              // a batch runs alone: take none
	careful time.Time         // when not zero: since when batches are taken only when idle, one at a time
}

// carefulFor bounds how long a worker that released a batch to run alone
// (bounce) takes batches only when idle: its copy, at the end of its
// queue, needs an idle worker to run.
const carefulFor = time.Minute

// state returns how many batches run, whether one runs alone, and whether
// the worker takes batches only when idle.
func (p *puller) state() (running int, solo, careful bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.careful.IsZero() && time.Since(p.careful) > carefulFor {
		p.careful = time.Time{}
	}
	return p.total, p.solo, !p.careful.IsZero()
}

// setCareful sets (or, with on false, ends) the worker's careful mode.
func (p *puller) setCareful(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !on:
		p.careful = time.Time{}
	case p.careful.IsZero():
		p.careful = time.Now()
	}
}

// hintCooldown is how soon after finding a queue empty a hint of it makes
// the worker look again.
const hintCooldown = 2 * time.Millisecond

// recheckAfter is how soon a worker looks again at a queue a hint sent it
// to and found empty. The server acknowledges a publish before it tells the
// stream's consumers of the message, so a fetch right after the hint can
// miss the batch the hint is about; without a second look it would wait for
// the next sweep of all queues (lookEvery).
const recheckAfter = 3 * time.Millisecond

// nextRecheck returns how long until the earliest recheck is due.
func (p *puller) nextRecheck() (time.Duration, bool) {
	var first time.Time
	for _, at := range p.recheck {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(time.Until(first), 0), true
}

// recheckDue marks the queues whose recheck is due as maybe holding work.
func (p *puller) recheckDue() {
	now := time.Now()
	for c, at := range p.recheck {
		if !at.After(now) {
			delete(p.recheck, c)
			p.fair.hint(c.owner, c.priority)
		}
	}
}

// fetchRegular takes every free regular slot and fills what it can; it
// returns how many batches it started. It takes none while a batch runs
// alone, nor, in careful mode, while any runs, nor while batches running
// hold the buffer pool past its budget (overBudget); an idle worker takes
// one batch first, so that a batch that must run alone (alone.go) has none
// beside it.
func (p *puller) fetchRegular(ctx context.Context) (int, error) {
	running, solo, careful := p.state()
	if solo || careful && running > 0 || running > 0 && p.w.overBudget() {
		return 0, nil
	}
	limit := cap(p.slots)
	if running == 0 {
		limit = 1
	}
	free := 0
	for free < limit {
		select {
		case p.slots <- struct{}{}:
			free++
			continue
		default:
		}
		break
	}
	if free == 0 {
		return 0, nil
	}
	took, err := p.fetch(ctx, free, p.slots, nil)
	for range free - took {
		<-p.slots
	}
	if careful && took == 0 && err == nil {
		p.setCareful(false) // no work waits: nothing to be careful for
	}
	return took, err
}

// fetchSpare fills the spare slot, when it is free, with a batch of a
// queue and priority that has none running here, of the owner the fair
// queue puts first (the one a regular slot would serve next): a newcomer
// is always first, while an owner the spare served moves back behind the
// others by its batch's cost, so the spare does not skew the weights.
func (p *puller) fetchSpare(ctx context.Context) (int, error) {
	if running, solo, careful := p.state(); solo || careful || running > 0 && p.w.overBudget() {
		return 0, nil
	}
	order, _ := p.fair.next()
	if len(order) == 0 {
		return 0, nil
	}
	first := order[0].owner
	select {
	case p.spare <- struct{}{}:
	default:
		return 0, nil
	}
	took, err := p.fetch(ctx, 1, p.spare, func(c candidate) bool { return c.owner == first && p.idle(c) })
	if took == 0 {
		<-p.spare
	}
	return took, err
}

// idle reports whether c has no batch running on this worker.
func (p *puller) idle(c candidate) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running[c] == 0
}

// sync brings the fair queue up to date with the queues' entries.
func (p *puller) sync() {
	known, version := p.w.queues.snapshot()
	if version == p.version && p.known != nil {
		return
	}
	for name := range p.known {
		if _, ok := known[name]; !ok {
			p.fair.forget(name)
		}
	}
	for name, q := range known {
		p.fair.setWeight(name, q.Weight)
		if _, ok := p.known[name]; !ok {
			for i := range fleet.Priorities {
				p.fair.hint(name, i) // new: look there
			}
		}
	}
	p.known, p.version = known, version
}

// drainHints takes the hints that came meanwhile.
func (p *puller) drainHints(hints <-chan string) {
	for {
		select {
		case h := <-hints:
			p.hint(h)
		default:
			return
		}
	}
}

// hint marks the queue a hint is about as maybe holding work, and returns
// how long to wait before looking there: what is left of hintCooldown
// since it was last found empty.
func (p *puller) hint(subject string) time.Duration {
	stream, prio, ok := hintTarget(subject, p.known)
	if !ok {
		return 0
	}
	p.fair.hint(stream, prio)
	c := candidate{stream, prio}
	if p.hinted == nil {
		p.hinted = make(map[candidate]bool)
	}
	p.hinted[c] = true
	return hintCooldown - time.Since(p.emptyAt[c])
}

// fetch takes up to free batches, queue by queue in the fair queue's
// order (only the queues only allows, when not nil), and starts each
// holding a token of slots; it returns how many it started. When only one
// owner has work it takes as many as it can start from its queue at once;
// otherwise one at a time, asking the fair queue again after each.
func (p *puller) fetch(ctx context.Context, free int, slots chan struct{}, only func(candidate) bool) (int, error) {
	took := 0
	for took < free {
		order, alone := p.fair.next()
		got := 0
		for _, c := range order {
			if only != nil && !only(c) {
				continue
			}
			n := 1
			if alone {
				n = free - took
			}
			var err error
			if got, err = p.fetchFrom(ctx, c, n, slots); err != nil {
				return took, err
			}
			if got > 0 {
				break
			}
		}
		if got == 0 {
			return took, nil
		}
		took += got
	}
	return took, nil
}

// fetchFrom asks queue c for up to n batches without waiting, and starts
// those it gets, each holding a token of slots.
func (p *puller) fetchFrom(ctx context.Context, c candidate, n int, slots chan struct{}) (int, error) {
	cons, err := p.w.queues.consumer(ctx, c.owner, c.priority)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			p.fair.empty(c.owner, c.priority) // not made yet, or gone
			return 0, nil
		}
		return 0, err
	}
	msgs, err := cons.FetchNoWait(n)
	if err != nil {
		return 0, err
	}
	got := 0
	for m := range msgs.Messages() {
		d := p.w.deliveryOf(m)
		cost := batch.Count(m.Data())
		if d.mustRunAlone() {
			running, _, _ := p.state()
			if running == 0 && got == 0 {
				d.solo = true
				cost *= cap(p.slots) // it holds every slot
			} else {
				// It is released to run alone elsewhere (bounce); so
				// that it finds an idle worker, this one becomes one.
				p.setCareful(true)
			}
		}
		got++
		p.fair.started(c.owner, cost)
		p.start(m, c, slots, d)
	}
	if err := msgs.Error(); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			p.w.queues.forget(c.owner)
			p.fair.empty(c.owner, c.priority)
			return got, nil
		}
		return got, err
	}
	if got == 0 {
		p.fair.empty(c.owner, c.priority)
		if p.emptyAt == nil {
			p.emptyAt = make(map[candidate]time.Time)
		}
		p.emptyAt[c] = time.Now()
		if p.hinted[c] {
			// Once per hint: a flood of hints still costs at most one
			// look per hintCooldown and one recheck each.
			delete(p.hinted, c)
			if p.recheck == nil {
				p.recheck = make(map[candidate]time.Time)
			}
			p.recheck[c] = time.Now().Add(recheckAfter)
		}
	} else {
		delete(p.hinted, c)
	}
	return got, nil
}

// start runs a batch of queue c, of delivery d, on its own goroutine,
// holding a token of slots until it settles; while a batch that runs
// alone runs, the worker takes no other.
func (p *puller) start(m jetstream.Msg, c candidate, slots chan struct{}, d delivery) {
	p.batches.Add(1)
	p.w.inflight.Add(1)
	p.mu.Lock()
	p.running[c]++
	p.total++
	if d.solo {
		p.solo = true
		p.careful = time.Time{} // what it was careful for runs
	}
	p.mu.Unlock()
	// Stops when the batch has settled (ack or nak).
	go func() {
		defer func() {
			p.mu.Lock()
			if p.running[c]--; p.running[c] == 0 {
				delete(p.running, c)
			}
			p.total--
			if d.solo {
				p.solo = false
			}
			p.mu.Unlock()
			<-slots
			p.w.inflight.Add(-1)
			p.batches.Done()
			select {
			case p.freed <- struct{}{}:
			default:
			}
		}()
		p.w.handle(p.work, m, d)
	}()
}

// lease keeps the batches in flight alive. Every eighth of AckWait it
// tells JetStream (InProgress) that the batches it last heard of a quarter
// of AckWait ago or more are still being worked on: a batch goes at most
// 3/8 of AckWait without a sign of life (its worker's stalls may take the
// other 5/8), a long one costs about four lease messages per AckWait, and
// one that settles within a quarter of AckWait — most batches — none.
type lease struct {
	mu   sync.Mutex
	msgs map[jetstream.Msg]time.Time // when JetStream last heard of each
}

func (l *lease) add(m jetstream.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs = make(map[jetstream.Msg]time.Time)
	}
	l.msgs[m] = time.Now()
}

func (l *lease) remove(m jetstream.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.msgs, m)
}

// due returns the batches JetStream last heard of before since, and marks
// them heard of at now.
func (l *lease) due(since, now time.Time) []jetstream.Msg {
	l.mu.Lock()
	defer l.mu.Unlock()
	var msgs []jetstream.Msg
	for m, at := range l.msgs {
		if !at.After(since) {
			msgs = append(msgs, m)
			l.msgs[m] = now
		}
	}
	return msgs
}

// keep renews the leases until ctx is cancelled, looking every eighth of
// the AckWait ackWait returns, counting each renewal.
func (l *lease) keep(ctx context.Context, ackWait func() time.Duration, renewals prometheus.Counter, log *slog.Logger) {
	for {
		every := max(ackWait()/8, 5*time.Millisecond)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		now := time.Now()
		for _, m := range l.due(now.Add(-2*every), now) {
			renewals.Inc()
			if err := m.InProgress(); err != nil {
				log.Debug("in-progress ack failed", "subject", m.Subject(), "err", err)
			}
		}
	}
}

// hostname is resolved once for heartbeats.
var hostname, _ = os.Hostname()
