// Package local runs a whole DataFlare fleet in one process: an embedded
// nats-server with JetStream (or a server of yours), the plugin store, a
// coordinator and workers that share one WebAssembly runtime, each daemon on
// its own NATS connection. It is what `dataflare demo`, `dataflare dev` and
// `dataflare bench` run, and what tests of programs built on the fleet can
// start (package localtest does it for a test).
//
//	f, err := local.Start(ctx, local.Config{Workers: 2})
//	if err != nil { ... }
//	defer f.Close()
//	f.Push(ctx, "redact", module) // a WebAssembly plugin
//	c, err := f.Client()
//	job, err := c.Submit(ctx, "redact", client.Records(recs))
//
// Daemons can be added, stopped and killed (StartWorker, Stop, Kill) to
// see how the fleet copes; the e2e tests kill real processes instead.
package local
