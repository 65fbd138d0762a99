package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// Circuit breakers. A plugin that fails every batch would keep taking the
// worker's slots — and, failing batches whole, have each of them bisected
// into many more runs. Every entry of the worker's Manager (a native
// plugin, or one WebAssembly module, "name@digest") has a breaker:
//
//   - closed: batches run. A batch the plugin fails as a whole, for a
//     reason of its own, is a failure; Threshold failures in a row open
//     the breaker. Not the plugin's: a transient error (unavailable here),
//     an invalid configuration, a module the store cannot give, the job
//     cancelled, the worker stopping, a timeout under a job's deadline
//     shorter than the worker's. A batch that failed whole but whose
//     isolation found records the plugin processes is a success: it holds
//     poison, the plugin works.
//   - open: batches of the plugin are released unrun (a nak with a delay
//     of the breaker's remaining backoff), for other workers or for later;
//     other plugins get the slots. A batch is not bisected while the
//     breaker is open, nor when its failure opens it.
//   - half-open, once the backoff has passed: the plugin is re-initialised
//     (plugin.Resetter) and the next batch runs as a probe; its success
//     closes the breaker, its failure opens it again for twice as long
//     (up to MaxBackoff). Other batches are released meanwhile.
//
// JetStream counts every delivery, and a batch delivered more than
// MaxDeliver times is split unrun as poison (splitDead): a batch on its
// last delivery before that runs whatever the breaker's state, so that no
// batch is split unrun merely because breakers released it. Its success
// closes the breaker; if it fails while the breaker is open, its records
// get the failure (not poison: nothing proved them bad) without bisection.

// Breaker defaults (BreakerConfig).
const (
	DefaultBreakerThreshold  = 5
	DefaultBreakerBackoff    = time.Second
	DefaultBreakerMaxBackoff = time.Minute
)

// BreakerConfig configures the worker's circuit breakers, one per plugin
// entry (docs/operations.md, "Circuit breakers"). Zero fields take their
// defaults.
type BreakerConfig struct {
	// Threshold is how many batches in a row a plugin must fail, for
	// reasons of its own, for its breaker to open on this worker. Default
	// DefaultBreakerThreshold (5); negative: no breakers.
	Threshold int
	// Backoff is how long a breaker stays open before the plugin is
	// re-initialised and tried again; every failed try doubles it, up to
	// MaxBackoff. Defaults DefaultBreakerBackoff (1 s) and
	// DefaultBreakerMaxBackoff (1 min, or Backoff when longer).
	Backoff    time.Duration
	MaxBackoff time.Duration
}

func (c BreakerConfig) withDefaults() (BreakerConfig, error) {
	if c.Threshold == 0 {
		c.Threshold = DefaultBreakerThreshold
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBreakerBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultBreakerMaxBackoff, c.Backoff)
	}
	switch {
	case c.Backoff < time.Millisecond:
		return c, fmt.Errorf("%w: breaker backoff %v below 1ms", ErrInvalidConfig, c.Backoff)
	case c.MaxBackoff < c.Backoff:
		return c, fmt.Errorf("%w: breaker max backoff %v below its backoff %v", ErrInvalidConfig, c.MaxBackoff, c.Backoff)
	}
	return c, nil
}

// minHoldOff is the shortest delay a batch released by a breaker gets.
const minHoldOff = 50 * time.Millisecond

// verdict is what a batch says of its plugin.
type verdict uint8

const (
	noVerdict verdict = iota // nothing (cancelled, transient, invalid configuration...)
	succeeded
	failed
)

// breaker is the state machine of one plugin entry's circuit breaker. It
// is plain state: the caller gives the time and holds the lock.
type breaker struct {
	cfg BreakerConfig

	state    fleet.BreakerState
	since    time.Time
	failures int // in a row, while closed
	opened   time.Time
	until    time.Time     // open: when a probe may run
	backoff  time.Duration // the current open period
	probing  bool          // half-open: the probe runs
	reset    bool          // half-open: the plugin was re-initialised

	opens        uint64
	lastRecovery time.Duration
	recoveredAt  time.Time
}

func newBreaker(cfg BreakerConfig, now time.Time) *breaker {
	return &breaker{cfg: cfg, state: fleet.BreakerClosed, since: now}
}

// pass is what a breaker decides for a batch about to run.
type pass struct {
	run        bool          // false: release the batch for retryIn
	retryIn    time.Duration // when run is false
	probe      bool          // the batch is the half-open breaker's probe
	reset      bool          // re-initialise the plugin before the probe
	halfOpened bool          // the breaker just went half-open
}

