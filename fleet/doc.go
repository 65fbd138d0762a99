// Package fleet holds the values that travel between the parts of a
// DataFlare fleet and its users: plugin metrics, health verdicts, the
// status of workers and plugins, the performance report and dead-letter
// entries. Workers put them in heartbeats, coordinators merge and serve
// them, the client returns them, and the in-process Manager (package
// manager) produces the same ones, so that a program reads one plugin's
// metrics the same way in one process and across machines.
//
// The package is a leaf: it depends on the plugin contract and the latency
// histogram only, so that a program that reads a fleet's status (the
// client) carries none of the runtime.
//
//	st, err := c.SystemStatus(ctx) // a client.Client
//	for _, w := range st.Workers {
//		fmt.Println(w.ID, w.Health, w.InFlight)
//	}
//	for _, p := range st.Plugins {
//		fmt.Println(p.Name, p.Metrics.TotalProcessed, p.Metrics.BatchLatency.P99)
//	}
//
// Units: durations are time.Duration in Go and integer nanoseconds in JSON
// (fields ending in _ns); rates are fractions from 0 to 1; throughput is
// records per second; times are RFC 3339; JSON names are snake_case.
package fleet
