package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/sizer"
)

// forgetAfter is how long a dead worker stays in the fleet view.
const forgetAfter = time.Minute

// view is a coordinator's view of the workers, rebuilt from heartbeats,
// and the batch-size controllers fed by them.
type view struct {
	cfg     Config
	metrics *metrics

	mu      sync.Mutex
	workers map[string]*workerEntry
	sizers  map[string]*sizer.Controller
	beat    chan struct{} // closed and replaced on every heartbeat
}

type workerEntry struct {
	hb   proto.Heartbeat
	seen time.Time // on the coordinator's clock
}

func newView(cfg Config, m *metrics) *view {
	return &view{
		cfg:     cfg,
		metrics: m,
		workers: make(map[string]*workerEntry),
		sizers:  make(map[string]*sizer.Controller),
		beat:    make(chan struct{}),
	}
}

// onHeartbeat records a worker's heartbeat.
//
// A heartbeat speaks for the worker its subject names (df.hb.<worker>: the
// subject is what NATS permissions govern), not for whatever its body
// says; one whose body names another worker, or that lists more plugins
// than a worker can have or plugins with malformed names, is ignored.
func (c *Coordinator) onHeartbeat(m *nats.Msg) {
	var hb proto.Heartbeat
	err := json.Unmarshal(m.Data, &hb)
	if err == nil {
		err = checkHeartbeat(&hb, proto.LastToken(m.Subject))
	}
	if err != nil {
		c.metrics.badHeartbeats.Inc()
		c.log.Warn("malformed heartbeat ignored", "subject", m.Subject, "err", err)
		return
	}
	c.metrics.heartbeats.Inc()
	c.view.observe(hb, c.cfg.Clock())
}

// maxBeatPlugins bounds the plugins one heartbeat may list.
const maxBeatPlugins = 1024

// checkHeartbeat returns why hb, received on the subject of worker, is not
// to be believed.
func checkHeartbeat(hb *proto.Heartbeat, worker string) error {
	switch {
	case !proto.ValidName(worker) || hb.Worker != worker:
		return fmt.Errorf("heartbeat of worker %q on the subject of %q", hb.Worker, worker)
	case len(hb.Plugins) > maxBeatPlugins:
		return fmt.Errorf("heartbeat lists %d plugins, more than %d", len(hb.Plugins), maxBeatPlugins)
	}
	for _, p := range hb.Plugins {
		if !proto.ValidName(p.Name) {
			return fmt.Errorf("heartbeat lists plugin %q", p.Name)
		}
		if p.Breaker != nil && !p.Breaker.State.Valid() {
			return fmt.Errorf("heartbeat gives plugin %s a circuit breaker %q", p.Name, p.Breaker.State)
		}
	}
	return nil
}

func (f *view) observe(hb proto.Heartbeat, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hb.Leaving {
		delete(f.workers, hb.Worker)
		for _, s := range f.sizers {
			s.Forget(hb.Worker)
		}
	} else {
		if e, ok := f.workers[hb.Worker]; ok && hb.Seq != 0 && hb.Seq < e.hb.Seq && hb.Started.Equal(e.hb.Started) {
			return // out of order
		}
		f.workers[hb.Worker] = &workerEntry{hb: hb, seen: now}
		for _, p := range hb.Plugins {
			f.sizerLocked(p.Name).Report(hb.Worker, sizer.Estimate(p.Estimate))
		}
	}
	// The fleet's pressure is its most pressed live worker's.
	pressure := 0.0
	for id, e := range f.workers {
		switch f.healthLocked(e, now) {
		case fleet.Dead:
			if now.Sub(e.seen) > forgetAfter {
				delete(f.workers, id)
			}
			continue
		}
		pressure = max(pressure, e.hb.Pressure)
	}
	for _, s := range f.sizers {
		s.SetPressure(pressure)
	}
	f.updateGaugesLocked(now)
	close(f.beat)
	f.beat = make(chan struct{})
}

func (f *view) sizerLocked(name string) *sizer.Controller {
	s, ok := f.sizers[name]
	if !ok {
		s, _ = sizer.New(f.cfg.Sizer) // validated in New
		f.sizers[name] = s
	}
	return s
}

