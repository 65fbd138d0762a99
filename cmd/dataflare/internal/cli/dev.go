//go:build !client

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
)

// startFleet starts a local fleet with the WebAssembly twins of the
// built-in plugins pushed, and returns it with the names of the plugins
// pushed. Pushing them again (a dev fleet restarted on its store) is a
// no-op.
func startFleet(ctx context.Context, cfg local.Config, log *slog.Logger) (*local.Fleet, []string, error) {
	cfg.Logger = log
	f, err := local.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	m, err := f.Push(ctx, twins.UpperName, twins.Upper)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("example plugin %s: %w", twins.UpperName, err)
	}
	log.Info("example plugin pushed", "plugin", m.Name, "version", m.Version, "digest", m.Digest)
	return f, []string{m.Name}, nil
}

func (e *env) devCmd() *cobra.Command {
	var (
		cfg         local.Config
		httpAddr    string
		allowRemote bool
		weights     []string
		admin       bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack locally until interrupted",
		Long: `Run the whole stack in this process — nats-server with JetStream, a coordinator and workers — with
the example WebAssembly plugins pushed, and print the NATS URL to point other commands at.
--workers 0 runs no worker, for attaching 'dataflare worker' processes. Stops on SIGINT/SIGTERM.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Workers < 0 {
				return usagef("--workers %d is negative", cfg.Workers)
			}
			if !allowRemote && !loopback(cfg.Listen) {
				return usagef("--listen %s is not a loopback address: the dev stack has no authentication, so anyone who reaches it could run jobs, push plugins and read results; use 127.0.0.1, or add --allow-remote if that is what you want", cfg.Listen)
			}
			log, err := e.logger(slog.LevelInfo)
			if err != nil {
				return err
			}
			if cfg.Coordinator.Weights, err = parseWeights(weights); err != nil {
				return err
			}
			if err := checkTrustedKeys(cfg.TrustedKeys); err != nil {
				return err
			}
			reg := newRegistry()
			cfg.Registerer = reg
			s, pushed, err := startFleet(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer s.Close()
			var con http.Handler
			if httpAddr != "" {
				nc, err := s.Conn("console")
				if err != nil {
					return err
				}
				if con, err = startConsole(cmd.Context(), httpAddr, nc, admin, log); err != nil {
					return err
				}
			}
			stop, bound, err := serveHTTP(httpAddr, reg, func() error {
				if !s.Server.Running() {
					return errors.New("the embedded NATS server is not running")
				}
				return nil
			}, con, log)
			if err != nil {
				return err
			}
			defer stop()
			fmt.Fprintf(e.stdout, "dataflare dev: NATS at %s (%d workers; WebAssembly plugins: %v)\n", s.URL, cfg.Workers, pushed)
			if bound != "" {
				fmt.Fprintf(e.stdout, "  console at http://%s/ (%s), metrics at http://%s/metrics, health at http://%s/healthz\n", bound, consoleMode(admin), bound, bound)
			}
			fmt.Fprintf(e.stdout, "  export NATS_URL=%s\n  then: dataflare status | dataflare submit --plugin upper --in FILE\n", s.URL)
			<-cmd.Context().Done()
			fmt.Fprintln(e.stdout, "dataflare dev: stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Workers, "workers", 2, "embedded workers (0: none)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:4222", "HOST:PORT for the NATS server")
	sharingFlags(f, &cfg.Coordinator.Topology, &weights)
	f.BoolVar(&allowRemote, "allow-remote", false, "allow --listen on a non-loopback address (the dev stack has no authentication)")
	f.StringVar(&cfg.StoreDir, "store", "", "directory for JetStream's files (default: a temporary one, removed on exit)")
	f.StringVar(&httpAddr, "http", "", "serve the web console at /, /metrics and /healthz on HOST:PORT")
	consoleAdminFlag(f, &admin)
	f.StringArrayVar(&cfg.TrustedKeys, "trusted-key", nil, "run only WebAssembly modules signed by public key `KEY` (A…, from 'dataflare plugin keygen'; repeatable). The example plugins dev pushes are unsigned")
	return cmd
}

// loopback reports whether the HOST of a HOST:PORT address is a loopback
// address (or localhost).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (e *env) demoCmd() *cobra.Command {
	var records int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a sample data set through native and WebAssembly plugins on an embedded fleet",
		Long: `Start the whole stack embedded (nats-server with JetStream in a temporary directory, a coordinator
and 2 workers), push the example WebAssembly plugin, run a sample data set through the native
'upper', its WebAssembly twin 'upper-wasm' and the 'fail' plugin, and print a summary and the
fleet's metrics. Nothing to install, nothing left behind.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if records < 1 {
				return usagef("--records %d: need at least 1", records)
			}
			log, err := e.logger(slog.LevelWarn)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			fmt.Fprintln(e.stdout, "Starting nats-server with JetStream, a coordinator and 2 workers, and pushing the example")
			fmt.Fprintln(e.stdout, "WebAssembly plugin (its first compilation takes a few seconds)…")
			s, pushed, err := startFleet(ctx, local.Config{Listen: "127.0.0.1:0", Workers: 2}, log)
			if err != nil {
				return err
			}
			defer s.Close()
			nc, err := s.Conn("demo")
			if err != nil {
				return err
			}
			return runDemo(ctx, e.stdout, nc, s.URL, pushed, records)
		},
	}
	cmd.Flags().IntVar(&records, "records", 20000, "records in the sample data set")
	return cmd
}

