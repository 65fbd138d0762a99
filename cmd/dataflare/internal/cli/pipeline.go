package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
)

func init() {
	extraCommands = append(extraCommands, (*env).pipelineCmd)
}

// pipelineTimeout bounds one pipeline command's requests.
const pipelineTimeout = 10 * time.Second

// pipelineCtl is what the pipeline subcommands share: the environment and
// the --owner whose pipelines they manage.
type pipelineCtl struct {
	e     *env
	owner string
}

func (e *env) pipelineCmd() *cobra.Command {
	p := &pipelineCtl{e: e}
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Run plugins over a JetStream stream continuously, into a subject",
		Long: `Manage pipelines. A pipeline reads a JetStream stream (--from) from its first message, runs
each message through its steps on the fleet's workers, and publishes each result on a subject
(--to): exactly one message per source message, in source order, in a sink stream that captures
that subject with a duplicate window. A pipeline is durable: it runs on one coordinator at a time,
and another takes over within seconds when that one dies. Dropped records publish nothing; records
with errors go to the dead letters (DF_DEAD), naming the step that failed.

Pipelines belong to an owner (--owner, "anon" unless given); each command sees its owner's only.
docs/pipelines.md walks through one and states the guarantees.`,
		Example: `  dataflare pipeline create orders-up --from ORDERS --step upper --to orders.upper
  dataflare pipeline ls
  dataflare pipeline info orders-up`,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for dataflare pipeline: use create, ls, info, pause, resume, update or rm", args[0])
			}
			return usagef("pipeline needs a subcommand: create, ls, info, pause, resume, update or rm")
		},
	}
	cmd.PersistentFlags().StringVar(&p.owner, "owner", proto.DefaultOwner, "owner of the pipelines: each command sees its owner's only (NATS permissions may require yours)")
	cmd.AddCommand(p.createCmd(), p.lsCmd(), p.infoCmd(), p.pauseCmd(), p.resumeCmd(), p.updateCmd(), p.rmCmd())
	return cmd
}

// do connects a client of the owner and runs f with it, within
// pipelineTimeout.
func (p *pipelineCtl) do(cmd *cobra.Command, f func(context.Context, *client.Client) error) error {
	return p.e.withOwner(cmd, p.owner, pipelineTimeout, f)
}

// withOwner connects a client of owner (--owner, checked) for cmd and runs
// f with it, within timeout (none when 0).
func (e *env) withOwner(cmd *cobra.Command, owner string, timeout time.Duration, f func(context.Context, *client.Client) error) error {
	if !proto.ValidName(owner) {
		return usagef("--owner %q: use 1-64 of [A-Za-z0-9_-]", owner)
	}
	c, closeConn, err := e.newClient(strings.TrimPrefix(cmd.CommandPath(), "dataflare "), client.WithOwner(owner))
	if err != nil {
		return err
	}
	defer closeConn()
	ctx := cmd.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return f(ctx, c)
}

// pipelineName checks the NAME argument.
func pipelineName(name string) error {
	if !proto.ValidName(name) {
		return usagef("pipeline name %q: use 1-64 of [A-Za-z0-9_-]", name)
	}
	return nil
}

// err words the error of a request about pipeline name.
func (p *pipelineCtl) err(name string, err error) error {
	switch {
	case errors.Is(err, client.ErrNoCoordinator):
		return errNoCoordinator
	case errors.Is(err, client.ErrJobNotFound):
		return fmt.Errorf("no pipeline %s%s (see 'dataflare pipeline ls%s')", name, p.ofOwner(), p.ownerFlag())
	}
	var fe *client.Error
	if errors.As(err, &fe) {
		if strings.HasPrefix(fe.Message, "pipeline "+name) {
			return errors.New(fe.Message)
		}
		return fmt.Errorf("pipeline %s: %s", name, fe.Message)
	}
	return fmt.Errorf("pipeline %s: %w", name, err)
}

