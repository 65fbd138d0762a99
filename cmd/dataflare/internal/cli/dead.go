package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
)

func init() {
	extraCommands = append(extraCommands, (*env).deadCmd)
}

func (e *env) deadCmd() *cobra.Command {
	o := &opsCtl{e: e}
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List, show and replay dead letters: records that failed on every delivery",
		Long: `Dead letters are records the fleet gave up on: their plugin failed their batch however it was
split (the record alone still failed), or the workers running them died every time. Each is kept in
DF_DEAD with its job, index, key, value, error and attempts, for the fleet's retention (24 h by
default); its id is OWNER.SEQUENCE. A job's other records are not held up by them.

Each command sees the dead letters of one owner (--owner, "anon" unless given); NATS permissions
keep each owner to its own (deploy/nats/auth.conf).`,
		Example: `  dataflare dead ls
  dataflare dead show anon.42
  dataflare dead replay --job anon.6P9oA6kfXq0JfWc2bXbS1w --plugin upper`,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for dataflare dead: use ls, show or replay", args[0])
			}
			return usagef("dead needs a subcommand: ls, show or replay")
		},
	}
	cmd.PersistentFlags().StringVar(&o.owner, "owner", proto.DefaultOwner, "owner whose dead letters to see (NATS permissions may require yours)")
	cmd.AddCommand(o.deadLsCmd(), o.deadShowCmd(), o.deadReplayCmd())
	return cmd
}

