package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/internal/bench"
)

func init() {
	extraCommands = append(extraCommands, (*env).benchCmd)
}

type benchFlags struct {
	cfg        bench.Config
	config     []string
	modes      string
	json       bool
	cpuProfile string
	memProfile string
}

func (e *env) benchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench [--records N] [--record-size B] [--plugin NAME] [--json]",
		Short: "Measure the fleet side by side with raw JetStream and the plugin alone",
		Long: `Measure, in this process, on an embedded nats-server with file storage and with the same records:
  raw           the fleet's JetStream legs with none of its code (publish, fetch, publish, ack, read back)
  fleet_native  client → coordinator → worker (the native plugin) → client
  fleet_wasm    the same with the plugin's WebAssembly twin (upper → upper-wasm)
  direct        the plugin called in a loop in-process (direct_wasm: its twin)
Every mode runs once per round, each round starting from another mode; figures are medians over
rounds, ratios the median of the ratios within a round. --json prints one JSON object (the bench
contract, see BENCHMARKS.md).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.runBench(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.cfg.Records, "records", 200_000, "records per mode and round")
	fl.IntVar(&f.cfg.RecordSize, "record-size", 100, "bytes per record value")
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
	return cmd
}

func (e *env) runBench(cmd *cobra.Command, f benchFlags) error {
	cfg := f.cfg
	var err error
	if cfg.PluginConfig, err = parseConfig(f.config); err != nil {
		return err
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
		if errors.Is(err, bench.ErrInvalidConfig) {
			return usageError{err}
		}
		return err
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
	fmt.Fprintln(tw, "MODE\tRECORDS/S\tMB/S\tP50 BATCH MS\tP99 BATCH MS\tBATCH\tGC\tALLOC B/REC\t")
	for _, m := range []struct {
		name string
		m    *bench.Mode
	}{{bench.ModeRaw, r.Raw}, {bench.ModeFleetNative, r.FleetNative}, {bench.ModeFleetWASM, r.FleetWASM},
		{bench.ModeDirect, r.Direct}, {bench.ModeDirectWASM, r.DirectWASM}} {
		if m.m == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.2f\t%.2f\t%d\t%d\t%.0f\t\n", m.name, m.m.RecordsPerSec, m.m.MBPerSec,
			m.m.P50BatchMs, m.m.P99BatchMs, m.m.BatchSize, m.m.GCCycles, m.m.AllocBytesPerRecord)
	}
	for _, p := range r.Sweep {
		fmt.Fprintf(tw, "fleet_native @%d\t%.0f\t%.1f\t%.2f\t%.2f\t%d\t\t\t\n", p.BatchSize, p.RecordsPerSec,
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
	ratio("fleet_wasm_vs_native", r.FleetWASMVsNative)
	if r.ControllerVsBest != nil {
		fmt.Fprintf(w, "controller_vs_best: %.3f (best fixed size %d)\n", *r.ControllerVsBest, r.SweepBest)
	}
}
