package bench

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/plugin/builtin/twins"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/worker"
)

// twin is a native plugin's WebAssembly twin: byte-identical output.
type twin struct {
	name   string
	module []byte
}

// twinOf maps a native plugin to its twin. A run sets up the WebAssembly
// side only when a wasm mode runs (compiling a module takes seconds).
var twinOf = map[string]twin{
	builtin.UpperName: {name: twins.UpperName, module: twins.Upper},
}

// env is one run's world: the stack, the records, and what each mode needs.
type env struct {
	cfg   Config
	modes []string // the modes that run, in Modes order

	st *local.Fleet
	nc *nats.Conn
	js jetstream.JetStream
	cl *client.Client

	in    records
	twin  *twin
	check func(in, out []byte) bool

	// sizerSize is the native plugin's settled (or fixed) batch size,
	// batchSize the same within the message size limit (what batches
	// hold), wasmSize the twin's settled size.
	sizerSize, batchSize, wasmSize int

	raw        *rawLegs
	direct     plugin.BatchPlugin
	directWASM *wasm.Plugin
	directRT   *wasm.Runtime

	// tin holds, for every sampleStride-th record, when the client read
	// it (nanoseconds since start).
	tin   []atomic.Int64
	start time.Time
}

// sampleStride is how often a fleet mode samples a record's latency: one
// record in sampleStride (reading the clock for every record would cost
// as much as some plugins).
const sampleStride = 32

func setup(ctx context.Context, cfg Config) (*env, error) {
	return setupStack(ctx, cfg, cfg.Workers, defaultWindow)
}

