package plugins_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/examples/plugins"
	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
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

// runtime returns the runtime the tests share; loadedMu is held.
func runtimeLocked(t testing.TB) *wasm.Runtime {
	t.Helper()
	if rt == nil {
		// A compiled-module cache shared with later runs: a Go module
		// takes seconds to compile.
		r, err := wasm.NewRuntime(context.Background(), wasm.WithCacheDir(pdktest.CacheDir(t)))
		if err != nil {
			t.Fatal(err)
		}
		rt = r
	}
	return rt
}

// load builds the example in dir and loads it, once per test binary.
func load(t testing.TB, dir string) *wasm.Plugin {
	t.Helper()
	loadedMu.Lock()
	p, ok := loaded[dir]
	loadedMu.Unlock()
	if ok {
		return p
	}
	return loadModule(t, dir, pdktest.Build(t, "./"+dir))
}

// loadModule loads module under key, once per test binary.
func loadModule(t testing.TB, key string, module []byte) *wasm.Plugin {
	t.Helper()
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if p, ok := loaded[key]; ok {
		return p
	}
	p, err := runtimeLocked(t).Load(context.Background(), module)
	if err != nil {
		t.Fatalf("Load %s: %v", key, err)
	}
	t.Logf("%s: %d bytes", key, len(module))
	loaded[key] = p
	return p
}

// The committed upper-wasm/upper.wasm is what the Go sources build to.
func TestUpperGoWASMIsCurrent(t *testing.T) {
	if !bytes.Contains(plugins.UpperGoWASM, []byte(runtime.Version())) {
		t.Skipf("upper.wasm was built by another Go version than %s; not comparing", runtime.Version())
	}
	built := pdktest.Build(t, "./upper-wasm")
	if !bytes.Equal(built, plugins.UpperGoWASM) {
		t.Fatalf("examples/plugins/upper-wasm/upper.wasm is stale (%d bytes committed, %d built): run go generate ./examples/plugins",
			len(plugins.UpperGoWASM), len(built))
	}
	if want := wasm.Digest(built); wasm.Digest(plugins.UpperGoWASM) != want {
		t.Errorf("digest mismatch")
	}
}

// The committed kv-lookup-wasm/kv-lookup.wasm is what the Go sources build
// to.
func TestKVLookupWASMIsCurrent(t *testing.T) {
	if !bytes.Contains(plugins.KVLookupWASM, []byte(runtime.Version())) {
		t.Skipf("kv-lookup.wasm was built by another Go version than %s; not comparing", runtime.Version())
	}
	if built := pdktest.Build(t, "./kv-lookup-wasm"); !bytes.Equal(built, plugins.KVLookupWASM) {
		t.Fatalf("examples/plugins/kv-lookup-wasm/kv-lookup.wasm is stale (%d bytes committed, %d built): run go generate ./examples/plugins",
			len(plugins.KVLookupWASM), len(built))
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

// upperModules are the builds of upper-wasm: the one the system pushes (C)
// and the Go example, rebuilt from its sources.
var upperModules = []struct {
	name string
	load func(t testing.TB) *wasm.Plugin
}{
	{"c", func(t testing.TB) *wasm.Plugin { return loadModule(t, "upper-c", twins.Upper) }},
	{"go", func(t testing.TB) *wasm.Plugin { return load(t, "upper-wasm") }},
}

// Both builds of upper-wasm give byte for byte the native upper's output.
func TestUpperWASMMatchesNative(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	batches := []struct {
		name string
		recs []plugin.Record
	}{
		{"empty batch", nil},
		{"random 1", randomRecords(r, 1)},
		{"random 100", randomRecords(r, 100)},
		{"random 1000", randomRecords(r, 1000)},
		{"lengths 0-300", lengthRecords(r, 0, 300)},
		{"small after large", lengthRecords(r, 0, 40)},
		{"large values", largeRecords(r)},
		{"random 7", randomRecords(r, 7)},
	}
	for _, m := range upperModules {
		t.Run(m.name, func(t *testing.T) {
			p := m.load(t)
			if got := p.Info(); got.Name != "upper-wasm" || got.Version != "1.0.0" || got.Type != plugin.Transformer ||
				!strings.Contains(got.Description, "WebAssembly twin of upper") {
				t.Errorf("Info() = %+v, want upper-wasm 1.0.0, a transformer, the twin of upper", got)
			}
			for _, bt := range batches {
				checkSameAsUpper(t, p, bt.name, bt.recs)
			}
		})
	}
}

// checkSameAsUpper runs recs through p on both of its paths and compares
// the results with the native upper's, encoded.
func checkSameAsUpper(t *testing.T, p *wasm.Plugin, name string, recs []plugin.Record) {
	t.Helper()
	ctx := context.Background()
	want, err := builtin.Upper{}.ProcessBatch(ctx, nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "upper-wasm", Digest: p.Digest(), Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		path string
		run  func() (*plugin.BatchResult, error)
	}{
		{"ProcessBatch", func() (*plugin.BatchResult, error) { return p.ProcessBatch(ctx, nil, recs) }},
		{"ProcessEncoded", func() (*plugin.BatchResult, error) { return p.ProcessEncoded(ctx, msg, recs) }},
	} {
		got, err := run.run()
		if err != nil {
			t.Fatalf("%s, %s: %v", name, run.path, err)
		}
		// Byte-identical on the wire: encode both as result messages.
		if a, b := encodeResults(t, want), encodeResults(t, got); !bytes.Equal(a, b) {
			t.Errorf("%s, %s: result messages differ", name, run.path)
			for i := range recs {
				if !bytes.Equal(want.Results[i].Value, got.Results[i].Value) || got.Results[i].Err != nil {
					t.Errorf("record %d (%d bytes): native %q, wasm %q (%v)", i, len(recs[i].Value),
						want.Results[i].Value, got.Results[i].Value, got.Results[i].Err)
					break
				}
			}
		}
	}
}

// lengthRecords returns one record of each value length from lo to hi
// (inclusive), its bytes drawn from randomByte, with keys and 0–3 headers
// of random lengths.
func lengthRecords(r *rand.Rand, lo, hi int) []plugin.Record {
	var recs []plugin.Record
	for n := lo; n <= hi; n++ {
		v := make([]byte, n)
		for j := range v {
			v[j] = randomByte(r)
		}
		rec := plugin.Record{Key: make([]byte, r.IntN(40)), Value: v}
		for range r.IntN(4) {
			rec.Headers = append(rec.Headers, plugin.Header{Key: make([]byte, r.IntN(20)), Value: make([]byte, r.IntN(50))})
		}
		recs = append(recs, rec)
	}
	return recs
}

// largeRecords returns values around the guest's stride boundaries and
// up to 1 MiB.
func largeRecords(r *rand.Rand) []plugin.Record {
	var recs []plugin.Record
	for _, n := range []int{255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 1040, 2048, 4096 + 17, 70_000, 1<<20 + 3} {
		v := make([]byte, n)
		for j := range v {
			v[j] = randomByte(r)
		}
		recs = append(recs, plugin.Record{Key: []byte("k"), Value: v})
	}
	return recs
}

// randomByte is a random byte, half the time one of the bytes around the
// letters' bounds in ASCII and with the high bit set.
func randomByte(r *rand.Rand) byte {
	const edges = "@AZ[`az{\x00\x7f\x80\xc0\xda\xe0\xe1\xfa\xfb\xff"
	if r.IntN(2) == 0 {
		return edges[r.IntN(len(edges))]
	}
	return byte(r.UintN(256))
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
