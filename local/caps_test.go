package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/examples/plugins"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/wasmstore"
)

// lookup runs kv-lookup over keys with cfg and returns each record's value
// or error.
func lookup(t *testing.T, c *client.Client, cfg plugin.Config, keys ...string) []plugin.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]plugin.Record, len(keys))
	for i, k := range keys {
		recs[i].Value = []byte(k)
	}
	res, err := c.ProcessBatch(ctx, "kv-lookup", cfg, recs)
	if err != nil {
		t.Fatalf("kv-lookup %v: %v", keys, err)
	}
	return res.Results
}

// The enricher of the plugin kits on a whole local fleet: pushed without
// its grant it is refused; pushed with kv:users it reads that bucket
// through the workers' cache, sees a put made after it cached a key, fails
// a missing key's record alone, and cannot read a bucket it was not
// granted even when the job asks for it.
func TestKVLookup(t *testing.T) {
	ctx := context.Background()
	f, err := local.Start(ctx, local.Config{Listen: "127.0.0.1:0", Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nc, err := f.Conn("test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	kvs := map[string]jetstream.KeyValue{}
	for _, b := range []string{"users", "secrets"} {
		if kvs[b], err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if _, err := kvs["users"].Put(ctx, fmt.Sprintf("u%d", i), fmt.Appendf(nil, "user %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kvs["secrets"].Put(ctx, "u1", []byte("the secret")); err != nil {
		t.Fatal(err)
	}

	_, err = f.PushWith(ctx, "kv-lookup", plugins.KVLookupWASM, wasmstore.PushOptions{})
	if !errors.Is(err, wasmstore.ErrInvalidModule) || !strings.Contains(err.Error(), "--grant kv:BUCKET") {
		t.Fatalf("push without the grant: %v, want it refused naming the grant", err)
	}
	pol, _ := wasmstore.NewPolicy(0, 0, []string{"kv:users"})
	if _, err := f.PushWith(ctx, "kv-lookup", plugins.KVLookupWASM, wasmstore.PushOptions{Policy: pol}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	users := plugin.Config{"bucket": "users"}
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("u%d", i)
	}
	for round := range 2 {
		for i, r := range lookup(t, c, users, keys...) {
			if r.Err != nil || string(r.Value) != fmt.Sprintf("user %d", i) {
				t.Fatalf("round %d: u%d = %q, %v", round, i, r.Value, r.Err)
			}
		}
	}

	got := lookup(t, c, users, "u1", "nobody", "a..b", "u2")
	if string(got[0].Value) != "user 1" || string(got[3].Value) != "user 2" {
		t.Errorf("u1, u2 beside failing keys: %q, %q", got[0].Value, got[3].Value)
	}
	if err := got[1].Err; plugin.CodeOf(err) != plugin.CodeInvalidInput || !strings.Contains(err.Error(), `bucket "users", key "nobody": not found`) {
		t.Errorf("missing key: %v", err)
	}
	if err := got[2].Err; plugin.CodeOf(err) != plugin.CodeInvalidInput || !strings.Contains(err.Error(), "a key NATS does not allow") {
		t.Errorf("invalid key: %v", err)
	}

	// A put after u1 was cached reaches the cache through its watch.
	if _, err := kvs["users"].Put(ctx, "u1", []byte("user one, renamed")); err != nil {
		t.Fatal(err)
	}
	poll.Wait(t, 10*time.Second, "the new value of u1", func() bool {
		return string(lookup(t, c, users, "u1")[0].Value) == "user one, renamed"
	})
	if err := kvs["users"].Delete(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
	poll.Wait(t, 10*time.Second, "u2 deleted", func() bool {
		return errors.Is(lookup(t, c, users, "u2")[0].Err, plugin.ErrInvalidInput)
	})

	for _, r := range lookup(t, c, plugin.Config{"bucket": "secrets"}, "u1", "u2") {
		if r.Err == nil || !strings.Contains(r.Err.Error(), "not granted to this module (push it with --grant kv:secrets)") {
			t.Errorf("a bucket not granted: %q, %v", r.Value, r.Err)
		}
	}
}

// A local fleet with trusted keys (dataflare dev --trusted-key) runs only
// modules signed by one of them; the same bytes pushed again signed run
// within seconds, not after the refusal's 30 s.
func TestTrustedKeys(t *testing.T) {
	ctx := context.Background()
	kp, err := wasmstore.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	f, err := local.Start(ctx, local.Config{Listen: "127.0.0.1:0", Workers: 1, TrustedKeys: []string{pub}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Push(ctx, twins.UpperName, twins.Upper); err != nil {
		t.Fatal(err)
	}
	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	run := func() error {
		res, err := c.ProcessBatch(ctx, twins.UpperName, nil, []plugin.Record{{Value: []byte("a")}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Results[0].Err
	}
	if err := run(); !errors.Is(err, plugin.ErrUnknownPlugin) || !strings.Contains(err.Error(), "is not signed by a trusted key") {
		t.Fatalf("unsigned module: %v", err)
	}
	if _, err := f.Store().PushWith(ctx, twins.UpperName, "9.0.0", twins.Upper, wasmstore.PushOptions{Signer: kp}); err != nil {
		t.Fatal(err)
	}
	poll.Wait(t, 10*time.Second, "the signed module to run", func() bool { return run() == nil })
}

// lockedBuffer is a bytes.Buffer safe for the fleet's concurrent logging.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A module granted log writes into the worker's log, one structured line
// naming the module; without the grant it is refused at push.
func TestModuleLog(t *testing.T) {
	ctx := context.Background()
	logs := &lockedBuffer{}
	f, err := local.Start(ctx, local.Config{Listen: "127.0.0.1:0", Workers: 1,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mod, err := os.ReadFile("../wasm/testdata/caps.wasm") // imports kv_get and log
	if err != nil {
		t.Fatal(err)
	}
	kvOnly, _ := wasmstore.NewPolicy(0, 0, []string{"kv:users"})
	if _, err := f.PushWith(ctx, "caps", mod, wasmstore.PushOptions{Policy: kvOnly}); err == nil || !strings.Contains(err.Error(), "--grant log") {
		t.Fatalf("push without log: %v, want it refused naming the grant", err)
	}
	pol, _ := wasmstore.NewPolicy(0, 0, []string{"kv:users", "log"})
	if _, err := f.PushWith(ctx, "caps", mod, wasmstore.PushOptions{Policy: pol}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.ProcessBatch(ctx, "caps", nil, []plugin.Record{{Value: []byte("lline from the guest\nwith a newline")}})
	if err != nil || res.Results[0].Err != nil {
		t.Fatalf("caps: %v, %+v", err, res)
	}
	var found bool
	for _, l := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "line from the guest\nwith a newline" {
			found = true
			if p, _ := m["plugin"].(string); !strings.HasPrefix(p, "caps@1.0.0 (sha256:") || m["level"] != "INFO" {
				t.Errorf("log line %v: want the module named and level INFO", m)
			}
		}
	}
	if !found {
		t.Errorf("no line from the guest in the fleet's log:\n%s", logs.String())
	}
}