// admit decides whether a batch runs now; last says the batch is on its
// last delivery before it would be split unrun, and runs in any case.
func (b *breaker) admit(now time.Time, last bool) pass {
	var p pass
	if b.state == fleet.BreakerOpen && !now.Before(b.until) {
		b.state, b.since, b.probing, b.reset = fleet.BreakerHalfOpen, now, false, false
		p.halfOpened = true
	}
	switch {
	case b.state == fleet.BreakerClosed:
		p.run = true
	case b.state == fleet.BreakerHalfOpen && !b.probing:
		p.run, p.probe, p.reset = true, true, !b.reset
		b.probing, b.reset = true, true
	case last:
		p.run = true
	default:
		p.retryIn = b.retryIn(now)
	}
	return p
}

// retryIn is when a batch released now should come back: when an open
// breaker lets a probe through, or one backoff while a probe runs.
func (b *breaker) retryIn(now time.Time) time.Duration {
	if b.state == fleet.BreakerOpen {
		return b.until.Sub(now)
	}
	return b.cfg.Backoff
}

// change is a change of a breaker's state, for logs and metrics.
type change struct {
	from, to fleet.BreakerState
	recovery time.Duration // to closed: how long the plugin was out of service
	backoff  time.Duration // to open: for how long
}

// record books a batch's verdict (probe: the batch was the half-open
// breaker's probe) and returns the change of state, if any.
func (b *breaker) record(now time.Time, probe bool, v verdict) *change {
	from := b.state
	switch v {
	case noVerdict:
		if probe && b.state == fleet.BreakerHalfOpen {
			b.probing = false // the next batch probes, without a second reset
		}
	case succeeded:
		b.failures = 0
		if b.state != fleet.BreakerClosed {
			// Any success closes it: the probe's, or a batch's on its last
			// delivery, or one that ran since before the breaker opened.
			b.lastRecovery, b.recoveredAt = now.Sub(b.opened), now
			b.state, b.since, b.backoff, b.probing = fleet.BreakerClosed, now, 0, false
			return &change{from: from, to: b.state, recovery: b.lastRecovery}
		}
	case failed:
		switch {
		case b.state == fleet.BreakerClosed:
			b.failures++
			if b.failures >= b.cfg.Threshold {
				b.opens++
				b.opened = now
				b.open(now, b.cfg.Backoff)
				return &change{from: from, to: b.state, backoff: b.backoff}
			}
		case b.state == fleet.BreakerHalfOpen && probe:
			b.open(now, min(2*b.backoff, b.cfg.MaxBackoff))
			return &change{from: from, to: b.state, backoff: b.backoff}
		}
		// Open, or a batch other than the probe: the probe decides.
	}
	return nil
}

func (b *breaker) open(now time.Time, d time.Duration) {
	b.state, b.since, b.backoff, b.until, b.probing = fleet.BreakerOpen, now, d, now.Add(d), false
}

// failWhole is record for a batch that failed as a whole for a reason of
// the plugin's, before it is bisected: when the breaker is open or
// half-open, or this failure would open it, the failure is booked and
// failWhole returns true — the batch is not to be bisected. Otherwise it
// books nothing: the batch's isolation tells whether it was the plugin's
// failure or its records'.
func (b *breaker) failWhole(now time.Time, probe bool) (bool, *change) {
	if b.state == fleet.BreakerClosed && b.failures+1 < b.cfg.Threshold {
		return false, nil
	}
	return true, b.record(now, probe, failed)
}

// status returns the breaker as heartbeats carry it.
func (b *breaker) status() fleet.Breaker {
	s := fleet.Breaker{State: b.state, Since: b.since, Failures: b.failures, Opens: b.opens,
		LastRecovery: b.lastRecovery, RecoveredAt: b.recoveredAt}
	if b.state == fleet.BreakerOpen {
		s.Until = b.until
	}
	return s
}

// breakers are the worker's circuit breakers, by Manager entry, with their
// metrics. A breaker is made at its plugin's first failure, so there are
// at most as many as entries.
type breakers struct {
	cfg      BreakerConfig
	log      *slog.Logger
	now      func() time.Time
	native   map[string]plugin.Resetter // the native plugins that have Reset
	open     *prometheus.GaugeVec
	opens    *prometheus.CounterVec
	recovery *prometheus.HistogramVec

	mu sync.Mutex
	m  map[string]*breaker
}

