package plugins_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
)

// The kv-lookup modules: the Rust build, and the Go one it mirrors.
const (
	kvLookupRustPath = "kv-lookup-rust/kv-lookup.wasm"
	kvLookupGoPath   = "kv-lookup-wasm/kv-lookup.wasm"
)

func readModule(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The committed kv-lookup-rust/kv-lookup.wasm is what kv-lookup-rust/build.sh
// makes of kv_lookup.rs and the kit.
func TestKVLookupRustIsCurrent(t *testing.T) {
	checkRustBuild(t, "kv-lookup-rust/build.sh", readModule(t, kvLookupRustPath))
}

// fakeKV is a fake of the host side's KV, over a map: enough to drive
// kv_get's results (a value, none, an error). The worker's real cache,
// kept fresh by a watch, is tested in internal/kvcache.
type fakeKV struct {
	mu     sync.Mutex
	values map[string][]byte // "bucket/key"
	down   bool              // every Get fails
	grows  int               // Gets of key "grows" so far
}

func (kv *fakeKV) Get(_ context.Context, bucket, key string) ([]byte, bool, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if kv.down {
		return nil, false, errors.New("fake KV: bucket unreachable")
	}
	if key == "grows" {
		// A value that changes between the guest's calls: 1,000 bytes more
		// each time, up to 3,000, each version of another byte, so that a
		// value copied from another call than the one whose length the
		// guest took shows.
		kv.grows++
		n := min(kv.grows, 3)
		return bytes.Repeat([]byte{byte('a' + n)}, 1000*n), true, nil
	}
	v, ok := kv.values[bucket+"/"+key]
	return v, ok, nil
}

func (kv *fakeKV) setDown(down bool) {
	kv.mu.Lock()
	kv.down = down
	kv.mu.Unlock()
}

func (kv *fakeKV) resetGrows() {
	kv.mu.Lock()
	kv.grows = 0
	kv.mu.Unlock()
}

// kvRuntime returns a runtime reading kv, closed when t ends.
func kvRuntime(t *testing.T, kv wasm.KV) *wasm.Runtime {
	t.Helper()
	ctx := context.Background()
	r, err := wasm.NewRuntime(ctx, wasm.WithKV(kv), wasm.WithCacheDir(pdktest.CacheDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(ctx) })
	return r
}

// The Rust kv-lookup gives the Go one's results: the same values, byte for
// byte, and the same errors (code and what the message says) for keys
// without a value, keys NATS does not allow, a bucket not granted, no
// bucket configured, and a bucket that cannot be read (the batch fails as
// unavailable). And it loads only with a kv grant.
func TestKVLookupRustMatchesGo(t *testing.T) {
	ctx := context.Background()
	rustMod, goMod := readModule(t, kvLookupRustPath), readModule(t, kvLookupGoPath)
	kv := &fakeKV{values: map[string][]byte{}}
	rng := rand.New(rand.NewPCG(7, 8))
	var sized []plugin.Record // keys of values of every size 0-5000 bytes
	for n := 0; n <= 5000; n++ {
		key := fmt.Sprintf("user-%d", n)
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		kv.values["users/"+key] = v
		kv.values["secret/"+key] = []byte("hidden")
		sized = append(sized, plugin.Record{Key: []byte{byte(n)}, Value: []byte(key)})
	}
	shuffled := append([]plugin.Record(nil), sized...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	r := kvRuntime(t, kv)

	grants := wasm.Limits{Grants: []string{"kv:users"}}
	rustP, err := r.LoadLimited(ctx, rustMod, wasm.Digest(rustMod), grants)
	if err != nil {
		t.Fatalf("LoadLimited(kv-lookup-rust): %v", err)
	}
	defer rustP.Close()
	goP, err := r.LoadLimited(ctx, goMod, wasm.Digest(goMod), grants)
	if err != nil {
		t.Fatalf("LoadLimited(kv-lookup-wasm): %v", err)
	}
	defer goP.Close()
	t.Logf("kv-lookup-rust: %d bytes; kv-lookup-wasm (Go): %d bytes", len(rustMod), len(goMod))
	if info := rustP.Info(); info.Name != "kv-lookup-rust" || info.Version != "1.0.0" || info.Type != plugin.Enricher ||
		!strings.Contains(info.Description, "bucket=NAME") {
		t.Errorf("info %+v, want kv-lookup-rust 1.0.0, an enricher", info)
	}

	t.Run("without a grant", func(t *testing.T) {
		for _, lim := range []wasm.Limits{{}, {Grants: []string{"log"}}} {
			p, err := r.LoadLimited(ctx, rustMod, wasm.Digest(rustMod), lim)
			if err == nil {
				p.Close()
			}
			if !errors.Is(err, wasm.ErrForbiddenImport) || !strings.Contains(err.Error(), "--grant kv:") {
				t.Errorf("LoadLimited with grants %q: %v, want wasm.ErrForbiddenImport naming the grant", lim.Grants, err)
			}
		}
	})

	recs := func(keys ...string) []plugin.Record {
		out := make([]plugin.Record, len(keys))
		for i, k := range keys {
			out[i].Value = []byte(k)
		}
		return out
	}
	users := plugin.Config{"bucket": "users"}
	// The values of every size, in batches of 100 records (at most 500 KB of
	// values each): the Go build's KVGetAppend grows its buffer to exactly
	// the room each value needs, so kv-lookup-wasm copies all the batch's
	// values read so far at every record, and runs out of its 128 MiB on
	// one batch of 500 values of about 4 KB (2.1 MB in all).
	type batchCase struct {
		name string
		cfg  plugin.Config
		recs []plugin.Record
		errs map[int][]string
	}
	var cases []batchCase
	for i := 0; i < len(sized); i += 100 {
		j := min(i+100, len(sized))
		cases = append(cases,
			batchCase{name: fmt.Sprintf("values of %d-%d bytes", i, j-1), cfg: users, recs: sized[i:j]},
			batchCase{name: fmt.Sprintf("values shuffled %d-%d", i, j-1), cfg: users, recs: shuffled[i:j]})
	}
	for _, tt := range append(cases, []batchCase{
		{name: "empty batch", cfg: users},
		{name: "missing keys", cfg: users, recs: recs("user-1", "nobody", "user-4999", "user-5001", "user-0"),
			errs: map[int][]string{1: {`bucket "users", key "nobody": not found`}, 3: {`key "user-5001": not found`}}},
		{name: "keys NATS does not allow", cfg: users,
			recs: recs("a..b", "", ".a", "a.", "a b", "ключ", "\xff", strings.Repeat("k", 4097), "user-7", "a.b"),
			errs: map[int][]string{
				0: {`key "a..b"`, "a key NATS does not allow"},
				1: {`key ""`, "a key NATS does not allow"},
				2: {"a key NATS does not allow"}, 3: {"a key NATS does not allow"}, 4: {"a key NATS does not allow"},
				5: {"a key NATS does not allow"}, 6: {"a key NATS does not allow"}, 7: {"a key NATS does not allow"},
				9: {`key "a.b": not found`},
			}},
		{name: "a bucket not granted", cfg: plugin.Config{"bucket": "secret"}, recs: recs("user-1", "user-2"),
			errs: map[int][]string{
				0: {`bucket "secret", key "user-1": not granted to this module (push it with --grant kv:secret)`},
				1: {"not granted to this module (push it with --grant kv:secret)"},
			}},
	}...) {
		t.Run(tt.name, func(t *testing.T) {
			want, err := goP.ProcessBatch(ctx, tt.cfg, tt.recs)
			if err != nil {
				t.Fatalf("Go: %v", err)
			}
			got, err := rustP.ProcessBatch(ctx, tt.cfg, tt.recs)
			if err != nil {
				t.Fatalf("Rust: %v", err)
			}
			if len(got.Results) != len(tt.recs) || len(want.Results) != len(tt.recs) {
				t.Fatalf("%d results from Rust, %d from Go, for %d records", len(got.Results), len(want.Results), len(tt.recs))
			}
			for i, g := range got.Results {
				w := want.Results[i]
				switch phrases := tt.errs[i]; {
				case phrases == nil:
					if g.Err != nil || w.Err != nil || g.Dropped || w.Dropped || !bytes.Equal(g.Value, w.Value) {
						t.Fatalf("record %d (%.40q): Rust %d bytes (%v), Go %d bytes (%v); want the same value",
							i, tt.recs[i].Value, len(g.Value), g.Err, len(w.Value), w.Err)
					}
				case g.Err == nil || w.Err == nil:
					t.Errorf("record %d (%.40q): Rust %v, Go %v; want both to fail", i, tt.recs[i].Value, g.Err, w.Err)
				default:
					if gc, wc := plugin.CodeOf(g.Err), plugin.CodeOf(w.Err); gc != wc || gc != plugin.CodeInvalidInput {
						t.Errorf("record %d: code %v from Rust, %v from Go; want %v", i, gc, wc, plugin.CodeInvalidInput)
					}
					for _, p := range phrases {
						if !strings.Contains(g.Err.Error(), p) || !strings.Contains(w.Err.Error(), p) {
							t.Errorf("record %d: Rust %q, Go %q; want both to say %q", i, g.Err, w.Err, p)
						}
					}
				}
			}
		})
	}

	t.Run("all sizes in one batch", func(t *testing.T) {
		// The Rust build reads each value into one buffer it reuses: the
		// 5,001 values (12.5 MB) in one batch, which the Go build's
		// memory does not hold, are the KV's.
		res, err := rustP.ProcessBatch(ctx, users, shuffled)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res.Results {
			if want := kv.values["users/"+string(shuffled[i].Value)]; r.Err != nil || !bytes.Equal(r.Value, want) {
				t.Fatalf("record %d (%s): %d bytes (%v), want %d bytes", i, shuffled[i].Value, len(r.Value), r.Err, len(want))
			}
		}
	})

	// Batch errors: the same code from both, the messages saying the same.
	batchErrors := func(t *testing.T, cfg plugin.Config, recs []plugin.Record, code plugin.Code, phrases ...string) {
		t.Helper()
		for _, p := range []*wasm.Plugin{goP, rustP} {
			res, err := p.ProcessBatch(ctx, cfg, recs)
			if err == nil {
				t.Fatalf("%s: %d results, want a batch error", p.Info().Name, len(res.Results))
			}
			if plugin.CodeOf(err) != code {
				t.Errorf("%s: %v (code %v), want code %v", p.Info().Name, err, plugin.CodeOf(err), code)
			}
			for _, ph := range phrases {
				if !strings.Contains(err.Error(), ph) {
					t.Errorf("%s: %q, want it to say %q", p.Info().Name, err, ph)
				}
			}
		}
	}
	t.Run("no bucket", func(t *testing.T) {
		for _, cfg := range []plugin.Config{nil, {"bucket": ""}, {"other": "users"}} {
			batchErrors(t, cfg, recs("user-1"), plugin.CodeInvalidInput, "kv-lookup: config bucket is required (e.g. bucket=users)")
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		kv.setDown(true)
		defer kv.setDown(false)
		batchErrors(t, users, recs("user-1", "nobody", "user-2"), plugin.CodeUnavailable,
			`bucket "users", key "user-1": unavailable now (the worker's log says why)`)
	})
	t.Run("back after unavailable", func(t *testing.T) {
		for _, p := range []*wasm.Plugin{goP, rustP} {
			res, err := p.ProcessBatch(ctx, users, recs("user-3"))
			if err != nil || !bytes.Equal(res.Results[0].Value, kv.values["users/user-3"]) {
				t.Errorf("%s: %v, want the value", p.Info().Name, err)
			}
		}
	})
	t.Run("a value changing between calls", func(t *testing.T) {
		// Whatever room each build's buffer has, the value it gives is
		// whole: one version, as the host copied it.
		for _, p := range []*wasm.Plugin{goP, rustP} {
			for _, batch := range [][]plugin.Record{recs("grows"), recs("user-0", "grows", "user-5000")} {
				kv.resetGrows()
				res, err := p.ProcessBatch(ctx, users, batch)
				if err != nil {
					t.Fatalf("%s: %v", p.Info().Name, err)
				}
				var v []byte
				for i, rec := range batch {
					if string(rec.Value) == "grows" {
						v = res.Results[i].Value
					}
				}
				n := len(v) / 1000
				if n < 1 || n > 3 || len(v) != 1000*n || !bytes.Equal(v, bytes.Repeat([]byte{byte('a' + n)}, len(v))) {
					t.Errorf("%s: value %.20q… of %d bytes, want one version of the value", p.Info().Name, v, len(v))
				}
			}
		}
	})
}
