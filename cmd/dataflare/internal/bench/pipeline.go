package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// The pipeline figure's streams and subjects. The pipeline's source and
// raw's copy of it hold the same messages; each sink captures one subject
// and drops duplicates by message id, as a pipeline's sink should. All
// are file streams, like the fleet's.
const (
	pipeSource        = "BENCH_PIPE_SRC"
	pipeSourceSubject = "bench.pipe.src"
	pipeSink          = "BENCH_PIPE_SINK"
	pipeSinkSubject   = "bench.pipe.sink"
	pipeRawSource     = "BENCH_PIPE_RAW_SRC"
	pipeRawSubject    = "bench.pipe.raw.src"
	pipeRawSink       = "BENCH_PIPE_RAW_SINK"
	pipeRawSinkSubj   = "bench.pipe.raw.sink"
	pipeLagSource     = "BENCH_PIPE_LAG_SRC"
	pipeLagSubject    = "bench.pipe.lag.src"
	pipeLagSink       = "BENCH_PIPE_LAG_SINK"
	pipeLagSinkSubj   = "bench.pipe.lag.sink"
	// Raw's lag figure moves a source of its own to a sink of its own.
	pipeRawLagSource   = "BENCH_PIPE_RAW_LAG_SRC"
	pipeRawLagSubject  = "bench.pipe.raw.lag.src"
	pipeRawLagSink     = "BENCH_PIPE_RAW_LAG_SINK"
	pipeRawLagSinkSubj = "bench.pipe.raw.lag.sink"
	// pipeDuplicates is the sinks' de-duplication window.
	pipeDuplicates = 2 * time.Minute
	// headerSent carries a lag message's publish time: nanoseconds since
	// the run started, on the process's monotonic clock.
	headerSent = "Bench-Sent"
)

// PipelineConfig describes a pipeline run: a pipeline of one native step
// from a source stream to a sink stream, against raw JetStream moving the
// same messages over the same legs, round after round; then the
// pipeline's end-to-end lag at half its measured rate. Zero fields take
// their defaults.
type PipelineConfig struct {
	// Records is how many source messages each round moves. Default
	// 100,000.
	Records int
	// RecordSize is each message's payload size in bytes. Default 1024.
	RecordSize int
	// Plugin is the pipeline's one step, a native plugin. Default upper.
	// Raw upper-cases the payload for upper and copies it unchanged for
	// another plugin.
	Plugin string
	// PluginConfig is the step's configuration.
	PluginConfig plugin.Config
	// Rounds is how many times each side moves Records messages; the
	// side that goes first alternates. Default 3.
	Rounds int
	// Workers and Parallel are the embedded workers and the batches each
	// runs at once. Defaults 1 and GOMAXPROCS.
	Workers, Parallel int
	// Warmup bounds the time given to the fleet's sizer to settle for
	// Plugin (jobs through the Go client) before the first round. Default
	// 15 s.
	Warmup time.Duration
	// LagTime is how long the lag figure publishes to the source.
	// Default 10 s.
	LagTime time.Duration
	// LagRate is the rate, in messages per second, the lag figure
	// publishes at; 0 means half the pipeline's measured records_per_sec.
	LagRate float64
	// StoreDir keeps JetStream's files; empty means a temporary directory.
	StoreDir string
	// Log receives progress lines (nil: none).
	Log *slog.Logger
	// OnRounds, when set, is called just before the first measured round
	// and its return value just after the last (a CPU profile, say): it
	// sees both sides' rounds, not the warm-up or the lag figure.
	OnRounds func() (stop func())
}

