package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
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
	var (
		asJSON bool
		owner  string
	)
	cmd := &cobra.Command{
		Use:   "status [--owner NAME] [--json]",
		Short: "Show the fleet: workers, plugins, batch sizes, queues and jobs in flight",
		Long: `Show the fleet as a coordinator sees it: the workers (health, batches in flight, pressure, last
heartbeat), the plugins (batch size, throughput, latency, health), the batch queues with work, the
circuit breakers that opened, and the jobs in flight (open or sealed) of an owner: --owner NAME, or
"anon" when the command connects without credentials (a fleet without NATS permissions). With
credentials, name your owner: NATS lets a user ask about its own jobs only.`,
		Example: `  dataflare status
  dataflare status --owner acme --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			listJobs := cmd.Flags().Changed("owner") || !e.authenticated()
			return e.withOwner(cmd, owner, 5*time.Second, func(ctx context.Context, c *client.Client) error {
				st, err := c.SystemStatus(ctx)
				if err != nil {
					return requestError(err)
				}
				var jobs []client.JobInfo
				if listJobs {
					all, err := c.Jobs(ctx, false)
					if err != nil {
						return requestError(err)
					}
					jobs = inFlight(all)
				}
				if asJSON {
					out := statusJSON{Status: st}
					if listJobs {
						out.Jobs = make([]jobJSON, len(jobs))
						for i := range jobs {
							out.Jobs[i] = jobJSONOf(&jobs[i])
						}
					}
					return writeJSON(e.stdout, out)
				}
				printStatus(e.stdout, st)
				if listJobs {
					printInFlight(e.stdout, jobs, owner)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().StringVar(&owner, "owner", proto.DefaultOwner, "owner whose jobs in flight to show (NATS permissions may require yours)")
	return cmd
}

// statusJSON is status --json: the fleet's status and, when listed, the
// owner's jobs in flight.
type statusJSON struct {
	*fleet.Status
	Jobs []jobJSON `json:"jobs_in_flight,omitempty"`
}

// authenticated reports whether the command connects with credentials of
// its own (a creds file, a client certificate, or a user in the URL).
func (e *env) authenticated() bool {
	return e.creds != "" || e.tlsCert != "" || strings.Contains(e.url(), "@")
}

// inFlight returns the jobs open or sealed.
func inFlight(jobs []client.JobInfo) []client.JobInfo {
	var out []client.JobInfo
	for _, j := range jobs {
		if j.State == client.JobOpen || j.State == client.JobSealed {
			out = append(out, j)
		}
	}
	return out
}

// printInFlight prints an owner's jobs in flight.
func printInFlight(w io.Writer, jobs []client.JobInfo, owner string) {
	fmt.Fprintln(w)
	if len(jobs) == 0 {
		fmt.Fprintf(w, "no jobs in flight of owner %s\n", owner)
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB IN FLIGHT\tPLUGIN\tSTATE\tRECORDS\tAGE")
	for i := range jobs {
		j := &jobs[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.ID, shorten(jobPlugin(j), 40), jobState(j), jobRecords(j), roundAge(j.Age))
	}
	tw.Flush()
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
