package wasmstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
)

// A new version is picked up without a restart: the next job resolves
// the newest module and pins it, while a batch running on the old version
// finishes on it and a job that pinned the old version keeps running it,
// even after the registry evicted it.
func TestHotReload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v1, err := e.store.Push(ctx, "p", "1", module(t, "abi_upper")) // upper-cases
	if err != nil {
		t.Fatal(err)
	}
	reg, err := wasm.NewRegistry(e.rt, e.store, wasm.WithMaxModules(1))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	recs := []plugin.Record{{Value: []byte("hello")}, {Value: []byte("world")}}
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j1", Plugin: "p", Digest: v1.Digest, Records: recs})
	if err != nil {
		t.Fatal(err)
	}

	// Job 1 pins the newest module, v1, and has a batch in progress when
	// v2 is pushed.
	pin1, err := e.store.Resolve(ctx, "p", "")
	if err != nil || pin1.Digest != v1.Digest {
		t.Fatalf("Resolve before v2 = %v, %v; want v1", pin1.Digest, err)
	}
	job1, err := reg.Plugin(ctx, "p", pin1.Digest)
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

	v2, err := e.store.Push(ctx, "p", "2", module(t, "noop")) // leaves values unchanged
	if err != nil {
		t.Fatal(err)
	}
	// Job 2 pins v2 and runs it while job 1's batch still runs on v1.
	pin2, err := e.store.Resolve(ctx, "p", "")
	if err != nil || pin2.Digest != v2.Digest {
		t.Fatalf("Resolve after v2 = %v, %v; want v2", pin2.Digest, err)
	}
	job2, err := reg.Plugin(ctx, "p", pin2.Digest)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job2.ProcessBatch(ctx, nil, recs)
	if err != nil || string(res.Results[0].Value) != "hello" {
		t.Errorf("job 2: %v, %v; want v2's hello", res, err)
	}

	// The v1 batch that was running finishes on v1.
	close(release)
	if err := <-batchDone; err != nil {
		t.Error(err)
	}
	// Job 1's next batch still runs v1, though it is no longer the newest
	// (and was evicted: the registry keeps one idle module).
	res, err = job1.ProcessBatch(ctx, nil, recs)
	if err != nil || string(res.Results[0].Value) != "HELLO" {
		t.Errorf("job 1 after the switch: %v, %v; want v1's HELLO", res, err)
	}
	if got := job1.Info().Name; got != "abi-upper" {
		t.Errorf("job 1 Info().Name = %q, want abi-upper", got)
	}
	if st := reg.Stats(); st.Evicted == 0 {
		t.Errorf("registry %+v: nothing evicted, want v1 or v2 evicted once idle", st)
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