func (c PipelineConfig) withDefaults() (PipelineConfig, error) {
	if c.Records == 0 {
		c.Records = 100_000
	}
	if c.RecordSize == 0 {
		c.RecordSize = 1024
	}
	if c.Plugin == "" {
		c.Plugin = builtin.UpperName
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
	if c.LagTime == 0 {
		c.LagTime = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = discard
	}
	switch {
	case c.Records < 1:
		return c, fmt.Errorf("%w: records %d below 1", ErrInvalidConfig, c.Records)
	case c.RecordSize < 1 || c.RecordSize > MaxRecordSize:
		return c, fmt.Errorf("%w: record size %d not in 1..%d", ErrInvalidConfig, c.RecordSize, MaxRecordSize)
	case c.Rounds < 1:
		return c, fmt.Errorf("%w: rounds %d below 1", ErrInvalidConfig, c.Rounds)
	case c.Workers < 1 || c.Parallel < 1:
		return c, fmt.Errorf("%w: workers %d and parallel %d must be positive", ErrInvalidConfig, c.Workers, c.Parallel)
	case c.Warmup < 0 || c.LagTime < 0 || c.LagRate < 0:
		return c, fmt.Errorf("%w: warm-up %v, lag time %v and lag rate %v must not be negative", ErrInvalidConfig, c.Warmup, c.LagTime, c.LagRate)
	}
	if _, ok := builtin.All()[c.Plugin]; !ok || c.Plugin == builtin.FailName {
		return c, fmt.Errorf("%w: pipeline plugin %q: use identity, upper or delay", ErrInvalidConfig, c.Plugin)
	}
	return c, nil
}

// PipelineReport is what Pipeline measured.
type PipelineReport struct {
	// Date is when the run started (RFC 3339, UTC); Machine where.
	Date    string  `json:"date"`
	Machine Machine `json:"machine"`
	// Plugin and PluginConfig are the pipeline's one step.
	Plugin       string        `json:"plugin"`
	PluginConfig plugin.Config `json:"plugin_config,omitempty"`
	// Workers and Parallel are the embedded workers and the batches each
	// ran at once; Storage is the streams' ("file").
	Workers  int    `json:"workers"`
	Parallel int    `json:"parallel"`
	Storage  string `json:"storage"`
	// Rounds is how many times each side moved Records messages.
	Rounds int `json:"rounds"`
	// Pipeline holds the figures (DESIGN §9: pipeline.records_per_sec,
	// pipeline.vs_raw, pipeline.lag_p99_ms).
	Pipeline PipelineFigures `json:"pipeline"`
}

// PipelineFigures are a pipeline's throughput against raw JetStream and
// its end-to-end lag.
type PipelineFigures struct {
	// Records is the source messages each round moved, RecordSize their
	// payload's size.
	Records    int `json:"records"`
	RecordSize int `json:"record_size"`

	// RecordsPerSec is the pipeline's throughput, median over rounds:
	// Records over the time from CreatePipeline until the sink stream
	// holds Records messages (the coordinator picking the pipeline up,
	// within a second, is part of it; FirstResultMs says how much), and
	// MBPerSec the same in payload megabytes.
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	// RawRecordsPerSec is raw's, over the time from creating its consumer
	// until its sink holds Records messages, median over its legs (one
	// more than the rounds: one before each round and one after the
	// last).
	RawRecordsPerSec float64 `json:"raw_records_per_sec"`
	// VsRaw is the pipeline's throughput over raw's, the median over
	// rounds of the ratio of the round's pipeline leg to the geometric
	// mean of the raw legs before and after it; VsRawCPU the same of raw's
	// CPU time per record over the pipeline's (steadier on a shared
	// machine).
	VsRaw    float64 `json:"vs_raw"`
	VsRawCPU float64 `json:"vs_raw_cpu"`
	// CPUMicrosPerRecord and RawCPUMicrosPerRecord are the process's CPU
	// time per record (server, coordinator, worker and bench alike),
	// medians over rounds.
	CPUMicrosPerRecord    float64 `json:"cpu_us_per_record"`
	RawCPUMicrosPerRecord float64 `json:"raw_cpu_us_per_record"`
	// FirstResultMs is the time from CreatePipeline to the first message
	// in the sink, median over rounds.
	FirstResultMs float64 `json:"first_result_ms"`
	// RoundsPerSec and RawRoundsPerSec are every pipeline and raw leg's
	// throughput, in the order they ran (raw's first leg before the first
	// round).
	RoundsPerSec    []float64 `json:"rounds_records_per_sec"`
	RawRoundsPerSec []float64 `json:"raw_rounds_records_per_sec"`
	// BatchSize is the batch size the fleet's sizer chose for the plugin
	// at the end of the rounds (a pipeline's batches are cut at it).
	BatchSize int `json:"batch_size"`
	// RawFetch and RawWindow are raw's fetch size and its most publishes
	// awaiting their PubAck.
	RawFetch  int `json:"raw_fetch"`
	RawWindow int `json:"raw_window"`
	// Checked counts the sink messages read back and checked, both sides,
	// every round and the lag figure: each sink held exactly one message
	// per source message, in source order, with the step's output.
	Checked int `json:"checked_messages"`

	// LagRate is the rate the source was published at during the lag
	// figure (messages per second, measured), LagTargetRate the rate
	// asked: half of RecordsPerSec unless given. LagSeconds is how long
	// it published.
	LagRate       float64 `json:"lag_rate"`
	LagTargetRate float64 `json:"lag_target_rate"`
	LagSeconds    float64 `json:"lag_seconds"`
	// LagP50Ms, LagP99Ms and LagMaxMs are over every message published
	// during the lag figure: from the publish call on the source to the
	// message's arrival from the sink stream (an ordered consumer).
	LagP50Ms   float64 `json:"lag_p50_ms"`
	LagP99Ms   float64 `json:"lag_p99_ms"`
	LagMaxMs   float64 `json:"lag_max_ms"`
	LagSamples int     `json:"lag_samples"`
	// RawLagRate, RawLagP50Ms, RawLagP99Ms and RawLagMaxMs are the same
	// of raw moving a source of its own, published at the same asked
	// rate right after the pipeline's (on emptied streams): the lag of
	// the machine at that rate with none of the fleet's code.
	RawLagRate  float64 `json:"raw_lag_rate"`
	RawLagP50Ms float64 `json:"raw_lag_p50_ms"`
	RawLagP99Ms float64 `json:"raw_lag_p99_ms"`
	RawLagMaxMs float64 `json:"raw_lag_max_ms"`
	// RawLagSamples is how many messages raw's lag is over.
	RawLagSamples int `json:"raw_lag_samples"`
	// Status is what the lag figure's pipeline reported of itself
	// (PipelineInfo) once every message was in the sink.
	Status PipelineStatusFigures `json:"status"`
}

// PipelineStatusFigures are a pipeline's own figures (client.PipelineStatus).
type PipelineStatusFigures struct {
	// State is "running", "paused" or why the pipeline cannot run.
	State string `json:"state"`
	// Processed counts the source messages done, Lag those not yet in
	// the sink; Rate is the messages done per second over the second
	// before the report (after the last message: below LagRate).
	Processed uint64  `json:"processed"`
	Lag       uint64  `json:"lag"`
	Rate      float64 `json:"rate"`
	// LatencyP50Ms and LatencyP99Ms go from a message's arrival in the
	// source to its result's in the sink, over the pipeline's last
	// minute.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
}

// Pipeline measures a pipeline and raw JetStream side by side on one
// embedded server with file storage, round after round, then the
// pipeline's end-to-end lag. The error wraps ErrInvalidConfig for a bad
// cfg, or is the first failure of the stack or of a side; a sink that
// does not hold exactly one message per source message, in order, with
// the step's output, fails the run.
func Pipeline(ctx context.Context, cfg PipelineConfig) (*PipelineReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ecfg, err := Config{Records: cfg.Records, RecordSize: cfg.RecordSize, Plugin: cfg.Plugin, PluginConfig: cfg.PluginConfig,
		Modes: []string{ModeFleetNative}, Workers: cfg.Workers, Parallel: cfg.Parallel, Warmup: cfg.Warmup,
		StoreDir: cfg.StoreDir, Log: cfg.Log}.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := setupStack(ctx, ecfg, cfg.Workers, defaultWindow)
	if err != nil {
		return nil, err
	}
	defer e.close()
	p, err := newPipeBench(ctx, e, cfg)
	if err != nil {
		return nil, err
	}
	defer p.close()
	rep := &PipelineReport{Date: e.start.UTC().Format(time.RFC3339), Machine: machine(), Plugin: cfg.Plugin,
		PluginConfig: cfg.PluginConfig, Workers: cfg.Workers, Parallel: cfg.Parallel, Storage: "file", Rounds: cfg.Rounds}
	rep.Pipeline = PipelineFigures{Records: cfg.Records, RecordSize: cfg.RecordSize, RawFetch: rawPipeFetch, RawWindow: rawPipeWindow}

	if _, err := e.settle(ctx, cfg.Plugin, time.Now().Add(cfg.Warmup)); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if err := p.rounds(ctx, &rep.Pipeline); err != nil {
		return nil, err
	}
	if rep.Pipeline.BatchSize, err = e.batchSizeOf(ctx, cfg.Plugin); err != nil {
		return nil, err
	}
	rate := cfg.LagRate
	if rate == 0 {
		rate = rep.Pipeline.RecordsPerSec / 2
	}
	// The lag figure too runs on a server holding nothing else of the
	// bench's.
	if err := p.purgeAll(ctx); err != nil {
		return nil, err
	}
	if err := p.lag(ctx, rate, &rep.Pipeline); err != nil {
		return nil, fmt.Errorf("lag: %w", err)
	}
	return rep, nil
}

// pipeBench is a pipeline run's world: the fleet, the streams, and raw's
// connection.
type pipeBench struct {
	*env
	cfg PipelineConfig
	// pub publishes the source messages; raw is raw's side.
	pub    jetstream.JetStream
	pubErr atomic.Pointer[error]
	raw    *rawPipe
	step   []client.Step
}

func newPipeBench(ctx context.Context, e *env, cfg PipelineConfig) (*pipeBench, error) {
	p := &pipeBench{env: e, cfg: cfg, step: []client.Step{{Plugin: cfg.Plugin, Config: cfg.PluginConfig}}}
	pub, err := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(pubWindow),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			p.pubErr.CompareAndSwap(nil, &err)
		}))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	p.pub = pub
	// A store kept from an earlier run may hold its pipelines and
	// streams: the run starts from none.
	list, err := e.cl.Pipelines(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: pipelines: %w", err)
	}
	for _, old := range list {
		if old.Spec.Source == pipeSource || old.Spec.Source == pipeLagSource {
			if err := e.cl.RemovePipeline(ctx, old.Name); err != nil {
				return nil, fmt.Errorf("bench: remove pipeline %s: %w", old.Name, err)
			}
		}
	}
	for _, sc := range []jetstream.StreamConfig{
		{Name: pipeSource, Subjects: []string{pipeSourceSubject}},
		{Name: pipeRawSource, Subjects: []string{pipeRawSubject}},
		{Name: pipeSink, Subjects: []string{pipeSinkSubject}, Duplicates: pipeDuplicates},
		{Name: pipeRawSink, Subjects: []string{pipeRawSinkSubj}, Duplicates: pipeDuplicates},
		{Name: pipeLagSource, Subjects: []string{pipeLagSubject}},
		{Name: pipeLagSink, Subjects: []string{pipeLagSinkSubj}, Duplicates: pipeDuplicates},
		{Name: pipeRawLagSource, Subjects: []string{pipeRawLagSubject}},
		{Name: pipeRawLagSink, Subjects: []string{pipeRawLagSinkSubj}, Duplicates: pipeDuplicates},
	} {
		sc.Storage, sc.Description = jetstream.FileStorage, "bench: pipeline"
		if err := e.js.DeleteStream(ctx, sc.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("bench: stream %s: %w", sc.Name, err)
		}
		if _, err := e.js.CreateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("bench: stream %s: %w", sc.Name, err)
		}
	}
	nc, err := e.st.Conn("bench-pipe-raw")
	if err != nil {
		return nil, err
	}
	if p.raw, err = newRawPipe(nc, cfg.Plugin); err != nil {
		nc.Close()
		return nil, err
	}
	return p, nil
}

