package wasm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// module returns testdata/<name>.wasm.
func module(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestTestdataCurrent checks that every committed testdata/*.wasm is what
// wat2wasm makes of its .wat, when wat2wasm is installed.
func TestTestdataCurrent(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm not installed")
	}
	wats, _ := filepath.Glob("testdata/*.wat")
	if len(wats) == 0 {
		t.Fatal("no testdata/*.wat")
	}
	for _, wat := range wats {
		t.Run(filepath.Base(wat), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m.wasm")
			if b, err := exec.Command(wat2wasm, "--enable-all", wat, "-o", out).CombinedOutput(); err != nil {
				t.Fatalf("wat2wasm: %v\n%s", err, b)
			}
			got, _ := os.ReadFile(out)
			want, err := os.ReadFile(strings.TrimSuffix(wat, ".wat") + ".wasm")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale: run wat2wasm --enable-all %s -o %s", strings.TrimSuffix(wat, ".wat")+".wasm", wat, strings.TrimSuffix(wat, ".wat")+".wasm")
			}
		})
	}
}

func newRuntime(tb testing.TB, opts ...Option) *Runtime {
	tb.Helper()
	r, err := NewRuntime(context.Background(), opts...)
	if err != nil {
		tb.Fatalf("NewRuntime: %v", err)
	}
	tb.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func load(tb testing.TB, r *Runtime, name string) *Plugin {
	tb.Helper()
	p, err := r.Load(context.Background(), module(tb, name))
	if err != nil {
		tb.Fatalf("Load(%s): %v", name, err)
	}
	tb.Cleanup(p.Close)
	return p
}

// records returns n records with keys "k<i>" and values "value <i> …".
func records(n int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i] = plugin.Record{
			Key:   fmt.Appendf(nil, "k%d", i),
			Value: fmt.Appendf(nil, "value %d: Hello, wörld!", i),
		}
		if i%3 == 1 {
			recs[i].Headers = []plugin.Header{{Key: []byte("h"), Value: []byte("x")}, {Key: []byte("trace"), Value: []byte("abc")}}
			recs[i].Timestamp = time.Unix(1700000000, int64(i))
		}
		if i%5 == 4 {
			recs[i].Value = nil
		}
	}
	return recs
}

func encode(tb testing.TB, b *batch.Batch) []byte {
	tb.Helper()
	msg, err := batch.AppendBatch(nil, b)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

// within fails the test when d is longer than max.
func within(t *testing.T, what string, d, max time.Duration) {
	t.Helper()
	if d > max {
		t.Errorf("%s took %s, want ≤ %s", what, d, max)
	}
}
