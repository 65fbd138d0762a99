package manager

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/hist"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/sizer"
)

// HealthChecker is implemented by a plugin that can check itself. When the
// plugin given to Register or RegisterBatch has this method, HealthCheck
// calls it: an error marks the plugin fleet.Failed until a later check passes.
type HealthChecker interface {
	HealthCheck(ctx context.Context) error
}

// entry is one registered plugin and everything measured of it.
type entry struct {
	name string
	bp   plugin.BatchPlugin
	orig any // what was registered, for HealthChecker and io.Closer
	sem  chan struct{}
	est  *sizer.Estimator
	ctl  *sizer.Controller
	size atomic.Int64 // the current batch size

	stater plugin.Stater     // bp's State; nil when it has none (Ready)
	hinter plugin.BatchSizer // bp's OptimizeBatchSize; nil when it has none (no opinion)

	recordBytes atomic.Int64 // average record size of the last call
	lastTune    atomic.Int64 // when the controller was last consulted, Unix ns

	inflight atomic.Int64
	calls    sync.WaitGroup // ProcessBatch calls using the entry; Add under Manager.mu

	registered time.Time

	mu        sync.Mutex
	tot       totals
	batchHist hist.Histogram
	recHist   hist.Histogram
	recent    window       // never reset
	health    window       // reset at every change of verdict
	verdict   fleet.Health // fleet.Healthy or fleet.Degraded; fleet.Failed comes from checks
	since     time.Time
	reason    string
	checkErr  error // the last HealthChecker error, nil when it passed
	lastBatch time.Time
}

type totals struct {
	processed, failed, dropped, canceled uint64
	batches, batchErrors, panics         uint64
}

// outcome is what one plugin call did, for the books.
type outcome struct {
	records    int
	failed     int
	dropped    int
	panics     int
	batchErr   bool
	canceled   bool
	latency    time.Duration // only when !batchErr
	recordSize int           // bytes of the call's records
}

// change is a change of verdict, to log outside the lock.
type change struct {
	to     fleet.Health
	reason string
}

// record books o at now and re-evaluates the verdict; it returns the
// change, if any.
func (e *entry) record(now time.Time, o outcome, hc *HealthConfig) *change {
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.canceled {
		e.tot.canceled += uint64(o.records)
		return nil
	}
	n := uint64(o.records)
	e.tot.processed += n
	e.tot.batches++
	e.tot.panics += uint64(o.panics)
	c := counts{records: n, panics: uint64(o.panics)}
	if o.batchErr {
		e.tot.batchErrors++
		e.tot.failed += n
		c.failed = n
	} else {
		e.tot.failed += uint64(o.failed)
		e.tot.dropped += uint64(o.dropped)
		c.failed = uint64(o.failed)
		e.batchHist.Record(o.latency)
		if o.records > 0 {
			e.recHist.RecordN(o.latency/time.Duration(o.records), n)
		}
	}
	e.lastBatch = now
	e.recent.add(now, c)
	e.health.add(now, c)
	if e.verdict == fleet.Healthy && c.failed == 0 && c.panics == 0 {
		return nil // a clean call cannot degrade a healthy plugin
	}
	return e.evaluate(now, hc)
}

// evaluate applies the health rules (see HealthConfig); e.mu is held.
func (e *entry) evaluate(now time.Time, hc *HealthConfig) *change {
	c, _ := e.health.sum(now)
	rate := ratio(c.failed, c.records)
	var ch change
	switch {
	case e.verdict == fleet.Healthy && hc.MaxPanics > 0 && c.panics >= uint64(hc.MaxPanics):
		ch = change{fleet.Degraded, fmt.Sprintf("%d panics within %v", c.panics, e.health.span)}
	case e.verdict == fleet.Healthy && c.records >= uint64(hc.MinRecords) && rate >= hc.ErrorRate:
		ch = change{fleet.Degraded, fmt.Sprintf("error rate %.0f%% over %d records within %v", rate*100, c.records, e.health.span)}
	case e.verdict == fleet.Degraded && c.panics == 0 && c.records >= uint64(hc.MinRecords) && rate < hc.RecoverBelow:
		ch = change{fleet.Healthy, fmt.Sprintf("error rate %.0f%% over %d records", rate*100, c.records)}
	case e.verdict == fleet.Degraded && c.panics == 0 && c.failed == 0 && now.Sub(e.since) >= e.health.span:
		ch = change{fleet.Healthy, fmt.Sprintf("no failure for %v", e.health.span)}
	default:
		return nil
	}
	e.verdict, e.since = ch.to, now
	e.reason = ""
	if ch.to == fleet.Degraded {
		e.reason = ch.reason
	}
	e.health.reset()
	return &ch
}

