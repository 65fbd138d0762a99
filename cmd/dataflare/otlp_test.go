package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
)

// otlpSpan is a span as an OTLP collector received it.
type otlpSpan struct {
	service, name     string
	trace, id, parent string
}

// collector is an OTLP/HTTP trace receiver that keeps every span.
type collector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		data, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans = append(c.spans, otlpSpan{service: service, name: s.GetName(),
						trace: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
						parent: hex.EncodeToString(s.GetParentSpanId())})
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) all() []otlpSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]otlpSpan(nil), c.spans...)
}

// TestTraceAcrossProcesses runs a coordinator, a worker and a submit as
// separate processes exporting to one OTLP collector, and checks that the
// job is one trace spanning all three.
func TestTraceAcrossProcesses(t *testing.T) {
	col := newCollector(t)
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	otel := append(environ(url), "OTEL_EXPORTER_OTLP_ENDPOINT="+col.srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	coord := startEnv(t, otel, "coordinator")
	work := startEnv(t, otel, "worker", "--id", "traced")
	var in strings.Builder
	for i := range 40 {
		fmt.Fprintf(&in, "%d\n", i)
	}
	var r result
	err := poll.Until(context.Background(), 15*time.Second, func() error {
		r = runEnv(t, otel, in.String(), "submit", "-p", "upper", "--batch-size", "10")
		if r.code != 0 {
			return fmt.Errorf("submit: exit %d, stderr %q", r.code, r.stderr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Stopping the daemons flushes their spans.
	if code := work.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("worker exit %d", code)
	}
	if code := coord.stop(t, os.Interrupt); code != 0 {
		t.Errorf("coordinator exit %d", code)
	}

	spans := col.all()
	var job *otlpSpan
	for i, s := range spans {
		if s.name == "client.job" && s.service == "dataflare-submit" {
			job = &spans[i] // the last submission is the one that succeeded
		}
	}
	if job == nil {
		t.Fatalf("no client.job span from dataflare-submit among %d spans", len(spans))
	}
	byID := map[string]otlpSpan{}
	count := map[string]int{}
	for _, s := range spans {
		if s.trace != job.trace {
			continue
		}
		byID[s.id] = s
		count[s.service+" "+s.name]++
	}
	want := map[string]string{ // span → its parent's name
		"dataflare-submit client.batch":         "client.job",
		"dataflare-coordinator coordinator.job": "client.job",
		"dataflare-worker worker.batch":         "client.batch",
		"dataflare-submit client.results":       "worker.batch",
	}
	for k := range want {
		// One per batch (4), but the coordinator's: create and seal.
		if n := 4 - 2*strings.Count(k, "coordinator.job"); count[k] < n {
			t.Errorf("%d %s spans in the job's trace, want at least %d; got %v", count[k], k, n, count)
		}
	}
	for _, s := range byID {
		p, ok := want[s.service+" "+s.name]
		if !ok {
			continue
		}
		if got := byID[s.parent].name; got != p {
			t.Errorf("%s %s: parent %q, want %s", s.service, s.name, got, p)
		}
	}
	if t.Failed() {
		var b bytes.Buffer
		for _, s := range spans {
			fmt.Fprintf(&b, "%s %s %s parent %s\n", s.trace[:8], s.service, s.name, s.parent)
		}
		t.Logf("spans:\n%s", b.String())
	}
}
