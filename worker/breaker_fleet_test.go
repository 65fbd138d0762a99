package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/worker"
)

// broken is a plugin that fails every batch as a whole, after holding its
// slot for hold, until it is healed; then it upper-cases. It records when
// it is called and reset.
type broken struct {
	name   string
	hold   time.Duration
	healed atomic.Bool
	// badReset makes Reset fail: an error, and a panic every other time.
	badReset bool

	mu     sync.Mutex
	calls  []time.Time
	resets []time.Time
}

func (p *broken) Info() plugin.Info { return plugin.Info{Name: p.name, Version: "1.0.0"} }

func (p *broken) ProcessBatch(ctx context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	p.mu.Lock()
	p.calls = append(p.calls, time.Now())
	p.mu.Unlock()
	if p.healed.Load() {
		out := make([]plugin.Result, len(recs))
		for i, r := range recs {
			out[i] = plugin.Value(bytes.ToUpper(r.Value))
		}
		return &plugin.BatchResult{Results: out}, nil
	}
	t := time.NewTimer(p.hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, plugin.ContextError(ctx.Err())
	}
	return nil, &plugin.Error{Code: plugin.CodeProcessing, Message: p.name + ": fails every batch"}
}

// Reset implements plugin.Resetter.
func (p *broken) Reset(context.Context) error {
	p.mu.Lock()
	p.resets = append(p.resets, time.Now())
	n := len(p.resets)
	p.mu.Unlock()
	switch {
	case !p.badReset:
		return nil
	case n%2 == 0:
		panic(p.name + ": reset panics")
	}
	return &plugin.Error{Code: plugin.CodeProcessing, Message: p.name + ": reset fails"}
}

// callsBetween counts the calls that started in [from, to).
func (p *broken) callsBetween(from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if !c.Before(from) && c.Before(to) {
			n++
		}
	}
	return n
}

// firstReset returns when the plugin was first reset, zero before.
func (p *broken) firstReset() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.resets) == 0 {
		return time.Time{}
	}
	return p.resets[0]
}

// metric returns the series of metric name in reg whose plugin label is
// plugin, nil when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name, plugin string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					return m
				}
			}
		}
	}
	return nil
}