// setupStack is setup with workers embedded workers (0: none, for workers
// a Spawner starts) and a client window of window batches.
func setupStack(ctx context.Context, cfg Config, workers, window int) (_ *env, err error) {
	e := &env{cfg: cfg, start: time.Now()}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	t, hasTwin := twinOf[cfg.Plugin]
	for _, m := range Modes {
		if !contains(cfg.Modes, m) {
			continue
		}
		if m == ModeFleetWASM || m == ModeDirectWASM {
			if !hasTwin {
				continue
			}
			e.twin = &t
		}
		e.modes = append(e.modes, m)
	}
	e.in = makeRecords(cfg.Records, cfg.RecordSize, cfg.Data)
	e.tin = make([]atomic.Int64, cfg.Records/sampleStride+1)
	e.check = checker(cfg.Plugin)
	e.direct = builtin.All()[cfg.Plugin]

	// The workers of this process share one WebAssembly runtime, so each
	// module compiles once, as in `dataflare dev`.
	lcfg := local.Config{
		StoreDir:    cfg.StoreDir,
		Workers:     workers,
		Worker:      worker.Config{Parallel: cfg.Parallel},
		Coordinator: coordinator.Config{Topology: cfg.topology, Weights: cfg.weights},
	}
	if e.st, err = local.Start(ctx, lcfg); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e.nc, err = e.st.Conn("bench-client"); err != nil {
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e.cl, err = client.New(e.nc, client.WithWindow(window), client.WithCompression(!cfg.NoCompression)); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e.twin != nil {
		if err := e.setupWASM(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// setupWASM pushes the twin to the plugin store and loads it for
// direct_wasm.
func (e *env) setupWASM(ctx context.Context) error {
	if _, err := e.st.Push(ctx, e.twin.name, e.twin.module); err != nil {
		return fmt.Errorf("bench: push %s: %w", e.twin.name, err)
	}
	if !contains(e.modes, ModeDirectWASM) {
		return nil
	}
	var err error
	if e.directRT, err = wasm.NewRuntime(ctx, wasm.WithInstances(1)); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if e.directWASM, err = e.directRT.Load(ctx, e.twin.module); err != nil {
		return fmt.Errorf("bench: load %s: %w", e.twin.name, err)
	}
	return nil
}

func (e *env) close() {
	if e.raw != nil {
		e.raw.close()
	}
	if e.st != nil {
		e.st.Close()
	}
	if e.directRT != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.directRT.Close(ctx)
	}
}

// records is a run's input: n records whose values cycle through a slab
// of distinct values (lower-case letters, digits and spaces from a fixed
// seed, so that upper has work to do). Only the slab is held in memory: the
// records are made as they are read, as from a streaming source, so the
// live heap — and the collector's work — is the fleet's, not the input's.
type records struct {
	n, size, distinct int
	slab              []byte
}

// maxSlab bounds the slab of distinct values.
const maxSlab = 64 << 20

func makeRecords(n, size int, data string) records {
	x := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	switch data {
	case DataLogs, DataRandom:
		// Every record distinct (up to the slab's bound): a batch holding
		// the same value twice would compress for that alone.
		distinct := max(1, min(n, maxSlab/size))
		slab := make([]byte, distinct*size)
		if data == DataRandom {
			for i := range slab {
				slab[i] = byte(next())
			}
		} else {
			for j := range distinct {
				logLine(slab[j*size:(j+1)*size], j, next)
			}
		}
		return records{n: n, size: size, distinct: distinct, slab: slab}
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
	distinct := max(1, min(n, 4096, maxSlab/size))
	slab := make([]byte, distinct*size)
	for i := range slab {
		slab[i] = alphabet[next()%uint64(len(alphabet))]
	}
	return records{n: n, size: size, distinct: distinct, slab: slab}
}

// logLine fills dst with log lines like the demo's, record j's, cut or
// continued to fill it.
func logLine(dst []byte, j int, next func() uint64) {
	levels := [...]string{"info", "info", "info", "warn", "error", "debug"}
	services := [...]string{"api", "auth", "billing", "search", "worker"}
	paths := [...]string{"/v1/orders", "/v1/users", "/v1/search", "/healthz", "/v1/invoices"}
	b := dst[:0]
	for k := 0; len(b) < len(dst); k++ {
		r := next()
		b = fmt.Appendf(b, "2026-12-03T%02d:%02d:%02d.%03dZ %s %s request method=%s path=%s/%d status=%d duration_ms=%d bytes=%d user=u%d trace=%016x\n",
			(j/3600)%24, (j/60)%60, j%60, (j*7+k)%1000, levels[r%6], services[(r>>8)%5],
			[...]string{"GET", "POST", "PUT"}[(r>>16)%3], paths[(r>>20)%5], (r>>24)%100000,
			[...]int{200, 200, 200, 201, 404, 500}[(r>>40)%6], (r>>44)%900, (r>>50)%9000, (r>>32)%5000, next())
	}
	copy(dst, b)
}

// value returns record i's value.
func (r records) value(i int) []byte {
	j := i % r.distinct
	return r.slab[j*r.size : (j+1)*r.size : (j+1)*r.size]
}

// fill sets dst to records [lo, hi) and returns it.
func (r records) fill(dst []plugin.Record, lo, hi int) []plugin.Record {
	dst = dst[:0]
	for i := lo; i < hi; i++ {
		dst = append(dst, plugin.Record{Value: r.value(i)})
	}
	return dst
}

// checker returns how to check one result of plugin against its input.
func checker(name string) func(in, out []byte) bool {
	switch name {
	case builtin.UpperName:
		// ASCII only, as the plugin: bytes.ToUpper would rewrite invalid
		// UTF-8.
		return func(in, out []byte) bool {
			if len(in) != len(out) {
				return false
			}
			for i, c := range in {
				if 'a' <= c && c <= 'z' {
					c -= 'a' - 'A'
				}
				if out[i] != c {
					return false
				}
			}
			return true
		}
	case builtin.IdentityName, builtin.DelayName:
		return bytes.Equal
	}
	return func(in, out []byte) bool { return true }
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// memSnap is the process's allocation counters and CPU time at one
// moment.
type memSnap struct {
	gc             uint32
	bytes, objects uint64
	cpu            time.Duration
}

func readMem() memSnap {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnap{gc: ms.NumGC, bytes: ms.TotalAlloc, objects: ms.Mallocs, cpu: cpuTime()}
}

// defaultWindow is the client's default window (client.WithWindow).
const defaultWindow = 32

// wireBytes returns the bytes the embedded server has received from its
// clients so far: what crossed NATS into it. 0 without an embedded server.
func (e *env) wireBytes() uint64 {
	if e.st == nil || e.st.Server == nil {
		return 0
	}
	v, err := e.st.Server.Varz(nil)
	if err != nil {
		return 0
	}
	return uint64(v.InBytes)
}
