// Package fleet holds the types that describe a running fleet: its workers
// and their health, its plugins with their merged metrics and batch sizes,
// the fleet-wide performance report and dead-letter entries. Coordinators
// produce them from worker heartbeats; the client and the CLI read them.
//
//	st, err := c.SystemStatus(ctx) // a client.Client
//	for _, w := range st.Workers {
//		fmt.Println(w.ID, w.Health, w.InFlight)
//	}
package fleet
