package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// Mode names: the keys of a Report's modes in JSON.
const (
	ModeRaw         = "raw"
	ModeFleetNative = "fleet_native"
	ModeFleetWASM   = "fleet_wasm"
	ModeDirect      = "direct"
	ModeDirectWASM  = "direct_wasm"
)

// Modes lists every mode, in the order a round starts from.
var Modes = []string{ModeRaw, ModeFleetNative, ModeFleetWASM, ModeDirect, ModeDirectWASM}

// ErrInvalidConfig is wrapped by the errors Run returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("bench: invalid config")

// Config describes a bench run. Zero fields take their defaults.
type Config struct {
	// Records is the number of records every mode runs per round.
	// Default 200,000.
	Records int
	// RecordSize is each record's value size in bytes. Default 100.
	RecordSize int
	// Data is the records' content (Datas): "letters" (the default),
	// "logs" or "random".
	Data string
	// NoCompression makes the fleet modes' client send and ask for plain
	// messages only (client.WithCompression(false)).
	NoCompression bool
	// Plugin is the native plugin to run. Default "upper". Its WebAssembly
	// twin (upper → upper-wasm) runs the wasm modes when there is one.
	Plugin string
	// PluginConfig is handed to the plugin with every batch (delay: ms).
	PluginConfig plugin.Config
	// Rounds is how many times every mode runs; each round starts from
	// another mode, so that no mode always runs first or last. Default 3.
	Rounds int
	// Modes restricts the run to these modes (default: all that apply).
	Modes []string
	// Workers is the number of embedded workers. Default 1.
	Workers int
	// Parallel is how many batches a worker runs at once (and how many the
	// raw mode's consumer handles at once per worker). Default GOMAXPROCS.
	Parallel int
	// BatchSize fixes the batch size of every mode; 0 lets the fleet's
	// sizer choose (the raw and direct modes then use the size it settled
	// on during the warm-up).
	BatchSize int
	// Sweep lists fixed batch sizes to run fleet_native at as well, in
	// every round, to compare with the sizer's choice.
	Sweep []int
	// Warmup bounds the time given to the sizer to settle for each plugin
	// before the measured rounds. Default 15 s.
	Warmup time.Duration
	// StoreDir keeps JetStream's files; empty means a temporary directory.
	StoreDir string
	// Log receives progress lines (nil: none).
	Log *slog.Logger
	// OnRounds, when set, is called just before the first measured round
	// and its return value just after the last (a CPU profile, say).
	OnRounds func() (stop func())

	// topology is the coordinator's (Failover shortens AckWait, Fairness
	// runs a FIFO fleet), weights its owners' weights (Fairness).
	topology proto.Topology
	weights  map[string]float64
}

