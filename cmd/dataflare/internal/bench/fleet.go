package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/plugin"
)

// fleetRound runs the first n records through the fleet as one job of plugin name (fixed
// batch size when size > 0, else the sizer's) and reads every result. It
// returns the job's time, from Submit to the last result handed out (and
// the fleet told the results were read), and appends sampled record
// latencies to lat. Every result is checked: an error or a wrong value
// fails the round.
func (e *env) fleetRound(ctx context.Context, name string, n, size int, lat []time.Duration) (time.Duration, []time.Duration, error) {
	if n > e.in.n {
		return 0, lat, fmt.Errorf("bench: a job of %d records, over the %d made", n, e.in.n)
	}
	start := time.Now()
	src := func(yield func(plugin.Record, error) bool) {
		for i := range n {
			if i%sampleStride == 0 {
				e.tin[i/sampleStride].Store(int64(time.Since(start)))
			}
			if !yield(plugin.Record{Value: e.in.value(i)}, nil) {
				return
			}
		}
	}
	opts := []client.SubmitOption{client.WithConfig(e.cfg.PluginConfig)}
	if size > 0 {
		opts = append(opts, client.WithBatchSize(size))
	}
	job, err := e.cl.Submit(ctx, name, src, opts...)
	if err != nil {
		return 0, lat, fmt.Errorf("bench: submit %s: %w", name, err)
	}
	got := 0
	for o, err := range job.Results() {
		if err != nil {
			return 0, lat, fmt.Errorf("bench: job of %s: %w", name, err)
		}
		if o.Index%sampleStride == 0 {
			lat = append(lat, time.Since(start)-time.Duration(e.tin[o.Index/sampleStride].Load()))
			if o.Err != nil || o.Dropped || !e.check(e.in.value(int(o.Index)), o.Value) {
				return 0, lat, fmt.Errorf("bench: %s: record %d: wrong result (err %v, dropped %v, %q)", name, o.Index, o.Err, o.Dropped, o.Value)
			}
		} else if o.Err != nil {
			return 0, lat, fmt.Errorf("bench: %s: record %d: %w", name, o.Index, o.Err)
		}
		got++
	}
	elapsed := time.Since(start)
	if got != n {
		return 0, lat, fmt.Errorf("bench: %s: %d results for %d records", name, got, n)
	}
	return elapsed, lat, nil
}

// batchSizeOf returns the batch size the fleet's sizer chooses for plugin
// name now.
func (e *env) batchSizeOf(ctx context.Context, name string) (int, error) {
	st, err := e.cl.SystemStatus(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: status: %w", err)
	}
	for _, p := range st.Plugins {
		if p.Name == name {
			return p.BatchSize, nil
		}
	}
	return 0, fmt.Errorf("bench: status: no plugin %s", name)
}

// settleQuiet is how long the sizer's choice must stay put to count as
// settled: a few of its adjustment intervals (one heartbeat each).
const settleQuiet = 3 * time.Second

// settle runs jobs of plugin name until the sizer's batch size has not
// changed for settleQuiet, or until the warm-up time is spent, and returns
// the size.
func (e *env) settle(ctx context.Context, name string, deadline time.Time) (int, error) {
	n := min(e.in.n, 100_000)
	size, changed := -1, time.Now()
	for {
		if _, _, err := e.fleetRound(ctx, name, n, 0, nil); err != nil {
			return 0, err
		}
		now, err := e.batchSizeOf(ctx, name)
		if err != nil {
			return 0, err
		}
		if now != size {
			size, changed = now, time.Now()
			e.cfg.Log.Info("warm-up: batch size", "plugin", name, "size", size)
		}
		if time.Since(changed) >= settleQuiet || time.Now().After(deadline) {
			return size, nil
		}
	}
}
