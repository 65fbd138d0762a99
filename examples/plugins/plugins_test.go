package plugins_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/examples/plugins"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/wasm"
)

// rt is the runtime the tests share, made by the first load.
var rt *wasm.Runtime

func TestMain(m *testing.M) {
	code := m.Run()
	loadedMu.Lock()
	for _, p := range loaded {
		p.Close()
	}
	if rt != nil {
		_ = rt.Close(context.Background())
	}
	loadedMu.Unlock()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	loadedMu sync.Mutex
	loaded   = map[string]*wasm.Plugin{}
)

// load builds the example in dir and loads it, once per test binary.
func load(t testing.TB, dir string) *wasm.Plugin {
	t.Helper()
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if p, ok := loaded[dir]; ok {
		return p
	}
	if rt == nil {
		// A compiled-module cache shared with later runs: a Go module
		// takes seconds to compile.
		r, err := wasm.NewRuntime(context.Background(), wasm.WithCacheDir(pdktest.CacheDir(t)))
		if err != nil {
			t.Fatal(err)
		}
		rt = r
	}
	module := pdktest.Build(t, "./"+dir)
	p, err := rt.Load(context.Background(), module)
	if err != nil {
		t.Fatalf("Load %s: %v", dir, err)
	}
	t.Logf("%s: %d bytes", dir, len(module))
	loaded[dir] = p
	return p
}

// The committed upper-wasm/upper.wasm is what the sources build to.
func TestUpperWASMIsCurrent(t *testing.T) {
	if !bytes.Contains(plugins.UpperWASM, []byte(runtime.Version())) {
		t.Skipf("upper.wasm was built by another Go version than %s; not comparing", runtime.Version())
	}
	built := pdktest.Build(t, "./upper-wasm")
	if !bytes.Equal(built, plugins.UpperWASM) {
		t.Fatalf("examples/plugins/upper-wasm/upper.wasm is stale (%d bytes committed, %d built): run go generate ./examples/plugins",
			len(plugins.UpperWASM), len(built))
	}
	if want := wasm.Digest(built); wasm.Digest(plugins.UpperWASM) != want {
		t.Errorf("digest mismatch")
	}
}

// randomRecords returns n records with random keys, values (some empty or
// nil, some large, any bytes) and headers.
func randomRecords(r *rand.Rand, n int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		size := r.IntN(200)
		if i%10 == 0 {
			size = r.IntN(70_000)
		}
		if i%17 == 0 {
			size = 0
		}
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(r.UintN(256))
		}
		if size == 0 && i%2 == 0 {
			v = nil
		}
		recs[i] = plugin.Record{Key: fmt.Appendf(nil, "key-%d", i), Value: v}
		if i%3 == 0 {
			recs[i].Headers = []plugin.Header{{Key: []byte("h"), Value: []byte("v")}}
		}
	}
	return recs
}

