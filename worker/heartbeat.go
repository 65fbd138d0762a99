package worker

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/pool"
)

// heartbeats sends a heartbeat every interval until ctx is cancelled.
func (w *Worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	w.sendHeartbeat(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.sendHeartbeat(false)
		}
	}
}

// sendHeartbeat publishes the worker's state; leaving marks the last one.
func (w *Worker) sendHeartbeat(leaving bool) {
	hb := w.heartbeat(leaving)
	b, err := json.Marshal(hb)
	if err != nil {
		w.log.Error("heartbeat not encoded", "err", err)
		return
	}
	if err := w.nc.Publish(proto.HeartbeatSubject(w.cfg.ID), b); err != nil {
		w.log.Debug("heartbeat not sent", "err", err)
		return
	}
	w.metrics.heartbeats.Inc()
}

// heartbeat assembles the worker's heartbeat.
func (w *Worker) heartbeat(leaving bool) *proto.Heartbeat {
	status := w.mgr.SystemStatus()
	hb := &proto.Heartbeat{
		Worker:   w.cfg.ID,
		Host:     hostname,
		PID:      os.Getpid(),
		Seq:      w.hbSeq.Add(1),
		Started:  w.started,
		At:       time.Now(),
		Interval: w.cfg.Heartbeat,
		Parallel: w.cfg.Parallel,
		InFlight: int(w.inflight.Load()),
		Draining: w.draining.Load(),
		Leaving:  leaving,
		Pool:     poolStats(&status.Pool),
		Runtime:  status.Runtime,
	}
	peak := math.Float64frombits(w.peakPressure.Swap(0))
	hb.Pressure = pressure(max(status.Pool.Pressure, peak), status.Runtime.HeapBytes)
	hb.Plugins = w.pluginBeats()
	return hb
}

// pluginBeats returns the plugins' part of a heartbeat, sorted by name: a
// native plugin as it is; a WebAssembly plugin with the modules of it the
// worker ran (one Manager entry each) merged, their digests listed and the
// cost model of the one that ran last (the one new batches pin). A plugin
// whose circuit breaker has opened carries it (its modules' merged).
func (w *Worker) pluginBeats() []proto.PluginBeat {
	w.modMu.Lock()
	modules := maps.Clone(w.modules)
	w.modMu.Unlock()
	breakers := w.breakers.status()
	byName := make(map[string]*proto.PluginBeat)
	newest := make(map[string]time.Time) // the last batch of a plugin's modules
	for entry, m := range w.mgr.AllMetrics() {
		est, _ := w.mgr.Estimate(entry)
		br, hasBreaker := breakers[entry]
		mod, isModule := modules[entry]
		if !isModule {
			beat := &proto.PluginBeat{Name: entry, Native: true, Metrics: m, Estimate: fleet.Estimate(est)}
			if hasBreaker {
				beat.Breaker = &br
			}
			byName[entry] = beat
			continue
		}
		m.Name = mod.name
		beat := byName[mod.name]
		switch {
		case beat == nil:
			beat = &proto.PluginBeat{Name: mod.name, Metrics: m, Estimate: fleet.Estimate(est)}
			byName[mod.name] = beat
		default:
			beat.Metrics.Merge(&m)
			if m.LastBatch.After(newest[mod.name]) {
				beat.Estimate = fleet.Estimate(est)
			}
		}
		if m.LastBatch.After(newest[mod.name]) {
			newest[mod.name] = m.LastBatch
		}
		beat.Digests = append(beat.Digests, mod.digest)
		switch {
		case !hasBreaker:
		case beat.Breaker == nil:
			beat.Breaker = &br
		default:
			beat.Breaker.Merge(&br)
		}
	}
	beats := make([]proto.PluginBeat, 0, len(byName))
	for _, b := range byName {
		slices.Sort(b.Digests)
		beats = append(beats, *b)
	}
	slices.SortFunc(beats, func(a, b proto.PluginBeat) int { return strings.Compare(a.Name, b.Name) })
	return beats
}

// notePressure remembers the buffer pool's pressure now if it is the
// highest since the last heartbeat, which reports that peak: the pressure
// of the heartbeat's own instant alone may fall between two large batches.
// A worker calls it once a batch's results are stored, its output still
// held.
func (w *Worker) notePressure() {
	p := w.mgr.Pool().Pressure()
	for {
		old := w.peakPressure.Load()
		if p <= math.Float64frombits(old) || w.peakPressure.CompareAndSwap(old, math.Float64bits(p)) {
			return
		}
	}
}

// overBudget reports whether the buffer pool holds more than its budget
// (never without one): the batches running then take no company until
// they free some, whatever size the next batches are cut at.
func (w *Worker) overBudget() bool { return w.mgr.Pool().Pressure() >= 1 }

// pressure is the worker's memory pressure, 0..1: the pool's use of its
// budget, or the heap's share of the Go memory limit when one is set,
// whichever is higher.
func pressure(pool float64, heap uint64) float64 {
	p := pool
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit < math.MaxInt64 {
		p = max(p, float64(heap)/float64(limit))
	}
	return min(max(p, 0), 1)
}

// poolStats is the pool's statistics as heartbeats carry them.
func poolStats(s *pool.Stats) fleet.PoolStats {
	ps := fleet.PoolStats{
		Tiers:       make([]fleet.PoolTier, 0, len(s.Tiers)),
		Hits:        s.Total.Hits,
		Misses:      s.Total.Misses,
		HitRate:     s.Total.HitRate,
		Efficiency:  s.Total.Efficiency,
		InUseBytes:  s.Total.InUseBytes,
		IdleBytes:   s.Total.IdleBytes,
		OwnedBytes:  s.OwnedBytes,
		BudgetBytes: s.BudgetBytes,
		Errors:      s.Errors.Total,
		Pressure:    s.Pressure,
	}
	for _, t := range s.Tiers {
		ps.Tiers = append(ps.Tiers, fleet.PoolTier{Tier: t.Tier, Size: t.Size, Hits: t.Hits, Misses: t.Misses,
			HitRate: t.HitRate, InUse: t.InUse, InUseBytes: t.InUseBytes, Idle: t.Idle, IdleBytes: t.IdleBytes})
	}
	return ps
}
