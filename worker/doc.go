// Package worker runs batches. A worker is stateless: it pulls batches from
// the DF_BATCHES work queue, runs each one through its plugin — native, or a
// WebAssembly module pinned by digest — with bounded parallelism, publishes
// the results to DF_RESULTS under the batch's id, and only then
// acknowledges the batch. While a batch runs, the worker renews its lease
// (InProgress) so that AckWait can stay short and a dead worker's batch comes
// back quickly. A batch whose plugin fails as a whole (a trap, a panic, a
// deadline) is split in halves until the records at fault are isolated: they
// get poison errors and dead-letter entries, the rest get their results. A
// batch whose workers die every time it runs is, after MaxDeliver
// deliveries in which it ran alone on its worker, split unrun by the worker
// that gets it next, the same way: a worker killed by one batch kills the
// others it runs, so a batch delivered twice runs alone from then on, and
// only its deliveries alone count (alone.go).
// Heartbeats tell the coordinators what the worker runs, how fast, and how
// pressed for memory it is.
//
//	w, err := worker.New(nc, worker.Config{Parallel: 4, Logger: logger})
//	if err != nil { ... }
//	err = w.Run(ctx) // until ctx is cancelled; then it drains
package worker