func (p *pipeBench) close() { p.raw.nc.Close() }

// pubWindow bounds the source publishes awaiting their PubAck.
const pubWindow = 4096

// leg is one side's figures in one round.
type leg struct {
	elapsed, first time.Duration
	cpu            time.Duration
}

func (l leg) perSec(n int) float64 { return float64(n) / l.elapsed.Seconds() }

// rounds runs Rounds pipeline legs, each between two raw legs (raw first
// and last: Rounds+1 of them), and summarises them into f. Each pipeline
// leg is held to the geometric mean of the raw legs on either side of it,
// which cancels a drift of the machine's speed over the run: in runs of
// sides taking turns, the side that ran first in a round was the faster
// one, whichever it was, the rates falling from round to round
// (BENCHMARKS.md, "Pipelines").
func (p *pipeBench) rounds(ctx context.Context, f *PipelineFigures) error {
	if p.cfg.OnRounds != nil {
		if stop := p.cfg.OnRounds(); stop != nil {
			defer stop()
		}
	}
	n := p.cfg.Records
	var pipe, raw []leg
	runRaw := func() error {
		first, err := p.publishSource(ctx, 1)
		if err == nil {
			var l leg
			l, err = p.rawLeg(ctx, len(raw), first)
			raw = append(raw, l)
		}
		if err != nil {
			return fmt.Errorf("raw leg %d: %w", len(raw), err)
		}
		f.Checked += n
		return nil
	}
	if err := runRaw(); err != nil {
		return err
	}
	for r := range p.cfg.Rounds {
		first, err := p.publishSource(ctx, 0)
		if err == nil {
			var l leg
			l, err = p.pipelineLeg(ctx, r, first)
			pipe = append(pipe, l)
		}
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		f.Checked += n
		if err := runRaw(); err != nil {
			return err
		}
		p.cfg.Log.Info("pipeline round", "round", r+1, "pipeline_records_per_sec", round2(pipe[r].perSec(n)),
			"raw_records_per_sec", round2(raw[r].perSec(n)), "raw_after_records_per_sec", round2(raw[r+1].perSec(n)))
	}
	var ratios, cpuRatios, firsts, cpus, rawCPUs []float64
	for r := range pipe {
		rawRate := math.Sqrt(raw[r].perSec(n) * raw[r+1].perSec(n))
		rawCPU := math.Sqrt(float64(raw[r].cpu) * float64(raw[r+1].cpu))
		f.RoundsPerSec = append(f.RoundsPerSec, pipe[r].perSec(n))
		ratios = append(ratios, pipe[r].perSec(n)/rawRate)
		cpuRatios = append(cpuRatios, rawCPU/float64(pipe[r].cpu))
		firsts = append(firsts, ms(pipe[r].first))
		cpus = append(cpus, float64(pipe[r].cpu)/float64(time.Microsecond)/float64(n))
	}
	for _, l := range raw {
		f.RawRoundsPerSec = append(f.RawRoundsPerSec, l.perSec(n))
		rawCPUs = append(rawCPUs, float64(l.cpu)/float64(time.Microsecond)/float64(n))
	}
	f.RecordsPerSec = round2(median(f.RoundsPerSec))
	f.MBPerSec = round2(f.RecordsPerSec * float64(p.cfg.RecordSize) / 1e6)
	f.RawRecordsPerSec = round2(median(f.RawRoundsPerSec))
	f.VsRaw, f.VsRawCPU = round3(median(ratios)), round3(median(cpuRatios))
	f.CPUMicrosPerRecord, f.RawCPUMicrosPerRecord = round3(median(cpus)), round3(median(rawCPUs))
	f.FirstResultMs = round3(median(firsts))
	f.RoundsPerSec, f.RawRoundsPerSec = roundAll(f.RoundsPerSec), roundAll(f.RawRoundsPerSec)
	return nil
}

