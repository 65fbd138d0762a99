package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
)

func init() {
	extraCommands = append(extraCommands, (*env).jobCmd)
}

// opsTimeout bounds the requests of one job or dead command (not attach
// and replay, which last as long as their jobs).
const opsTimeout = 10 * time.Second

// opsCtl is what the job and dead subcommands share: the environment and
// the --owner whose jobs and dead letters they see.
type opsCtl struct {
	e     *env
	owner string
}

// notFound is the error of a job or dead letter that does not exist — or
// that is another owner's, which the NATS user may not ask about: Main
// reports it as it is, not as that denial.
type notFound struct{ msg string }

func (e notFound) Error() string { return e.msg }

// notFoundf returns a notFound error.
func notFoundf(format string, args ...any) error { return notFound{fmt.Sprintf(format, args...)} }

// err words the error of a request about what (a job or dead letter, named
// as the user gave it): not found — also when NATS refused the request, the
// thing being another owner's — no coordinator, or the fleet's message.
func (o *opsCtl) err(what string, err error) error {
	if d := o.e.denied.Load(); d != nil {
		if strings.Contains((*d).Error(), `"`+proto.SubjectJobPrefix) || strings.Contains((*d).Error(), `"`+proto.SubjectDeadLetterPrefix) {
			return notFoundf("no %s (or not yours)", what)
		}
		return err // Main reports the denial
	}
	switch {
	case errors.Is(err, client.ErrNoCoordinator):
		return errNoCoordinator
	case errors.Is(err, client.ErrJobNotFound):
		return notFoundf("no %s (or not yours, or expired)", what)
	}
	var fe *client.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("%s: %s", what, fe.Message)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// jobID checks a JOB argument or flag.
func jobID(id string) error {
	if !proto.ValidJobID(id) {
		return usagef("job id %q: want OWNER.ID, as 'dataflare job ls' shows it", id)
	}
	return nil
}

func (e *env) jobCmd() *cobra.Command {
	o := &opsCtl{e: e}
	cmd := &cobra.Command{
		Use:   "job",
		Short: "List, inspect, cancel and attach to jobs",
		Long: `See the jobs of an owner (--owner, "anon" unless given): what runs, whose it is, how far it
got; cancel one; or read a job's results from another terminal than the one that submitted it.

A job's id is OWNER.ID: 'submit' and 'job ls' show it. NATS permissions keep each owner to its
own jobs (deploy/nats/auth.conf): another owner's job looks like one that does not exist, and only
the admin role sees every owner's (job ls --all). Jobs are kept for the fleet's retention (24 h
by default) after their last change.`,
		Example: `  dataflare job ls
  dataflare job info anon.6P9oA6kfXq0JfWc2bXbS1w
  dataflare job attach anon.6P9oA6kfXq0JfWc2bXbS1w --out results.jsonl`,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for dataflare job: use ls, info, cancel or attach", args[0])
			}
			return usagef("job needs a subcommand: ls, info, cancel or attach")
		},
	}
	cmd.PersistentFlags().StringVar(&o.owner, "owner", proto.DefaultOwner, "owner whose jobs to see (NATS permissions may require yours)")
	cmd.AddCommand(o.jobLsCmd(), o.jobInfoCmd(), o.jobCancelCmd(), o.jobAttachCmd())
	return cmd
}

