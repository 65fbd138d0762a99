// Package coordinator is the fleet's control plane. Coordinators accept jobs
// from clients (several share the work in a queue group, so any can die),
// pin each job's plugin, keep the fleet view from worker heartbeats, choose
// batch sizes per plugin (clients ask with df.job.get while they publish
// their batches to JetStream themselves), and answer status and report
// requests. Poison is the workers' business (see package worker).
//
// A coordinator holds no state that matters beyond its life: jobs live in
// the DF_JOBS bucket, batches and results in streams, and the fleet view is
// rebuilt from heartbeats within a second of a start.
//
//	c, err := coordinator.New(nc, coordinator.Config{Logger: logger})
//	if err != nil { ... }
//	err = c.Run(ctx) // until ctx is cancelled
package coordinator
