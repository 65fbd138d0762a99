//go:build !client

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/memlimit"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

func (e *env) coordinatorCmd() *cobra.Command {
	var (
		id        string
		httpAddr  string
		topo      proto.Topology
		heartbeat time.Duration
		weights   []string
		grants    []string
		admin     bool
	)
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator against an existing NATS server or cluster",
		Long: `Run a coordinator: it creates the streams, consumer and buckets (idempotently), accepts jobs and
batches from clients, pins plugins, chooses batch sizes, dead-letters poison records and answers
status and report requests. Run several for availability: they share the work.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := e.logger(slog.LevelInfo)
			if err != nil {
				return err
			}
			nc, err := e.connect("coordinator", true)
			if err != nil {
				return err
			}
			defer nc.Close()
			w, err := parseWeights(weights)
			if err != nil {
				return err
			}
			g, err := parseGrants(grants)
			if err != nil {
				return err
			}
			reg := newRegistry()
			cfg := coordinator.Config{ID: id, Topology: topo, Heartbeat: heartbeat, Weights: w, PipelineGrants: g, Registerer: reg, Logger: log}
			cfg.Modules, err = e.moduleResolver(cmd.Context(), nc, max(topo.Replicas, 1))
			if err != nil {
				return err
			}
			c, err := coordinator.New(nc, cfg)
			if err != nil {
				return err
			}
			con, err := startConsole(cmd.Context(), httpAddr, nc, admin, log)
			if err != nil {
				return err
			}
			stop, _, err := serveHTTP(httpAddr, reg, natsHealth(nc, c.Ready), con, log)
			if err != nil {
				return err
			}
			defer stop()
			return c.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "coordinator id (default: random)")
	f.StringVar(&httpAddr, "http", "", "serve the web console at /, /metrics and /healthz on HOST:PORT")
	consoleAdminFlag(f, &admin)
	f.IntVar(&topo.Replicas, "replicas", 1, "replicas of every stream and bucket (3 on a production cluster)")
	f.DurationVar(&topo.AckWait, "ack-wait", proto.DefaultAckWait, "how long a batch may go without a sign of life from its worker")
	f.IntVar(&topo.MaxDeliver, "max-deliver", proto.DefaultMaxDeliver, "deliveries of a batch before it is split as poison")
	f.DurationVar(&topo.Retention, "retention", proto.DefaultRetention, "how long unread results and job records are kept")
	f.DurationVar(&heartbeat, "heartbeat", proto.DefaultHeartbeat, "the interval workers send heartbeats at")
	sharingFlags(f, &topo, &weights)
	f.StringArrayVar(&grants, "pipeline-grant", nil, "let OWNER's pipelines read STREAM into subjects matching SINK, OWNER:STREAM:SINK (repeatable; * for any owner or stream). Without any, every owner may read any stream but the fleet's: set them on a shared fleet")
	return cmd
}

// parseGrants turns --pipeline-grant flags into grants; nil for none.
func parseGrants(flags []string) ([]coordinator.PipelineGrant, error) {
	var gs []coordinator.PipelineGrant
	for _, f := range flags {
		g, err := coordinator.ParsePipelineGrant(f)
		if err != nil {
			return nil, usagef("--pipeline-grant %q: want OWNER:STREAM:SINK (%v)", f, err)
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// sharingFlags adds the flags of how owners share a fleet.
func sharingFlags(f *pflag.FlagSet, topo *proto.Topology, weights *[]string) {
	f.StringArrayVar(weights, "owner-weight", nil, "an owner's share of the workers, OWNER=WEIGHT (repeatable; default 1 each)")
	f.BoolVar(&topo.FIFO, "fifo", false, "no fair sharing: every owner's batches in one queue, in the order they came (chosen when the streams are first created)")
	f.IntVar(&topo.MaxAckPending, "owner-in-flight", proto.DefaultMaxAckPending, "the most batches of one owner and priority running at once across the fleet")
	f.Int64Var(&topo.MaxPendingBytes, "owner-queued-bytes", proto.DefaultMaxPendingBytes, "the most bytes of batches one owner may have queued (beyond: its submitters wait)")
	f.Int64Var(&topo.MaxResultBytes, "owner-result-bytes", proto.DefaultMaxResultBytes, "the most bytes of unread results one owner may have")
}

// parseWeights turns OWNER=WEIGHT flags into weights; a malformed one is a
// usage error.
func parseWeights(flags []string) (map[string]float64, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	w := make(map[string]float64, len(flags))
	for _, f := range flags {
		owner, v, ok := strings.Cut(f, "=")
		x, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || !proto.ValidName(owner) || !(x > 0) || x > 1e6 {
			return nil, usagef("--owner-weight %q: want OWNER=WEIGHT, a positive number up to 1e6", f)
		}
		w[owner] = x
	}
	return w, nil
}

func (e *env) workerCmd() *cobra.Command {
	var (
		cfg      worker.Config
		httpAddr string
		cacheDir string
		trusted  []string
		budget   string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker against an existing NATS server or cluster",
		Long: `Run a worker: it pulls batches, runs them through native or WebAssembly plugins and publishes the
results. SIGTERM drains it: it stops pulling, finishes the batches it runs and leaves.

With --trusted-key, it runs only WebAssembly modules signed by one of the keys ('dataflare plugin
push --sign'): it never compiles another, and fails its records with "module X@V is not signed by
a trusted key".`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTrustedKeys(trusted); err != nil {
				return err
			}
			log, err := e.logger(slog.LevelInfo)
			if err != nil {
				return err
			}
			pcfg := pool.DefaultConfig()
			auto, err := parseBudget(budget, &pcfg.Budget)
			if err != nil {
				return err
			}
			nc, err := e.connect("worker", true)
			if err != nil {
				return err
			}
			defer nc.Close()
			if auto {
				pcfg.Budget = autoBudget(log)
			}
			reg := newRegistry()
			cfg.Registerer, cfg.Logger = reg, log
			// One pool for result encoding and guest output, warmed so
			// that the first batches find their buffers.
			bufs, err := pool.New(pcfg)
			if err != nil {
				return err
			}
			defer bufs.Close()
			if n, err := bufs.Warmup(); err == nil {
				log.Info("buffer pool warmed", "buffers", n, "budget_bytes", pcfg.Budget)
			}
			cfg.Pool = bufs
			mods, closeMods, err := workerModules(cmd.Context(), nc, cacheDir, cfg.Parallel, bufs, reg, log, trusted...)
			if err != nil {
				return err
			}
			defer closeMods()
			cfg.Modules = mods
			w, err := worker.New(nc, cfg)
			if err != nil {
				return err
			}
			stop, _, err := serveHTTP(httpAddr, reg, natsHealth(nc, w.Ready), nil, log)
			if err != nil {
				return err
			}
			defer stop()
			return w.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "worker id, 1-64 of [A-Za-z0-9_-] (default: host name and a random suffix)")
	f.IntVar(&cfg.Parallel, "parallel", 0, "batches run at once (default: the number of CPUs)")
	f.StringVar(&httpAddr, "http", "", "serve /metrics and /healthz on HOST:PORT")
	f.StringVar(&cacheDir, "cache-dir", "", "directory for compiled WebAssembly modules (default: none, compile on every start)")
	f.StringVar(&budget, "memory-budget", "auto", "the buffer pool's budget, `SIZE` such as 512MiB: past it buffers are plain allocations and the worker reports memory pressure, which shrinks the batches sent to it. auto: half the memory limit (GOMEMLIMIT, else the cgroup's, which then also sets the Go memory limit to 90% of it), none without one; none: no budget")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "how long a stopping worker waits for its running batches")
	f.DurationVar(&cfg.BatchTimeout, "batch-timeout", worker.DefaultBatchTimeout, "how long one batch may run (a job may ask for less)")
	f.DurationVar(&cfg.Heartbeat, "heartbeat", proto.DefaultHeartbeat, "the interval between heartbeats")
	f.StringArrayVar(&trusted, "trusted-key", nil, "run only WebAssembly modules signed by public key `KEY` (A…, from 'dataflare plugin keygen'; repeatable)")
	return cmd
}