// pipeQuiet is the pause between publishing a side's source and timing
// the side: the server's writes of the source settle first, and a removed
// pipeline's runner (it stops within a second) has ended.
const pipeQuiet = 1500 * time.Millisecond

// pipeSides are the two sides' source and sink streams and source
// subject: the pipeline's (0) and raw's (1).
var pipeSides = [2]struct{ source, sink, subject string }{
	{pipeSource, pipeSink, pipeSourceSubject},
	{pipeRawSource, pipeRawSink, pipeRawSubject},
}

// publishSource empties both sides' streams, publishes Records messages
// (the same for both sides) to side's source, waits pipeQuiet, and
// returns the source's first sequence. Each side publishes its own source
// right before it runs, on a server that holds nothing of the other side,
// so that neither finds its messages older, or the server's caches and
// this process's heap fuller, than the other does (BENCHMARKS.md,
// "Pipelines", says what publishing both at the start of a round did).
func (p *pipeBench) publishSource(ctx context.Context, side int) (uint64, error) {
	sd := pipeSides[side]
	if err := p.purgeAll(ctx); err != nil {
		return 0, err
	}
	for j := range p.cfg.Records {
		if err := p.publish(ctx, &nats.Msg{Subject: sd.subject, Data: p.in.value(j)}); err != nil {
			return 0, err
		}
	}
	if err := p.published(ctx); err != nil {
		return 0, err
	}
	s, err := p.js.Stream(ctx, sd.source)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	st := s.CachedInfo().State
	if st.Msgs != uint64(p.cfg.Records) {
		return 0, fmt.Errorf("bench: source %s holds %d messages, want %d", sd.source, st.Msgs, p.cfg.Records)
	}
	return st.FirstSeq, sleep(ctx, pipeQuiet)
}

// publish publishes m asynchronously (pubWindow at most awaiting their
// PubAck); published waits for them all.
func (p *pipeBench) publish(ctx context.Context, m *nats.Msg) error {
	if _, err := p.pub.PublishMsgAsync(m, jetstream.WithStallWait(pubStall)); err != nil {
		return fmt.Errorf("bench: publish to the source: %w", err)
	}
	return ctx.Err()
}

// pubStall bounds the wait for room in an async publish window.
const pubStall = 30 * time.Second

func (p *pipeBench) published(ctx context.Context) error {
	select {
	case <-p.pub.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(pubStall):
		return fmt.Errorf("bench: %d source messages not acknowledged within %v", p.pub.PublishAsyncPending(), pubStall)
	}
	if err := p.pubErr.Load(); err != nil {
		return fmt.Errorf("bench: publish to the source: %w", *err)
	}
	return nil
}

