package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

func init() {
	extraCommands = append(extraCommands, (*env).submitCmd)
}

// submitFlags are submit's flags.
type submitFlags struct {
	plugin    string
	version   string
	config    []string
	in, out   string
	format    string
	batchSize int
	timeout   time.Duration
	owner     string
	priority  string
	steps     []string
}

func (e *env) submitCmd() *cobra.Command {
	var f submitFlags
	cmd := &cobra.Command{
		Use:   "submit --plugin NAME [--config k=v]... [--in FILE|-] [--out FILE|-] [--format lines|jsonl]",
		Short: "Run a plugin over records, one per input line; print one JSON result per record, in order",
		Long: `Run a plugin over the records of FILE (or standard input), one record per line, and write one
JSON line per record, in input order, to --out (or standard output):

  {"index":N,"value":"..."}         the record's new value
  {"index":N,"value_base64":"..."}  the same, when the value is not UTF-8
  {"index":N,"dropped":true}        the plugin filtered the record out
  {"index":N,"error":"..."}         the record's error

N counts records from 0; record N is input line N+1. With --format lines (the default) a line is
the record's value. With --format jsonl a line is a JSON object:

  {"key":"...","value":"..."}  or  {"key_base64":"...","value_base64":"..."}

("key" and "timestamp", an RFC 3339 time, are optional; other fields are ignored). A line that
cannot be read as a record — malformed JSON, or longer than the record limit — gets an error
result "line L: ..." in its place and the job goes on.

The input is streamed: files of any size run in flat memory. A progress bar is shown on standard
error when it is a terminal. Exit status: 0 when every record got a result, 3 when some records
got errors, 1 when the job could not run (the results written until then stay written).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.runSubmit(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.plugin, "plugin", "p", "", "the plugin to run (this or --step)")
	fl.StringArrayVar(&f.steps, "step", nil, "a step of a chain, PLUGIN[@VERSION][:k=v[,k=v]...] (repeatable, instead of --plugin): each record runs through the steps in turn")
	fl.StringVar(&f.version, "version", "", "version of a WebAssembly plugin (default: the newest)")
	fl.StringArrayVarP(&f.config, "config", "c", nil, "plugin configuration KEY=VALUE (repeatable)")
	fl.StringVarP(&f.in, "in", "i", "-", "input FILE, or - for standard input")
	fl.StringVarP(&f.out, "out", "o", "-", "output FILE, or - for standard output")
	fl.StringVar(&f.format, "format", formatLines, "input format: lines (a line is a value) or jsonl (a line is a JSON record)")
	fl.IntVar(&f.batchSize, "batch-size", 0, "records per batch (default: the size the fleet chooses)")
	fl.DurationVar(&f.timeout, "batch-timeout", 0, "how long one batch may run on a worker (default and upper bound: the worker's, 1m unless set; at most 1h)")
	fl.StringVar(&f.priority, "priority", "normal", "the job's priority among its owner's: high runs before queued normal jobs, low after")
	fl.StringVar(&f.owner, "owner", proto.DefaultOwner, "owner of the job: its id and results are under this name (NATS permissions may require yours)")
	return cmd
}

// parseConfig turns KEY=VALUE arguments into a plugin configuration.
func parseConfig(args []string) (plugin.Config, error) {
	if len(args) == 0 {
		return nil, nil
	}
	cfg := make(plugin.Config, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("--config %q: want KEY=VALUE", a)
		}
		if _, dup := cfg[k]; dup {
			return nil, usagef("--config: key %q given twice", k)
		}
		cfg[k] = v
	}
	return cfg, nil
}

// parseSteps parses --step flags: PLUGIN[@VERSION][:k=v[,k=v]...].
func parseSteps(args []string) ([]client.Step, error) {
	steps := make([]client.Step, 0, len(args))
	for _, a := range args {
		spec, cfgs, _ := strings.Cut(a, ":")
		name, version, _ := strings.Cut(spec, "@")
		if !proto.ValidName(name) {
			return nil, usagef("--step %q: want PLUGIN[@VERSION][:k=v[,k=v]...]", a)
		}
		st := client.Step{Plugin: name, Version: version}
		if cfgs != "" {
			cfg, err := parseConfig(strings.Split(cfgs, ","))
			if err != nil {
				return nil, usagef("--step %q: want PLUGIN[@VERSION][:k=v[,k=v]...]", a)
			}
			st.Config = cfg
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// runSubmit runs 'dataflare submit: each step is a method of submission.
func (e *env) runSubmit(ctx context.Context, f submitFlags) error {
	s, err := newSubmission(e, f)
	if err != nil {
		return err
	}
	if err := s.openInput(); err != nil {
		return err
	}
	defer s.closeInput()
	c, closeConn, err := e.newClient("submit", client.WithOwner(f.owner))
	if err != nil {
		return err
	}
	defer closeConn()
	if err := s.start(ctx, c); err != nil {
		return err
	}
	defer s.job.Close()
	if err := s.openOutput(); err != nil {
		cancelJob(s.job)
		return err
	}
	jobErr := s.writeResults()
	jobErr = s.finishOutput(jobErr)
	return s.outcome(ctx, jobErr)
}

// submission is one run of 'dataflare submit': its flags and options, its
// input and output, the job and the tally of its results. Its methods are
// the steps of the run, in order.
type submission struct {
	e    *env
	f    submitFlags
	opts []client.SubmitOption

	inFile *os.File // nil when the input is standard input
	inSize int64    // the input file's size, -1 when it is not a regular file
	input  *inputReader

	job *client.Job

	outFile *os.File // nil when the output is standard output
	w       *resultWriter
	bar     *progress

	failed, total uint64
}

// newSubmission checks submit's flags and builds the job's options; its
// errors are usage errors.
func newSubmission(e *env, f submitFlags) (*submission, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	s := &submission{e: e, f: f, inSize: -1}
	if err := s.buildOptions(); err != nil {
		return nil, err
	}
	return s, nil
}

// check rejects a bad command line.
func (f submitFlags) check() error {
	switch {
	case f.plugin == "" && len(f.steps) == 0:
		return usagef("submit needs --plugin NAME (or --step PLUGIN...)")
	case f.plugin != "" && len(f.steps) > 0:
		return usagef("give --plugin or --step, not both")
	case len(f.steps) > 0 && (f.version != "" || len(f.config) > 0):
		return usagef("--version and --config go with --plugin; a step carries its own: --step PLUGIN@VERSION:k=v")
	case f.format != formatLines && f.format != formatJSONL:
		return usagef("--format %q: use lines or jsonl", f.format)
	case f.batchSize < 0:
		return usagef("--batch-size %d is negative", f.batchSize)
	case f.timeout < 0 || f.timeout > time.Hour:
		return usagef("--batch-timeout %v: use a duration up to 1h", f.timeout)
	case f.priority != "high" && f.priority != "normal" && f.priority != "low":
		return usagef("--priority %q: use high, normal or low", f.priority)
	case !proto.ValidName(f.owner):
		return usagef("--owner %q: use 1-64 of [A-Za-z0-9_-]", f.owner)
	}
	return nil
}

// buildOptions turns the flags into the job's submit options.
func (s *submission) buildOptions() error {
	cfg, err := parseConfig(s.f.config)
	if err != nil {
		return err
	}
	if len(s.f.steps) > 0 {
		steps, err := parseSteps(s.f.steps)
		if err != nil {
			return err
		}
		s.opts = append(s.opts, client.WithSteps(steps...))
	} else {
		s.opts = append(s.opts, client.WithConfig(cfg), client.WithVersion(s.f.version))
	}
	if s.f.batchSize > 0 {
		s.opts = append(s.opts, client.WithBatchSize(s.f.batchSize))
	}
	if s.f.timeout > 0 {
		s.opts = append(s.opts, client.WithBatchTimeout(s.f.timeout))
	}
	prio, err := fleet.ParsePriority(s.f.priority)
	if err != nil {
		return usagef("--priority %q: use high, normal or low", s.f.priority)
	}
	s.opts = append(s.opts, client.WithPriority(prio))
	return nil
}

// openInput opens --in (standard input for "-") and notes the size of a
// regular file, which the progress bar follows.
func (s *submission) openInput() error {
	var in io.Reader = s.e.stdin
	if s.f.in != "-" {
		file, err := os.Open(s.f.in)
		if err != nil {
			return fmt.Errorf("input: %w", err)
		}
		if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
			s.inSize = st.Size()
		}
		s.inFile, in = file, file
	}
	s.input = newInputReader(in, s.f.format)
	return nil
}

// closeInput closes the input file, if there is one.
func (s *submission) closeInput() {
	if s.inFile != nil {
		s.inFile.Close()
	}
}

// start submits the job, its records read from the input as it asks.
func (s *submission) start(ctx context.Context, c *client.Client) error {
	job, err := c.Submit(ctx, s.f.plugin, s.input.source(), s.opts...)
	if err != nil {
		what := s.f.plugin
		if what == "" {
			what = "the chain"
		}
		return submitError(what, err)
	}
	s.job = job
	return nil
}

// openOutput creates --out (standard output for "-") and the progress bar.
func (s *submission) openOutput() error {
	var out io.Writer = s.e.stdout
	if s.f.out != "-" {
		file, err := os.Create(s.f.out)
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		s.outFile, out = file, file
	}
	s.w = newResultWriter(out)
	s.bar = s.e.progress(s.inSize, s.input)
	return nil
}

// writeResults writes the job's results as they come, in input order, and
// returns the error that ended the job early, if any.
func (s *submission) writeResults() error {
	for o, err := range s.job.Results() {
		if err != nil {
			return err
		}
		if err := s.write(o); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	}
	return nil
}

// write writes the line of one result, the input line's error in its place
// when the line could not be read as a record, and counts it.
func (s *submission) write(o client.Output) error {
	msg, bad := s.input.bad.take(o.Index)
	if bad || o.Err != nil {
		s.failed++
	}
	s.total++
	if err := s.w.write(o.Index, o.Result, msg, bad); err != nil {
		return err
	}
	s.bar.update(s.total)
	return nil
}

// finishOutput clears the progress bar, flushes and closes the output, and
// returns jobErr, or else the output's error.
func (s *submission) finishOutput(jobErr error) error {
	s.bar.finish()
	if err := s.w.flush(); err != nil && jobErr == nil {
		jobErr = fmt.Errorf("output: %w", err)
	}
	if s.outFile != nil {
		if err := s.outFile.Close(); err != nil && jobErr == nil {
			jobErr = fmt.Errorf("output: %w", err)
		}
	}
	return jobErr
}

// outcome reports how the job ended: the error that stopped it (the job
// then cancelled), exit status ExitRecordErrors when some records got
// errors, else nil and, on a terminal, a summary line.
func (s *submission) outcome(ctx context.Context, jobErr error) error {
	switch {
	case jobErr != nil && ctx.Err() != nil:
		cancelJob(s.job)
		return fmt.Errorf("interrupted after %d results; job %s cancelled", s.total, s.job.ID())
	case jobErr != nil:
		cancelJob(s.job)
		return fmt.Errorf("after %d results: %w", s.total, jobErr)
	case s.failed > 0:
		return exitError{code: ExitRecordErrors, err: fmt.Errorf("%d of %d records got errors", s.failed, s.total)}
	}
	if s.bar.on {
		fmt.Fprintf(s.e.stderr, "dataflare: %d records, all processed (job %s)\n", s.total, s.job.ID())
	}
	return nil
}

// cancelJob cancels a job in the fleet, briefly: the command is ending
// anyway.
func cancelJob(job *client.Job) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	job.Cancel(ctx)
}

// submitError words the error of starting a job.
func submitError(name string, err error) error {
	switch {
	case errors.Is(err, client.ErrNoCoordinator):
		return errNoCoordinator
	case errors.Is(err, client.ErrUnknownPlugin), errors.Is(err, client.ErrNoWorkers):
		return err
	}
	return fmt.Errorf("submit to %s: %w", name, err)
}

// errNoCoordinator is the error of a request nobody answered.
var errNoCoordinator = errors.New("no coordinator answered: is 'dataflare coordinator' (or 'dataflare dev') running on this NATS?")

// requestError words the error of a status or report request.
func requestError(err error) error {
	if errors.Is(err, client.ErrNoCoordinator) {
		return errNoCoordinator
	}
	return err
}

// progress is submit's progress bar on standard error; it shows nothing
// when standard error is not a terminal. Beside the bar it says the results
// so far, the records per second over the last seconds, and, when the
// input is a file of known size, the time left.
type progress struct {
	on    bool
	bar   *progressbar.ProgressBar
	input *inputReader
	size  int64
	last  time.Time
	rate  rateMeter
}

func (e *env) progress(size int64, input *inputReader) *progress {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription("results"),
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(false),
	}
	max := int64(-1)
	if size > 0 {
		// A regular file: the bar follows the bytes read.
		max = size
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionShowCount())
	}
	return &progress{on: true, bar: progressbar.NewOptions64(max, opts...), input: input, size: size}
}

func (p *progress) update(results uint64) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 50*time.Millisecond {
		return
	}
	p.last = now
	read := int64(0)
	if p.size > 0 {
		read = min(p.input.bytesRead.Load(), p.size)
	}
	p.rate.add(now, results, read)
	p.bar.Describe(p.rate.text(results, p.size))
	if p.size > 0 {
		p.bar.Set64(read)
		return
	}
	p.bar.Set64(int64(results))
}

func (p *progress) finish() {
	if p.on {
		p.bar.Clear()
		p.bar.Exit()
	}
}

// rateWindow is how far back the progress bar's rates look.
const rateWindow = 5 * time.Second

// rateMeter follows the results and the input bytes read over the last
// rateWindow: their rates, and from them the time left.
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	at      time.Time
	results uint64
	read    int64
}

// add records the counts at now, forgetting what is older than the
// window (keeping one sample before it, the rates' start).
func (m *rateMeter) add(now time.Time, results uint64, read int64) {
	m.samples = append(m.samples, rateSample{now, results, read})
	drop := 0
	for drop+1 < len(m.samples)-1 && now.Sub(m.samples[drop+1].at) >= rateWindow {
		drop++
	}
	m.samples = m.samples[drop:]
}

// rates returns the results and bytes per second over the window; 0 until
// there are two samples.
func (m *rateMeter) rates() (results, bytes float64) {
	if len(m.samples) < 2 {
		return 0, 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	return float64(last.results-first.results) / secs, float64(last.read-first.read) / secs
}

// text says the results so far, the records per second and, when the
// input's size is known and it is being read, the time left to read it
// (the results follow within the job's window).
func (m *rateMeter) text(results uint64, size int64) string {
	perSec, bytesPerSec := m.rates()
	s := fmt.Sprintf("%d results, %.0f records/s", results, perSec)
	if size <= 0 || len(m.samples) == 0 {
		return s
	}
	left := size - m.samples[len(m.samples)-1].read
	switch {
	case left <= 0:
		return s + ", ETA: finishing"
	case bytesPerSec > 0:
		return s + ", ETA " + (time.Duration(float64(left) / bytesPerSec * float64(time.Second))).Round(time.Second).String()
	}
	return s + ", ETA -"
}