func newBreakers(cfg BreakerConfig, plugins map[string]plugin.BatchPlugin, reg prometheus.Registerer, id string, log *slog.Logger) *breakers {
	bs := &breakers{
		cfg:    cfg,
		log:    log,
		now:    time.Now,
		native: make(map[string]plugin.Resetter),
		m:      make(map[string]*breaker),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dataflare_plugin_breaker_open",
			Help: "Plugin entries whose circuit breaker is open or half-open: out of service on this worker (a WebAssembly plugin counts its modules)."},
			[]string{"plugin"}),
		opens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataflare_plugin_breaker_opens_total",
			Help: "Times a plugin's circuit breaker opened after failed batches in a row."}, []string{"plugin"}),
		recovery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dataflare_plugin_recovery_seconds", Help: "Time a plugin was out of service: from its circuit breaker opening to its closing.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 14)}, []string{"plugin"}),
	}
	for name, p := range plugins {
		if r, ok := p.(plugin.Resetter); ok {
			bs.native[name] = r
		}
	}
	if reg != nil {
		prometheus.WrapRegistererWith(prometheus.Labels{"worker": id}, reg).MustRegister(bs.open, bs.opens, bs.recovery)
	}
	return bs
}

// ticket is one batch's passage through its plugin's breaker. Its methods
// do nothing when the worker has no breakers.
type ticket struct {
	bs          *breakers // nil: no breakers
	key, plugin string
	pass
	last        bool // on its last delivery: it runs whatever the state
	ownTimeouts bool // it runs under the worker's own BatchTimeout
	reported    bool
}

// admit returns the ticket of a batch of the Manager entry key (of plugin
// name) about to run; last says it is on its last delivery before it
// would be split unrun, ownTimeouts that it runs under the worker's own
// BatchTimeout (a timeout is then the plugin's failure).
func (bs *breakers) admit(key, name string, last, ownTimeouts bool) *ticket {
	t := &ticket{key: key, plugin: name, last: last, ownTimeouts: ownTimeouts}
	t.run = true
	if bs.cfg.Threshold < 0 || name == proto.ChainPlugin {
		// A chain's batches have no breaker: the whole-batch failure of
		// one chain says nothing of the others (docs/operations.md).
		return t
	}
	t.bs = bs
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b := bs.m[key]; b != nil {
		t.pass = b.admit(bs.now(), last)
		if t.halfOpened {
			bs.log.Info("circuit breaker half-open: the plugin is tried again", "plugin", key, "reset", t.reset)
		}
	}
	return t
}

// record books the ticket's verdict.
func (t *ticket) record(v verdict, cause error) {
	if t.bs == nil {
		return
	}
	t.reported = true
	bs := t.bs
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.m[t.key]
	if b == nil {
		if v != failed {
			return // closed, with no failures to forget
		}
		b = newBreaker(bs.cfg, bs.now())
		bs.m[t.key] = b
	}
	bs.apply(t, b.record(bs.now(), t.probe, v), cause)
}

// succeeded books a success of the plugin.
func (t *ticket) succeeded() { t.record(succeeded, nil) }

// failed books a failure of the plugin's own.
func (t *ticket) failed(cause error) { t.record(failed, cause) }

// failedWhole books a batch's failure of the plugin's own before it is
// bisected (breaker.failWhole): it returns true when the plugin is out
// of service — the batch is not to be bisected, but released for
// retryIn, or on its last delivery failed whole.
func (t *ticket) failedWhole(cause error) (out bool, retryIn time.Duration) {
	if t.bs == nil {
		return false, 0
	}
	bs := t.bs
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.m[t.key]
	if b == nil {
		b = newBreaker(bs.cfg, bs.now())
		bs.m[t.key] = b
	}
	now := bs.now()
	out, ch := b.failWhole(now, t.probe)
	if out {
		t.reported = true
	}
	bs.apply(t, ch, cause)
	return out, b.retryIn(now)
}

// finish ends the ticket: a probe that said nothing of the plugin lets
// the next batch probe.
func (t *ticket) finish() {
	if t.bs != nil && t.probe && !t.reported {
		t.record(noVerdict, nil)
	}
}

// own reports whether err, a batch's failure that settle put down to
// nothing else, is the plugin's own: any but a timeout under a job's
// deadline shorter than the worker's, which says more of the job.
func (t *ticket) own(err error) bool {
	return t.ownTimeouts || plugin.CodeOf(err) != plugin.CodeTimeout
}