func (o *opsCtl) deadLsCmd() *cobra.Command {
	var (
		job    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "ls [--job ID] [--json]",
		Short: "List dead letters, the newest first",
		Long: `List the owner's dead letters (with --job, one job's), the newest first (at most 100): a table
ID JOB INDEX PLUGIN ATTEMPTS AGE ERROR, or with --json an array (the fields of 'dead show --json',
key and value cut to their first 256 bytes, "preview" set when they were).`,
		Example: `  dataflare dead ls
  dataflare dead ls --job anon.6P9oA6kfXq0JfWc2bXbS1w --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if job != "" {
				if err := jobID(job); err != nil {
					return err
				}
			}
			return o.e.withOwner(cmd, o.owner, opsTimeout, func(ctx context.Context, c *client.Client) error {
				letters, err := c.DeadLetters(ctx, client.DeadFilter{Job: job})
				if err != nil {
					if job != "" {
						return o.err("job "+job, err)
					}
					return o.err("dead letters", err)
				}
				if asJSON {
					out := make([]deadJSON, len(letters))
					for i := range letters {
						out[i] = deadJSONOf(&letters[i])
					}
					return writeJSON(o.e.stdout, out)
				}
				printDeadLetters(o.e.stdout, letters, time.Now())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only the dead letters of job ID")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the dead letters as JSON")
	return cmd
}

// printDeadLetters prints dead letters as a table; now dates them.
func printDeadLetters(w io.Writer, letters []client.DeadLetterInfo, now time.Time) {
	if len(letters) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tJOB\tINDEX\tPLUGIN\tATTEMPTS\tAGE\tERROR")
	for i := range letters {
		d := &letters[i]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", d.ID, d.Job, d.Index, d.Plugin, d.Attempts, roundAge(now.Sub(d.At)),
			shorten(oneLineText(d.Error), 60))
	}
	tw.Flush()
	if len(letters) == proto.DefaultListLimit {
		fmt.Fprintf(w, "(the %d newest)\n", len(letters))
	}
}

// oneLineText puts s on one line.
func oneLineText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (o *opsCtl) deadShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a dead letter whole: its record, error and attempts",
		Long: `Show dead letter ID (OWNER.SEQUENCE, as 'dead ls' shows it): its job and index, plugin and digest,
the worker and attempts, when, its error, and the record's key and value (as text when they are
UTF-8, else base64), its size and SHA-256. A record over 128 KiB is stored cut ("truncated"): its
size and digest are the whole value's. Exit 1 when there is no such dead letter (or it is another
owner's).`,
		Example: `  dataflare dead show anon.42
  dataflare dead show anon.42 --json | jq -r .value`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if _, _, ok := proto.ParseDeadID(id); !ok {
				return usagef("dead letter id %q: want OWNER.SEQUENCE, as 'dataflare dead ls' shows it", id)
			}
			return o.e.withOwner(cmd, o.owner, opsTimeout, func(ctx context.Context, c *client.Client) error {
				d, err := c.DeadLetter(ctx, id)
				if err != nil {
					return o.err("dead letter "+id, err)
				}
				if asJSON {
					return writeJSON(o.e.stdout, deadJSONOf(d))
				}
				printDeadLetter(o.e.stdout, d)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the dead letter as JSON")
	return cmd
}

// printDeadLetter prints every field of a dead letter, one per line.
func printDeadLetter(w io.Writer, d *client.DeadLetterInfo) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nowner:\t%s\njob:\t%s\nindex:\t%d\nplugin:\t%s\n", d.ID, d.Owner, d.Job, d.Index, d.Plugin)
	if d.Digest != "" {
		fmt.Fprintf(tw, "digest:\t%s\n", d.Digest)
	}
	fmt.Fprintf(tw, "worker:\t%s\nattempts:\t%d\nat:\t%s\n", d.Worker, d.Attempts, d.At.Local().Format(time.RFC3339))
	fmt.Fprintf(tw, "error:\t%s\n", oneLineText(d.Error))
	if len(d.Key) > 0 {
		fmt.Fprintf(tw, "key:\t%s\n", showBytes(d.Key))
	}
	cut := ""
	if d.Truncated {
		cut = fmt.Sprintf(" (truncated: the first %d bytes are kept)", len(d.Value))
	}
	fmt.Fprintf(tw, "value bytes:\t%d%s\nvalue sha256:\t%s\n", d.ValueBytes, cut, strings.TrimPrefix(d.ValueSHA256, "sha256:"))
	tw.Flush()
	fmt.Fprintf(w, "value:\n%s\n", showBytes(d.Value))
}

// showBytes shows b as text when it is UTF-8, else as base64 (so marked).
func showBytes(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

func (o *opsCtl) deadReplayCmd() *cobra.Command {
	var (
		job, pluginName, out string
		all                  bool
	)
	cmd := &cobra.Command{
		Use:   "replay (--job ID | --all) [--plugin NAME[@VERSION]] [--out FILE]",
		Short: "Run dead-lettered records again, as a new job, and say which now succeed",
		Long: `Run the dead-lettered records of job ID (--job), or all of the owner's (--all), again: as a new
job of the owner per job they came from, each with its job's plugin (or steps), version and
configuration — or with --plugin NAME[@VERSION] instead (the job's configuration goes along when
NAME is the job's plugin). Prints one line per record (its dead letter, job, index, and whether it
now succeeds) and a summary; --out FILE writes the outcomes as JSON lines instead:

  {"dead_letter":"...","job":"...","index":N,"replay":"NEW JOB","ok":true,"value":"..."}
  {"dead_letter":"...","job":"...","index":N,"replay":"NEW JOB","ok":false,"error":"..."}

The dead letters stay (until the fleet's retention passes); a record that fails on every delivery
again gets a dead letter of the new job. A record stored cut (over 128 KiB) cannot be replayed: it
is reported failed. Exit status: 0 when every record now succeeds, 3 when some failed again, 1
when the replay could not run.`,
		Example: `  dataflare dead replay --job anon.6P9oA6kfXq0JfWc2bXbS1w
  dataflare dead replay --all --plugin parse@1.2.0 --out replay.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := replaySpec(job, all, pluginName)
			if err != nil {
				return err
			}
			return o.e.withOwner(cmd, o.owner, 0, func(ctx context.Context, c *client.Client) error {
				rep, err := c.Replay(ctx, spec)
				if err != nil {
					if job != "" {
						return o.err("job "+job, err)
					}
					return o.err("replay", err)
				}
				return o.printReplay(rep, out)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&job, "job", "", "replay the dead letters of job ID")
	fl.BoolVar(&all, "all", false, "replay every dead letter of the owner")
	fl.StringVar(&pluginName, "plugin", "", "run the records with plugin NAME[@VERSION] instead of their job's")
	fl.StringVarP(&out, "out", "o", "", "write the outcomes to FILE as JSON lines")
	return cmd
}

// replaySpec checks replay's flags.
func replaySpec(job string, all bool, pluginName string) (client.ReplaySpec, error) {
	switch {
	case job == "" && !all:
		return client.ReplaySpec{}, usagef("dead replay needs --job ID or --all")
	case job != "" && all:
		return client.ReplaySpec{}, usagef("give --job or --all, not both")
	case job != "":
		if err := jobID(job); err != nil {
			return client.ReplaySpec{}, err
		}
	}
	spec := client.ReplaySpec{Job: job, All: all}
	if pluginName != "" {
		spec.Plugin, spec.Version, _ = strings.Cut(pluginName, "@")
		if !proto.ValidName(spec.Plugin) {
			return client.ReplaySpec{}, usagef("--plugin %q: want NAME[@VERSION]", pluginName)
		}
	}
	return spec, nil
}

// replayLine is one record's outcome in replay's --out.
type replayLine struct {
	DeadLetter  string `json:"dead_letter"`
	Job         string `json:"job"`
	Index       uint64 `json:"index"`
	Replay      string `json:"replay"`
	OK          bool   `json:"ok"`
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
	Dropped     bool   `json:"dropped,omitempty"`
	Error       string `json:"error,omitempty"`
}

// printReplay prints a replay's outcomes (to out, as JSON lines, when
// given) and its summary, and returns the command's outcome.
func (o *opsCtl) printReplay(rep *client.ReplayReport, out string) error {
	if len(rep.Records) == 0 {
		fmt.Fprintln(o.e.stdout, "no dead letters to replay")
		return nil
	}
	if out != "" {
		if err := writeReplay(out, rep); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	} else {
		tw := tabwriter.NewWriter(o.e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEAD LETTER\tJOB\tINDEX\tREPLAY\tOUTCOME")
		for _, r := range rep.Records {
			outcome := "ok"
			switch {
			case r.Err != nil:
				outcome = "failed: " + shorten(oneLineText(r.Err.Error()), 60)
			case r.Dropped:
				outcome = "ok (dropped)"
			}
			replay := r.Replay
			if replay == "" {
				replay = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.DeadLetter, r.Job, r.Index, replay, outcome)
		}
		tw.Flush()
	}
	fmt.Fprintf(o.e.stdout, "replayed %d records as job %s: %d now succeed, %d failed\n", len(rep.Records),
		strings.Join(rep.Jobs, ", "), rep.Succeeded, rep.Failed)
	if rep.Failed > 0 {
		return exitError{code: ExitRecordErrors}
	}
	return nil
}

// writeReplay writes a replay's outcomes to file out as JSON lines.
func writeReplay(out string, rep *client.ReplayReport) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	for _, r := range rep.Records {
		l := replayLine{DeadLetter: r.DeadLetter, Job: r.Job, Index: r.Index, Replay: r.Replay, OK: r.OK, Dropped: r.Dropped}
		switch {
		case r.Err != nil:
			l.Error = r.Err.Error()
		case utf8.Valid(r.Value):
			l.Value = string(r.Value)
		default:
			l.ValueBase64 = base64.StdEncoding.EncodeToString(r.Value)
		}
		if err := writeJSONLine(f, l); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// deadJSON is a dead letter as the --json flags print it.
type deadJSON struct {
	ID          string    `json:"id"`
	Owner       string    `json:"owner"`
	Job         string    `json:"job"`
	Index       uint64    `json:"index"`
	Plugin      string    `json:"plugin"`
	Digest      string    `json:"digest"`
	Error       string    `json:"error"`
	Key         string    `json:"key,omitempty"`
	KeyBase64   string    `json:"key_base64,omitempty"`
	Value       string    `json:"value,omitempty"`
	ValueBase64 string    `json:"value_base64,omitempty"`
	ValueBytes  int       `json:"value_bytes"`
	ValueSHA256 string    `json:"value_sha256"`
	Truncated   bool      `json:"truncated"`
	Preview     bool      `json:"preview"`
	Worker      string    `json:"worker"`
	Attempts    int       `json:"attempts"`
	At          time.Time `json:"at"`
}

// deadJSONOf converts a dead letter for --json.
func deadJSONOf(d *client.DeadLetterInfo) deadJSON {
	out := deadJSON{ID: d.ID, Owner: d.Owner, Job: d.Job, Index: d.Index, Plugin: d.Plugin, Digest: d.Digest, Error: d.Error,
		ValueBytes: d.ValueBytes, ValueSHA256: d.ValueSHA256, Truncated: d.Truncated, Preview: d.Preview, Worker: d.Worker,
		Attempts: d.Attempts, At: d.At}
	if utf8.Valid(d.Key) {
		out.Key = string(d.Key)
	} else {
		out.KeyBase64 = base64.StdEncoding.EncodeToString(d.Key)
	}
	if utf8.Valid(d.Value) {
		out.Value = string(d.Value)
	} else {
		out.ValueBase64 = base64.StdEncoding.EncodeToString(d.Value)
	}
	return out
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