// ofOwner names the owner in a message, when it is not the default.
func (p *pipelineCtl) ofOwner() string {
	if p.owner == proto.DefaultOwner {
		return ""
	}
	return " of owner " + p.owner
}

// ownerFlag repeats --owner for a command a message suggests.
func (p *pipelineCtl) ownerFlag() string {
	if p.owner == proto.DefaultOwner {
		return ""
	}
	return " --owner " + p.owner
}

// createFlags are pipeline create's flags.
type createFlags struct {
	from, filter, to string
	steps            []string
	asJSON           bool
}

// spec checks the flags and returns the pipeline they define; its errors
// are usage errors.
func (f createFlags) spec() (client.PipelineSpec, error) {
	switch {
	case f.from == "":
		return client.PipelineSpec{}, usagef("pipeline create needs --from STREAM, the JetStream stream to read")
	case strings.ContainsAny(f.from, " .*>\t\r\n/\\"):
		return client.PipelineSpec{}, usagef("--from %q: a stream name, not a subject (capture subjects in a stream first)", f.from)
	case f.to == "":
		return client.PipelineSpec{}, usagef("pipeline create needs --to SUBJECT, the subject to publish results on")
	case !plainSubject(f.to):
		return client.PipelineSpec{}, usagef("--to %q: a subject without wildcards", f.to)
	case f.filter != "" && strings.ContainsAny(f.filter, " \t\r\n"):
		return client.PipelineSpec{}, usagef("--filter %q: a subject", f.filter)
	case len(f.steps) == 0:
		return client.PipelineSpec{}, usagef("pipeline create needs at least one --step PLUGIN[@VERSION][:k=v[,k=v]...]")
	}
	steps, err := parseSteps(f.steps)
	if err != nil {
		return client.PipelineSpec{}, err
	}
	return client.PipelineSpec{Source: f.from, Filter: f.filter, Steps: steps, Sink: f.to}, nil
}

// plainSubject reports whether s is a subject without wildcards.
func plainSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	for _, t := range strings.Split(s, ".") {
		if t == "" || strings.ContainsAny(t, "*>") {
			return false
		}
	}
	return true
}

func (p *pipelineCtl) createCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create NAME --from STREAM [--filter SUBJECT] (--step PLUGIN[@VERSION][:k=v[,k=v]...])... --to SUBJECT",
		Short: "Define a pipeline and start it",
		Long: `Define pipeline NAME and start it: it reads stream STREAM from its first message (only the
subjects matching --filter, when given), runs each message through the steps in turn (value: the
payload, key: the subject, headers: the message's), and publishes each result value on --to, with
the source message's headers plus Df-Source-Seq, under the message id
<owner>.<NAME>.<created>.<sequence>.

STREAM must exist and be a JetStream stream of your own (not the fleet's DF_*, KV_* or OBJ_*
streams); a core NATS subject is not a source: capture it in a stream first. A stream capturing
--to with a duplicate window holds exactly one message per source message, in source order. The
steps' plugins must be known to the fleet. A step without @VERSION runs the newest version of a
WebAssembly plugin each time the pipeline starts a run (on create, update, resume, takeover).`,
		Example: `  dataflare pipeline create orders-up --from ORDERS --step upper --to orders.upper
  dataflare pipeline create eu-clean --from ORDERS --filter 'orders.eu.>' \
      --step fail:match=test --step upper-wasm@1.0.0 --to orders.eu.clean`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pipelineName(name); err != nil {
				return err
			}
			spec, err := f.spec()
			if err != nil {
				return err
			}
			return p.do(cmd, func(ctx context.Context, c *client.Client) error {
				pl, err := c.CreatePipeline(ctx, name, spec)
				if err != nil {
					return p.err(name, err)
				}
				return p.confirm(pl, f.asJSON, "created pipeline %s: %s", name, flow(pl.Spec))
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "the JetStream stream to read, from its first message (required)")
	fl.StringVar(&f.filter, "filter", "", "read only the stream's messages on subjects matching SUBJECT (wildcards allowed)")
	fl.StringArrayVar(&f.steps, "step", nil, "a step, PLUGIN[@VERSION][:k=v[,k=v]...] (repeatable, at least one): each message runs through the steps in turn")
	fl.StringVar(&f.to, "to", "", "the subject to publish each result on, no wildcards (required)")
	fl.BoolVar(&f.asJSON, "json", false, "print the pipeline as JSON instead of a confirmation")
	return cmd
}