// state returns the plugin's state as the Manager sees it, and its health
// with the reason; e.mu is held.
func (e *entry) state() (plugin.State, fleet.Health, string) {
	s := e.pluginState()
	switch {
	case s == plugin.Failed || s == plugin.Stopped:
		return s, fleet.Failed, "plugin reports " + s.String()
	case e.checkErr != nil:
		return plugin.Failed, fleet.Failed, "health check: " + e.checkErr.Error()
	case s == plugin.Uninitialized:
		return s, fleet.Degraded, "plugin reports " + s.String()
	case e.verdict == fleet.Degraded || s == plugin.Degraded:
		reason := e.reason
		if e.verdict != fleet.Degraded {
			reason = "plugin reports degraded"
		}
		return plugin.Degraded, fleet.Degraded, reason
	case e.inflight.Load() > 0:
		return plugin.Running, fleet.Healthy, ""
	}
	return plugin.Ready, fleet.Healthy, ""
}

// metrics returns a snapshot at now; e.mu is held.
func (e *entry) metrics(now time.Time) fleet.PluginMetrics {
	st, h, reason := e.state()
	rc, from := e.recent.sum(now)
	if from.Before(e.registered) {
		from = e.registered
	}
	span := now.Sub(from)
	pm := fleet.PluginMetrics{
		Name:            e.name,
		Info:            e.info(),
		State:           st,
		Health:          h,
		HealthReason:    reason,
		TotalProcessed:  e.tot.processed,
		Succeeded:       e.tot.processed - e.tot.failed,
		Failed:          e.tot.failed,
		Dropped:         e.tot.dropped,
		Canceled:        e.tot.canceled,
		Batches:         e.tot.batches,
		BatchErrors:     e.tot.batchErrors,
		Panics:          e.tot.panics,
		Window:          e.recent.span,
		WindowSpan:      max(span, 0),
		RecentProcessed: rc.records,
		RecentFailed:    rc.failed,
		BatchSize:       int(e.size.Load()),
		InFlight:        int(e.inflight.Load()),
		BatchHistogram:  e.batchHist,
		RecordHistogram: e.recHist,
		LastBatch:       e.lastBatch,
	}
	if span > 0 {
		pm.Throughput = float64(rc.records) / span.Seconds()
	}
	pm.Derive()
	return pm
}

// healthOf returns the entry's health entry at now; e.mu is held.
func (e *entry) healthOf(now time.Time) fleet.PluginHealth {
	st, h, reason := e.state()
	c, _ := e.health.sum(now)
	return fleet.PluginHealth{
		Name: e.name, Health: h, State: st, Reason: reason, Since: e.since,
		RecentProcessed: c.records, RecentFailed: c.failed, RecentPanics: c.panics,
	}
}

// pluginState returns the plugin's own State, plugin.Ready when it has no
// State method; a panic in it reads as plugin.Failed.
func (e *entry) pluginState() (s plugin.State) {
	if e.stater == nil {
		return plugin.Ready
	}
	defer func() {
		if recover() != nil {
			s = plugin.Failed
		}
	}()
	return e.stater.State()
}

// hint asks the plugin for its preferred batch size; no OptimizeBatchSize
// method, or a panic in it, counts as no opinion (0).
func (e *entry) hint(n int, lat time.Duration, thr float64) (h int) {
	if e.hinter == nil {
		return 0
	}
	defer func() {
		if recover() != nil {
			h = 0
		}
	}()
	return e.hinter.OptimizeBatchSize(n, lat, thr)
}

// info returns the plugin's Info; a panic in it gives an Info with only the
// registered name.
func (e *entry) info() (in plugin.Info) {
	defer func() {
		if recover() != nil {
			in = plugin.Info{Name: e.name}
		}
	}()
	return e.bp.Info()
}

// ratio is a / b, 0 when b is 0.
func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
