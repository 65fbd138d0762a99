package e2e

import (
	"context"
	"testing"
	"time"
)

func TestMillionRecordsInOrder(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	f := newFleetProcs(t)
	f.coordinator()
	f.worker()
	f.worker()
	f.waitHealthy(2)
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	job, err := c.Submit(ctx, "upper", inputs(n, nil))
	if err != nil {
		t.Fatal(err)
	}
	tl := collect(t, job, n, upper)
	d := time.Since(start)
	t.Logf("%d records through 2 worker processes in %v (%.0f records/s): %v", n, d.Round(time.Millisecond), float64(n)/d.Seconds(), tl)
	requireOracle(t, tl, n)
}
