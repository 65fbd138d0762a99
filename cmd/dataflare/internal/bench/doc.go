// Package bench measures the fleet against its ceilings, side by side in
// one process: an embedded nats-server with file storage, the same records,
// every mode once per round, rounds rotated so that no mode always runs
// first. It is what `dataflare bench` runs; its Report's JSON form is the
// bench contract (BENCHMARKS.md explains each figure).
//
// The modes:
//
//   - raw: the fleet's JetStream legs with none of its code — batch messages
//     published to a work-queue stream, fetched, their bytes published to a
//     results stream, acknowledged, read back;
//   - fleet_native: client → DF_BATCHES → worker (the native plugin) →
//     client;
//   - fleet_wasm: the same with the plugin's WebAssembly twin (upper →
//     upper-wasm);
//   - direct, direct_wasm: the plugin called in a loop in-process, the
//     compute ceiling.
//
// Usage:
//
//	rep, err := bench.Run(ctx, bench.Config{Records: 200_000, RecordSize: 100, Plugin: "upper"})
//	if err != nil {
//		return err
//	}
//	fmt.Println(rep.FleetNative.RecordsPerSec, *rep.FleetNativeVsRaw)
//
// Scaling runs the latency-bound delay plugin over 1, 2, 4, 8 workers
// (processes, through a Spawner, or in-process); ColdStart measures a
// WebAssembly module's load to its first result with and without the
// compiled-module cache; Failover measures how long a job stalls when a
// worker dies under it.
//
//	sc, err := bench.Scaling(ctx, bench.ScalingConfig{Spawner: bench.Processes{Command: []string{exe}}})
//	cs, err := bench.ColdStart(ctx, bench.ColdStartConfig{Spawner: bench.Processes{Command: []string{exe}}})
//	fo, err := bench.Failover(ctx, bench.FailoverConfig{AckWait: time.Second})
//
// Latency and Fairness measure how the fleet shares its workers between
// owners: small probe jobs through the Go client, one after another, on an
// idle fleet and beside other owners' jobs that keep every slot busy (the
// delay plugin), with fair sharing and without (a FIFO fleet), and the
// split between two saturating owners of different weights.
//
//	lat, err := bench.Latency(ctx, bench.LatencyConfig{})
//	fmt.Println(lat.Latency.Idle.P99Ms, lat.Latency.Loaded.P99Ms)
//	fair, err := bench.Fairness(ctx, bench.FairnessConfig{LoadJobs: 3})
//	fmt.Println(fair.Fairness.Fair.P99Ms, fair.Fairness.FIFO.P99Ms, fair.Fairness.Weights.BShare)
//
// Pipeline measures a pipeline of one native step (upper) from a source
// stream to a sink stream against raw JetStream moving the same messages,
// round after round on one server, then the pipeline's end-to-end lag.
// Each round publishes the same messages (100,000 of 1 KiB) to the
// pipeline's source and to a copy of it; the pipeline side times
// CreatePipeline until its sink stream holds every message; the raw side
// times the same legs with none of the fleet's code, written as a
// JetStream user would: a durable pull consumer on the copy (the pipeline
// consumer's settings) read with nats.go's continuous pull in pulls of 256,
// each message's payload upper-cased and published asynchronously to its
// sink with Df-Source-Seq and a Nats-Msg-Id of the source sequence (at most
// 1,024 awaiting their PubAck), and each source message acknowledged, in
// order, once the sink's PubAck for it came. Both sinks are read back: each
// must hold exactly one message per source message, in order. Then a new
// pipeline's source is published at half the measured rate, in bursts
// every 5 ms, each message stamped with its publish time, and each one's
// lag is taken when it arrives from the sink stream.
//
//	pl, err := bench.Pipeline(ctx, bench.PipelineConfig{})
//	fmt.Println(pl.Pipeline.RecordsPerSec, pl.Pipeline.VsRaw, pl.Pipeline.LagP99Ms)
package bench