// upper-wasm gives byte for byte the native upper's output.
func TestUpperWASMMatchesNative(t *testing.T) {
	p := load(t, "upper-wasm")
	if got := p.Info(); got.Name != "upper-wasm" || got.Version != "1.0.0" || got.Type != plugin.Transformer {
		t.Errorf("Info() = %+v", got)
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 100, 1000} {
		recs := randomRecords(r, n)
		want, err := builtin.Upper{}.ProcessBatch(ctx, nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "upper-wasm", Digest: p.Digest(), Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		for name, run := range map[string]func() (*plugin.BatchResult, error){
			"ProcessBatch":   func() (*plugin.BatchResult, error) { return p.ProcessBatch(ctx, nil, recs) },
			"ProcessEncoded": func() (*plugin.BatchResult, error) { return p.ProcessEncoded(ctx, msg, recs) },
		} {
			got, err := run()
			if err != nil {
				t.Fatalf("%d records, %s: %v", n, name, err)
			}
			// Byte-identical on the wire: encode both as result messages.
			if a, b := encodeResults(t, want), encodeResults(t, got); !bytes.Equal(a, b) {
				t.Errorf("%d records, %s: result messages differ", n, name)
				for i := range recs {
					if !bytes.Equal(want.Results[i].Value, got.Results[i].Value) || got.Results[i].Err != nil {
						t.Errorf("record %d: native %q, wasm %q (%v)", i, want.Results[i].Value, got.Results[i].Value, got.Results[i].Err)
						break
					}
				}
			}
		}
	}
}

func encodeResults(t *testing.T, res *plugin.BatchResult) []byte {
	t.Helper()
	b, err := batch.AppendResults(nil, &batch.ResultSet{Job: "j", Results: res.Results})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdentityWASM(t *testing.T) {
	p := load(t, "identity-wasm")
	recs := randomRecords(rand.New(rand.NewPCG(3, 4)), 300)
	res, err := p.ProcessBatch(context.Background(), nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		got := res.Results[i].Value
		if !bytes.Equal(got, recs[i].Value) || res.Results[i].Err != nil {
			t.Fatalf("record %d: %q (%v), want the input", i, got, res.Results[i].Err)
		}
		if len(got) > 0 && &got[0] != &recs[i].Value[0] {
			t.Fatalf("record %d: value copied; want it sent back as unchanged (aliasing the input)", i)
		}
	}
}

func TestJSONExtractWASM(t *testing.T) {
	p := load(t, "json-extract-wasm")
	docs := []string{
		`{"user":{"name":"Ada","address":{"city":"London"}},"tags":["a","b"],"n":42}`,
		`{"user":{"name":"Grace \u00e9"},"items":[{"sku":"X1"},{"sku":"Y2","qty":3}]}`,
		`{"user":"not an object"}`,
		`[1, 2, {"user": {"name": "in an array"}}]`,
		`not json`,
		`{"user":{"name":null}}`,
	}
	recs := make([]plugin.Record, len(docs))
	for i, d := range docs {
		recs[i].Value = []byte(d)
	}
	type res struct {
		Value   string
		Dropped bool
		Code    plugin.Code
	}
	for _, tt := range []struct {
		name string
		cfg  plugin.Config
		want []res
	}{
		{"string field", plugin.Config{"field": "user.name"}, []res{
			{Value: "Ada"}, {Value: "Grace é"}, {Code: plugin.CodeProcessing}, {Code: plugin.CodeProcessing},
			{Code: plugin.CodeInvalidInput}, {Value: "null"}}},
		{"raw", plugin.Config{"field": "user.name", "raw": "true", "missing": "drop"}, []res{
			{Value: `"Ada"`}, {Value: `"Grace \u00e9"`}, {Dropped: true}, {Dropped: true},
			{Code: plugin.CodeInvalidInput}, {Value: "null"}}},
		{"nested and arrays", plugin.Config{"field": "items.1", "missing": "null"}, []res{
			{Value: "null"}, {Value: `{"sku":"Y2","qty":3}`}, {Value: "null"}, {Value: "null"},
			{Code: plugin.CodeInvalidInput}, {Value: "null"}}},
		{"array root", plugin.Config{"field": "2.user.name", "missing": "drop"}, []res{
			{Dropped: true}, {Dropped: true}, {Dropped: true}, {Value: "in an array"},
			{Code: plugin.CodeInvalidInput}, {Dropped: true}}},
		{"number and object", plugin.Config{"field": "n", "missing": "drop"}, []res{
			{Value: "42"}, {Dropped: true}, {Dropped: true}, {Dropped: true},
			{Code: plugin.CodeInvalidInput}, {Dropped: true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := p.ProcessBatch(context.Background(), tt.cfg, recs)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]res, len(out.Results))
			for i, r := range out.Results {
				got[i] = res{Value: string(r.Value), Dropped: r.Dropped, Code: plugin.CodeOf(r.Err)}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
	for _, cfg := range []plugin.Config{nil, {"field": "a..b"}, {"field": "a", "missing": "ignore"}, {"field": "a", "raw": "yes"}} {
		_, err := p.ProcessBatch(context.Background(), cfg, recs)
		if !errors.Is(err, plugin.ErrInvalidInput) {
			t.Errorf("config %v: error = %v, want a batch error matching plugin.ErrInvalidInput", cfg, err)
		}
	}
}
