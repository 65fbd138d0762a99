package bench

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/plugin"
)

// BenchmarkOneRecordJob runs 1-record jobs of upper one after another on an
// idle local fleet (file storage, one worker) and says where the time goes,
// from the spans the client, coordinator and worker record (an in-memory
// OpenTelemetry recorder), as medians in ms from the job's start:
// submit-ms (Submit returned: job created, results' consumer ready),
// batch-acked-ms (JetStream stored the batch), worker-start-ms and
// worker-ms (the worker's span: job lookup, run, results stored),
// result-ms (the result in the caller's hands), done-ms (Results ended:
// the job recorded done), and job-ms (done-ms, as bench --latency counts).
var (
	recorderOnce sync.Once
	recorder     *tracetest.SpanRecorder
)

func BenchmarkOneRecordJob(b *testing.B) {
	// The global tracer provider takes effect once per process: the
	// packages' tracers delegate to the first one set.
	recorderOnce.Do(func() {
		recorder = tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)))
	})
	rec := recorder
	ctx := context.Background()
	f, err := local.Start(ctx, local.Config{Listen: "127.0.0.1:0", Workers: 1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c, err := f.Client()
	if err != nil {
		b.Fatal(err)
	}
	recs := []plugin.Record{{Value: []byte("x")}}
	phases := map[string][]float64{}
	add := func(name string, d time.Duration) {
		phases[name] = append(phases[name], float64(d.Microseconds())/1000)
	}
	run := func(measure bool) {
		rec.Reset()
		t0 := time.Now()
		j, err := c.Submit(ctx, "upper", client.Records(recs))
		if err != nil {
			b.Fatal(err)
		}
		submitted := time.Since(t0)
		var result time.Duration
		for o, err := range j.Results() {
			if err != nil || o.Err != nil {
				b.Fatal(err, o.Err)
			}
			result = time.Since(t0)
		}
		if !measure {
			return
		}
		add("job-ms", time.Since(t0))
		add("submit-ms", submitted)
		add("result-ms", result)
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "client.batch":
				add("batch-acked-ms", s.EndTime().Sub(t0))
			case "worker.batch":
				add("worker-start-ms", s.StartTime().Sub(t0))
				add("worker-ms", s.EndTime().Sub(s.StartTime()))
			}
		}
	}
	for range 20 { // warm: the owner's streams, the worker's caches
		run(false)
	}
	b.ResetTimer()
	for b.Loop() {
		run(true)
	}
	for name, xs := range phases {
		slices.Sort(xs)
		b.ReportMetric(xs[len(xs)/2], name)
	}
}