// apply logs a change of state and updates the metrics; bs.mu is held.
func (bs *breakers) apply(t *ticket, ch *change, cause error) {
	switch {
	case ch == nil:
	case ch.from == fleet.BreakerClosed:
		bs.open.WithLabelValues(t.plugin).Inc()
		bs.opens.WithLabelValues(t.plugin).Inc()
		bs.log.Warn("plugin out of service on this worker: circuit breaker open", "plugin", t.key,
			"failed_in_a_row", bs.cfg.Threshold, "retry_in", ch.backoff, "err", cause)
	case ch.to == fleet.BreakerOpen:
		bs.log.Warn("probe failed: circuit breaker open again", "plugin", t.key, "retry_in", ch.backoff, "err", cause)
	case ch.to == fleet.BreakerClosed:
		bs.open.WithLabelValues(t.plugin).Dec()
		bs.recovery.WithLabelValues(t.plugin).Observe(ch.recovery.Seconds())
		bs.log.Info("plugin back in service: circuit breaker closed", "plugin", t.key, "out_of_service", ch.recovery)
	}
}

// status returns the breakers that have opened at least once, by Manager
// entry.
// forget drops the breaker of an entry the worker no longer has.
func (bs *breakers) forget(key string) {
	bs.mu.Lock()
	b := bs.m[key]
	delete(bs.m, key)
	bs.mu.Unlock()
	if b != nil && b.state != fleet.BreakerClosed {
		name, _, _ := strings.Cut(key, "@")
		bs.open.WithLabelValues(name).Dec() // it counted as out of service
	}
}

func (bs *breakers) status() map[string]fleet.Breaker {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := make(map[string]fleet.Breaker)
	for key, b := range bs.m {
		if b.opens > 0 {
			out[key] = b.status()
		}
	}
	return out
}

// entryKey is the name b's plugin has in the worker's Manager: a native
// plugin's own, "name@digest" for a WebAssembly module.
func entryKey(b *batch.Batch) string {
	if b.Digest == "" {
		return b.Plugin
	}
	return b.Plugin + "@" + b.Digest
}

// holdOff releases a batch that its plugin's circuit breaker keeps from
// running on this worker, to come back after delay: when the breaker lets
// a probe through, maybe on another worker.
func (w *Worker) holdOff(m jetstream.Msg, b *batch.Batch, delay time.Duration) {
	delay = max(delay, minHoldOff)
	w.log.Debug("batch released: its plugin is out of service here", "job", b.Job, "seq", b.Seq, "plugin", entryKey(b), "retry_in", delay)
	w.metrics.naks.WithLabelValues("breaker_open").Inc()
	if err := m.NakWithDelay(delay); err != nil {
		w.log.Debug("nak failed", "err", err)
	}
}

// outOfService is the error of the records of a batch that failed with
// cause, on its last delivery, while its plugin was out of service: a
// record error, not poison, since nothing proved them bad.
func (w *Worker) outOfService(b *batch.Batch, cause error) error {
	code := plugin.CodeOf(cause)
	if code == plugin.CodeUnknown {
		code = plugin.CodeProcessing
	}
	return &plugin.Error{Code: code, Err: cause, Message: fmt.Sprintf(
		"plugin %s is out of service on worker %s (circuit breaker open after %d batches failed in a row) and failed this batch too: %v",
		b.Plugin, w.cfg.ID, w.cfg.Breaker.Threshold, cause)}
}

// reset re-initialises the plugin of a half-open breaker's probe, when it
// is a plugin.Resetter, within timeout, and reports whether the batch is
// to run. A reset that fails for a reason of the plugin's fails the probe
// — the breaker opens again, for longer — and the batch is released,
// unless it is on its last delivery; one that fails for a reason that may
// pass says nothing, and the plugin is probed as it is.
func (w *Worker) reset(ctx context.Context, m jetstream.Msg, b *batch.Batch, t *ticket, timeout time.Duration) bool {
	r := w.resetter(b)
	if r == nil {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := callReset(rctx, r)
	switch {
	case err == nil:
		w.log.Info("plugin re-initialised for a probe", "plugin", t.key, "took", time.Since(start))
		return true
	case ctx.Err() != nil || transient(err):
		// The job was cancelled or the worker stops (the batch settles
		// so), or the failure may pass.
		w.log.Warn("plugin not re-initialised; probing it as it is", "plugin", t.key, "err", err)
		return true
	}
	if out, retryIn := t.failedWhole(err); out && !t.last {
		w.holdOff(m, b, retryIn)
		return false
	}
	return true
}

// resetter returns the Resetter of b's plugin, nil when it has none.
func (w *Worker) resetter(b *batch.Batch) plugin.Resetter {
	if b.Digest == "" {
		return w.breakers.native[b.Plugin]
	}
	w.modMu.Lock()
	defer w.modMu.Unlock()
	if m := w.modules[entryKey(b)]; m != nil {
		return m.reset
	}
	return nil
}

// callReset calls r.Reset, turning a panic into an ErrPanic error.
func callReset(ctx context.Context, r plugin.Resetter) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = plugin.PanicError(v)
		}
	}()
	return r.Reset(ctx)
}
