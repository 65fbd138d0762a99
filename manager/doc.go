// Package manager runs plugins in-process: it is the original library's
// PluginManager. A Manager registers plugins by name, runs records and
// batches through them, keeps per-plugin metrics (counts, latency
// percentiles per batch and per record, throughput, error rate), judges
// their health, sizes batches from measured costs, and owns the memory pool
// that the code around the plugins shares. The worker runs every batch it
// fetches through one; the fleet client returns the same metric, health and
// report types for the whole fleet.
//
//	m, err := manager.New(manager.DefaultConfig())
//	if err != nil { ... }
//	defer m.Close()
//
//	if err := m.Register("my_plugin", myPlugin); err != nil { ... } // a plugin.Plugin
//	res, err := m.ProcessRecord(ctx, "my_plugin", nil, record)
//	batch, err := m.ProcessBatch(ctx, "my_plugin", plugin.Config{"k": "v"}, records)
//	fmt.Println(batch.Processed(), batch.Succeeded(), batch.Failed(), batch.Throughput())
//
//	pm, _ := m.Metrics("my_plugin")
//	fmt.Println(pm.TotalProcessed, pm.BatchLatency.Mean, pm.Throughput, pm.ErrorRate)
//	if _, err := m.HealthCheck(ctx); errors.Is(err, fleet.ErrUnhealthy) { ... }
//	m.ExportPerformanceReport(f) // JSON
//
// # Batches
//
// ProcessBatch cuts a batch longer than the plugin's current batch size into
// chunks of that size and runs up to Batch.Parallelism of them at once; the
// results come back as one BatchResult in input order. With AutoOptimize the
// size follows package sizer's cost model, fed with every chunk's latency
// and record bytes; the answer of a plugin that implements plugin.BatchSizer
// (OptimizeBatchSize) is passed to the model as a hint, which replaces the
// model's aim but is still damped and bounded (so one plugin cannot swing
// the size from one call to the next). A plugin without it has no opinion.
// The original library's min_throughput setting has no counterpart: the
// size aims at the latency target (package sizer says why).
//
// # Failures
//
// A panic in a plugin never crashes the process: in a BatchPlugin it becomes
// the batch's error (matching plugin.ErrPanic), in a record-at-a-time Plugin
// the record's error. Both are counted. A plugin that fails too large a share
// of its records, or panics too often, within the recent Window is marked
// degraded, and recovers once it behaves (see HealthConfig); a degraded
// plugin still gets work. A plugin that reports itself failed or stopped
// (its State, when it implements plugin.Stater; one that does not counts as
// ready) gets none (plugin.ErrUnavailable). Register finds both optional
// methods on a record-at-a-time Plugin through plugin.Adapt.
//
// # Health
//
// A plugin is degraded on evidence and recovers on evidence: within the
// recent Window, an error rate at or above Health.ErrorRate over at least
// Health.MinRecords records, or Health.MaxPanics panics, degrade it; since
// then, an error rate below Health.RecoverBelow over at least MinRecords
// records (with no panic), or a whole Window without a failure, bring it
// back. The gap between the two rates is hysteresis: a plugin failing at a
// rate between them keeps the verdict it has instead of flapping. Counting
// only since the last change of verdict means that recovering needs new
// good records, not just the old failures ageing out, and that a fresh
// verdict is never made of records the previous one already judged. Calls
// cut short by the caller's cancellation count for nothing; a deadline
// counts as a failure of the whole call.
//
// A worker that receives batches already sized by the coordinator and does
// not want them cut again sets AutoOptimize off and Batch.DefaultSize (and
// MaxSize) to the largest batch it accepts.
//
// # Units
//
// Durations are time.Duration in Go and integer nanoseconds in JSON (field
// names ending in _ns), rates are fractions from 0 to 1, throughput is records
// per second, JSON field names are snake_case.
//
// # Why a package of its own
//
// The Manager uses the batch-size controller (package sizer) and the memory
// pool (package pool), and both depend on package plugin: living in plugin
// it would make an import cycle, so it lives here.
package manager
