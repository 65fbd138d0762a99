package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// Latencies are the latencies of a run of probe jobs, one after another:
// each from Submit to its last result handed out by the Go client.
type Latencies struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Samples is how many probe jobs were measured (fewer than asked
	// when the figure's time ran out: the p99 of fewer than 100 samples
	// is their maximum).
	Samples int `json:"samples"`
	// LoadRecordsPerSec is, beside a load, the load jobs' results per
	// second while the probes ran: how busy the fleet was kept. Results
	// are handed out in order, a batch at a time, so over a few seconds
	// it may read above the load's ceiling.
	LoadRecordsPerSec float64 `json:"load_records_per_sec,omitempty"`
}

// LoadConfig describes the jobs that saturate the fleet in Latency and
// Fairness.
type LoadConfig struct {
	// Plugin is the load jobs' native plugin. Default "delay" with ms=1:
	// it keeps every slot of the workers busy with batches of the
	// sizer's target latency (100 ms) and leaves the CPUs free, so that
	// what the probes wait for is a slot, which the fleet shares out, not
	// the CPUs of this one process, which it cannot.
	Plugin string
	// Config is handed to the plugin with every batch. Default ms=1 for
	// delay.
	Config plugin.Config
}

func (c LoadConfig) withDefaults() (LoadConfig, error) {
	if c.Plugin == "" {
		c.Plugin = builtin.DelayName
	}
	if c.Plugin == builtin.DelayName && c.Config["ms"] == "" {
		cfg := plugin.Config{"ms": "1"}
		for k, v := range c.Config {
			if k != "ms" {
				cfg[k] = v
			}
		}
		c.Config = cfg
	}
	if _, ok := builtin.All()[c.Plugin]; !ok || c.Plugin == builtin.FailName {
		return c, fmt.Errorf("%w: load plugin %q: use identity, upper or delay", ErrInvalidConfig, c.Plugin)
	}
	return c, nil
}

// probePlugin is what the probe jobs run: upper costs next to nothing, so
// a probe's latency is the fleet's (and the wait for a slot).
const probePlugin = builtin.UpperName

// Owners of the jobs of Latency and Fairness.
const (
	ownerLoad  = "bench-a"  // the saturating jobs (owner A)
	ownerProbe = "bench-b"  // the probe jobs (owner B)
	ownerW1    = "bench-w1" // the weighted split: weight 1
	ownerW3    = "bench-w3" // the weighted split: weight 3
)

// sharingStack is a fleet with a client per owner, for Latency and
// Fairness.
type sharingStack struct {
	*env
	load    LoadConfig
	clients map[string]*client.Client
	// gap bounds the random pause before each probe (0: none), drawn
	// from rng.
	gap time.Duration
	rng *rand.Rand
}

// probeSetting is how a run's probes and stack are set: shared by
// LatencyConfig and FairnessConfig.
type probeSetting struct {
	workers, parallel, recordSize int
	load                          LoadConfig
	gap                           time.Duration
	seed                          uint64
}

