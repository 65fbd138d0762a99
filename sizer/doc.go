// Package sizer chooses batch sizes: it is the adaptive batch-size controller
// of the fleet (and of the in-process manager).
//
// Each worker keeps an Estimator per plugin, feeds it every batch it runs, and
// sends the Estimate in its heartbeats. The coordinator keeps a Controller per
// plugin, reports every worker's Estimate to it, and asks it for the size of
// each batch it cuts:
//
//	// worker, after each batch
//	est.Observe(len(recs), batchBytes, elapsed)
//	if bs, ok := bp.(plugin.BatchSizer); ok { est.SetHint(bs.OptimizeBatchSize(len(recs), elapsed, throughput)) }
//	hb.Plugins[name] = est.Estimate() // JSON in the heartbeat
//
//	// coordinator
//	ctl, err := sizer.New(sizer.Config{Max: 10000, MaxBytes: maxPayload - headerRoom})
//	ctl.Report(workerID, hb.Plugins[name])  // on every heartbeat
//	ctl.SetPressure(highestPressure)        // from the workers' pool stats
//	n := ctl.Size(avgRecordBytes)           // for every batch it cuts
//
// # The rule
//
// A batch of n records is modelled as taking Fixed + n·PerRecord. The size
// aimed for is (Target − Fixed) / PerRecord, within [Min, Max]: Max when the
// per-record cost is 0, Min when the fixed cost alone reaches the target (the
// target cannot be met, so the controller keeps batches, and with them the
// latency, as small as allowed). With no estimate yet the size is Initial.
//
// The current size moves towards that aim only when they differ by more than
// Deadband (10%), by at most a factor MaxStep (2) each time, and at most once
// per Interval (1 s, one heartbeat) on the injected clock. A worker's noise
// thus moves the aim by a few percent, inside the deadband, and the size
// stays put; a real change moves it within a few heartbeats.
//
// Two limits apply at once, without damping, because they protect the
// system rather than tune it: the byte limit MaxBytes / avgRecordBytes (the
// message size limit; never below 1, even if that is below Min: a lone
// oversize record fails on its own) and memory pressure. Pressure p (0..1, the
// highest among the workers) leaves the size alone up to PressureKnee (0.8)
// and then scales it linearly down to Min at p = 1:
//
//	size' = Min + (size − Min) · (1 − p) / (1 − 0.8)
//
// # Merging workers
//
// The Controller averages the fresh estimates' lines, each weighted by its
// sample count (capped at 100, so a new worker is not drowned by an old one)
// times a freshness that falls linearly from 1 to 0 over MaxAge; older ones
// are forgotten (Forget drops a worker at once). Ages are measured on the
// controller's clock from the report's arrival, not from a timestamp in the
// Estimate, so clock skew between machines does not matter; the weights are
// re-evaluated whenever an estimate arrives, leaves or expires, which keeps
// Size at a few tens of nanoseconds however many workers report.
//
// # The plugin's hook
//
// A plugin's OptimizeBatchSize (plugin.BatchSizer) runs where the plugin runs, on the
// worker, so its answer travels as Estimate.Hint rather than as a callback
// on the Controller: a fresh non-zero hint (averaged over the workers that
// give one) replaces the model's aim, still damped and limited. SeedRule is
// the original library's rule, for a plugin that wants it back.
//
// # The Estimator
//
// An exponentially weighted least-squares fit (half-life DefaultHalfLife
// observations), chosen over a sliding window because it needs no buffer and
// no allocation per batch. While every recent batch has the same size, the
// fit cannot tell fixed from per-record cost; a weak prior then makes it
// proportional through the current point, which predicts that point exactly
// (enough to hold a converged size) and errs towards small steps when it
// extrapolates. A batch far outside anything the recent costs explain (a GC
// pause, a noisy neighbour) is clipped before it counts, so one outlier cannot
// drag the model; several in a row in the same direction are a step change, and
// the Estimator forgets the old regime instead of averaging two regimes for
// several half-lives. Estimator.Restarts counts those changes.
//
// The Estimate has no per-byte cost: within a job the bytes of a batch grow
// with its records, so a three-term fit would be collinear and unstable; the
// per-record cost already includes the typical record's bytes, and bytes
// enter only through the message size limit. It carries no timestamp either
// (see Merging workers).
//
// # Why model-based rather than the seed's rule
//
// SeedRule moves ±20% per adjustment wherever the good size is, so it needs
// about log(ratio)/log(1.2) adjustments to get there, and its grow condition
// (throughput below 1000 records/s) is unrelated to its shrink condition
// (latency above 100 ms): a plugin slower than 1000 records/s at 100 ms is
// shrunk and grown in turn forever, and one faster than that never grows
// towards its latency target. The model jumps (up to MaxStep) to where the
// target is met, then stops. TestSeedRuleComparison measures both.
package sizer