func (f *view) healthLocked(e *workerEntry, now time.Time) fleet.Health {
	interval := e.hb.Interval
	if interval <= 0 {
		interval = f.cfg.Heartbeat
	}
	age := now.Sub(e.seen)
	switch {
	case age > fleet.DeadAfter*interval:
		return fleet.Dead
	case age > fleet.SuspectAfter*interval:
		return fleet.Suspect
	case e.hb.Draining:
		return fleet.Draining
	}
	return fleet.Healthy
}

// hasNative reports whether a live worker has a native plugin called name.
func (f *view) hasNative(name string) bool {
	now := f.cfg.Clock()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.workers {
		if f.healthLocked(e, now) == fleet.Dead {
			continue
		}
		for _, p := range e.hb.Plugins {
			if p.Native && p.Name == name {
				return true
			}
		}
	}
	return false
}

// batchSize returns the size to cut plugin's batches at, given the average
// encoded record size (0: unknown).
func (f *view) batchSize(plugin string, avgRecordBytes int) int {
	f.mu.Lock()
	s := f.sizerLocked(plugin)
	f.mu.Unlock()
	n := s.Size(avgRecordBytes)
	f.metrics.batchSize.WithLabelValues(plugin).Set(float64(n))
	return n
}

// waitHeardAll waits, when the coordinator started (at started) less than
// a heartbeat and a half ago, until it has been up that long — by then
// every live worker has announced its plugins — and reports whether it
// waited. It returns early when ctx ends.
func (f *view) waitHeardAll(ctx context.Context, started time.Time) bool {
	wait := started.Add(f.cfg.Heartbeat * 3 / 2).Sub(f.cfg.Clock())
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// waitForWorkers returns nil when a worker is healthy. Just after the
// coordinator started it waits up to StartupGrace for a first heartbeat;
// otherwise it answers at once.
func (f *view) waitForWorkers(ctx context.Context, started time.Time) error {
	deadline := started.Add(f.cfg.StartupGrace)
	for {
		now := f.cfg.Clock()
		f.mu.Lock()
		for _, e := range f.workers {
			if f.healthLocked(e, now) == fleet.Healthy {
				f.mu.Unlock()
				return nil
			}
		}
		beat := f.beat
		f.mu.Unlock()
		wait := deadline.Sub(now)
		if wait <= 0 {
			return proto.Errorf(plugin.CodeNoWorkers, "no workers: no healthy worker has sent a heartbeat in the last %v",
				fleet.SuspectAfter*f.cfg.Heartbeat)
		}
		t := time.NewTimer(wait)
		select {
		case <-beat:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return proto.Errorf(plugin.CodeNoWorkers, "no workers: %v", ctx.Err())
		}
		t.Stop()
	}
}

// snapshot returns the workers and plugins as the fleet sees them now.
func (f *view) snapshot(now time.Time) ([]fleet.Worker, []fleet.Plugin, []fleet.WorkerReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	plugins := map[string]*fleet.Plugin{}
	var workers []fleet.Worker
	var reports []fleet.WorkerReport
	for _, e := range f.workers {
		h := f.healthLocked(e, now)
		ws := fleet.Worker{
			ID: e.hb.Worker, Host: e.hb.Host, Health: h, LastHeartbeat: e.hb.At, Age: now.Sub(e.seen),
			Started: e.hb.Started, Parallel: e.hb.Parallel, InFlight: e.hb.InFlight, Pressure: e.hb.Pressure,
			Goroutines: e.hb.Runtime.Goroutines, HeapBytes: e.hb.Runtime.HeapBytes,
		}
		wr := fleet.WorkerReport{ID: e.hb.Worker, Pool: e.hb.Pool, Runtime: e.hb.Runtime}
		for _, p := range e.hb.Plugins {
			ws.Plugins = append(ws.Plugins, p.Name)
			ws.Processed += p.Metrics.TotalProcessed
			if p.Breaker != nil {
				ws.Breakers = append(ws.Breakers, fleet.PluginBreaker{Plugin: p.Name, Breaker: *p.Breaker})
			}
			wr.Plugins = append(wr.Plugins, p.Metrics)
			if h == fleet.Dead {
				continue
			}
			fp := plugins[p.Name]
			if fp == nil {
				fp = &fleet.Plugin{Name: p.Name}
				plugins[p.Name] = fp
			}
			fp.Native = fp.Native || p.Native
			for _, d := range p.Digests {
				if !slices.Contains(fp.Digests, d) {
					fp.Digests = append(fp.Digests, d)
				}
			}
			fp.Workers++
			m := p.Metrics
			fp.Metrics.Merge(&m)
			if br := p.Breaker; br != nil {
				if fp.Breaker == nil {
					fp.Breaker = &fleet.Breaker{}
				}
				fp.Breaker.Merge(br)
				if br.State != fleet.BreakerClosed {
					fp.OutOfService++
				}
			}
		}
		slices.Sort(ws.Plugins)
		workers = append(workers, ws)
		if h != fleet.Dead {
			reports = append(reports, wr)
		}
	}
	out := make([]fleet.Plugin, 0, len(plugins))
	for name, s := range f.sizers {
		fp := plugins[name]
		if fp == nil {
			fp = &fleet.Plugin{Name: name}
		}
		fp.Sizer = sizerStatus(s.Snapshot())
		fp.BatchSize = fp.Sizer.Size
		fp.Metrics.BatchSize = fp.BatchSize
		plugins[name] = fp
	}
	for _, fp := range plugins {
		out = append(out, *fp)
	}
	slices.SortFunc(workers, func(a, b fleet.Worker) int { return compareStrings(a.ID, b.ID) })
	slices.SortFunc(out, func(a, b fleet.Plugin) int { return compareStrings(a.Name, b.Name) })
	slices.SortFunc(reports, func(a, b fleet.WorkerReport) int { return compareStrings(a.ID, b.ID) })
	return workers, out, reports
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (f *view) updateGaugesLocked(now time.Time) {
	counts := map[fleet.Health]int{}
	for _, e := range f.workers {
		counts[f.healthLocked(e, now)]++
	}
	for _, h := range []fleet.Health{fleet.Healthy, fleet.Suspect, fleet.Dead, fleet.Draining} {
		f.metrics.workers.WithLabelValues(h.String()).Set(float64(counts[h]))
	}
}

// status answers SubjectStatus.
func (c *Coordinator) status(ctx context.Context) (*fleet.Status, error) {
	now := c.cfg.Clock()
	workers, plugins, _ := c.view.snapshot(now)
	st := &fleet.Status{Coordinator: c.cfg.ID, At: now, Workers: workers, Plugins: plugins}
	st.Queues, st.PendingBatches, st.ResultMessages, st.DeadLetters = c.counts.get(ctx, c)
	return st, nil
}

// streamMsgs returns how many messages stream name holds, 0 when it
// cannot be read.
func (c *Coordinator) streamMsgs(ctx context.Context, name string) uint64 {
	if info := c.streamInfo(ctx, name); info != nil {
		return info.State.Msgs
	}
	return 0
}

// streamInfo returns stream name's configuration and state, nil when it
// cannot be read.
func (c *Coordinator) streamInfo(ctx context.Context, name string) *jetstream.StreamInfo {
	s, err := c.js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	return s.CachedInfo() // fresh: Stream just asked for it
}

// report answers SubjectReport.
func (c *Coordinator) report(ctx context.Context) (*fleet.Report, error) {
	st, err := c.status(ctx)
	if err != nil {
		return nil, err
	}
	_, _, workers := c.view.snapshot(st.At)
	r := &fleet.Report{GeneratedAt: st.At, Workers: workers, Fleet: *st}
	for _, p := range st.Plugins {
		m := p.Metrics
		if m.Name == "" {
			m.Name = p.Name
		}
		r.Plugins = append(r.Plugins, m)
	}
	r.Total = fleet.Total(r.Plugins)
	return r, nil
}

// sizerStatus is a batch sizer's state as a status shows it.
func sizerStatus(s sizer.Status) fleet.SizerStatus {
	return fleet.SizerStatus{Size: s.Size, Target: s.Target, Bound: s.Bound, Estimate: fleet.Estimate(s.Estimate),
		Sources: s.Sources, Pressure: s.Pressure, Adjustments: s.Adjustments, LastAdjust: s.LastAdjust}
}
