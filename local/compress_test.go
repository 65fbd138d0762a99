package local_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
)

// Log-like records travel compressed both ways, for native and WebAssembly
// plugins (whose guests still get plain batches), and come back exactly;
// a client that turns compression off sends and receives plain messages.
func TestCompressionOnTheWire(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	f, err := local.Start(ctx, local.Config{Listen: "127.0.0.1:0", Workers: 1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Push(ctx, twins.UpperName, twins.Upper); err != nil {
		t.Fatal(err)
	}
	recs := make([]plugin.Record, 2000)
	for i := range recs {
		recs[i].Value = fmt.Appendf(nil, "2026-12-03T10:00:%02d.%03dz info api request method=get path=/v1/orders/%d status=200", i%60, i%1000, i)
	}
	run := func(c *client.Client, name string) {
		t.Helper()
		j, err := c.Submit(ctx, name, client.Records(recs), client.WithBatchSize(500))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for o, err := range j.Results() {
			if err != nil {
				t.Fatal(err)
			}
			if want := string(builtin.AppendUpper(nil, recs[o.Index].Value)); o.Err != nil || string(o.Value) != want {
				t.Fatalf("%s: record %d = %q, %v; want %q", name, o.Index, o.Value, o.Err, want)
			}
			n++
		}
		if n != len(recs) {
			t.Fatalf("%s: %d results of %d", name, n, len(recs))
		}
	}

	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"upper", twins.UpperName} {
		batches, results := localtest.Counter(t, reg, "dataflare_compressed_batches_total"), localtest.Counter(t, reg, "dataflare_compressed_results_total")
		run(c, name)
		if got := localtest.Counter(t, reg, "dataflare_compressed_batches_total") - batches; got != 4 {
			t.Errorf("%s: %v batches received compressed, want 4", name, got)
		}
		if got := localtest.Counter(t, reg, "dataflare_compressed_results_total") - results; got != 4 {
			t.Errorf("%s: %v result messages published compressed, want 4", name, got)
		}
	}

	plainClient, err := f.Client(client.WithCompression(false))
	if err != nil {
		t.Fatal(err)
	}
	batches, results := localtest.Counter(t, reg, "dataflare_compressed_batches_total"), localtest.Counter(t, reg, "dataflare_compressed_results_total")
	run(plainClient, "upper")
	if got := localtest.Counter(t, reg, "dataflare_compressed_batches_total") - batches; got != 0 {
		t.Errorf("without compression: %v batches received compressed", got)
	}
	if got := localtest.Counter(t, reg, "dataflare_compressed_results_total") - results; got != 0 {
		t.Errorf("without compression: %v result messages published compressed: a client that did not ask for them would refuse them", got)
	}
}