// demoRun is one plugin's run in the demo.
type demoRun struct {
	plugin  string
	config  plugin.Config
	outputs [][]byte
	summary client.Summary
	errors  []string
}

func runDemo(ctx context.Context, w io.Writer, nc *nats.Conn, url string, wasm []string, n int) error {
	c, err := client.New(nc)
	if err != nil {
		return err
	}
	data := sampleRecords(n)
	fmt.Fprintf(w, "NATS at %s. Sample: %d log lines of about %d bytes.\n\n", url, n, len(data[0].Value))
	runs := []*demoRun{{plugin: "upper"}}
	for _, p := range wasm {
		if p == "upper-wasm" {
			runs = append(runs, &demoRun{plugin: "upper-wasm"})
		}
	}
	runs = append(runs, &demoRun{plugin: "fail", config: plugin.Config{"match": "level=ERROR"}})
	for _, r := range runs {
		job, err := c.Submit(ctx, r.plugin, client.Records(data), client.WithConfig(r.config))
		if err != nil {
			return fmt.Errorf("%s: %w", r.plugin, err)
		}
		r.outputs = make([][]byte, 0, n)
		for out, err := range job.Results() {
			if err != nil {
				return fmt.Errorf("%s: %w", r.plugin, err)
			}
			r.outputs = append(r.outputs, out.Value)
			if out.Err != nil && len(r.errors) < 2 {
				r.errors = append(r.errors, fmt.Sprintf("record %d: %v", out.Index, out.Err))
			}
		}
		r.summary, _ = job.Wait()
		r.summary.Progress = job.Progress()
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tRECORDS\tOK\tERRORS\tTIME\tRECORDS/S")
	for _, r := range runs {
		s := r.summary
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.0f\n", r.plugin, s.Results, s.Succeeded, s.Failed,
			s.Duration.Round(time.Millisecond), float64(s.Results)/s.Duration.Seconds())
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "upper, first record:  %q\n", runs[0].outputs[0])
	if len(runs) > 2 {
		same := len(runs[0].outputs) == len(runs[1].outputs)
		for i := 0; same && i < len(runs[0].outputs); i++ {
			same = bytes.Equal(runs[0].outputs[i], runs[1].outputs[i])
		}
		if !same {
			return fmt.Errorf("upper-wasm's output differs from upper's")
		}
		fmt.Fprintln(w, "upper-wasm: byte-identical to upper on every record.")
	}
	last := runs[len(runs)-1]
	for _, e := range last.errors {
		fmt.Fprintf(w, "fail (match=level=ERROR): %s\n", e)
	}
	fmt.Fprintln(w)
	// Metrics travel in heartbeats: wait (up to a few heartbeats) until
	// they include every record run, so the table is complete.
	var want uint64
	for _, r := range runs {
		want += r.summary.Results
	}
	var st *fleet.Status
	for deadline := time.Now().Add(5 * time.Second); ; {
		if st, err = c.SystemStatus(ctx); err != nil {
			return err
		}
		var got uint64
		for _, p := range st.Plugins {
			got += p.Metrics.TotalProcessed
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	printStatus(w, st)
	fmt.Fprintln(w, "\nNext: 'dataflare dev' runs this stack until interrupted; see README.md.")
	return nil
}

// sampleRecords returns n synthetic log lines, the same on every run.
func sampleRecords(n int) []plugin.Record {
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	actions := []string{"login", "search", "checkout", "logout", "upload"}
	levels := []string{"level=INFO", "level=INFO", "level=INFO", "level=WARN", "level=ERROR"}
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	recs := make([]plugin.Record, n)
	for i := range recs {
		ts := start.Add(time.Duration(i) * 137 * time.Millisecond)
		recs[i] = plugin.Record{
			Key: fmt.Appendf(nil, "%s", users[i%len(users)]),
			Value: fmt.Appendf(nil, "%s %s user=%s@example.com action=%s ip=10.0.%d.%d latency_ms=%d",
				ts.Format(time.RFC3339Nano), levels[i*7%len(levels)], users[i%len(users)], actions[i*3%len(actions)],
				i%256, i*31%256, 5+i*17%400),
			Timestamp: ts,
		}
	}
	return recs
}
