package worker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// policyFleet is a fleet of one worker over a real plugin store and a real
// wazero runtime.
type policyFleet struct {
	f     *localtest.Fleet
	store *wasmstore.Store // the pusher's view: creates, validates
	rt    *wasm.Runtime
	reg   *wasm.Registry
}

// newPolicyFleet starts a server, a store and a fleet of one worker whose
// runtime has rtOpts and whose store view has storeOpts (WithTrustedKeys).
func newPolicyFleet(t *testing.T, wcfg worker.Config, rtOpts []wasm.Option, storeOpts ...wasmstore.Option) *policyFleet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := wasm.NewRuntime(ctx, append([]wasm.Option{wasm.WithInstances(1), wasm.WithCacheDir(pdktest.CacheDir(t))}, rtOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	s := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	// The pusher validates with a runtime of its own, as the CLI does.
	vrt, err := wasm.NewRuntime(ctx, wasm.WithInstances(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vrt.Close(context.Background()) })
	store, err := wasmstore.New(ctx, js, wasmstore.WithValidator(vrt))
	if err != nil {
		t.Fatal(err)
	}
	// The worker's view: a lazy source, as `dataflare worker` has.
	reg, err := wasm.NewRegistry(rt, wasmstore.NewLazy(js, storeOpts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	wcfg.Modules = reg
	f := localtest.Start(t, local.Config{URL: s.ClientURL(),
		Workers:     1,
		Coordinator: coordinator.Config{Modules: wasmstore.Resolver(store)},
		Worker:      wcfg,
	})
	return &policyFleet{f: f, store: store, rt: rt, reg: reg}
}

func (p *policyFleet) push(t *testing.T, name string, module []byte, po wasmstore.PushOptions) wasmstore.Manifest {
	t.Helper()
	m, err := p.store.PushWith(context.Background(), name, "1.0.0", module, po)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run sends one batch of n records of size bytes each to plugin name and
// returns the records' errors (nil for a record that worked).
func (p *policyFleet) run(t *testing.T, name string, n, size int) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i].Value = []byte(strings.Repeat("a", size))
	}
	res, err := p.f.Client().ProcessBatch(ctx, name, nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(res.Results))
	for i, r := range res.Results {
		errs[i] = r.Err
		if r.Err == nil && string(r.Value) != strings.Repeat("A", size) {
			t.Fatalf("record %d = %.20q…", i, r.Value)
		}
	}
	return errs
}

// failsAll checks that every record failed with an error matching target
// and containing each of want.
func failsAll(t *testing.T, errs []error, target error, want ...string) {
	t.Helper()
	for i, err := range errs {
		if err == nil || (target != nil && !errors.Is(err, target)) {
			t.Fatalf("record %d: err = %v (code %v), want %v", i, err, plugin.CodeOf(err), target)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("record %d: error %q does not say %q", i, err, w)
			}
		}
	}
}

