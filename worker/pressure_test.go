package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/sizer"
	"github.com/dataflare/dataflare/worker"
)

// A worker whose buffer pool runs past its budget reports the pressure in
// its heartbeats, and the coordinators shrink the batches they ask for:
// the sizer's bound becomes "pressure". Here the budget is 1 MiB and the
// worker holds four batches of compressed log lines decompressed into
// its pool (about 800 KB each) while the delay plugin runs them.
func TestPoolPressureShrinksBatches(t *testing.T) {
	cfg := pool.DefaultConfig()
	cfg.Budget = 1 << 20
	bufs, err := pool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bufs.Close() })
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Pool: bufs, Parallel: 4}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recs := make([]plugin.Record, 4000)
	for i := range recs {
		v := make([]byte, 0, 8<<10)
		for len(v) < 8<<10-128 {
			v = fmt.Appendf(v, "2026-12-03T10:00:%02d.%03dZ info api request method=GET path=/v1/orders/%d status=200\n", i%60, i%1000, i)
		}
		recs[i].Value = v
	}
	job, err := f.Client().Submit(ctx, "delay", client.Records(recs), client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	var last string
	err = poll.Until(ctx, 30*time.Second, func() error {
		st, err := f.Client().SystemStatus(ctx)
		if err != nil {
			return err
		}
		for _, p := range st.Plugins {
			if p.Name == "delay" {
				last = fmt.Sprintf("batch size %d, sizer %+v", p.BatchSize, p.Sizer)
				if p.Sizer.Bound == sizer.BoundPressure && p.Sizer.Pressure >= sizer.PressureKnee {
					return nil
				}
			}
		}
		return fmt.Errorf("no pressure yet: %s", last)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("under pressure: %s", last)
	n := 0
	for o, err := range job.Results() {
		if err != nil || o.Err != nil {
			t.Fatalf("record %d: %v %v", o.Index, err, o.Err)
		}
		n++
	}
	if n != len(recs) {
		t.Errorf("%d results of %d", n, len(recs))
	}
}