func (c Config) withDefaults() (Config, error) {
	if c.Records == 0 {
		c.Records = 200_000
	}
	if c.RecordSize == 0 {
		c.RecordSize = 100
	}
	if c.Plugin == "" {
		c.Plugin = builtin.UpperName
	}
	if c.Data == "" {
		c.Data = DataLetters
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Parallel == 0 {
		c.Parallel = runtime.GOMAXPROCS(0)
	}
	if c.Warmup == 0 {
		c.Warmup = 15 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(c.Modes) == 0 {
		c.Modes = Modes
	}
	switch {
	case c.Records < 1:
		return c, fmt.Errorf("%w: records %d below 1", ErrInvalidConfig, c.Records)
	case c.RecordSize < 1 || c.RecordSize > MaxRecordSize:
		return c, fmt.Errorf("%w: record size %d not in 1..%d", ErrInvalidConfig, c.RecordSize, MaxRecordSize)
	case !slices.Contains(Datas, c.Data):
		return c, fmt.Errorf("%w: data %q: have %v", ErrInvalidConfig, c.Data, Datas)
	case c.Rounds < 1:
		return c, fmt.Errorf("%w: rounds %d below 1", ErrInvalidConfig, c.Rounds)
	case c.Workers < 1:
		return c, fmt.Errorf("%w: workers %d below 1", ErrInvalidConfig, c.Workers)
	case c.Parallel < 1:
		return c, fmt.Errorf("%w: parallel %d below 1", ErrInvalidConfig, c.Parallel)
	case c.BatchSize < 0 || c.BatchSize > maxBatch:
		return c, fmt.Errorf("%w: batch size %d not in 0..%d", ErrInvalidConfig, c.BatchSize, maxBatch)
	}
	if _, ok := builtin.All()[c.Plugin]; !ok {
		return c, fmt.Errorf("%w: %q is not a native plugin (have %v)", ErrInvalidConfig, c.Plugin, builtin.Names())
	}
	for _, m := range c.Modes {
		if !slices.Contains(Modes, m) {
			return c, fmt.Errorf("%w: unknown mode %q (have %v)", ErrInvalidConfig, m, Modes)
		}
	}
	for _, n := range c.Sweep {
		if n < 1 || n > maxBatch {
			return c, fmt.Errorf("%w: sweep size %d not in 1..%d", ErrInvalidConfig, n, maxBatch)
		}
	}
	return c, nil
}

// The records' contents (Config.Data).
const (
	// DataLetters is values of random lower-case letters, digits and
	// spaces: what compresses little without entropy coding (S2 leaves it
	// as it is).
	DataLetters = "letters"
	// DataLogs is log lines like the demo's: a timestamp, a level, a
	// service, a request line with a few key=value fields. Compressible.
	DataLogs = "logs"
	// DataRandom is random bytes: incompressible.
	DataRandom = "random"
)

// Datas are the contents a run may use.
var Datas = []string{DataLetters, DataLogs, DataRandom}

// MaxRecordSize is the largest record the bench makes: 1 MiB.
const MaxRecordSize = 1 << 20

// maxBatch is the most records a batch may hold (the codec's limit).
const maxBatch = 100_000

// Report is what Run measured. Its JSON form is the bench contract
// (docs: DESIGN §9, BENCHMARKS.md): field names are parsed by other tools.
type Report struct {
	// Date is when the run started (RFC 3339, UTC).
	Date string `json:"date"`
	// Machine describes where it ran.
	Machine Machine `json:"machine"`

	Plugin       string        `json:"plugin"`
	PluginConfig plugin.Config `json:"plugin_config,omitempty"`
	WASMPlugin   string        `json:"wasm_plugin,omitempty"`
	Records      int           `json:"records"`
	RecordSize   int           `json:"record_size"`
	Data         string        `json:"data"`
	Compression  bool          `json:"compression"`
	Rounds       int           `json:"rounds"`
	Workers      int           `json:"workers"`
	Parallel     int           `json:"parallel"`
	Storage      string        `json:"storage"`

	// BatchSize is the batch size the fleet's sizer settled on for the
	// native plugin (the fixed size with FixedBatchSize); the raw and
	// direct modes run batches of this size.
	BatchSize      int  `json:"batch_size"`
	FixedBatchSize bool `json:"fixed_batch_size"`
	// BatchSizeWASM is the size the sizer settled on for the WebAssembly
	// twin.
	BatchSizeWASM int `json:"batch_size_wasm,omitempty"`

	// The modes; nil (null in JSON) for a mode that did not run.
	Raw         *Mode `json:"raw"`
	FleetNative *Mode `json:"fleet_native"`
	FleetWASM   *Mode `json:"fleet_wasm"`
	Direct      *Mode `json:"direct"`
	DirectWASM  *Mode `json:"direct_wasm"`

	// FleetNativeVsRaw is fleet_native's throughput over raw's, and
	// FleetWASMVsNative fleet_wasm's over fleet_native's: each the median
	// over rounds of the ratio within the round. Nil when a side did not
	// run.
	FleetNativeVsRaw  *float64 `json:"fleet_native_vs_raw"`
	FleetWASMVsNative *float64 `json:"fleet_wasm_vs_native"`
	// FleetNativeVsRawCPU is raw's CPU time per record over
	// fleet_native's (median over rounds of the ratio within the round):
	// what FleetNativeVsRaw would be on a machine where the process is
	// CPU-bound, and steadier on a shared one, where other processes take
	// wall time but not this process's CPU time.
	FleetNativeVsRawCPU *float64 `json:"fleet_native_vs_raw_cpu"`

	// GCCycles and AllocBytesPerRecord are fleet_native's (the whole
	// process: client, coordinator, worker and embedded server): GC
	// cycles per round and bytes allocated per record, medians over
	// rounds.
	GCCycles            uint32  `json:"gc_cycles"`
	AllocBytesPerRecord float64 `json:"alloc_bytes_per_record"`
	AllocsPerRecord     float64 `json:"allocs_per_record"`

	// Sweep is fleet_native at fixed batch sizes, run in the same rounds;
	// SweepBest is the best of them and ControllerVsBest fleet_native's
	// throughput (the sizer's choice) over the best fixed size's.
	Sweep            []SweepPoint `json:"sweep,omitempty"`
	SweepBest        int          `json:"sweep_best,omitempty"`
	ControllerVsBest *float64     `json:"controller_vs_best,omitempty"`
}

// Mode is one mode's figures. Throughput is the median over rounds;
// latencies are over every batch of every round.
type Mode struct {
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	// P50BatchMs and P99BatchMs are batch latencies: for the fleet modes
	// a record's time from the client reading it to the client handing
	// out its result (sampled every few records; a batch's records travel
	// together), for raw a message's from publish to read-back, for
	// direct one ProcessBatch call.
	P50BatchMs float64 `json:"p50_batch_ms"`
	P99BatchMs float64 `json:"p99_batch_ms"`
	// GCCycles and AllocBytesPerRecord are the process's during the mode
	// (medians over rounds).
	GCCycles            uint32  `json:"gc_cycles"`
	AllocBytesPerRecord float64 `json:"alloc_bytes_per_record"`
	AllocsPerRecord     float64 `json:"allocs_per_record"`
	// CPUMicrosPerRecord is the process's CPU time (user and system, all
	// goroutines: client, coordinator, worker, server) per record, median
	// over rounds. On a shared machine it is steadier than throughput:
	// other processes take wall time, not this process's CPU time.
	CPUMicrosPerRecord float64 `json:"cpu_us_per_record"`
	// RoundsPerSec is every round's throughput, in round order.
	RoundsPerSec []float64 `json:"rounds_records_per_sec"`
	// BatchSize is the batch size the mode ran at (the sizer's at the end
	// for a fleet mode).
	BatchSize int `json:"batch_size"`
	// WireBytesPerRecord is the bytes that crossed NATS per record: what
	// the server received from its clients (batch and result messages,
	// with their acknowledgements and requests), median over rounds; 0
	// for the direct modes.
	WireBytesPerRecord float64 `json:"wire_bytes_per_record"`
}

// SweepPoint is fleet_native at one fixed batch size.
type SweepPoint struct {
	BatchSize     int       `json:"batch_size"`
	RecordsPerSec float64   `json:"records_per_sec"`
	RoundsPerSec  []float64 `json:"rounds_records_per_sec"`
	P50BatchMs    float64   `json:"p50_batch_ms"`
	P99BatchMs    float64   `json:"p99_batch_ms"`
}

// Run measures cfg's modes side by side: one embedded server with file
// storage, the same records, every mode once per round. It returns an
// error wrapping ErrInvalidConfig for a bad cfg, or the first failure of
// the stack or of a mode (a record that got an error, or a wrong value,
// fails the run: throughput of a broken pipeline means nothing).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer e.close()
	return e.run(ctx)
}