func worksAll(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

// A module pushed with a 1 MiB memory policy fails a batch that needs more
// with a memory error naming the policy; the same module pushed without a
// policy runs it.
func TestPolicyMemory(t *testing.T) {
	p := newPolicyFleet(t, worker.Config{}, nil)
	pol, err := wasmstore.NewPolicy(0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.push(t, "capped", twins.Upper, wasmstore.PushOptions{Policy: pol})
	p.push(t, "free", twins.Upper, wasmstore.PushOptions{})
	// 600 KiB in 600 records: the worker splits what does not fit.
	worksAll(t, p.run(t, "free", 600, 1024))
	worksAll(t, p.run(t, "capped", 600, 1024))
	// One record of 700 KiB: upper's input and output regions together
	// need more than 1 MiB of guest memory.
	worksAll(t, p.run(t, "free", 1, 700<<10))
	failsAll(t, p.run(t, "capped", 1, 700<<10), plugin.ErrPoison,
		"df_alloc", "memory.grow to", "refused, above the 16-page limit (the module policy's)")
	// Small batches of the capped module still run.
	worksAll(t, p.run(t, "capped", 10, 1024))
}

// A module pushed with a 50ms timeout policy fails a batch that runs longer
// with a timeout error naming the policy.
func TestPolicyTimeout(t *testing.T) {
	p := newPolicyFleet(t, worker.Config{}, nil)
	loop, err := os.ReadFile(filepath.Join("..", "wasm", "testdata", "loop.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := wasmstore.NewPolicy(50*time.Millisecond, 0, nil)
	p.push(t, "slow", loop, wasmstore.PushOptions{Policy: pol})
	start := time.Now()
	failsAll(t, p.run(t, "slow", 3, 10), plugin.ErrPoison, "the module policy's timeout of 50ms")
	t.Logf("failed after %s", time.Since(start))
}

// A policy above the worker's own ceilings is capped: the worker's memory
// limit and batch timeout apply, and the errors say so.
func TestPolicyCappedByWorker(t *testing.T) {
	p := newPolicyFleet(t, worker.Config{BatchTimeout: 200 * time.Millisecond},
		[]wasm.Option{wasm.WithMemoryLimitPages(16)}) // a 1 MiB worker ceiling
	generous, _ := wasmstore.NewPolicy(time.Hour, 64<<20, nil)
	p.push(t, "generous", twins.Upper, wasmstore.PushOptions{Policy: generous})
	failsAll(t, p.run(t, "generous", 1, 700<<10), plugin.ErrPoison,
		"16-page limit (the worker's: the module policy's 1024 pages are above it)")
	worksAll(t, p.run(t, "generous", 10, 1024))

	loop, err := os.ReadFile(filepath.Join("..", "wasm", "testdata", "loop.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	p.push(t, "slow", loop, wasmstore.PushOptions{Policy: generous})
	failsAll(t, p.run(t, "slow", 1, 10), plugin.ErrPoison,
		"earlier than the module policy's timeout of 1h0m0s")
}

// A worker with a trusted key runs a module signed by it, and fails the
// records of every other — unsigned, signed by another key, or whose
// policy was changed after signing — without compiling it.
func TestTrustedKeyWorker(t *testing.T) {
	kp, err := wasmstore.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	other, _ := wasmstore.NewSigningKey()
	p := newPolicyFleet(t, worker.Config{}, nil, wasmstore.WithTrustedKeys(pub))

	p.push(t, "unsigned", twins.Upper, wasmstore.PushOptions{})
	failsAll(t, p.run(t, "unsigned", 5, 10), plugin.ErrUnknownPlugin,
		"module unsigned@1.0.0 is not signed by a trusted key", "unsigned")

	p.push(t, "stranger", twins.Upper, wasmstore.PushOptions{Signer: other})
	failsAll(t, p.run(t, "stranger", 5, 10), plugin.ErrUnknownPlugin,
		"module stranger@1.0.0 is not signed by a trusted key")

	if n, _ := p.rt.CompileStats(); n != 0 {
		t.Errorf("the worker compiled %d modules it does not trust", n)
	}
	if st := p.reg.Stats(); st.Loads != 0 {
		t.Errorf("the registry loaded %d modules it does not trust", st.Loads)
	}

	// The same bytes pushed again, signed, run soon after: a refusal by
	// the store is remembered for wasm.SourceFailureTTL, not the 30 s of
	// a module the sandbox refused.
	if _, err := p.store.PushWith(context.Background(), "unsigned", "2.0.0", twins.Upper, wasmstore.PushOptions{Signer: kp}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	poll.Wait(t, 10*time.Second, "the signed re-push to run", func() bool {
		for _, err := range p.run(t, "unsigned", 1, 10) {
			if err != nil {
				return false
			}
		}
		return true
	})
	t.Logf("signed re-push of the same bytes ran %s after it was pushed", time.Since(start).Round(time.Millisecond))

	pol, _ := wasmstore.NewPolicy(0, 1<<20, nil)
	p.push(t, "signed", twins.Upper, wasmstore.PushOptions{Signer: kp, Policy: pol})
	worksAll(t, p.run(t, "signed", 5, 10))
	// The signed policy is enforced.
	failsAll(t, p.run(t, "signed", 1, 700<<10), plugin.ErrPoison, "(the module policy's)")
}
