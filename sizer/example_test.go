package sizer_test

import (
	"fmt"
	"time"

	"github.com/dataflare/dataflare/sizer"
)

func ExampleController() {
	// A hand-driven clock keeps the example deterministic; a coordinator
	// leaves Clock nil (time.Now).
	now := time.Unix(0, 0)
	ctl, err := sizer.New(sizer.Config{Max: 10000, Clock: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("before any heartbeat:", ctl.Size(100))

	// Two workers run a plugin that costs 2 ms per batch plus 50 µs per
	// record, and send their estimates in their heartbeats, once a second.
	// The size moves at most once per heartbeat interval, at most ×2,
	// towards the size that takes 100 ms: (100 ms − 2 ms) / 50 µs = 1960.
	// (The first move comes as soon as the first estimate arrives.)
	workers := []*sizer.Estimator{sizer.NewEstimator(0), sizer.NewEstimator(0)}
	var sizes []int
	for range 7 {
		for i, est := range workers {
			for range 5 {
				n := ctl.Size(100)
				est.Observe(n, n*100, 2*time.Millisecond+time.Duration(n)*50*time.Microsecond)
			}
			ctl.Report(fmt.Sprint("w", i), est.Estimate())
		}
		now = now.Add(time.Second)
		sizes = append(sizes, ctl.Size(100))
	}
	fmt.Println(sizes)

	// Memory pressure above 0.8 shrinks the batches at once.
	ctl.SetPressure(0.9)
	fmt.Println("under pressure 0.9:", ctl.Size(100))
	// Output:
	// before any heartbeat: 100
	// [400 800 1600 1956 1956 1956 1956]
	// under pressure 0.9: 978
}

func ExampleSeedRule() {
	// The original library's rule, as a BatchPlugin's OptimizeBatchSize
	// would return it: 20% smaller when a batch takes over 100 ms.
	fmt.Println(sizer.SeedRule(500, 150*time.Millisecond, 3333))
	// 20% larger when the throughput is under 1000 records/s.
	fmt.Println(sizer.SeedRule(100, 50*time.Millisecond, 500))
	// Output:
	// 400
	// 120
}