// confirm prints the pipeline as JSON when asJSON, else the confirmation
// line.
func (p *pipelineCtl) confirm(pl *client.Pipeline, asJSON bool, format string, args ...any) error {
	if asJSON {
		return writeJSON(p.e.stdout, pipelineJSONOf(pl))
	}
	fmt.Fprintf(p.e.stdout, format+"\n", args...)
	return nil
}

func (p *pipelineCtl) lsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the owner's pipelines and how they go",
		Long: `List the owner's pipelines, by name: a table NAME STATE SOURCE SINK STEPS PROCESSED ERRORS LAG
RATE/s, or with --json an array of pipelines (the fields of 'pipeline info --json').

STATE is the running coordinator's word (running, paused, or why it cannot run now), "waiting"
until a coordinator has taken the pipeline, "pausing" or "resuming" until it has seen a pause or a
resume. The counts come from the coordinator running the pipeline, reported every second; they
count from when that coordinator took it. LAG is the source messages not yet done.`,
		Example: `  dataflare pipeline ls
  dataflare pipeline ls --owner acme --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return p.do(cmd, func(ctx context.Context, c *client.Client) error {
				list, err := c.Pipelines(ctx)
				if err != nil {
					return p.listErr(err)
				}
				if asJSON {
					out := make([]pipelineJSON, len(list))
					for i := range list {
						out[i] = pipelineJSONOf(&list[i])
					}
					return writeJSON(p.e.stdout, out)
				}
				p.printList(p.e.stdout, list)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pipelines as JSON")
	return cmd
}

// listErr words the error of a list request.
func (p *pipelineCtl) listErr(err error) error {
	if errors.Is(err, client.ErrNoCoordinator) {
		return errNoCoordinator
	}
	var fe *client.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("pipeline ls: %s", fe.Message)
	}
	return fmt.Errorf("pipeline ls: %w", err)
}

// printList prints pipelines as a table.
func (p *pipelineCtl) printList(w io.Writer, list []client.Pipeline) {
	if len(list) == 0 {
		fmt.Fprintf(w, "no pipelines%s; create one with 'dataflare pipeline create NAME --from STREAM --step PLUGIN --to SUBJECT%s'\n", p.ofOwner(), p.ownerFlag())
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSOURCE\tSINK\tSTEPS\tPROCESSED\tERRORS\tLAG\tRATE/s")
	for i := range list {
		pl := &list[i]
		processed, errs, lag, rate := "-", "-", "-", "-"
		if st := pl.Status; st != nil {
			processed, errs, lag = strconv.FormatUint(st.Processed, 10), strconv.FormatUint(st.Errors, 10), strconv.FormatUint(st.Lag, 10)
			rate = strconv.FormatFloat(st.Rate, 'f', 1, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", pl.Name, shorten(pipelineState(pl), 40), source(pl.Spec),
			pl.Spec.Sink, stepNames(pl.Spec.Steps), processed, errs, lag, rate)
	}
	tw.Flush()
}

// pipelineState sums up how a pipeline goes: the running coordinator's
// state, "waiting" when none has reported, "pausing" or "resuming" while
// it has not yet seen the definition's change.
func pipelineState(pl *client.Pipeline) string {
	st := pl.Status
	switch {
	case st == nil && pl.Paused:
		return "paused"
	case st == nil:
		return "waiting"
	case pl.Paused && st.State == "running":
		return "pausing"
	case !pl.Paused && st.State == "paused":
		return "resuming"
	}
	return st.State
}

// shorten cuts s to at most n characters, marking the cut.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// source shows a pipeline's source stream and filter.
func source(spec client.PipelineSpec) string {
	if spec.Filter == "" {
		return spec.Source
	}
	return spec.Source + " (" + spec.Filter + ")"
}

// stepNames shows the steps' plugins, with their versions, in order.
func stepNames(steps []client.Step) string {
	names := make([]string, len(steps))
	for i, st := range steps {
		names[i] = st.Plugin
		if st.Version != "" {
			names[i] += "@" + st.Version
		}
	}
	return strings.Join(names, " → ")
}

// flow shows where a pipeline's messages go: source, steps, sink.
func flow(spec client.PipelineSpec) string {
	return source(spec) + " → " + stepNames(spec.Steps) + " → " + spec.Sink
}

// stepString shows a step as --step spells it.
func stepString(st client.Step) string {
	s := st.Plugin
	if st.Version != "" {
		s += "@" + st.Version
	}
	if len(st.Config) == 0 {
		return s
	}
	kv := make([]string, 0, len(st.Config))
	for _, k := range slices.Sorted(maps.Keys(st.Config)) {
		kv = append(kv, k+"="+st.Config[k])
	}
	return s + ":" + strings.Join(kv, ",")
}

func (p *pipelineCtl) infoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a pipeline's definition and how it goes",
		Long: `Show pipeline NAME: its definition (source, filter, steps, sink, revision, when it was created
and last changed) and what the coordinator running it last reported (every second): its state,
the job its batches run as, the messages processed (of which errors and dropped), the rate, the lag
(source messages not yet done), the last source sequence done, and the latency from a message's
arrival in the source to its result's in the sink (p50 and p99, over the last minute). The counts
start from when that coordinator took the pipeline. Exit 1 when there is no such pipeline.`,
		Example: `  dataflare pipeline info orders-up
  dataflare pipeline info orders-up --json | jq .status.lag`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pipelineName(name); err != nil {
				return err
			}
			return p.do(cmd, func(ctx context.Context, c *client.Client) error {
				pl, err := c.PipelineInfo(ctx, name)
				if err != nil {
					return p.err(name, err)
				}
				if asJSON {
					return writeJSON(p.e.stdout, pipelineJSONOf(pl))
				}
				printPipeline(p.e.stdout, pl, time.Now())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pipeline as JSON")
	return cmd
}

// printPipeline prints every field of a pipeline, one per line; now dates
// the status report.
func printPipeline(w io.Writer, pl *client.Pipeline, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\nowner:\t%s\nstate:\t%s\n", pl.Name, pl.Owner, pipelineState(pl))
	fmt.Fprintf(tw, "source:\tstream %s\n", pl.Spec.Source)
	if pl.Spec.Filter != "" {
		fmt.Fprintf(tw, "filter:\t%s\n", pl.Spec.Filter)
	}
	for i, st := range pl.Spec.Steps {
		label := ""
		if i == 0 {
			label = "steps:"
		}
		fmt.Fprintf(tw, "%s\t%d. %s\n", label, i+1, stepString(st))
	}
	fmt.Fprintf(tw, "sink:\t%s\n", pl.Spec.Sink)
	paused := ""
	if pl.Paused {
		paused = " (paused)"
	}
	fmt.Fprintf(tw, "revision:\t%d%s\n", pl.Revision, paused)
	fmt.Fprintf(tw, "created:\t%s\nupdated:\t%s\n", pl.Created.Local().Format(time.RFC3339), pl.Updated.Local().Format(time.RFC3339))
	st := pl.Status
	if st == nil {
		fmt.Fprintln(tw, "status:\tno coordinator has reported yet (one takes a new pipeline within seconds)")
		tw.Flush()
		return
	}
	job := st.Job
	if job == "" {
		job = "-"
	}
	fmt.Fprintf(tw, "coordinator:\t%s (reported %s, %s ago)\n", st.Coordinator, st.At.Local().Format(time.RFC3339), now.Sub(st.At).Round(100*time.Millisecond))
	fmt.Fprintf(tw, "reported state:\t%s\n", st.State)
	fmt.Fprintf(tw, "job:\t%s\nrunning revision:\t%d\n", job, st.Revision)
	fmt.Fprintf(tw, "processed:\t%d\nerrors:\t%d (in dead letters)\ndropped:\t%d\n", st.Processed, st.Errors, st.Dropped)
	fmt.Fprintf(tw, "rate:\t%.1f messages/s\nlag:\t%d source messages not yet done\n", st.Rate, st.Lag)
	last := "none yet"
	if st.LastSeq > 0 {
		last = strconv.FormatUint(st.LastSeq, 10)
	}
	fmt.Fprintf(tw, "last source seq:\t%s\n", last)
	fmt.Fprintf(tw, "latency:\tp50 %s, p99 %s (source to sink, last minute)\n", roundLatency(st.LatencyP50), roundLatency(st.LatencyP99))
	tw.Flush()
}

// roundLatency rounds a latency for reading.
func roundLatency(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

func (p *pipelineCtl) pauseCmd() *cobra.Command {
	return p.changeCmd("pause", "Pause a pipeline: its batches in flight finish, nothing more is read",
		`Pause pipeline NAME: its batches in flight finish and their results are published; nothing more