// waitOpen waits for plugin's breaker to open on the fleet's worker.
func waitOpen(ctx context.Context, t *testing.T, reg *prometheus.Registry, plugin string) {
	t.Helper()
	err := poll.Until(ctx, 30*time.Second, func() error {
		if m := metric(t, reg, "dataflare_plugin_breaker_open", plugin); m.GetGauge().GetValue() != 1 {
			return fmt.Errorf("the breaker of %s is not open", plugin)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// RELIABILITY row 27: a broken plugin does not burn everyone's
// slots. A native plugin fails every batch, holding its slot 100 ms each
// time. After 5 failed batches in a row its circuit breaker opens: its
// batches are released unrun (its calls stop while the breaker is open),
// a job of another plugin runs at once meanwhile; after the backoff the
// plugin is reset and probed. Its own job still ends with exactly one
// result per record, an error each — the batches isolated before the
// breaker opened dead-lettered, the others failed whole on their last
// delivery — and no batch is split unrun.
func TestBrokenPluginTakenOutOfService(t *testing.T) {
	const parallel = 4
	backoff := time.Second
	reg := prometheus.NewRegistry()
	br := &broken{name: "broken", hold: 100 * time.Millisecond}
	plugins := builtin.All()
	plugins[br.name] = br
	f := localtest.Start(t, local.Config{Workers: 1, Registerer: reg, Worker: worker.Config{Plugins: plugins,
		Parallel: parallel, Breaker: worker.BreakerConfig{Backoff: backoff, MaxBackoff: 2 * backoff}}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := f.Client()
	recs := make([]plugin.Record, 64)
	for i := range recs {
		recs[i].Value = []byte("x")
	}
	start := time.Now()
	job, err := c.Submit(ctx, br.name, client.Records(recs), client.WithBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()

	waitOpen(ctx, t, reg, br.name)
	opened := time.Now()
	callsToOpen := br.callsBetween(start, opened)
	// Another plugin's job is served at once: the broken plugin's batches
	// no longer take the slots.
	res, err := c.ProcessRecord(ctx, "upper", nil, plugin.Record{Value: []byte("next")})
	other := time.Since(opened)
	if err != nil || string(res.Value) != "NEXT" {
		t.Fatalf("another plugin's job while the breaker is open: %v, %v", res, err)
	}
	if other > 2*time.Second {
		t.Errorf("another plugin's job took %v while the broken plugin was out of service", other)
	}
	// The calls stop until the backoff has passed and the plugin is reset
	// for a probe. Batches running when the breaker opened may end the
	// call they are in.
	var reset time.Time
	poll.Wait(t, 30*time.Second, "the plugin's reset", func() bool { reset = br.firstReset(); return !reset.IsZero() })
	whileOpen := br.callsBetween(opened, reset)
	if whileOpen > parallel-1 {
		t.Errorf("%d calls of the broken plugin in the %v its breaker was open, want none but the running batches'", whileOpen, reset.Sub(opened))
	}
	if held := reset.Sub(opened); held < backoff-200*time.Millisecond {
		t.Errorf("the plugin was reset %v after its breaker opened, before the backoff of %v", held, backoff)
	}

	// Exactly one result per record, each an error: poison for the
	// records isolated before the breaker opened, out of service for the
	// others, which ran (failing) on their last delivery.
	seen := make(map[uint64]int)
	var poison, outOfService int
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		seen[out.Index]++
		switch {
		case errors.Is(out.Err, plugin.ErrPoison):
			poison++
		case out.Err != nil && strings.Contains(out.Err.Error(), "out of service"):
			outOfService++
		default:
			t.Errorf("record %d: %q, %v; want poison or out of service", out.Index, out.Value, out.Err)
		}
	}
	took := time.Since(start)
	for i := range recs {
		if n := seen[uint64(i)]; n != 1 {
			t.Errorf("record %d: %d results, want 1", i, n)
		}
	}
	if n := counter(t, reg, "dataflare_poison_splits_total"); n != 0 {
		t.Errorf("%v batches split unrun, want none", n)
	}
	if n := counter(t, reg, "dataflare_dead_lettered_total"); int(n) != poison {
		t.Errorf("%v dead letters for %d poison records", n, poison)
	}
	if n := metric(t, reg, "dataflare_plugin_breaker_opens_total", br.name).GetCounter().GetValue(); n != 1 {
		t.Errorf("the breaker opened %v times, want 1", n)
	}
	br.mu.Lock()
	calls, resets := len(br.calls), len(br.resets)
	br.mu.Unlock()
	t.Logf("%d records in batches of 2: %d calls until the breaker opened, %d in the %v it was open; "+
		"another plugin's job served in %v meanwhile; job done in %v with %d poison (isolated before the breaker opened) "+
		"and %d out-of-service errors; %d calls in all, %d resets, 0 splits",
		len(recs), callsToOpen, whileOpen, reset.Sub(opened).Round(time.Millisecond), other.Round(time.Millisecond),
		took.Round(time.Millisecond), poison, outOfService, calls, resets)
}

// The same broken job on a worker without breakers, for comparison: every
// batch is bisected (3 calls of 100 ms for 2 records), and another
// plugin's job waits behind them. It only measures.
func TestBrokenPluginWithoutBreakers(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	br := &broken{name: "broken", hold: 100 * time.Millisecond}
	plugins := builtin.All()
	plugins[br.name] = br
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Plugins: plugins,
		Parallel: 4, Breaker: worker.BreakerConfig{Threshold: -1}}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := f.Client()
	recs := make([]plugin.Record, 64)
	for i := range recs {
		recs[i].Value = []byte("x")
	}
	start := time.Now()
	job, err := c.Submit(ctx, br.name, client.Records(recs), client.WithBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	// As long as the breaker took to open in TestBrokenPluginTakenOutOfService.
	poll.Wait(t, 30*time.Second, "16 calls", func() bool { return br.callsBetween(start, time.Now().Add(time.Hour)) >= 16 })
	at := time.Now()
	if _, err := c.ProcessRecord(ctx, "upper", nil, plugin.Record{Value: []byte("next")}); err != nil {
		t.Fatal(err)
	}
	other := time.Since(at)
	n := 0
	for _, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(recs) {
		t.Errorf("%d results, want %d", n, len(recs))
	}
	t.Logf("without breakers: another plugin's job served in %v; the broken job done in %v, %d calls",
		other.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), br.callsBetween(start, time.Now().Add(time.Hour)))
}

// A plugin that fails every batch until it heals: after 5 failures its
// breaker opens, the test heals it, and after the backoff the probe
// succeeds and the breaker closes. The recovery time is in the metric and
// the fleet's status; the records after the heal get their results.
func TestBreakerRecovers(t *testing.T) {
	// Long enough for the status to show the breaker open before the
	// test heals the plugin.
	backoff := time.Second
	reg := prometheus.NewRegistry()
	fl := &broken{name: "flaky"}
	plugins := builtin.All()
	plugins[fl.name] = fl
	// One slot: the five failures come one after the other.
	f := localtest.Start(t, local.Config{Workers: 1, Registerer: reg, Worker: worker.Config{Plugins: plugins,
		Parallel: 1, Breaker: worker.BreakerConfig{Backoff: backoff}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := f.Client()
	recs := make([]plugin.Record, 20)
	for i := range recs {
		recs[i].Value = []byte{byte('a' + i)}
	}
	job, err := c.Submit(ctx, fl.name, client.Records(recs), client.WithBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	waitOpen(ctx, t, reg, fl.name)
	// The status shows it open.
	err = poll.Until(ctx, 10*time.Second, func() error {
		st, err := c.SystemStatus(ctx)
		if err != nil {
			return err
		}
		if p := statusPlugin(st, fl.name); p == nil || p.Breaker == nil || p.Breaker.State != fleet.BreakerOpen || p.OutOfService != 1 {
			return fmt.Errorf("plugin status %+v, want its breaker open on one worker", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fl.healed.Store(true)

	var failed, ok int
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case errors.Is(out.Err, plugin.ErrPoison):
			failed++
		case out.Err == nil && string(out.Value) == strings.ToUpper(string(recs[out.Index].Value)):
			ok++
		default:
			t.Errorf("record %d: %q, %v", out.Index, out.Value, out.Err)
		}
	}
	if want := worker.DefaultBreakerThreshold - 1; failed != want || ok != len(recs)-want {
		t.Errorf("%d records failed and %d succeeded, want %d and %d: the batch that opened the breaker waits for the recovery",
			failed, ok, want, len(recs)-want)
	}
	h := metric(t, reg, "dataflare_plugin_recovery_seconds", fl.name).GetHistogram()
	recovery := time.Duration(h.GetSampleSum() * float64(time.Second))
	if h.GetSampleCount() != 1 || recovery < backoff || recovery > backoff+5*time.Second {
		t.Fatalf("recovery histogram: %d samples, %v; want one of the backoff (%v) and a little", h.GetSampleCount(), recovery, backoff)
	}
	if g := metric(t, reg, "dataflare_plugin_breaker_open", fl.name).GetGauge().GetValue(); g != 0 {
		t.Errorf("breaker gauge %v after the recovery, want 0", g)
	}
	// The status shows it closed, with the same recovery time.
	var st *fleet.Status
	err = poll.Until(ctx, 10*time.Second, func() error {
		if st, err = c.SystemStatus(ctx); err != nil {
			return err
		}
		p := statusPlugin(st, fl.name)
		if p == nil || p.Breaker == nil || p.Breaker.State != fleet.BreakerClosed || p.OutOfService != 0 {
			return fmt.Errorf("plugin status %+v, want its breaker closed", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p := statusPlugin(st, fl.name)
	if p.Breaker.Opens != 1 || p.Breaker.LastRecovery.Seconds() != h.GetSampleSum() {
		t.Errorf("status breaker %+v, want 1 open and the recovery of %v", *p.Breaker, recovery)
	}
	if len(st.Workers) != 1 || len(st.Workers[0].Breakers) != 1 || st.Workers[0].Breakers[0].Plugin != fl.name {
		t.Errorf("worker status breakers = %+v, want the one of %s", st.Workers, fl.name)
	}
	if fl.firstReset().IsZero() {
		t.Error("the plugin was not reset before its probe")
	}
	t.Logf("backoff %v: recovery (breaker open → closed) %v, reported in the metric and the status; %d records dead-lettered before the breaker opened",
		backoff, recovery.Round(time.Millisecond), failed)
}

// A reset that fails (an error, a panic) fails the probe: the breaker
// opens again for twice as long, up to its maximum, without running the
// probe's batch; batches on their last delivery still run, and the job
// ends with one result per record.
func TestFailedResetReopensForLonger(t *testing.T) {
	backoff := 300 * time.Millisecond
	br := &broken{name: "broken", badReset: true}
	plugins := builtin.All()
	plugins[br.name] = br
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Plugins: plugins,
		Parallel: 1, Breaker: worker.BreakerConfig{Backoff: backoff, MaxBackoff: 4 * backoff}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := make([]plugin.Record, 10)
	for i := range recs {
		recs[i].Value = []byte("x")
	}
	job, err := f.Client().Submit(ctx, br.name, client.Records(recs), client.WithBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	seen := make(map[uint64]int)
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if out.Err == nil {
			t.Errorf("record %d succeeded on a plugin that fails every batch", out.Index)
		}
		seen[out.Index]++
	}
	for i := range recs {
		if seen[uint64(i)] != 1 {
			t.Errorf("record %d: %d results, want 1", i, seen[uint64(i)])
		}
	}
	br.mu.Lock()
	resets := slices.Clone(br.resets)
	br.mu.Unlock()
	if len(resets) < 2 {
		t.Fatalf("%d resets, want at least 2", len(resets))
	}
	// Reset n+1 comes when the breaker reopened after reset n fails
	// lets a probe through: 2, 4, 4... backoffs later.
	var gaps []time.Duration
	for i := 1; i < len(resets); i++ {
		gap := resets[i].Sub(resets[i-1])
		want := min(time.Duration(2<<min(i-1, 1))*backoff, 4*backoff)
		if gap < want-50*time.Millisecond {
			t.Errorf("reset %d came %v after the one before, want %v or more", i+1, gap, want)
		}
		gaps = append(gaps, gap.Round(time.Millisecond))
	}
	t.Logf("backoff %v: resets %v apart", backoff, gaps)
}

// statusPlugin returns plugin name in st, nil when it is not there.
func statusPlugin(st *fleet.Status, name string) *fleet.Plugin {
	for i := range st.Plugins {
		if st.Plugins[i].Name == name {
			return &st.Plugins[i]
		}
	}
	return nil
}

// TestPinnedResetWhileBatchesRun: resetting a WebAssembly module (what a
// half-open breaker does before its probe) loads it again while batches
// run on it; every batch succeeds, before, during and after the resets.
func TestPinnedResetWhileBatchesRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(4), wasm.WithCacheDir(pdktest.CacheDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	_, _, store := storeWithUpper(ctx, t, rt)
	reg, err := wasm.NewRegistry(rt, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	sum := sha256.Sum256(twins.Upper)
	p, err := reg.Plugin(ctx, twins.UpperName, "sha256:"+hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := p.(plugin.Resetter)
	if !ok {
		t.Fatalf("%T is not a plugin.Resetter", p)
	}
	recs := []plugin.Record{{Value: []byte("abc")}, {Value: []byte("def")}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		// Stops when stop is closed, or at its first error.
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := p.ProcessBatch(ctx, nil, recs)
				if err == nil && (string(res.Results[0].Value) != "ABC" || string(res.Results[1].Value) != "DEF") {
					err = fmt.Errorf("results %q, %q", res.Results[0].Value, res.Results[1].Value)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	const resets = 5
	for range resets {
		if err := r.Reset(ctx); err != nil {
			t.Fatalf("reset: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a batch during the resets: %v", err)
	}
	if st := reg.Stats(); st.Loads != 1+resets || st.Modules != 1 {
		t.Errorf("registry after %d resets: %+v, want %d loads and 1 module", resets, st, 1+resets)
	}
	reg.Close()
	if err := r.Reset(ctx); !errors.Is(err, plugin.ErrUnavailable) {
		t.Errorf("reset after the registry closed: err = %v, want ErrUnavailable", err)
	}
}
