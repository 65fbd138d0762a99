package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// TestWASMResultsComeFromThePool: a worker sharing its pool with the
// WebAssembly runtime runs a WebAssembly job; the guest output went through
// pooled buffers, and every one of them is back when the job is done.
func TestWASMResultsComeFromThePool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := pool.New(pool.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	rt, err := wasm.NewRuntime(ctx, wasm.WithBufferPool(p), wasm.WithInstances(2), wasm.WithCacheDir(pdktest.CacheDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the runtime closes after the fleet.
	t.Cleanup(func() { rt.Close(context.Background()) })
	s, _, store := storeWithUpper(ctx, t, rt)
	reg, err := wasm.NewRegistry(rt, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	f := localtest.Start(t, local.Config{URL: s.ClientURL(),
		Workers:     1,
		Coordinator: coordinator.Config{Modules: wasmstore.Resolver(store)},
		Worker:      worker.Config{Modules: reg, Pool: p},
	})
	c := f.Client()
	recs := make([]plugin.Record, 5000)
	for i := range recs {
		recs[i].Value = []byte("some text to shout")
	}
	job, err := c.Submit(ctx, twins.UpperName, client.Records(recs), client.WithBatchSize(500))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Value, []byte("SOME TEXT TO SHOUT")) {
			t.Fatalf("record %d = %q", out.Index, out.Value)
		}
		n++
	}
	if n != len(recs) {
		t.Fatalf("%d results, want %d", n, len(recs))
	}
	st := p.Stats()
	if st.Total.Hits+st.Total.Misses < 10 {
		t.Errorf("the pool served %d gets: guest output and result encoding do not use it", st.Total.Hits+st.Total.Misses)
	}
	// The last results reach the client before their worker has acked
	// the batch and released its buffers: wait for that.
	err = poll.Until(context.Background(), 10*time.Second, func() error {
		if st = p.Stats(); st.Total.InUse != 0 {
			return fmt.Errorf("%d buffers still held", st.Total.InUse)
		}
		return nil
	})
	if err != nil || st.Errors != (pool.ErrorStats{}) {
		t.Errorf("after the job: %v, errors %+v", err, st.Errors)
	}
}

// TestMissingModuleFailsRecords: a job pinned to a module the workers
// cannot find in their store gets an error for every record, naming the
// module, instead of its batches going round the fleet.
func TestMissingModuleFailsRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(1), wasm.WithCacheDir(pdktest.CacheDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	s, js, store := storeWithUpper(ctx, t, rt)
	// The workers read another, empty bucket: the pinned module is not there.
	other, err := wasmstore.New(ctx, js, wasmstore.WithBucket("OTHER_PLUGINS"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := wasm.NewRegistry(rt, other)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	f := localtest.Start(t, local.Config{URL: s.ClientURL(),
		Workers:     1,
		Coordinator: coordinator.Config{Modules: wasmstore.Resolver(store)},
		Worker:      worker.Config{Modules: reg},
	})
	recs := make([]plugin.Record, 10)
	for i := range recs {
		recs[i].Value = []byte("x")
	}
	res, err := f.Client().ProcessBatch(ctx, twins.UpperName, nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Results {
		if !errors.Is(r.Err, plugin.ErrUnknownPlugin) || !strings.Contains(r.Err.Error(), "sha256:") {
			t.Errorf("record %d: err = %v, want an unknown-plugin error naming the module", i, r.Err)
		}
	}
}

// storeWithUpper runs a server with a plugin store holding upper-wasm
// 1.0.0, validated by rt, and returns the server, a JetStream connection
// and the store.
func storeWithUpper(ctx context.Context, t *testing.T, rt *wasm.Runtime) (*server.Server, jetstream.JetStream, *wasmstore.Store) {
	t.Helper()
	s := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	store, err := wasmstore.New(ctx, js, wasmstore.WithValidator(rt))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Push(ctx, twins.UpperName, "1.0.0", twins.Upper); err != nil {
		t.Fatal(err)
	}
	return s, js, store
}

// A worker keeps at most 64 WebAssembly module versions registered: the
// least recently used are unregistered (their metrics and breakers
// forgotten), so a plugin pushed version after version does not grow the
// worker's state or its heartbeats without bound.
func TestModuleEntriesBounded(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := f.Client()
	for i := range 70 {
		// The same module with a custom section that differs: another
		// digest each time.
		module := append(append([]byte(nil), twins.Upper...), 0x00, 0x04, 0x01, 'v', byte(i), byte(i>>8))
		m, err := f.Store().Push(ctx, "versions", fmt.Sprintf("1.0.%d", i), module)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.ProcessBatch(ctx, "versions", nil, []plugin.Record{{Value: []byte("x")}})
		if err != nil || string(res.Results[0].Value) != "X" {
			t.Fatalf("version %d (%s): %v, %v", i, m.Digest, res, err)
		}
	}
	nc := f.Connect()
	beats := make(chan *nats.Msg, 4)
	sub, err := nc.ChanSubscribe(proto.HeartbeatSubject("worker-1"), beats)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var hb proto.Heartbeat
	if err := json.Unmarshal((<-beats).Data, &hb); err != nil {
		t.Fatal(err)
	}
	versions := -1
	for _, p := range hb.Plugins {
		if p.Name == "versions" {
			versions = len(p.Digests)
		}
	}
	if versions > 64 || versions < 60 {
		t.Errorf("the heartbeat lists %d versions of the plugin, want at most 64 (and most of them)", versions)
	}
	t.Logf("70 versions run: the heartbeat lists %d", versions)
}
