package worker

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"runtime/debug"
	"slices"
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
	hb.Pressure = pressure(status.Pool.Pressure, status.Runtime.HeapBytes)
	var loaded map[string][]string
	if w.cfg.Modules != nil {
		loaded = w.cfg.Modules.Loaded()
	}
	for name, m := range w.mgr.AllMetrics() {
		beat := proto.PluginBeat{Name: name, Metrics: m}
		if w.native[name] {
			beat.Native = true
		} else {
			if d, ok := w.wasmPluginOf(name); ok {
				beat.Name = d
				beat.Metrics.Name = d
			}
			beat.Digests = loaded[beat.Name]
		}
		est, _ := w.mgr.Estimate(name)
		beat.Estimate = fleet.Estimate(est)
		hb.Plugins = append(hb.Plugins, beat)
	}
	slices.SortFunc(hb.Plugins, func(a, b proto.PluginBeat) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return hb
}

// wasmPluginOf returns the plugin name a Manager name stands for when it is
// a WebAssembly dispatcher.
func (w *Worker) wasmPluginOf(managerName string) (string, bool) {
	w.wasmMu.Lock()
	defer w.wasmMu.Unlock()
	for p, n := range w.wasm {
		if n == managerName {
			return p, true
		}
	}
	return "", false
}

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