// startSharing starts a fleet of ps's workers with topology and weights,
// and a client on its own connection for each owner.
func startSharing(ctx context.Context, ps probeSetting, topology proto.Topology, weights map[string]float64,
	owners ...string) (*sharingStack, error) {
	cfg, err := Config{Records: 4096, RecordSize: ps.recordSize, Plugin: ps.load.Plugin, PluginConfig: ps.load.Config,
		Modes: []string{ModeFleetNative}, Workers: ps.workers, Parallel: ps.parallel}.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.topology, cfg.weights = topology, weights
	e, err := setupStack(ctx, cfg, cfg.Workers, defaultWindow)
	if err != nil {
		return nil, err
	}
	s := &sharingStack{env: e, load: ps.load, clients: make(map[string]*client.Client), gap: max(ps.gap, 0),
		rng: rand.New(rand.NewPCG(ps.seed, ps.seed))}
	for _, o := range owners {
		nc, err := e.st.Conn("bench-" + o)
		if err != nil {
			e.close()
			return nil, err
		}
		if s.clients[o], err = client.New(nc, client.WithOwner(o)); err != nil {
			e.close()
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	return s, nil
}

// warm runs a probe job of each owner, which provisions the owner's
// streams (its first job does), and a short load job for the sizer to
// learn the load plugin's cost.
func (s *sharingStack) warm(ctx context.Context) error {
	for o, cl := range s.clients {
		for range 3 {
			if _, err := s.probe(ctx, cl, 1); err != nil {
				return fmt.Errorf("warm-up of owner %s: %w", o, err)
			}
		}
	}
	// A few batches of the load plugin at the sizer's first size.
	_, _, err := s.fleetRound(ctx, s.load.Plugin, min(s.in.n, 2*s.cfg.Workers*s.cfg.Parallel*100), 0, nil)
	return err
}

// probe runs one job of n records of the probe plugin through cl and
// returns the time from Submit to its last result. Every result is
// checked. A probe that has not ended within probeTimeout fails.
func (s *sharingStack) probe(ctx context.Context, cl *client.Client, n int, opts ...client.SubmitOption) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	start := time.Now()
	job, err := cl.Submit(ctx, probePlugin, func(yield func(plugin.Record, error) bool) {
		for i := range n {
			if !yield(plugin.Record{Value: s.in.value(i)}, nil) {
				return
			}
		}
	}, opts...)
	if err != nil {
		return 0, fmt.Errorf("bench: submit a probe: %w", err)
	}
	var last time.Duration
	got := 0
	for o, err := range job.Results() {
		if err != nil {
			return 0, fmt.Errorf("bench: probe job %s (%d of %d results after %v): %w", job.ID(), got, n,
				time.Since(start).Round(time.Millisecond), err)
		}
		if o.Err != nil || o.Dropped || !bytesUpper(s.in.value(int(o.Index)), o.Value) {
			return 0, fmt.Errorf("bench: probe job: record %d: wrong result (err %v, dropped %v, %q)", o.Index, o.Err, o.Dropped, o.Value)
		}
		got++
		if got == n {
			last = time.Since(start)
		}
	}
	if got != n {
		return 0, fmt.Errorf("bench: probe job: %d results for %d records", got, n)
	}
	return last, nil
}

// probeTimeout bounds one probe job: beside a FIFO load a probe waits
// for the whole queue ahead of it (seconds), never minutes.
const probeTimeout = 2 * time.Minute

// bytesUpper checks one result of upper.
var bytesUpper = checker(builtin.UpperName)

// probes runs up to samples probe jobs of n records through cl one after
// another, each after a random pause of up to the stack's gap, stopping
// early once budget has passed (after at least minSamples), and returns
// their latencies.
func (s *sharingStack) probes(ctx context.Context, cl *client.Client, n, samples int, budget time.Duration,
	opts ...client.SubmitOption) (Latencies, error) {
	var lat []time.Duration
	start := time.Now()
	for len(lat) < samples && (len(lat) < minSamples || time.Since(start) < budget) {
		if s.gap > 0 {
			if err := sleep(ctx, time.Duration(s.rng.Int64N(int64(s.gap)))); err != nil {
				return Latencies{}, err
			}
		}
		d, err := s.probe(ctx, cl, n, opts...)
		if err != nil {
			return Latencies{}, err
		}
		lat = append(lat, d)
	}
	return latencies(lat), nil
}

// minSamples is the fewest probes a figure takes whatever its time budget.
const minSamples = 5

// DefaultProbeGap bounds the random pause before each probe job. Probes
// sent back to back fall in step with a load whose batches all take the
// same time (delay's do): each probe, once run, shifts the slot it ran in
// as much as the one before shifted the other, and the next probe,
// submitted a few milliseconds after, arrives just after every slot was
// taken again, and waits a whole batch. A random pause over a batch's
// time (the sizer's target, 100 ms) has the probes arrive at random
// moments of the load's batches, as independent jobs do.
const DefaultProbeGap = 100 * time.Millisecond

// DefaultSeed seeds the probes' random pauses.
const DefaultSeed = 1

// latencies summarises probe latencies.
func latencies(lat []time.Duration) Latencies {
	p50, p99 := percentiles(lat)
	l := Latencies{P50Ms: p50, P99Ms: p99, Samples: len(lat)}
	for _, d := range lat {
		l.MaxMs = max(l.MaxMs, ms(d))
	}
	return l
}

// loadJob is a job that saturates the fleet: an endless source of records
// whose results are read (and counted) as they come, so that the job
// always has a client window of batches queued, until it is cancelled.
type loadJob struct {
	job     *client.Job
	results atomic.Int64
	done    chan struct{} // closed when the reader ends
	stopped atomic.Bool   // cancel was called: the reader's error is expected
	err     error         // why the reader ended, before cancel
}

// startLoad submits a load job through cl.
func (s *sharingStack) startLoad(ctx context.Context, cl *client.Client) (*loadJob, error) {
	job, err := cl.Submit(ctx, s.load.Plugin, func(yield func(plugin.Record, error) bool) {
		for i := 0; ; i++ {
			if !yield(plugin.Record{Value: s.in.value(i)}, nil) {
				return
			}
		}
	}, client.WithConfig(s.load.Config))
	if err != nil {
		return nil, fmt.Errorf("bench: submit a load job: %w", err)
	}
	l := &loadJob{job: job, done: make(chan struct{})}
	// Stops when the job ends: cancel, or a failure.
	go func() {
		defer close(l.done)
		for o, err := range job.Results() {
			switch {
			case err != nil && l.stopped.Load():
				return
			case err != nil:
				l.err = err
				return
			case o.Err != nil:
				l.err = fmt.Errorf("record %d: %w", o.Index, o.Err)
				return
			}
			l.results.Add(1)
		}
		l.err = errors.New("its endless source ended")
	}()
	return l, nil
}

// cancel cancels the job in the fleet and waits for its reader. The error
// says why the job had ended before: then it did not load the fleet to
// the end of the measurement.
func (l *loadJob) cancel(ctx context.Context) error {
	select {
	case <-l.done:
		return fmt.Errorf("bench: a load job ended before the measurement did: %w", l.err)
	default:
	}
	l.stopped.Store(true)
	cerr := l.job.Cancel(ctx)
	<-l.done
	if l.err != nil {
		return fmt.Errorf("bench: load job: %w", l.err)
	}
	if cerr != nil {
		return fmt.Errorf("bench: cancel a load job: %w", cerr)
	}
	return nil
}

// load is a set of load jobs.
type load []*loadJob

// startLoads starts one load job per client in cls (a client may come
// more than once) and waits until each has results coming: the fleet is
// then saturated, every job holding its window of batches.
func (s *sharingStack) startLoads(ctx context.Context, cls ...*client.Client) (load, error) {
	var ls load
	for _, cl := range cls {
		l, err := s.startLoad(ctx, cl)
		if err != nil {
			ls.cancel(ctx)
			return nil, err
		}
		ls = append(ls, l)
	}
	deadline := time.Now().Add(loadStartWithin)
	for _, l := range ls {
		for l.results.Load() == 0 {
			select {
			case <-l.done:
				ls.cancel(ctx)
				return nil, fmt.Errorf("bench: a load job ended at its start: %w", l.err)
			case <-ctx.Done():
				ls.cancel(ctx)
				return nil, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				ls.cancel(ctx)
				return nil, fmt.Errorf("bench: a load job had no result within %v", loadStartWithin)
			}
		}
	}
	return ls, nil
}

// loadStartWithin bounds the wait for every load job's first result (on a
// FIFO fleet the last job's first batch queues behind the others').
const loadStartWithin = time.Minute

// results returns the results the jobs have handed out so far.
func (ls load) results() int64 {
	var n int64
	for _, l := range ls {
		n += l.results.Load()
	}
	return n
}

// cancel cancels every job, at once, and returns the first error.
func (ls load) cancel(ctx context.Context) error {
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Add(1)
		// Stops when the job's cancel returns.
		go func() {
			defer wg.Done()
			errs[i] = l.cancel(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// beside runs probes while ls loads the fleet and returns their latencies
// with the load's throughput meanwhile.
func (s *sharingStack) beside(ls load, probes func() (Latencies, error)) (Latencies, error) {
	n0, t0 := ls.results(), time.Now()
	l, err := probes()
	if err != nil {
		return l, err
	}
	l.LoadRecordsPerSec = round2(float64(ls.results()-n0) / time.Since(t0).Seconds())
	return l, nil
}

// ceiling is the load's most records per second on workers × parallel
// slots when its plugin is delay (each slot sleeps ms per record); 0 for
// another plugin, bound by the CPUs instead.
func (c LoadConfig) ceiling(workers, parallel int) float64 {
	ms, err := strconv.Atoi(c.Config["ms"])
	if c.Plugin != builtin.DelayName || err != nil || ms <= 0 {
		return 0
	}
	return float64(workers*parallel) * 1000 / float64(ms)
}
