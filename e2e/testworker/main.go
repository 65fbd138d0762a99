// Command testworker is a dataflare worker with two extra native plugins
// that misbehave on purpose, for the fault tests in e2e/: it is how a user
// builds a worker with their own plugins (worker.Config.Plugins), and the
// plugins stand for the bugs a real one can have.
//
//   - panic: panics (failing its whole batch) when a record's value contains
//     the configured match; the worker isolates such records by halving.
//   - crash: exits the process at once when a record's value contains the
//     configured match, as a segfault in a native library would; after
//     MaxDeliver such deliveries the next worker splits the batch unrun.
//
// Both take the job's config "ms": a delay after each record, so that a
// batch beside a crashing one is still running when the process dies.
//
// Usage: testworker --nats URL [--id ID] [--parallel N] [--heartbeat D]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/worker"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS URL")
	id := flag.String("id", "", "worker id")
	parallel := flag.Int("parallel", 2, "batches at once")
	heartbeat := flag.Duration("heartbeat", time.Second, "heartbeat interval")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(*url, nats.MaxReconnects(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
	defer nc.Close()
	plugins := builtin.All()
	plugins["panic"] = matcher{name: "panic", on: func() { panic("testworker: a bug") }}
	plugins["crash"] = matcher{name: "crash", on: func() { os.Exit(7) }}
	w, err := worker.New(nc, worker.Config{ID: *id, Parallel: *parallel, Heartbeat: *heartbeat, Plugins: plugins, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
}

// matcher passes records unchanged, but calls on when a value contains the
// job's config "match"; it takes the config's "ms" milliseconds for each
// record.
type matcher struct {
	name string
	on   func()
}

func (m matcher) Info() plugin.Info {
	return plugin.Info{Name: m.name, Version: "1.0.0", Type: plugin.Transformer, APIVersion: plugin.APIVersion}
}

func (m matcher) ProcessBatch(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	match := []byte(cfg.Get("match"))
	ms, _ := strconv.Atoi(cfg.Get("ms"))
	out := make([]plugin.Result, len(recs))
	for i, r := range recs {
		if len(match) > 0 && bytes.Contains(r.Value, match) {
			m.on()
		}
		if ms > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(ms) * time.Millisecond): // the record's cost
			}
		}
		out[i].Value = r.Value
	}
	return &plugin.BatchResult{Results: out}, nil
}
