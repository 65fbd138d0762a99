package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
)

func init() {
	extraCommands = append(extraCommands, (*env).statusCmd, (*env).reportCmd)
}

// newClient connects and returns a client for a one-shot command.
func (e *env) newClient(name string, opts ...client.Option) (*client.Client, func(), error) {
	nc, err := e.connect(name, false)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return c, nc.Close, nil
}

func (e *env) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the fleet: workers, plugins, batch sizes and queues",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, closeConn, err := e.newClient("status")
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			st, err := c.SystemStatus(ctx)
			if err != nil {
				return requestError(err)
			}
			if asJSON {
				return writeJSON(e.stdout, st)
			}
			printStatus(e.stdout, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func (e *env) reportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write the fleet's performance report as JSON",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, closeConn, err := e.newClient("report")
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			rep, err := c.Report(ctx)
			if err != nil {
				return requestError(err)
			}
			if out == "" || out == "-" {
				return writeJSON(e.stdout, rep)
			}
			// The file is written only once there is a report to put in it.
			f, err := os.Create(out)
			if err != nil {
				return fmt.Errorf("report: %v", err)
			}
			if err := writeJSON(f, rep); err != nil {
				f.Close()
				return fmt.Errorf("report: %v", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("report: %v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the report to FILE instead of standard output")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printStatus prints a fleet status as tables.
func printStatus(w io.Writer, st *fleet.Status) {
	fmt.Fprintf(w, "coordinator %s at %s — batches pending %d, result messages %d, dead letters %d\n\n",
		st.Coordinator, st.At.Format(time.RFC3339), st.PendingBatches, st.ResultMessages, st.DeadLetters)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tHEALTH\tIN FLIGHT\tPARALLEL\tPROCESSED\tPRESSURE\tLAST HEARTBEAT\tPLUGINS")
	for _, wk := range st.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.2f\t%s ago\t%d\n", wk.ID, wk.Health, wk.InFlight, wk.Parallel,
			wk.Processed, wk.Pressure, wk.Age.Round(time.Millisecond), len(wk.Plugins))
	}
	if len(st.Workers) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tKIND\tWORKERS\tBATCH SIZE\tPROCESSED\tFAILED\tRECORDS/S\tP50 BATCH\tP99 BATCH\tHEALTH")
	for _, p := range st.Plugins {
		kind := "native"
		if !p.Native {
			kind = "wasm"
		}
		m := p.Metrics
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\n", p.Name, kind, p.Workers, p.BatchSize,
			m.TotalProcessed, m.Failed, m.Throughput, m.BatchLatency.P50.Round(time.Microsecond),
			m.BatchLatency.P99.Round(time.Microsecond), m.Health)
	}
	tw.Flush()
	printQueues(w, st)
	printBreakers(w, st)
}

// printQueues prints the batch queues with work, by owner and priority;
// nothing when every queue is empty.
func printQueues(w io.Writer, st *fleet.Status) {
	if len(st.Queues) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OWNER\tPRIORITY\tWEIGHT\tPENDING\tIN FLIGHT")
	for _, q := range st.Queues {
		owner := q.Owner
		if owner == "" {
			owner = "(shared)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%g\t%d\t%d\n", owner, q.Priority, q.Weight, q.Pending, q.InFlight)
	}
	tw.Flush()
}

// printBreakers prints the circuit breakers that have opened, by worker;
// nothing when none has.
func printBreakers(w io.Writer, st *fleet.Status) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	header := false
	for _, wk := range st.Workers {
		for _, b := range wk.Breakers {
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(tw, "WORKER\tPLUGIN\tCIRCUIT\tSINCE\tOPENS\tLAST RECOVERY")
				header = true
			}
			state := string(b.State)
			if b.State == fleet.BreakerOpen && b.Until.After(st.At) {
				state += fmt.Sprintf(" (probe in %s)", b.Until.Sub(st.At).Round(time.Millisecond))
			}
			recovery := "-"
			if !b.RecoveredAt.IsZero() {
				recovery = fmt.Sprintf("%s (%s ago)", b.LastRecovery.Round(time.Millisecond), st.At.Sub(b.RecoveredAt).Round(time.Second))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%d\t%s\n", wk.ID, b.Plugin, state,
				st.At.Sub(b.Since).Round(time.Millisecond), b.Opens, recovery)
		}
	}
	tw.Flush()
}
