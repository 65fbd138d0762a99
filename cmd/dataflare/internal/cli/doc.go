// Package cli is the dataflare command: its cobra commands, flags, exit
// codes and error messages — the CLI contract of docs/cli.md. cmd/dataflare
// only calls Main:
//
//	func main() {
//		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
//	}
//
// Main runs one command and returns its exit code: ExitOK, ExitRuntime (the
// command could not do its job), ExitUsage (a bad command line) or
// ExitRecordErrors (submit: some records got errors). Errors are printed as
// one line on stderr, never as a stack trace. Tests call Main in-process
// with their own streams:
//
//	var out, errs bytes.Buffer
//	code := cli.Main([]string{"--nats", url, "submit", "--plugin", "upper"}, strings.NewReader("a\nb\n"), &out, &errs)
//
// The first SIGINT or SIGTERM cancels the command's context (daemons drain,
// submit cancels its job); a second one kills the process. Traces are
// exported with OTLP when the standard OTEL_* variables ask for it.
package cli
