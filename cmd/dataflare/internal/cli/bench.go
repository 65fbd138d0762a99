//go:build !client

package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/cmd/dataflare/internal/bench"
)

func init() {
	extraCommands = append(extraCommands, (*env).benchCmd)
}

type benchFlags struct {
	cfg             bench.Config
	config          []string
	modes           string
	json            bool
	cpuProfile      string
	memProfile      string
	scaling         []int
	coldStart       bool
	coldStartModule string
	failover        bool
	workersAs       string
	ackWait         time.Duration
	seconds         float64
	window          int
	latency         bool
	fairness        bool
	samples         int
	loadJobs        int
	probeBudget     time.Duration
	probeGap        time.Duration
	pipeline        bool
	lagRate         float64
	compression     bool
}

func (e *env) benchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench [--records N] [--record-size B] [--plugin NAME] [--json]",
		Short: "Measure the fleet side by side with raw JetStream and the plugin alone",
		Long: `Measure, in this process, on an embedded nats-server with file storage and with the same records:
  raw           the fleet's JetStream legs with none of its code (publish, fetch, publish, ack, read back)
  fleet_native  client → DF_BATCHES → worker (the native plugin) → client
  fleet_wasm    the same with the plugin's WebAssembly twin (upper → upper-wasm)
  direct        the plugin called in a loop in-process (direct_wasm: its twin)
Every mode runs once per round, each round starting from another mode; figures are medians over
rounds, ratios the median of the ratios within a round. --json prints one JSON object (the bench
contract, see BENCHMARKS.md).

Other figures, each instead of the above:
  --scaling 1,2,4,8  the latency-bound delay plugin (--config ms=N, default 1) over that many workers
  --coldstart        a WebAssembly module's load to its first result, with and without the compiled cache
  --failover         how long a job stalls when one of its two workers is killed (--ack-wait)
Their workers are 'dataflare worker' processes started from this executable (--workers-as process),
or run in this process (--workers-as in-process).
  --latency          1-record jobs one after another: on an idle fleet, and beside another owner's
                     job that saturates it
  --fairness         10-record jobs of owner B beside --load-jobs saturating jobs of owner A, with
                     fair sharing and without (FIFO), the same for a high-priority job of A, and
                     the split between two saturating owners of weights 1 and 3 (--seconds)
Their load is the delay plugin, ms=1 (--plugin, --config to change it), on embedded workers.
  --pipeline         a pipeline of one step (--plugin, default upper) from a source stream to a sink
                     stream, against raw JetStream moving the same messages (a durable pull consumer,
                     async publishes to the sink, acks once the sink has them): --rounds pipeline
                     runs, each between two raw runs and held to their mean; then
                     its end-to-end lag while the source is published at half its measured rate
                     (--seconds, default 10), and raw's at the same rate on a source of its own.
                     Defaults for it: --records 100000, --record-size 1024.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.runBench(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.cfg.Records, "records", 200_000, "records per mode and round")
	fl.IntVar(&f.cfg.RecordSize, "record-size", 100, "bytes per record value")
	fl.StringVar(&f.cfg.Data, "data", bench.DataLetters, "the records' content: letters (random letters and digits), logs (log lines, compressible) or random (random bytes, incompressible)")
	fl.BoolVar(&f.compression, "compression", true, "let the fleet's client compress batches and results where a sample says it pays (--compression=false: plain messages only, for comparison)")
	fl.StringVar(&f.cfg.Plugin, "plugin", "upper", "native plugin to run (identity, upper, delay, fail)")
	fl.BoolVar(&f.json, "json", false, "print the report as one JSON object")
	fl.StringArrayVarP(&f.config, "config", "c", nil, "plugin configuration KEY=VALUE (repeatable), e.g. ms=1 for delay")
	fl.IntVar(&f.cfg.Rounds, "rounds", 3, "rounds: every mode runs once per round")
	fl.StringVar(&f.modes, "modes", "", "comma-separated modes to run (default: all that apply): "+strings.Join(bench.Modes, ","))
	fl.IntVar(&f.cfg.Workers, "workers", 1, "embedded workers")
	fl.IntVar(&f.cfg.Parallel, "parallel", 0, "batches a worker runs at once (default: the number of CPUs)")
	fl.IntVar(&f.cfg.BatchSize, "batch-size", 0, "fixed batch size (default: the size the fleet's sizer settles on)")
	fl.IntSliceVar(&f.cfg.Sweep, "sweep", nil, "also run fleet_native at these fixed batch sizes, e.g. 1000,3000,10000")
	fl.DurationVar(&f.cfg.Warmup, "warmup", 0, "time allowed for the sizer to settle (default 15s)")
	fl.StringVar(&f.cfg.StoreDir, "store", "", "directory for JetStream's files (default: a temporary one)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured rounds to FILE")
	fl.StringVar(&f.memProfile, "memprofile", "", "write an allocation profile to FILE at the end")
	fl.IntSliceVar(&f.scaling, "scaling", nil, "measure scaling of the delay plugin over these worker counts, e.g. 1,2,4,8")
	fl.BoolVar(&f.coldStart, "coldstart", false, "measure WebAssembly cold starts with and without the compiled-module cache")
	fl.StringVar(&f.coldStartModule, "coldstart-module", "c", "the upper-wasm build --coldstart loads: c (16 KB, built in) or a FILE such as examples/plugins/upper-wasm/upper.wasm (3.4 MB, built with pdk)")
	fl.BoolVar(&f.failover, "failover", false, "measure the stall of a job when one of its two workers is killed")
	fl.StringVar(&f.workersAs, "workers-as", "process", "workers of --scaling, --coldstart and --failover: process or in-process")
	fl.DurationVar(&f.ackWait, "ack-wait", 0, "--failover: the batches' AckWait (default 1s)")
	fl.Float64Var(&f.seconds, "seconds", 0, "--scaling, --failover: about how long each job runs (default 4 and 6); --fairness: how long the weighted split is counted (default 10); --pipeline: how long the lag is measured (default 10)")
	fl.IntVar(&f.window, "window", 0, "--scaling: the client's window in batches (default 4 per slot of the most workers)")
	fl.BoolVar(&f.latency, "latency", false, "measure 1-record jobs on an idle fleet and beside another owner's saturating job")
	fl.BoolVar(&f.fairness, "fairness", false, "measure small jobs beside saturating jobs of another owner, with fair sharing and without (FIFO)")
	fl.IntVar(&f.samples, "samples", 0, "--latency, --fairness: probe jobs per figure (default 200 on an idle fleet, 100 beside a load)")
	fl.IntVar(&f.loadJobs, "load-jobs", 3, "--fairness: saturating jobs of owner A")
	fl.DurationVar(&f.probeGap, "probe-gap", bench.DefaultProbeGap, "--latency, --fairness: each probe job starts after a random pause of up to this (0: back to back)")
	fl.BoolVar(&f.pipeline, "pipeline", false, "measure a pipeline from a source stream to a sink stream against raw JetStream, and its end-to-end lag at half its rate")
	fl.Float64Var(&f.lagRate, "lag-rate", 0, "--pipeline: publish the source at this many messages per second for the lag figure (default: half the measured rate)")
	fl.DurationVar(&f.probeBudget, "probe-budget", 0, "--fairness: the most time one figure's probes may take, after 5 (default 60s: FIFO probes wait seconds each)")
	return cmd
}

func (e *env) runBench(cmd *cobra.Command, f benchFlags) error {
	cfg := f.cfg
	var err error
	if cfg.PluginConfig, err = parseConfig(f.config); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{len(f.scaling) > 0, f.coldStart, f.failover, f.latency, f.fairness, f.pipeline} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return usagef("--scaling, --coldstart, --failover, --latency, --fairness and --pipeline are separate runs: give one")
	case n == 1 && f.pipeline:
		return e.runBenchPipeline(cmd, f, cfg)
	case n == 1 && (f.latency || f.fairness):
		return e.runBenchSharing(cmd, f, cfg)
	case n == 1:
		return e.runBenchFigure(cmd, f, cfg)
	}
	if f.modes != "" {
		cfg.Modes = strings.Split(f.modes, ",")
	}
	if cfg.Warmup < 0 {
		return usagef("--warmup %v is negative", cfg.Warmup)
	}
	log, err := e.logger(slog.LevelWarn)
	if err != nil {
		return err
	}
	cfg.Log = log
	cfg.NoCompression = !f.compression
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		defer out.Close()
		cfg.OnRounds = func() func() {
			if err := pprof.StartCPUProfile(out); err != nil {
				log.Error("cpu profile", "err", err)
				return nil
			}
			return pprof.StopCPUProfile
		}
	}
	if f.memProfile != "" {
		runtime.MemProfileRate = 64 << 10
	}
	rep, err := bench.Run(cmd.Context(), cfg)
	if err != nil {
		return benchError(err)
	}
	if f.memProfile != "" {
		out, err := os.Create(f.memProfile)
		if err != nil {
			return fmt.Errorf("--memprofile: %v", err)
		}
		defer out.Close()
		if err := pprof.Lookup("allocs").WriteTo(out, 0); err != nil {
			return fmt.Errorf("--memprofile: %v", err)
		}
	}
	if f.json {
		return writeJSON(e.stdout, rep)
	}
	printBench(e.stdout, rep)
	return nil
}

// printBench prints a report as a table.
func printBench(w io.Writer, r *bench.Report) {
	fmt.Fprintf(w, "%s: %d records of %d B, %d rounds, %d worker(s) × %d, batch size %d%s, file storage\n",
		r.Plugin, r.Records, r.RecordSize, r.Rounds, r.Workers, r.Parallel, r.BatchSize, map[bool]string{true: " (fixed)", false: " (sizer)"}[r.FixedBatchSize])
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s, load average %.2f at start\n\n", r.Machine.CPUs, r.Machine.CPU, r.Machine.GoVersion, r.Machine.LoadAvg)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tRECORDS/S\tMB/S\tP50 BATCH MS\tP99 BATCH MS\tBATCH\tCPU µS/REC\tGC\tALLOC B/REC\t")
	for _, m := range []struct {
		name string
		m    *bench.Mode
	}{{bench.ModeRaw, r.Raw}, {bench.ModeFleetNative, r.FleetNative}, {bench.ModeFleetWASM, r.FleetWASM},
		{bench.ModeDirect, r.Direct}, {bench.ModeDirectWASM, r.DirectWASM}} {
		if m.m == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.2f\t%.2f\t%d\t%.3f\t%d\t%.0f\t\n", m.name, m.m.RecordsPerSec, m.m.MBPerSec,
			m.m.P50BatchMs, m.m.P99BatchMs, m.m.BatchSize, m.m.CPUMicrosPerRecord, m.m.GCCycles, m.m.AllocBytesPerRecord)
	}
	for _, p := range r.Sweep {
		fmt.Fprintf(tw, "fleet_native @%d\t%.0f\t%.1f\t%.2f\t%.2f\t%d\t\t\t\t\n", p.BatchSize, p.RecordsPerSec,
			p.RecordsPerSec*float64(r.RecordSize)/1e6, p.P50BatchMs, p.P99BatchMs, p.BatchSize)
	}
	tw.Flush()
	fmt.Fprintln(w)
	ratio := func(name string, v *float64) {
		if v != nil {
			fmt.Fprintf(w, "%s: %.3f\n", name, *v)
		}
	}
	ratio("fleet_native_vs_raw", r.FleetNativeVsRaw)
	ratio("fleet_native_vs_raw_cpu", r.FleetNativeVsRawCPU)
	ratio("fleet_wasm_vs_native", r.FleetWASMVsNative)
	if r.ControllerVsBest != nil {
		fmt.Fprintf(w, "controller_vs_best: %.3f (best fixed size %d)\n", *r.ControllerVsBest, r.SweepBest)
	}
}

func benchError(err error) error {
	if errors.Is(err, bench.ErrInvalidConfig) {
		return usageError{err}
	}
	return err
}

// runBenchFigure runs --scaling, --coldstart or --failover.
func (e *env) runBenchFigure(cmd *cobra.Command, f benchFlags, cfg bench.Config) error {
	log, err := e.logger(slog.LevelWarn)
	if err != nil {
		return err
	}
	var sp bench.Spawner
	switch f.workersAs {
	case "process":
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("worker processes: %v", err)
		}
		sp = bench.Processes{Command: []string{exe}, Stderr: e.stderr}
	case "in-process":
		sp = bench.InProcess{}
	default:
		return usagef("--workers-as %q: use process or in-process", f.workersAs)
	}
	ms := 0
	if v, ok := cfg.PluginConfig["ms"]; ok {
		if ms, err = strconv.Atoi(v); err != nil {
			return usagef("--config ms=%q: want an integer", v)
		}
	}
	ctx := cmd.Context()
	var rep any
	switch {
	case len(f.scaling) > 0:
		rep, err = bench.Scaling(ctx, bench.ScalingConfig{Counts: f.scaling, DelayMillis: ms, Parallel: cfg.Parallel,
			Seconds: f.seconds, Rounds: flagInt(cmd, "rounds", cfg.Rounds), RecordSize: flagInt(cmd, "record-size", cfg.RecordSize),
			Window: f.window, Spawner: sp, Log: log})
	case f.coldStart:
		rep, err = bench.ColdStart(ctx, bench.ColdStartConfig{Repeats: flagInt(cmd, "rounds", cfg.Rounds), Spawner: sp, Module: f.coldStartModule, Log: log})
	default:
		rep, err = bench.Failover(ctx, bench.FailoverConfig{DelayMillis: ms, Parallel: cfg.Parallel, Seconds: f.seconds,
			AckWait: f.ackWait, Rounds: flagInt(cmd, "rounds", cfg.Rounds), Spawner: sp, Log: log})
	}
	if err != nil {
		return benchError(err)
	}
	if f.json {
		return writeJSON(e.stdout, rep)
	}
	switch r := rep.(type) {
	case *bench.ScalingReport:
		printScaling(e.stdout, r)
	case *bench.ColdStartReport:
		printColdStart(e.stdout, r)
	case *bench.FailoverReport:
		printFailover(e.stdout, r)
	}
	return nil
}

// flagInt returns the flag's value when it was given, else 0 (the
// figure's own default).
func flagInt(cmd *cobra.Command, name string, v int) int {
	if cmd.Flags().Changed(name) {
		return v
	}
	return 0
}

func printScaling(w io.Writer, r *bench.ScalingReport) {
	fmt.Fprintf(w, "delay ms=%d per record, %d B records, %s workers × %d batches at once, %d round(s), client window %d\n",
		r.DelayMillis, r.RecordSize, r.Workers, r.Parallel, r.Rounds, r.Window)
	fmt.Fprintf(w, "ceiling per worker: %.0f records/s; machine: %d CPUs, load average %.2f at start\n\n", r.Ceiling, r.Machine.CPUs, r.Machine.LoadAvg)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WORKERS\tRECORDS\tRECORDS/S\tEFFICIENCY\tADDED EFFICIENCY\tBATCH\tP50 BATCH MS\t")
	for _, p := range r.Points {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.3f\t%.3f\t%d\t%.1f\t\n", p.Workers, p.Records, p.RecordsPerSec, p.Efficiency,
			p.AddedEfficiency, p.BatchSize, p.P50BatchMs)
	}
	tw.Flush()
}

func printColdStart(w io.Writer, r *bench.ColdStartReport) {
	fmt.Fprintf(w, "module %s (%d bytes), %d repeat(s); machine: %d CPUs, load average %.2f at start\n\n", r.Module, r.ModuleBytes,
		r.Repeats, r.Machine.CPUs, r.Machine.LoadAvg)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TO FIRST RESULT\tNO CACHE MS\tCACHE MS\tSPEEDUP\t")
	fmt.Fprintf(tw, "registry load (in process)\t%.1f\t%.1f\t%.1f\t\n", r.InProcess.NoCacheMs, r.InProcess.CacheMs, r.InProcess.Speedup)
	if r.Worker != nil {
		fmt.Fprintf(tw, "worker start (%s)\t%.1f\t%.1f\t%.1f\t\n", r.Workers, r.Worker.NoCacheMs, r.Worker.CacheMs, r.Worker.Speedup)
	}
	tw.Flush()
}

func printFailover(w io.Writer, r *bench.FailoverReport) {
	fmt.Fprintf(w, "delay ms=%d, %d records on 2 %s workers × %d, AckWait %.0f ms; machine: %d CPUs, load average %.2f at start\n\n",
		r.DelayMillis, r.Records, r.Workers, r.Parallel, r.AckWaitMs, r.Machine.CPUs, r.Machine.LoadAvg)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "RUN\tKILLED AT MS\tSTALL MS\tJOB MS\tWITHOUT KILL MS\tEXTRA MS\t")
	for i, run := range r.Runs {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", i+1, run.KilledAtMs, run.StallMs, run.JobMs, run.BaselineMs, run.ExtraMs)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nmedian stall %.0f ms, median extra time %.0f ms\n", r.StallMs, r.ExtraMs)
	fmt.Fprintf(w, "lease traffic without a kill: %.1f in-progress acks/s, %.2f per batch\n", r.LeasePerSec, r.LeasePerBatch)
}

// runBenchSharing runs --latency or --fairness, on embedded workers.
func (e *env) runBenchSharing(cmd *cobra.Command, f benchFlags, cfg bench.Config) error {
	log, err := e.logger(slog.LevelWarn)
	if err != nil {
		return err
	}
	var load bench.LoadConfig
	if cmd.Flags().Changed("plugin") {
		load.Plugin = cfg.Plugin
	}
	load.Config = cfg.PluginConfig
	workers, parallel := flagInt(cmd, "workers", cfg.Workers), cfg.Parallel
	recordSize := flagInt(cmd, "record-size", cfg.RecordSize)
	gap := f.probeGap
	switch {
	case f.loadJobs < 1:
		return usagef("--load-jobs %d: want at least 1", f.loadJobs)
	case f.seconds < 0:
		return usagef("--seconds %v is negative", f.seconds)
	case gap < 0:
		return usagef("--probe-gap %v is negative", gap)
	case gap == 0:
		gap = -1 // back to back
	}
	ctx := cmd.Context()
	var rep any
	if f.latency {
		rep, err = bench.Latency(ctx, bench.LatencyConfig{IdleSamples: f.samples, LoadedSamples: f.samples, Load: load,
			Workers: workers, Parallel: parallel, RecordSize: recordSize, ProbeGap: gap, Log: log})
	} else {
		var seconds time.Duration
		if f.seconds > 0 {
			seconds = time.Duration(f.seconds * float64(time.Second))
		}
		rep, err = bench.Fairness(ctx, bench.FairnessConfig{Samples: f.samples, LoadJobs: f.loadJobs, ProbeBudget: f.probeBudget,
			SplitTime: seconds, Load: load, Workers: workers, Parallel: parallel, RecordSize: recordSize, ProbeGap: gap, Log: log})
	}
	if err != nil {
		return benchError(err)
	}
	if f.json {
		return writeJSON(e.stdout, rep)
	}
	switch r := rep.(type) {
	case *bench.LatencyReport:
		printLatency(e.stdout, r)
	case *bench.FairnessReport:
		printFairness(e.stdout, r)
	}
	return nil
}

// printSharingHeader prints the setting of a --latency or --fairness run.
func printSharingHeader(w io.Writer, m bench.Machine, workers, parallel int, load string, ceiling float64) {
	fmt.Fprintf(w, "%d worker(s) × %d slots, file storage; load: %s", workers, parallel, load)
	if ceiling > 0 {
		fmt.Fprintf(w, " (ceiling %.0f records/s)", ceiling)
	}
	fmt.Fprintf(w, "\nmachine: %d CPUs (%s), %s, load average %.2f at start\n\n", m.CPUs, m.CPU, m.GoVersion, m.LoadAvg)
}

// printLatencies prints one row per figure.
func printLatencies(w io.Writer, rows []latencyRow) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FIGURE\tJOBS\tP50 MS\tP99 MS\tMAX MS\tLOAD RECORDS/S\t")
	for _, r := range rows {
		load := "-"
		if r.l.LoadRecordsPerSec > 0 {
			load = fmt.Sprintf("%.0f", r.l.LoadRecordsPerSec)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%s\t\n", r.name, r.l.Samples, r.l.P50Ms, r.l.P99Ms, r.l.MaxMs, load)
	}
	tw.Flush()
}

type latencyRow struct {
	name string
	l    bench.Latencies
}

func printLatency(w io.Writer, r *bench.LatencyReport) {
	fmt.Fprintf(w, "1-record jobs of %s (%d B), one after another (each after a random pause of up to %.0f ms), from Submit to the result\n",
		r.Plugin, r.RecordSize, r.ProbeGapMs)
	printSharingHeader(w, r.Machine, r.Workers, r.Parallel, loadName(r.LoadPlugin, r.LoadConfig), r.LoadCeiling)
	printLatencies(w, []latencyRow{{"idle", r.Latency.Idle}, {"loaded (another owner's job saturating)", r.Latency.Loaded}})
}

func printFairness(w io.Writer, r *bench.FairnessReport) {
	fmt.Fprintf(w, "%d-record jobs of %s (%d B), one after another (each after a random pause of up to %.0f ms), from Submit to the last result,\n",
		r.ProbeRecords, r.Plugin, r.RecordSize, r.ProbeGapMs)
	fmt.Fprintf(w, "beside %d saturating jobs of owner A; ", r.LoadJobs)
	printSharingHeader(w, r.Machine, r.Workers, r.Parallel, loadName(r.LoadPlugin, r.LoadConfig), r.LoadCeiling)
	f := r.Fairness
	printLatencies(w, []latencyRow{
		{"fair: owner B beside owner A", f.Fair},
		{"fifo: owner B beside owner A", f.FIFO},
		{"fair_high: owner A, high priority", f.FairHigh},
		{"fifo_high: owner A, high priority", f.FIFOHigh},
	})
	s := f.Weights
	fmt.Fprintf(w, "\nweights %g:%g, both saturating for %.1f s: shares %.3f / %.3f (want %.3f / %.3f), %d / %d records\n",
		s.AWeight, s.BWeight, s.Seconds, s.AShare, s.BShare, s.AWeight/(s.AWeight+s.BWeight), s.BWeight/(s.AWeight+s.BWeight),
		s.ARecords, s.BRecords)
}

// loadName describes a load: "delay ms=1".
func loadName(name string, cfg map[string]string) string {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name += " " + k + "=" + cfg[k]
	}
	return name
}

// runBenchPipeline runs --pipeline, on embedded workers.
func (e *env) runBenchPipeline(cmd *cobra.Command, f benchFlags, cfg bench.Config) error {
	log, err := e.logger(slog.LevelWarn)
	if err != nil {
		return err
	}
	switch {
	case f.seconds < 0:
		return usagef("--seconds %v is negative", f.seconds)
	case cfg.Warmup < 0:
		return usagef("--warmup %v is negative", cfg.Warmup)
	case f.lagRate < 0:
		return usagef("--lag-rate %v is negative", f.lagRate)
	}
	pc := bench.PipelineConfig{LagRate: f.lagRate, Records: flagInt(cmd, "records", cfg.Records), RecordSize: flagInt(cmd, "record-size", cfg.RecordSize),
		Plugin: cfg.Plugin, PluginConfig: cfg.PluginConfig, Rounds: flagInt(cmd, "rounds", cfg.Rounds),
		Workers: flagInt(cmd, "workers", cfg.Workers), Parallel: cfg.Parallel, Warmup: cfg.Warmup,
		LagTime: time.Duration(f.seconds * float64(time.Second)), StoreDir: cfg.StoreDir, Log: log}
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		defer out.Close()
		pc.OnRounds = func() func() {
			if err := pprof.StartCPUProfile(out); err != nil {
				log.Error("cpu profile", "err", err)
				return nil
			}
			return pprof.StopCPUProfile
		}
	}
	rep, err := bench.Pipeline(cmd.Context(), pc)
	if err != nil {
		return benchError(err)
	}
	if f.json {
		return writeJSON(e.stdout, rep)
	}
	printBenchPipeline(e.stdout, rep)
	return nil
}

func printBenchPipeline(w io.Writer, r *bench.PipelineReport) {
	p := r.Pipeline
	fmt.Fprintf(w, "pipeline of %s: %d messages of %d B per round, %d round(s), %d worker(s) × %d, batch size %d (sizer), file storage\n",
		loadName(r.Plugin, r.PluginConfig), p.Records, p.RecordSize, r.Rounds, r.Workers, r.Parallel, p.BatchSize)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s, load average %.2f at start\n\n", r.Machine.CPUs, r.Machine.CPU, r.Machine.GoVersion, r.Machine.LoadAvg)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SIDE\tRECORDS/S\tCPU µS/REC\tROUNDS RECORDS/S\t")
	fmt.Fprintf(tw, "pipeline\t%.0f\t%.2f\t%s\t\n", p.RecordsPerSec, p.CPUMicrosPerRecord, joinRates(p.RoundsPerSec))
	fmt.Fprintf(tw, "raw (fetch %d, window %d)\t%.0f\t%.2f\t%s\t\n", p.RawFetch, p.RawWindow, p.RawRecordsPerSec, p.RawCPUMicrosPerRecord, joinRates(p.RawRoundsPerSec))
	tw.Flush()
	fmt.Fprintf(w, "\nvs_raw: %.3f (by CPU %.3f); the pipeline's first result %.0f ms after its creation (median)\n", p.VsRaw, p.VsRawCPU, p.FirstResultMs)
	fmt.Fprintf(w, "lag at %.0f messages/s (asked %.0f) for %.1f s, publish to sink: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d messages\n",
		p.LagRate, p.LagTargetRate, p.LagSeconds, p.LagP50Ms, p.LagP99Ms, p.LagMaxMs, p.LagSamples)
	fmt.Fprintf(w, "raw's lag at %.0f messages/s, the same way: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d messages\n",
		p.RawLagRate, p.RawLagP50Ms, p.RawLagP99Ms, p.RawLagMaxMs, p.RawLagSamples)
	st := p.Status
	fmt.Fprintf(w, "pipeline info then: %s, processed %d, lag %d, latency p50 %.2f ms, p99 %.2f ms\n",
		st.State, st.Processed, st.Lag, st.LatencyP50Ms, st.LatencyP99Ms)
	fmt.Fprintf(w, "%d sink messages checked: one per source message, in order\n", p.Checked)
}

// joinRates lists rates: "1200 · 1300".
func joinRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, " · ")
}
