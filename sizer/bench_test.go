package sizer

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkControllerSize: the coordinator asks for every batch it cuts,
// with 3 (or 32) workers reporting, one heartbeat every 32 calls, and the
// clock moving 1 ms every 100 calls.
func BenchmarkControllerSize(b *testing.B) {
	for _, workers := range []int{3, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			clock := newFakeClock()
			c, err := New(Config{Max: 10000, Clock: clock.Now})
			if err != nil {
				b.Fatal(err)
			}
			names := make([]string, workers)
			ests := make([]Estimate, workers)
			for i := range workers {
				names[i] = fmt.Sprint("w", i)
				ests[i] = Estimate{Fixed: 2 * ms, PerRecord: time.Duration(10+i) * us, Samples: 50, RecordBytes: 100}
				c.Report(names[i], ests[i])
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c.Size(100) < 1 {
					b.Fatal("size below 1")
				}
				i++
				if i%32 == 0 {
					w := (i / 32) % workers
					c.Report(names[w], ests[w])
				}
				if i%100 == 0 {
					clock.Advance(time.Millisecond)
				}
			}
		})
	}
}

// BenchmarkEstimatorObserve: the worker records every batch it runs.
func BenchmarkEstimatorObserve(b *testing.B) {
	e := NewEstimator(0)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = (n + 37) % 1000
		e.Observe(100+n, 100*(100+n), time.Duration(20_000+160*n)*time.Microsecond/1000)
	}
}

// BenchmarkEstimatorEstimate: the worker builds its heartbeat.
func BenchmarkEstimatorEstimate(b *testing.B) {
	e := NewEstimator(0)
	for i := range 100 {
		e.Observe(100+i, 1000, time.Duration(i)*us)
	}
	b.ReportAllocs()
	for b.Loop() {
		if e.Estimate().Samples == 0 {
			b.Fatal("no samples")
		}
	}
}

// BenchmarkControllerReport: the coordinator handles a heartbeat.
func BenchmarkControllerReport(b *testing.B) {
	c, err := New(Config{Clock: newFakeClock().Now})
	if err != nil {
		b.Fatal(err)
	}
	est := Estimate{Fixed: 2 * ms, PerRecord: 10 * us, Samples: 50}
	b.ReportAllocs()
	for b.Loop() {
		c.Report("worker-1", est)
	}
}
