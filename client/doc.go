// Package client is the Go library for running plugins on a DataFlare fleet.
// It creates a job through a coordinator, publishes the records to the
// fleet's batch stream in batches of the size the coordinators ask for, and
// hands back exactly one result per record, in input order, while the job
// runs. Its NATS user needs, beside the job requests, the right to publish
// on its own jobs' batch subjects (deploy/nats/auth.conf).
//
//	nc, _ := nats.Connect(nats.DefaultURL)
//	c, _ := client.New(nc)
//	job, err := c.Submit(ctx, "upper", client.Records(records))
//	if err != nil { ... }
//	for out, err := range job.Results() {
//		if err != nil { ... }                // the job failed; results so far stand
//		fmt.Println(out.Index, string(out.Value), out.Err)
//	}
//
// The seeds' PluginManager calls work across the fleet too: ProcessRecord,
// ProcessBatch (returning a plugin.BatchResult), Metrics, SystemStatus,
// HealthCheck and ExportPerformanceReport.
//
// Operators' calls: Jobs, JobInfo and CancelJob on an owner's jobs
// (Attach reads one's results from any process), DeadLetters, DeadLetter
// and Replay on its dead letters. NATS permissions keep a user to its own
// owner's; another owner's job or dead letter is ErrJobNotFound.
//
// Inputs may be larger than memory: Submit reads its Source as it goes, at
// most Window batches ahead of the results read, so a client that reads
// results slower than the fleet makes them slows down the submission
// instead of piling up data.
//
// The client imports neither the server, nor the WebAssembly runtime, nor
// the worker: it is light to embed.
package client