func (o *opsCtl) jobLsCmd() *cobra.Command {
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--all] [--json]",
		Short: "List the owner's jobs, the most recently changed first",
		Long: `List the owner's jobs, the most recently changed first (at most 100): a table ID OWNER PLUGIN
STATE RECORDS RESULTS ERRORS AGE, or with --json an array of jobs (the fields of 'job info --json').

STATE is open (its submitter is sending records; "abandoned" when the submitter stopped reporting),
sealed (every record sent: its results are being made or wait to be read), done (its results were
read to the end) or cancelled. RECORDS is the total of a sealed job, what an open job's submitter
reported sending so far ("+"). RESULTS and ERRORS are known for a done job (its reader's counts);
'job info' counts a running job's. With --all, every owner's jobs: only the admin role may ask.`,
		Example: `  dataflare job ls
  dataflare job ls --owner acme --json
  dataflare job ls --all`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.e.withOwner(cmd, o.owner, opsTimeout, func(ctx context.Context, c *client.Client) error {
				jobs, err := c.Jobs(ctx, all)
				if err != nil {
					return o.err("jobs", err)
				}
				if asJSON {
					out := make([]jobJSON, len(jobs))
					for i := range jobs {
						out[i] = jobJSONOf(&jobs[i])
					}
					return writeJSON(o.e.stdout, out)
				}
				printJobs(o.e.stdout, jobs, all, o.owner)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every owner's jobs (the admin role only)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the jobs as JSON")
	return cmd
}

// printJobs prints jobs as a table.
func printJobs(w io.Writer, jobs []client.JobInfo, all bool, owner string) {
	if len(jobs) == 0 {
		if all {
			fmt.Fprintln(w, "no jobs")
		} else {
			fmt.Fprintf(w, "no jobs of owner %s\n", owner)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tPLUGIN\tSTATE\tRECORDS\tRESULTS\tERRORS\tAGE")
	for i := range jobs {
		j := &jobs[i]
		results, errs := "-", "-"
		if j.Counted {
			results, errs = fmt.Sprint(j.Results), fmt.Sprint(j.Failed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Owner, shorten(jobPlugin(j), 40), jobState(j), jobRecords(j),
			results, errs, roundAge(j.Age))
	}
	tw.Flush()
	if len(jobs) == proto.DefaultListLimit {
		fmt.Fprintf(w, "(the %d most recently changed)\n", len(jobs))
	}
}

// jobPlugin shows a job's plugin and version, or its steps.
func jobPlugin(j *client.JobInfo) string {
	if len(j.Steps) > 0 {
		return stepNames(j.Steps)
	}
	if j.Version != "" {
		return j.Plugin + "@" + j.Version
	}
	return j.Plugin
}

// jobState shows a job's state, and an open one's submitter gone.
func jobState(j *client.JobInfo) string {
	if j.Abandoned {
		return string(j.State) + " (abandoned)"
	}
	return string(j.State)
}

// jobRecords shows a job's records: its total once sealed, what was sent
// so far ("+") while open.
func jobRecords(j *client.JobInfo) string {
	if j.State == client.JobOpen {
		return fmt.Sprintf("%d+", j.Records)
	}
	return fmt.Sprint(j.Records)
}

// roundAge rounds an age for reading.
func roundAge(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func (o *opsCtl) jobInfoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info ID [--json]",
		Short: "Show a job: its plugin, state, records, results, errors, batches",
		Long: `Show job ID: its plugin (or steps), version and digest, state, priority, when it was created and
last changed, its records (the total once sealed; what the submitter reported sending while open),
its batches, the results stored so far by outcome (a done job: as its reader counted them), its
batches still queued or running, its dead letters, and the trace it was created in. Exit 1 when
there is no such job (or it is another owner's).`,
		Example: `  dataflare job info anon.6P9oA6kfXq0JfWc2bXbS1w
  dataflare job info anon.6P9oA6kfXq0JfWc2bXbS1w --json | jq .failed`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := jobID(id); err != nil {
				return err
			}
			return o.e.withOwner(cmd, o.owner, opsTimeout, func(ctx context.Context, c *client.Client) error {
				j, err := c.JobInfo(ctx, id)
				if err != nil {
					return o.err("job "+id, err)
				}
				if asJSON {
					return writeJSON(o.e.stdout, jobJSONOf(j))
				}
				printJob(o.e.stdout, j)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return cmd
}

// printJob prints every field of a job, one per line.
func printJob(w io.Writer, j *client.JobInfo) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nowner:\t%s\n", j.ID, j.Owner)
	if len(j.Steps) > 0 {
		for i, st := range j.Steps {
			label := ""
			if i == 0 {
				label = "steps:"
			}
			fmt.Fprintf(tw, "%s\t%d. %s\n", label, i+1, stepString(st))
		}
	} else {
		fmt.Fprintf(tw, "plugin:\t%s\n", stepString(client.Step{Plugin: j.Plugin, Version: j.Version, Config: j.Config}))
	}
	if j.Digest != "" {
		fmt.Fprintf(tw, "digest:\t%s\n", j.Digest)
	}
	fmt.Fprintf(tw, "state:\t%s\npriority:\t%s\n", jobState(j), j.Priority)
	fmt.Fprintf(tw, "created:\t%s (%s ago)\nupdated:\t%s\n", j.Created.Local().Format(time.RFC3339), roundAge(j.Age), j.Updated.Local().Format(time.RFC3339))
	switch j.State {
	case client.JobOpen:
		fmt.Fprintf(tw, "records:\t%d sent so far, in %d batches\n", j.Records, j.Batches)
	default:
		fmt.Fprintf(tw, "records:\t%d, in %d batches\n", j.Records, j.Batches)
	}
	if j.Counted {
		fmt.Fprintf(tw, "results:\t%d: %d succeeded, %d failed, %d dropped\n", j.Results, j.Succeeded, j.Failed, j.Dropped)
	} else {
		fmt.Fprintln(tw, "results:\t- (not counted: the job was cancelled)")
	}
	fmt.Fprintf(tw, "batches queued:\t%d (waiting for a worker or running)\n", j.QueuedBatches)
	fmt.Fprintf(tw, "result messages:\t%d (waiting to be read)\n", j.ResultMessages)
	fmt.Fprintf(tw, "dead letters:\t%d\n", j.DeadLetters)
	if j.TraceID != "" {
		fmt.Fprintf(tw, "trace:\t%s\n", j.TraceID)
	}
	tw.Flush()
}

func (o *opsCtl) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job: its queued batches and unread results are removed",
		Long: `Cancel job ID: its queued batches and its results not yet read are removed, its running batches
stop within a second on every worker, and a process reading its results (submit, job attach) ends
with an error. Its dead letters stay. Exit 1 when there is no such job (or it is another owner's)
or it is done already.`,
		Example: "  dataflare job cancel anon.6P9oA6kfXq0JfWc2bXbS1w",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := jobID(id); err != nil {
				return err
			}
			return o.e.withOwner(cmd, o.owner, opsTimeout, func(ctx context.Context, c *client.Client) error {
				if err := c.CancelJob(ctx, id); err != nil {
					return o.err("job "+id, err)
				}
				fmt.Fprintf(o.e.stdout, "cancelled job %s\n", id)
				return nil
			})
		},
	}
}

func (o *opsCtl) jobAttachCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "attach ID [--out FILE]",
		Short: "Read a job's results, in order, from any terminal",
		Long: `Read the results of job ID from its first record, in order, and write them as 'submit' does: one
JSON line per record to --out (or standard output). A sealed job's results end with its last
record; an open job's come as its submitter sends records, and end when it seals the job.

When the submitter stopped before sealing (its process died), the results of the records it sent
are written once their batches have run, and the command ends with exit 1 and an error saying from
which record on nothing was sent: those records have no result, and must be submitted again. A
record missing between sent ones gets an error line. Such a job stays open until it is cancelled
or expires, and can be attached again.

Reading a job to its end marks it done, and its results are removed. Exit status as submit's: 0
when every record got a result, 3 when some got errors, 1 when the job ended early.`,
		Example: `  dataflare job attach anon.6P9oA6kfXq0JfWc2bXbS1w
  dataflare job attach anon.6P9oA6kfXq0JfWc2bXbS1w --out results.jsonl`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := jobID(id); err != nil {
				return err
			}
			return o.e.withOwner(cmd, o.owner, 0, func(ctx context.Context, c *client.Client) error {
				// The job lives in ctx; its requests have the client's
				// timeout.
				job, err := c.Attach(ctx, id)
				if err != nil {
					return o.err("job "+id, err)
				}
				defer job.Close()
				return o.writeResults(ctx, job, out)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "-", "output FILE, or - for standard output")
	return cmd
}

// writeResults writes an attached job's results to out, and returns the
// command's outcome.
func (o *opsCtl) writeResults(ctx context.Context, job *client.Job, out string) error {
	var dst io.Writer = o.e.stdout
	var file *os.File
	if out != "-" {
		var err error
		if file, err = os.Create(out); err != nil {
			return fmt.Errorf("output: %w", err)
		}
		dst = file
	}
	w := newResultWriter(dst)
	var total, failed uint64
	var jobErr error
	for r, err := range job.Results() {
		if err != nil {
			jobErr = err
			break
		}
		total++
		if r.Err != nil {
			failed++
		}
		if err := w.write(r.Index, r.Result, "", false); err != nil {
			jobErr = fmt.Errorf("output: %w", err)
			break
		}
	}
	if err := w.flush(); err != nil && jobErr == nil {
		jobErr = fmt.Errorf("output: %w", err)
	}
	if file != nil {
		if err := file.Close(); err != nil && jobErr == nil {
			jobErr = fmt.Errorf("output: %w", err)
		}
	}
	switch {
	case jobErr != nil && ctx.Err() != nil:
		return fmt.Errorf("interrupted after %d results; job %s goes on (attach again to read it)", total, job.ID())
	case jobErr != nil:
		var fe *client.Error
		if errors.As(jobErr, &fe) {
			jobErr = errors.New(fe.Message)
		}
		return fmt.Errorf("after %d results: %w", total, jobErr)
	case failed > 0:
		return exitError{code: ExitRecordErrors, err: fmt.Errorf("%d of %d records got errors", failed, total)}
	}
	return nil
}

// jobJSON is a job as the --json flags print it: stable lower_snake keys.
type jobJSON struct {
	ID             string            `json:"id"`
	Owner          string            `json:"owner"`
	Plugin         string            `json:"plugin"`
	Version        string            `json:"version"`
	Digest         string            `json:"digest"`
	Config         map[string]string `json:"config"`
	Steps          []stepJSON        `json:"steps"`
	State          string            `json:"state"`
	Abandoned      bool              `json:"abandoned"`
	Priority       string            `json:"priority"`
	Created        time.Time         `json:"created"`
	Updated        time.Time         `json:"updated"`
	AgeSeconds     float64           `json:"age_s"`
	Records        uint64            `json:"records"`
	Batches        uint64            `json:"batches"`
	Counted        bool              `json:"counted"`
	Results        uint64            `json:"results"`
	Succeeded      uint64            `json:"succeeded"`
	Failed         uint64            `json:"failed"`
	Dropped        uint64            `json:"dropped"`
	QueuedBatches  uint64            `json:"queued_batches"`
	ResultMessages uint64            `json:"result_messages"`
	DeadLetters    uint64            `json:"dead_letters"`
	TraceID        string            `json:"trace_id"`
}

// jobJSONOf converts a job for --json.
func jobJSONOf(j *client.JobInfo) jobJSON {
	out := jobJSON{ID: j.ID, Owner: j.Owner, Plugin: j.Plugin, Version: j.Version, Digest: j.Digest, Config: j.Config,
		Steps: []stepJSON{}, State: string(j.State), Abandoned: j.Abandoned, Priority: j.Priority.String(), Created: j.Created,
		Updated: j.Updated, AgeSeconds: j.Age.Seconds(), Records: j.Records, Batches: j.Batches, Counted: j.Counted,
		Results: j.Results, Succeeded: j.Succeeded, Failed: j.Failed, Dropped: j.Dropped, QueuedBatches: j.QueuedBatches,
		ResultMessages: j.ResultMessages, DeadLetters: j.DeadLetters, TraceID: j.TraceID}
	if out.Config == nil {
		out.Config = map[string]string{}
	}
	for _, st := range j.Steps {
		cfg := st.Config
		if cfg == nil {
			cfg = map[string]string{}
		}
		out.Steps = append(out.Steps, stepJSON{Plugin: st.Plugin, Version: st.Version, Config: cfg})
	}
	return out
}
