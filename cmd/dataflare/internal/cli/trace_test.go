package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
)

// TestSubmitIsOneTrace runs one job through the CLI on an in-process fleet
// and checks that all its spans form one trace: client.job → client.batch
// → worker.batch → client.results, and client.job → coordinator.job for the
// job's requests to a coordinator (create, size and state checks, seal).
func TestSubmitIsOneTrace(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 2})
	const records, batchSize, batches = 50, 10, 5
	var in strings.Builder
	for i := range records {
		fmt.Fprintf(&in, "r%d\n", i)
	}
	spans.Reset()
	r := run(t, in.String(), "--nats="+f.URL, "submit", "-p", "upper", "--batch-size", fmt.Sprint(batchSize))
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	// Workers end their span once the batch is acknowledged, which may be
	// after the client read its results.
	var got tracetest.SpanStubs
	err := poll.Until(context.Background(), 10*time.Second, func() error {
		got = spans.GetSpans()
		byName := map[string]int{}
		for _, s := range got {
			byName[s.Name]++
		}
		for _, name := range []string{"client.batch", "worker.batch", "client.results"} {
			if byName[name] < batches {
				return fmt.Errorf("%d %s spans, want at least %d (all: %v)", byName[name], name, batches, byName)
			}
		}
		if byName["coordinator.job"] < 2 {
			return fmt.Errorf("%d coordinator.job spans, want at least 2: create and seal (all: %v)", byName["coordinator.job"], byName)
		}
		if byName["client.job"] != 1 {
			return fmt.Errorf("%d client.job spans, want 1", byName["client.job"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var root tracetest.SpanStub
	ids := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range got {
		ids[s.SpanContext.SpanID()] = s
		if s.Name == "client.job" {
			root = s
		}
	}
	if root.Parent.IsValid() {
		t.Errorf("client.job has parent %v, want none (it is the root)", root.Parent.SpanID())
	}
	// The parent each span must have, by name.
	wantParent := map[string]string{
		"client.batch":    "client.job",
		"coordinator.job": "client.job",
		"worker.batch":    "client.batch",
		"client.results":  "worker.batch",
	}
	for _, s := range got {
		if s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("span %s is in trace %s, want the job's trace %s", s.Name, s.SpanContext.TraceID(), root.SpanContext.TraceID())
			continue
		}
		want, ok := wantParent[s.Name]
		if !ok {
			continue
		}
		parent, found := ids[s.Parent.SpanID()]
		if !found || parent.Name != want {
			t.Errorf("span %s has parent %q, want a %s", s.Name, parent.Name, want)
			continue
		}
		// A batch's spans all carry its sequence number.
		if s.Name != "client.batch" && s.Name != "coordinator.job" && seqOf(s) != seqOf(parent) {
			t.Errorf("span %s of batch %d has the parent of batch %d", s.Name, seqOf(s), seqOf(parent))
		}
		if remote := s.Name != "client.batch"; s.Parent.IsRemote() != remote {
			t.Errorf("span %s: parent remote = %v, want %v (it crossed NATS)", s.Name, s.Parent.IsRemote(), remote)
		}
	}
}

func seqOf(s tracetest.SpanStub) int64 {
	for _, a := range s.Attributes {
		if a.Key == attribute.Key("dataflare.seq") {
			return a.Value.AsInt64()
		}
	}
	return -1
}