// purgeAll empties both sides' sources and sinks.
func (p *pipeBench) purgeAll(ctx context.Context) error {
	for _, name := range []string{pipeSource, pipeSink, pipeRawSource, pipeRawSink} {
		if err := p.purge(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (p *pipeBench) purge(ctx context.Context, name string) error {
	s, err := p.js.Stream(ctx, name)
	if err == nil {
		err = s.Purge(ctx)
	}
	if err != nil {
		return fmt.Errorf("bench: purge %s: %w", name, err)
	}
	return nil
}

// pipelineLeg creates a pipeline from the source to the sink, times it
// until the sink holds every message, checks the sink, waits for the
// pipeline to have acknowledged its source, and removes it.
func (p *pipeBench) pipelineLeg(ctx context.Context, round int, firstSeq uint64) (leg, error) {
	name := "bench-" + strconv.Itoa(round+1)
	spec := client.PipelineSpec{Source: pipeSource, Steps: p.step, Sink: pipeSinkSubject}
	cpu0, start := cpuTime(), time.Now()
	if _, err := p.cl.CreatePipeline(ctx, name, spec); err != nil {
		return leg{}, fmt.Errorf("bench: create pipeline: %w", err)
	}
	first, err := p.waitSink(ctx, pipeSink, p.cfg.Records, start, func() error { return nil })
	l := leg{elapsed: time.Since(start), first: first, cpu: cpuTime() - cpu0}
	if err != nil {
		return l, fmt.Errorf("pipeline %s: %w (%s)", name, err, p.pipelineState(ctx, name))
	}
	if err := p.checkSink(ctx, pipeSink, p.cfg.Records, firstSeq); err != nil {
		return l, fmt.Errorf("pipeline %s: %w", name, err)
	}
	if _, err := p.status(ctx, name, uint64(p.cfg.Records)); err != nil {
		return l, fmt.Errorf("pipeline %s: %w", name, err)
	}
	if err := p.cl.RemovePipeline(ctx, name); err != nil {
		return l, fmt.Errorf("bench: remove pipeline %s: %w", name, err)
	}
	return l, nil
}

// pipelineState says how pipeline name goes, for an error.
func (p *pipeBench) pipelineState(ctx context.Context, name string) string {
	info, err := p.cl.PipelineInfo(ctx, name)
	switch {
	case err != nil:
		return "info: " + err.Error()
	case info.Status == nil:
		return "no status reported"
	}
	return fmt.Sprintf("state %q, processed %d, lag %d", info.Status.State, info.Status.Processed, info.Status.Lag)
}

// status waits until pipeline name reports processed messages at least,
// and returns its status.
func (p *pipeBench) status(ctx context.Context, name string, processed uint64) (*client.PipelineStatus, error) {
	var st *client.PipelineStatus
	err := poll.Until(ctx, statusWithin, func() error {
		info, err := p.cl.PipelineInfo(ctx, name)
		if err != nil {
			return err
		}
		if st = info.Status; st == nil || st.Processed < processed {
			return fmt.Errorf("the pipeline reports %s, want %d processed", p.pipelineState(ctx, name), processed)
		}
		return nil
	})
	return st, err
}

// statusWithin bounds the wait for a pipeline's report (written every
// second).
const statusWithin = 30 * time.Second

// rawLeg has raw move the copy of the source to its sink, times it until
// the sink holds every message, and checks the sink.
func (p *pipeBench) rawLeg(ctx context.Context, round int, firstSeq uint64) (leg, error) {
	consumer := "bench-raw-" + strconv.Itoa(round+1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	var runErr error // set before done closes
	cpu0, start := cpuTime(), time.Now()
	// Stops once it has acknowledged every message, or rctx ends.
	go func() {
		defer close(done)
		runErr = p.raw.run(rctx, pipeRawSource, pipeRawSinkSubj, consumer, "raw."+strconv.Itoa(round+1)+".", p.cfg.Records)
	}()
	failed := func() error {
		select {
		case <-done:
			return runErr
		default:
			return nil
		}
	}
	first, err := p.waitSink(ctx, pipeRawSink, p.cfg.Records, start, failed)
	l := leg{elapsed: time.Since(start), first: first, cpu: cpuTime() - cpu0}
	if err != nil {
		cancel()
		<-done
		return l, fmt.Errorf("raw: %w", err)
	}
	<-done
	if runErr != nil {
		return l, fmt.Errorf("raw: %w", runErr)
	}
	if err := p.checkSink(ctx, pipeRawSink, p.cfg.Records, firstSeq); err != nil {
		return l, fmt.Errorf("raw: %w", err)
	}
	if err := p.js.DeleteConsumer(ctx, pipeRawSource, consumer); err != nil {
		return l, fmt.Errorf("bench: raw: %w", err)
	}
	return l, nil
}

// waitSink polls stream until it holds n messages (failing at once when
// failed returns an error) and returns the time from start to its first
// message.
func (p *pipeBench) waitSink(ctx context.Context, stream string, n int, start time.Time, failed func() error) (time.Duration, error) {
	s, err := p.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	var first time.Duration
	var failure error
	err = poll.Until(ctx, sinkWithin(n), func() error {
		if failure = failed(); failure != nil {
			return nil
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs > 0 && first == 0 {
			first = time.Since(start)
		}
		if info.State.Msgs < uint64(n) {
			return fmt.Errorf("sink %s holds %d messages, want %d", stream, info.State.Msgs, n)
		}
		return nil
	})
	if failure != nil {
		return first, failure
	}
	return first, err
}

// sinkWithin bounds the wait for n messages in a sink: a minute, and a
// second per 1,000 messages.
func sinkWithin(n int) time.Duration { return time.Minute + time.Duration(n)*time.Millisecond }

// checkSink reads stream back and checks that it holds exactly n
// messages: for source message i (sequence firstSeq+i), in order, one
// message carrying that sequence and the step's output of record i.
func (p *pipeBench) checkSink(ctx context.Context, stream string, n int, firstSeq uint64) error {
	return checkSink(ctx, p.js, stream, n, func(i int, m jetstream.Msg) error {
		seq := m.Headers().Get(coordinator.HeaderSourceSeq)
		if seq != strconv.FormatUint(firstSeq+uint64(i), 10) {
			return fmt.Errorf("sink message %d is of source sequence %q, want %d", i+1, seq, firstSeq+uint64(i))
		}
		if !p.check(p.in.value(i), m.Data()) {
			return fmt.Errorf("sink message %d (source sequence %s): wrong value %.40q", i+1, seq, m.Data())
		}
		return nil
	})
}

// checkSink checks that stream holds exactly n messages and that want
// holds of each, in order.
func checkSink(ctx context.Context, js jetstream.JetStream, stream string, n int, want func(i int, m jetstream.Msg) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(n) {
		return fmt.Errorf("sink %s holds %d messages, want %d: one per source message", stream, got, n)
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("bench: read %s: %w", stream, err)
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return fmt.Errorf("bench: read %s: %w", stream, err)
	}
	defer it.Stop()
	rctx, cancel := context.WithTimeout(ctx, sinkWithin(n))
	defer cancel()
	for i := range n {
		m, err := it.Next(jetstream.NextContext(rctx))
		if err != nil {
			return fmt.Errorf("bench: read %s: message %d: %w", stream, i+1, err)
		}
		if err := want(i, m); err != nil {
			return fmt.Errorf("sink %s: %w", stream, err)
		}
	}
	return nil
}

// The raw side's settings: the messages it pulls at once (the
// coordinator's source fetch) and the most publishes awaiting their
// PubAck.
const (
	rawPipeFetch  = 256
	rawPipeWindow = 1024
	// rawPipeAckPending is its consumer's MaxAckPending, the pipeline
	// consumer's.
	rawPipeAckPending = 100_000
)

// rawPipe is the pipeline's JetStream legs with none of the fleet's code,
// on a connection of its own (as the coordinator has): a durable pull
// consumer on a copy of the source stream with the pipeline consumer's
// settings, read with nats.go's continuous pull (Consumer.Messages) in
// pulls of rawPipeFetch messages, the next pull asked for before the
// last is used up; for each message, the step's output (upper-cased for
// upper, else the payload) published asynchronously on the sink subject,
// with the source's headers, Df-Source-Seq and a Nats-Msg-Id of the
// source sequence — at most rawPipeWindow publishes awaiting their
// PubAck; and a goroutine that takes the publishes in source order, waits
// for each PubAck and only then acknowledges the source message (Ack: the
// sink's de-duplication, not the ack, makes a redelivered message
// harmless, so the ack's reply is not waited for). So a message is
// acknowledged only once the sink has it, as in the pipeline, with neither
// batches through workers nor a round trip per message.
type rawPipe struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	transform func([]byte) []byte
}

func newRawPipe(nc *nats.Conn, plugin string) (*rawPipe, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(rawPipeWindow))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &rawPipe{nc: nc, js: js, transform: bytes.Clone}
	if plugin == builtin.UpperName {
		r.transform = bytes.ToUpper
	}
	return r, nil
}

// rawPending is a sink publish awaiting its PubAck and its source
// message.
type rawPending struct {
	ack jetstream.PubAckFuture
	src jetstream.Msg
}

// run moves n messages from stream to the sink subject with a new
// durable consumer, each under a message id of prefix and its source
// sequence, and returns once each was acknowledged; with n below 0 it
// moves messages until ctx ends, and returns ctx's error.
func (r *rawPipe) run(ctx context.Context, stream, sink, consumer, prefix string, n int) error {
	cons, err := r.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Minute,
		MaxAckPending: rawPipeAckPending, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("bench: raw consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(rawPipeFetch), jetstream.WithMessagesErrOnMissingHeartbeat(false))
	if err != nil {
		return fmt.Errorf("bench: raw consumer: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pending := make(chan rawPending, rawPipeWindow)
	acked := 0
	var wg sync.WaitGroup
	wg.Add(1)
	// Stops when pending is closed and emptied, or ctx ends.
	go func() {
		defer wg.Done()
		for p := range pending {
			select {
			case <-p.ack.Ok():
			case err := <-p.ack.Err():
				cancel(fmt.Errorf("bench: raw sink publish: %w", err))
				return
			case <-ctx.Done():
				return
			}
			if err := p.src.Ack(); err != nil {
				cancel(fmt.Errorf("bench: raw ack: %w", err))
				return
			}
			acked++
		}
	}()
	stopIt := context.AfterFunc(ctx, it.Stop)
	for fetched := 0; n < 0 || fetched < n; fetched++ {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() == nil {
				cancel(fmt.Errorf("bench: raw fetch: %w", err))
			}
			break
		}
		if err := r.forward(ctx, m, sink, prefix, pending); err != nil {
			cancel(err)
			break
		}
	}
	stopIt()
	it.Stop()
	close(pending)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if n >= 0 && acked != n {
		return fmt.Errorf("bench: raw acknowledged %d messages of %d", acked, n)
	}
	return nil
}

// forward publishes m's output to the sink and queues it for its ack.
func (r *rawPipe) forward(ctx context.Context, m jetstream.Msg, sink, prefix string, pending chan<- rawPending) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("bench: raw: %w", err)
	}
	seq := strconv.FormatUint(meta.Sequence.Stream, 10)
	out := &nats.Msg{Subject: sink, Data: r.transform(m.Data()), Header: nats.Header{}}
	for k, vs := range m.Headers() {
		out.Header[k] = vs
	}
	out.Header.Set(coordinator.HeaderSourceSeq, seq)
	out.Header.Set(proto.HeaderMsgID, prefix+seq)
	f, err := r.js.PublishMsgAsync(out, jetstream.WithStallWait(pubStall))
	if err != nil {
		return fmt.Errorf("bench: raw sink publish: %w", err)
	}
	select {
	case pending <- rawPending{ack: f, src: m}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// lagPrime is how many messages go through the lag figure's pipeline
// before it is measured: it is then running, its first batch done.
const lagPrime = 10

// lag measures the end-to-end lag of a new pipeline whose source is
// published at rate messages per second for LagTime, in bursts every
// lagTick: for each message, from its publish call to its arrival from
// the sink stream. Then, on emptied streams, the same of raw moving a
// source of its own published at the same rate: what the machine does at
// that rate with none of the fleet's code.
func (p *pipeBench) lag(ctx context.Context, rate float64, f *PipelineFigures) error {
	if rate <= 0 {
		return fmt.Errorf("bench: lag rate %v: want a positive rate", rate)
	}
	f.LagTargetRate = round2(rate)
	const name = "bench-lag"
	pipe := lagSide{what: "pipeline " + name, subject: pipeLagSubject, sink: pipeLagSink,
		start: func(ctx context.Context) (*lagRun, error) {
			if _, err := p.cl.CreatePipeline(ctx, name, client.PipelineSpec{Source: pipeLagSource, Steps: p.step, Sink: pipeLagSinkSubj}); err != nil {
				return nil, fmt.Errorf("bench: create pipeline: %w", err)
			}
			return &lagRun{state: func() string { return p.pipelineState(ctx, name) }}, nil
		}}
	m, err := p.lagLeg(ctx, rate, pipe)
	if err != nil {
		return err
	}
	f.Checked += m.sent
	f.LagSeconds = round3(m.elapsed.Seconds())
	f.LagRate = round2(float64(m.sent) / m.elapsed.Seconds())
	l := latencies(m.lat)
	f.LagP50Ms, f.LagP99Ms, f.LagMaxMs, f.LagSamples = l.P50Ms, l.P99Ms, l.MaxMs, l.Samples
	st, err := p.status(ctx, name, uint64(lagPrime+m.sent))
	if err != nil {
		return fmt.Errorf("pipeline %s: %w", name, err)
	}
	f.Status = PipelineStatusFigures{State: st.State, Processed: st.Processed, Lag: st.Lag, Rate: round2(st.Rate),
		LatencyP50Ms: ms(st.LatencyP50), LatencyP99Ms: ms(st.LatencyP99)}
	p.cfg.Log.Info("pipeline lag", "rate", f.LagRate, "p50_ms", f.LagP50Ms, "p99_ms", f.LagP99Ms)

	// Raw's turn, on a server holding nothing else of the bench's.
	if err := p.cl.RemovePipeline(ctx, name); err != nil {
		return fmt.Errorf("bench: remove pipeline %s: %w", name, err)
	}
	for _, s := range []string{pipeLagSource, pipeLagSink} {
		if err := p.purge(ctx, s); err != nil {
			return err
		}
	}
	if err := sleep(ctx, pipeQuiet); err != nil {
		return err
	}
	raw := lagSide{what: "raw", subject: pipeRawLagSubject, sink: pipeRawLagSink, start: p.startRawLag}
	if m, err = p.lagLeg(ctx, rate, raw); err != nil {
		return err
	}
	f.Checked += m.sent
	f.RawLagRate = round2(float64(m.sent) / m.elapsed.Seconds())
	l = latencies(m.lat)
	f.RawLagP50Ms, f.RawLagP99Ms, f.RawLagMaxMs, f.RawLagSamples = l.P50Ms, l.P99Ms, l.MaxMs, l.Samples
	p.cfg.Log.Info("raw lag", "rate", f.RawLagRate, "p50_ms", f.RawLagP50Ms, "p99_ms", f.RawLagP99Ms)
	return nil
}

// lagSide is one side of the lag figure: the subject its source is
// published on, its sink stream, and how it starts moving the one to the
// other.
type lagSide struct {
	what          string
	subject, sink string
	start         func(ctx context.Context) (*lagRun, error)
}

// lagRun is a side moving its source: failed returns its error once it
// has stopped on one (nil: none, or still running), stop stops it (nil:
// it stops by itself), state says how it goes, for an error.
type lagRun struct {
	failed func() error
	stop   func() error
	state  func() string
}

// lagMeasure is what one side's lag leg measured: the messages published
// at the rate, over how long, and each one's lag.
type lagMeasure struct {
	sent    int
	elapsed time.Duration
	lat     []time.Duration
}

// lagLeg starts side, primes it with lagPrime messages, publishes its
// source at rate for LagTime while reading its sink, and checks that the
// sink then holds exactly one message per source message, in order.
func (p *pipeBench) lagLeg(ctx context.Context, rate float64, side lagSide) (m lagMeasure, err error) {
	run, err := side.start(ctx)
	if err != nil {
		return m, err
	}
	if run.failed == nil {
		run.failed = func() error { return nil }
	}
	if run.state == nil {
		run.state = func() string { return "running" }
	}
	if run.stop != nil {
		defer func() {
			if serr := run.stop(); serr != nil && err == nil {
				err = fmt.Errorf("%s: %w", side.what, serr)
			}
		}()
	}
	for i := range lagPrime {
		if err := p.publish(ctx, &nats.Msg{Subject: side.subject, Data: p.in.value(i)}); err != nil {
			return m, err
		}
	}
	if err := p.published(ctx); err != nil {
		return m, err
	}
	if _, err := p.waitSink(ctx, side.sink, lagPrime, time.Now(), run.failed); err != nil {
		return m, fmt.Errorf("%s: %w (%s)", side.what, err, run.state())
	}

	rd, err := p.startLagReader(ctx, side.sink)
	if err != nil {
		return m, err
	}
	defer rd.stop()
	t := time.NewTicker(lagTick)
	defer t.Stop()
	sent, start := 0, time.Now()
	for {
		el := time.Since(start)
		if el >= p.cfg.LagTime {
			break
		}
		for due := int(rate * el.Seconds()); sent < due; sent++ {
			msg := &nats.Msg{Subject: side.subject, Data: p.in.value(sent), Header: nats.Header{}}
			msg.Header.Set(headerSent, strconv.FormatInt(int64(time.Since(p.start)), 10))
			if err := p.publish(ctx, msg); err != nil {
				return m, err
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return m, ctx.Err()
		}
	}
	elapsed := time.Since(start)
	if err := p.published(ctx); err != nil {
		return m, err
	}
	err = poll.Until(ctx, sinkWithin(sent), func() error {
		select {
		case <-rd.done: // a wrong message: stop below says which
			return nil
		default:
		}
		if err := run.failed(); err != nil {
			return nil // said below
		}
		if got := rd.count.Load(); got < int64(sent) {
			return fmt.Errorf("%d of %d messages read from the sink", got, sent)
		}
		return nil
	})
	lat, rerr := rd.stop()
	switch {
	case rerr != nil:
		return m, rerr
	case run.failed() != nil:
		return m, fmt.Errorf("%s: %w", side.what, run.failed())
	case err != nil:
		return m, fmt.Errorf("%s: %w (%s)", side.what, err, run.state())
	}
	if err := checkSink(ctx, p.js, side.sink, lagPrime+sent, func(int, jetstream.Msg) error { return nil }); err != nil {
		return m, err
	}
	return lagMeasure{sent: sent, elapsed: elapsed, lat: lat}, nil
}

// startRawLag starts raw moving its lag source to its lag sink until the
// returned run is stopped.
func (p *pipeBench) startRawLag(ctx context.Context) (*lagRun, error) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var runErr error // set before done closes
	// Stops when stop cancels rctx, or on a failure.
	go func() {
		defer close(done)
		runErr = p.raw.run(rctx, pipeRawLagSource, pipeRawLagSinkSubj, "bench-raw-lag", "raw.lag.", -1)
	}()
	failed := func() error {
		select {
		case <-done:
			if runErr == nil {
				return errors.New("raw stopped")
			}
			return runErr
		default:
			return nil
		}
	}
	stop := func() error {
		cancel()
		<-done
		if errors.Is(runErr, context.Canceled) && ctx.Err() == nil {
			return nil // stopped here
		}
		return runErr
	}
	return &lagRun{failed: failed, stop: stop}, nil
}

// lagTick is how often the lag figure publishes a burst.
const lagTick = 5 * time.Millisecond

// lagReader reads the lag figure's sink as messages arrive and measures
// each one's lag, checking that they come one per source message, in
// source order, with the step's output.
type lagReader struct {
	it    jetstream.MessagesContext
	count atomic.Int64
	done  chan struct{}
	lat   []time.Duration // owned by the reading goroutine until done
	err   error
	once  sync.Once
}

// startLagReader starts reading a lag sink after the primed messages.
func (p *pipeBench) startLagReader(ctx context.Context, sink string) (*lagReader, error) {
	oc, err := p.js.OrderedConsumer(ctx, sink, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: lagPrime + 1})
	if err != nil {
		return nil, fmt.Errorf("bench: read the lag sink: %w", err)
	}
	it, err := oc.Messages()
	if err != nil {
		return nil, fmt.Errorf("bench: read the lag sink: %w", err)
	}
	rd := &lagReader{it: it, done: make(chan struct{})}
	// Stops when stop stops the iterator, or on a wrong message.
	go func() {
		defer close(rd.done)
		for i := 0; ; i++ {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					rd.err = fmt.Errorf("bench: read the lag sink: %w", err)
				}
				return
			}
			at := time.Since(p.start)
			sent, err := strconv.ParseInt(m.Headers().Get(headerSent), 10, 64)
			seq := m.Headers().Get(coordinator.HeaderSourceSeq)
			switch {
			case err != nil:
				rd.err = fmt.Errorf("bench: lag sink message %d has no %s header: %w", i+1, headerSent, err)
			case seq != strconv.Itoa(lagPrime+1+i):
				rd.err = fmt.Errorf("bench: lag sink message %d is of source sequence %q, want %d", i+1, seq, lagPrime+1+i)
			case !p.check(p.in.value(i), m.Data()):
				rd.err = fmt.Errorf("bench: lag sink message %d: wrong value %.40q", i+1, m.Data())
			}
			if rd.err != nil {
				return
			}
			rd.lat = append(rd.lat, at-time.Duration(sent))
			rd.count.Add(1)
		}
	}()
	return rd, nil
}

// stop stops the reader and returns the lags it measured.
func (rd *lagReader) stop() ([]time.Duration, error) {
	rd.once.Do(rd.it.Stop)
	<-rd.done
	return rd.lat, rd.err
}