is read from its source until it resumes. Its place in the source is kept.`,
		func(ctx context.Context, c *client.Client, name string) (*client.Pipeline, error) {
			return c.PausePipeline(ctx, name)
		},
		func(pl *client.Pipeline) string {
			return fmt.Sprintf("paused pipeline %s (revision %d)", pl.Name, pl.Revision)
		})
}

func (p *pipelineCtl) resumeCmd() *cobra.Command {
	return p.changeCmd("resume", "Resume a paused pipeline where it stopped",
		`Resume pipeline NAME where it stopped: from the first source message whose result is not yet
published. The messages that came meanwhile wait in the source stream (as its limits allow).`,
		func(ctx context.Context, c *client.Client, name string) (*client.Pipeline, error) {
			return c.ResumePipeline(ctx, name)
		},
		func(pl *client.Pipeline) string {
			return fmt.Sprintf("resumed pipeline %s (revision %d)", pl.Name, pl.Revision)
		})
}

// changeCmd returns a command NAME that changes a pipeline with change and
// confirms with the line confirm words.
func (p *pipelineCtl) changeCmd(verb, short, long string, change func(context.Context, *client.Client, string) (*client.Pipeline, error),
	confirm func(*client.Pipeline) string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Long:    long,
		Example: "  dataflare pipeline " + verb + " orders-up",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pipelineName(name); err != nil {
				return err
			}
			return p.do(cmd, func(ctx context.Context, c *client.Client) error {
				pl, err := change(ctx, c, name)
				if err != nil {
					return p.err(name, err)
				}
				return p.confirm(pl, asJSON, "%s", confirm(pl))
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pipeline as JSON instead of a confirmation")
	return cmd
}

func (p *pipelineCtl) updateCmd() *cobra.Command {
	var (
		steps  []string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "update NAME (--step PLUGIN[@VERSION][:k=v[,k=v]...])...",
		Short: "Give a pipeline new steps",
		Long: `Give pipeline NAME new steps, in place of all its steps. Its batches in flight finish on the old
