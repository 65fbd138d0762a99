package wasmstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
)

// A worker's registry follows the store: a pushed version is picked up
// without a restart, batches running on the old version finish on it, a
// job's pinned digest keeps running the module it started with, and no
// batch fails or mixes versions during the switch.
func TestHotReload(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v1, err := e.store.Push(ctx, "p", "1", module(t, "abi_upper")) // upper-cases
	if err != nil {
		t.Fatal(err)
	}
	reg, err := wasm.NewRegistry(e.rt, e.store, wasm.WithMaxModules(1))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	followed := make(chan error, 1)
	// Stops when cancel ends ctx.
	go func() { followed <- e.store.Follow(ctx, reg) }()
	poll(t, "v1 to be current", func() bool { d, _ := reg.Current("p"); return d == v1.Digest })

	named := reg.Named("p")
	recs := []plugin.Record{{Value: []byte("hello")}, {Value: []byte("world")}}
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j1", Plugin: "p", Digest: v1.Digest, Records: recs})
	if err != nil {
		t.Fatal(err)
	}

	// Job 1 pins v1 and has a batch in progress when v2 is pushed.
	job1, err := reg.Plugin(ctx, "p", v1.Digest)
	if err != nil {
		t.Fatal(err)
	}
	inBatch, release, batchDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	// Stops when release is closed.
	go func() {
		batchDone <- job1.(*wasm.Pinned).ProcessEncodedFunc(ctx, msg, recs, func(res *plugin.BatchResult) error {
			close(inBatch)
			<-release
			if got := string(res.Results[0].Value) + " " + string(res.Results[1].Value); got != "HELLO WORLD" {
				return fmt.Errorf("the running v1 batch got %q, want HELLO WORLD", got)
			}
			return nil
		})
	}()
	<-inBatch

	// Batches through the name run all the time, before, during and after
	// the switch.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var upper, unchanged atomic.Int64
	errs := make(chan error, 4)
	for range 2 {
		wg.Add(1)
		// Stops when stop is set.
		go func() {
			defer wg.Done()
			for !stop.Load() {
				res, err := named.ProcessBatch(ctx, nil, recs)
				if err != nil {
					errs <- err
					return
				}
				switch got := string(res.Results[0].Value) + " " + string(res.Results[1].Value); got {
				case "HELLO WORLD":
					upper.Add(1)
				case "hello world":
					unchanged.Add(1)
				default:
					errs <- fmt.Errorf("mixed or wrong batch: %q", got)
					return
				}
			}
		}()
	}
	poll(t, "batches on v1", func() bool { return upper.Load() > 0 })

	v2, err := e.store.Push(ctx, "p", "2", module(t, "noop")) // leaves values unchanged
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "v2 to be current", func() bool { d, _ := reg.Current("p"); return d == v2.Digest })
	seenV1 := upper.Load()
	poll(t, "batches on v2", func() bool { return unchanged.Load() > 10 })
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("batch during the switch: %v", err)
	}
	if n := upper.Load(); n > seenV1+2 {
		t.Errorf("%d batches ran v1 after v2 became current (at most one per goroutine may have started before)", n-seenV1)
	}

	// The v1 batch that was running finishes on v1.
	close(release)
	if err := <-batchDone; err != nil {
		t.Error(err)
	}
	// Job 1's next batch still runs v1, though it is no longer current
	// (and was evicted: the registry keeps one module).
	res, err := job1.ProcessBatch(ctx, nil, recs)
	if err != nil || string(res.Results[0].Value) != "HELLO" {
		t.Errorf("job 1 after the switch: %v, %v; want v1's HELLO", res, err)
	}
	if got := job1.Info().Name; got != "abi-upper" {
		t.Errorf("job 1 Info().Name = %q, want abi-upper", got)
	}
	t.Logf("batches: %d on v1, %d on v2; registry %+v", upper.Load(), unchanged.Load(), reg.Stats())
	cancel()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v", err)
	}
}

// RELIABILITY row 13 end to end: a module tampered with in the bucket after
// its job pinned it is refused by the worker's registry before it is
// compiled, and no batch runs.
func TestTamperedModuleNeverRuns(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	m, err := e.store.Push(ctx, "p", "1", module(t, "abi_upper"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.js.ObjectStore(ctx, "DF_PLUGINS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := raw.GetInfo(ctx, "p/1")
	if err != nil {
		t.Fatal(err)
	}
	evil := module(t, "environ")
	if _, err := raw.Put(ctx, withMeta("p/1", info.Metadata), strings.NewReader(string(evil))); err != nil {
		t.Fatal(err)
	}
	// A fresh runtime, as on a worker: its compile count is the evidence.
	rt, err := wasm.NewRuntime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	reg, err := wasm.NewRegistry(rt, e.store)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	_, err = reg.Plugin(ctx, "p", m.Digest)
	if !errors.Is(err, wasmstore.ErrDigestMismatch) || !errors.Is(err, plugin.ErrUnknownPlugin) {
		t.Fatalf("error = %v, want wasmstore.ErrDigestMismatch and plugin.ErrUnknownPlugin", err)
	}
	if errors.Is(err, plugin.ErrUnavailable) {
		t.Errorf("error %v is transient; a tampered module must fail for good", err)
	}
	if n, _ := rt.CompileStats(); n != 0 {
		t.Errorf("compiles = %d, want 0", n)
	}
	if st := reg.Stats(); st.Loads != 0 {
		t.Errorf("registry loads = %d, want 0", st.Loads)
	}
}