// newRegistry returns a Prometheus registry with the Go and process
// collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// natsHealth reports an error while the connection is down, or while ready
// (when given) says the daemon is not serving yet or any more.
func natsHealth(nc *nats.Conn, ready func() bool) func() error {
	return func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected to NATS (%s)", nc.Status())
		}
		if ready != nil && !ready() {
			return errors.New("not ready: starting, or draining")
		}
		return nil
	}
}

// serveHTTP serves /metrics from reg, /healthz from health and, when it is
// not nil, the web console at / on addr until stop is called, and returns
// the address it listens on (addr may have port 0). An empty addr serves
// nothing.
func serveHTTP(addr string, reg *prometheus.Registry, health func() error, con http.Handler, log *slog.Logger) (stop func(), bound string, err error) {
	if addr == "" {
		return func() {}, "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("--http %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if con != nil {
		mux.Handle("/", con)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	// Stops when srv is shut down.
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("serving /metrics and /healthz", "addr", ln.Addr().String(), "console", con != nil)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
	}, ln.Addr().String(), nil
}

// checkTrustedKeys checks --trusted-key values: public keys A… as
// 'dataflare plugin keygen' prints.
func checkTrustedKeys(keys []string) error {
	for _, k := range keys {
		if err := wasmstore.ValidTrustedKey(k); err != nil {
			return usagef("--trusted-key %q: want a public key A… as 'dataflare plugin keygen' prints", k)
		}
	}
	return nil
}

// parseBudget reads --memory-budget into budget: a size, or none (0); auto
// reports true and leaves it to autoBudget.
func parseBudget(flag string, budget *int64) (auto bool, err error) {
	switch flag {
	case "none", "0":
		*budget = 0
		return false, nil
	case "auto":
		return true, nil
	}
	n, err := wasmstore.ParseSize(flag)
	if err != nil || n < 1<<20 {
		return false, usagef("--memory-budget %q: want a size of at least 1MiB such as 512MiB, auto or none", flag)
	}
	*budget = n
	return false, nil
}

// autoBudget returns the buffer pool's budget of --memory-budget auto:
// half the process's memory limit (GOMEMLIMIT, else its cgroup's), 0
// without one. A cgroup's limit also becomes the Go memory limit (90% of
// it) when none is set, so that the collector works harder before the
// kernel kills the process, and the heap's share of it counts in the
// worker's reported pressure.
func autoBudget(log *slog.Logger) int64 {
	limit, src := memlimit.Find()
	if limit == 0 {
		log.Info("no memory limit found (GOMEMLIMIT, cgroup): the buffer pool has no budget")
		return 0
	}
	if src != memlimit.GoMemLimit {
		debug.SetMemoryLimit(limit / 10 * 9)
	}
	log.Info("memory budget", "limit_bytes", limit, "source", string(src), "pool_budget_bytes", limit/2)
	return limit / 2
}
