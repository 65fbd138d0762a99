package plugin

import (
	"context"
	"time"
)

// Plugin processes one record at a time. Implementations must be safe for
// concurrent use: the runtime calls Process from several goroutines. A
// Plugin may also implement Stater and BatchSizer; Adapt passes both on.
type Plugin interface {
	// Info describes the plugin.
	Info() Info
	// Process returns what the plugin makes of r under the job's
	// configuration cfg (nil when the job has none). A returned error is
	// this record's error; the batch goes on. r's slices are valid only
	// until Process returns.
	Process(ctx context.Context, cfg Config, r Record) (Result, error)
}

// BatchPlugin processes a whole batch per call. Every record-at-a-time Plugin
// becomes one through Adapt; WebAssembly plugins are BatchPlugins natively
// (one guest call per batch). A BatchPlugin may also implement Stater,
// BatchSizer and Resetter.
type BatchPlugin interface {
	// Info describes the plugin.
	Info() Info
	// ProcessBatch returns exactly one Result per record, in order.
	// Per-record failures go in Result.Err; a returned error means the
	// batch as a whole failed (a trap, a deadline, an unavailable plugin)
	// and no result is valid.
	ProcessBatch(ctx context.Context, cfg Config, recs []Record) (*BatchResult, error)
}

// Stater is an optional interface of a Plugin or BatchPlugin that reports
// its own lifecycle state; the runtime finds it by type assertion, as
// io.Copy finds io.WriterTo. It takes a plugin without a State method as
// Ready; one reporting Failed or Stopped gets no work.
type Stater interface {
	// State reports the plugin's lifecycle state. It must be safe for
	// concurrent use and cheap: the runtime asks before every batch.
	State() State
}

// BatchSizer is an optional interface of a Plugin or BatchPlugin with an
// opinion on its batch size: the original library's OptimizeBatchSize
// tuning hook. The runtime takes a plugin without it as having no opinion
// (0).
type BatchSizer interface {
	// OptimizeBatchSize returns the batch size the plugin wants next, given
	// the current size and the latency and throughput (records per second)
	// it achieved, or 0 to leave the choice to the runtime's controller. The
	// runtime damps and bounds the answer: it is a hint, not an order.
	OptimizeBatchSize(current int, latency time.Duration, throughput float64) int
}

// Resetter is an optional interface of a BatchPlugin that can re-initialise
// itself: drop what it holds (connections, caches, loaded code) and start
// afresh. A worker calls it when the plugin, having failed batch after
// batch, was taken out of service by its circuit breaker and is about to be
// tried again (docs/operations.md, "Circuit breakers"); a plugin without it
// is tried again as it is. A WebAssembly module (wasm.Pinned) implements it
// by closing the module's instances and loading the module again.
type Resetter interface {
	// Reset re-initialises the plugin under ctx. It must be safe to call
	// while batches run: they may finish on what the plugin held before,
	// the batches after it must get the fresh state. An error means the
	// plugin could not be re-initialised; the runtime tries again later
	// (an error matching ErrUnavailable says that the failure may pass
	// by itself and is not held against the plugin).
	Reset(ctx context.Context) error
}

// EncodedBatchPlugin is a BatchPlugin that can also take a batch as it
// travels: msg is the batch message (docs/wire-format.md; it carries the
// job configuration) and recs its records, decoded from msg. A WebAssembly
// plugin copies msg straight into guest memory instead of encoding recs
// again. ProcessEncoded answers as ProcessBatch does.
type EncodedBatchPlugin interface {
	BatchPlugin
	ProcessEncoded(ctx context.Context, msg []byte, recs []Record) (*BatchResult, error)
}

// BatchResult is the outcome of one batch: exactly one Result per input
// record, in input order, and how long the batch took.
type BatchResult struct {
	// Results holds one Result per input record.
	Results []Result
	// Duration is the batch's processing time.
	Duration time.Duration
}

// Processed returns the number of records processed.
func (b *BatchResult) Processed() int { return len(b.Results) }

// Succeeded returns the number of records without an error (dropped records
// count as successes: dropping is what the plugin decided).
func (b *BatchResult) Succeeded() int { return len(b.Results) - b.Failed() }

// Failed returns the number of records with an error.
func (b *BatchResult) Failed() int {
	n := 0
	for i := range b.Results {
		if b.Results[i].Err != nil {
			n++
		}
	}
	return n
}

// Dropped returns the number of records the plugin filtered out.
func (b *BatchResult) Dropped() int {
	n := 0
	for i := range b.Results {
		if b.Results[i].Err == nil && b.Results[i].Dropped {
			n++
		}
	}
	return n
}

// Errors returns the per-record errors, in record order.
func (b *BatchResult) Errors() []RecordError {
	var errs []RecordError
	for i := range b.Results {
		if err := b.Results[i].Err; err != nil {
			errs = append(errs, RecordError{Index: i, Err: err})
		}
	}
	return errs
}

// Throughput returns records processed per second, or 0 when Duration is 0.
func (b *BatchResult) Throughput() float64 {
	if b.Duration <= 0 {
		return 0
	}
	return float64(len(b.Results)) / b.Duration.Seconds()
}