steps and their results are published; the messages after them run the new steps. No message is
lost or published twice. The source, filter and sink stay.`,
		Example: `  dataflare pipeline update orders-up --step fail:match=test --step upper`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pipelineName(name); err != nil {
				return err
			}
			if len(steps) == 0 {
				return usagef("pipeline update needs at least one --step PLUGIN[@VERSION][:k=v[,k=v]...]")
			}
			parsed, err := parseSteps(steps)
			if err != nil {
				return err
			}
			return p.do(cmd, func(ctx context.Context, c *client.Client) error {
				pl, err := c.UpdatePipeline(ctx, name, parsed)
				if err != nil {
					return p.err(name, err)
				}
				return p.confirm(pl, asJSON, "updated pipeline %s to revision %d: %s", name, pl.Revision, flow(pl.Spec))
			})
		},
	}
	cmd.Flags().StringArrayVar(&steps, "step", nil, "a step, PLUGIN[@VERSION][:k=v[,k=v]...] (repeatable, at least one): the new steps, in order")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pipeline as JSON instead of a confirmation")
	return cmd
}

func (p *pipelineCtl) rmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a pipeline and its place in its source",
		Long: `Remove pipeline NAME: its coordinator stops running it within a second, and its definition,
status and durable consumer on the source stream go. What it published stays in the sink; the
source stream is not touched. A pipeline created again under the same name reads its source from
the start, and publishes under the same message ids: a sink stream whose duplicate window still
holds the old ones takes the new ones for duplicates. Exit 1 when there is no such pipeline.`,
		Example: "  dataflare pipeline rm orders-up",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pipelineName(name); err != nil {
				return err
			}
			return p.do(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.RemovePipeline(ctx, name); err != nil {
					return p.err(name, err)
				}
				fmt.Fprintf(p.e.stdout, "removed pipeline %s%s\n", name, p.ofOwner())
				return nil
			})
		},
	}
}

// pipelineJSON is a pipeline as the --json flags print it: the client's
// Pipeline with stable lower_snake keys.
type pipelineJSON struct {
	Name     string              `json:"name"`
	Owner    string              `json:"owner"`
	Source   string              `json:"source"`
	Filter   string              `json:"filter"`
	Steps    []stepJSON          `json:"steps"`
	Sink     string              `json:"sink"`
	Paused   bool                `json:"paused"`
	Revision uint64              `json:"revision"`
	Created  time.Time           `json:"created"`
	Updated  time.Time           `json:"updated"`
	Status   *pipelineStatusJSON `json:"status"`
}

// stepJSON is a step of a pipelineJSON.
type stepJSON struct {
	Plugin  string            `json:"plugin"`
	Version string            `json:"version"`
	Config  map[string]string `json:"config"`
}

// pipelineStatusJSON is the status of a pipelineJSON: null until a
// coordinator reported.
type pipelineStatusJSON struct {
	State       string        `json:"state"`
	Coordinator string        `json:"coordinator"`
	Job         string        `json:"job"`
	Revision    uint64        `json:"revision"`
	At          time.Time     `json:"at"`
	Processed   uint64        `json:"processed"`
	Errors      uint64        `json:"errors"`
	Dropped     uint64        `json:"dropped"`
	Rate        float64       `json:"rate"`
	Lag         uint64        `json:"lag"`
	LastSeq     uint64        `json:"last_seq"`
	LatencyP50  time.Duration `json:"latency_p50_ns"`
	LatencyP99  time.Duration `json:"latency_p99_ns"`
}

// pipelineJSONOf converts a pipeline for --json.
func pipelineJSONOf(pl *client.Pipeline) pipelineJSON {
	out := pipelineJSON{Name: pl.Name, Owner: pl.Owner, Source: pl.Spec.Source, Filter: pl.Spec.Filter, Sink: pl.Spec.Sink,
		Paused: pl.Paused, Revision: pl.Revision, Created: pl.Created, Updated: pl.Updated, Steps: make([]stepJSON, len(pl.Spec.Steps))}
	for i, st := range pl.Spec.Steps {
		cfg := st.Config
		if cfg == nil {
			cfg = map[string]string{}
		}
		out.Steps[i] = stepJSON{Plugin: st.Plugin, Version: st.Version, Config: cfg}
	}
	if st := pl.Status; st != nil {
		out.Status = &pipelineStatusJSON{State: st.State, Coordinator: st.Coordinator, Job: st.Job, Revision: st.Revision, At: st.At,
			Processed: st.Processed, Errors: st.Errors, Dropped: st.Dropped, Rate: st.Rate, Lag: st.Lag, LastSeq: st.LastSeq,
			LatencyP50: st.LatencyP50, LatencyP99: st.LatencyP99}
	}
	return out
}
