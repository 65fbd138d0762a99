package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK           = 0
	ExitRuntime      = 1 // the command could not do its job
	ExitUsage        = 2 // bad command line
	ExitRecordErrors = 3 // submit: some records got errors
)

// usageError marks an error in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries an exit code other than 1 for an error already reported
// (or none to report).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// env is what every command gets: its streams and the global flags.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	natsURL        string
	creds          string
	tlsCert        string
	tlsKey         string
	tlsCA          string
	inboxPrefix    string
	logLevel       string

	// stopTracing flushes the trace exporter, when one was installed.
	stopTracing func()
	// abort stops the running command with a cause; denied is the first
	// permission violation NATS reported to a one-shot command.
	abort  context.CancelCauseFunc
	denied atomic.Pointer[error]
}

// Main runs the dataflare command with args and returns its exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal the command stops cleanly; a second one
	// kills the process at once.
	context.AfterFunc(ctx, stop)
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var nf notFound
	if d := e.denied.Load(); d != nil && err != nil && !errors.As(err, &nf) {
		// Whatever the command made of its canceled context, the denial
		// is the reason.
		err = fmt.Errorf("%v (the NATS user this command runs as may not do that)", *d)
	}
	if e.stopTracing != nil {
		e.stopTracing()
	}
	return e.exitCode(err)
}

func (e *env) exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(e.stderr, "dataflare: %s\n", oneLine(ee.err))
		}
		return ee.code
	}
	fmt.Fprintf(e.stderr, "dataflare: %s\n", oneLine(err))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(e.stderr, "Run 'dataflare --help' for usage.")
		return ExitUsage
	}
	return ExitRuntime
}

// isCobraUsage recognises the errors cobra returns for a bad command line.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least",
		"requires at most", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (e *env) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "dataflare",
		Short: "Run data-processing plugins over batches of records on a fleet of workers",
		Long: `dataflare runs plugins — native Go or WebAssembly — over batches of records on a fleet of
stateless workers coordinated through NATS JetStream, and gives back exactly one result per
record, in order.

Start with 'dataflare demo' (everything embedded, nothing to install), then 'dataflare dev'
for a local stack to submit to.` + buildNote,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithCancelCause(cmd.Context())
			cmd.SetContext(ctx)
			e.abort = cancel
			// Traces go where the standard OTEL_* variables say; none
			// by default.
			stop, err := setupTracing(cmd.Context(), "dataflare-"+cmd.Name())
			if err != nil {
				return err
			}
			e.stopTracing = stop
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&e.natsURL, "nats", "", "NATS server URL(s), comma-separated (default $NATS_URL, else nats://127.0.0.1:4222)")
	pf.StringVar(&e.creds, "creds", "", "NATS credentials file")
	pf.StringVar(&e.tlsCert, "tlscert", "", "TLS client certificate file")
	pf.StringVar(&e.tlsKey, "tlskey", "", "TLS client key file")
	pf.StringVar(&e.tlsCA, "tlsca", "", "TLS certificate authority file to verify the server with")
	pf.StringVar(&e.inboxPrefix, "inbox-prefix", "", "prefix of this connection's reply subjects, e.g. _INBOX_<user> (see deploy/nats; default _INBOX)")
	pf.StringVar(&e.logLevel, "log-level", "", "log level: debug, info, warn, error (default: info for daemons, warn otherwise)")
	for _, extra := range extraCommands {
		root.AddCommand(extra(e))
	}
	return root
}

// buildNote ends the root command's help: what the build leaves out.
var buildNote string

// extraCommands are added by the files that define them.
var extraCommands []func(*env) *cobra.Command

// logger returns the logger for a command: text to stderr at the
// --log-level, or def when none was given.
func (e *env) logger(def slog.Level) (*slog.Logger, error) {
	lvl := def
	if e.logLevel != "" {
		if err := lvl.UnmarshalText([]byte(e.logLevel)); err != nil {
			return nil, usagef("--log-level %q: use debug, info, warn or error", e.logLevel)
		}
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

// exactArgs requires n positional arguments, as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d: %s", cmd.CommandPath(), n, len(args), cmd.Use)
		}
		return nil
	}
}
