package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
)

// TestOnALocalFleet serves the console over ClientBackend on a real local
// fleet (embedded nats-server, a coordinator, a worker) and reads its
// pages as a browser would get them.
func TestOnALocalFleet(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Config{Backend: NewClientBackend(c, js), Interval: 50 * time.Millisecond, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Stops when the test ends.
	go func() { done <- con.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	srv := httptest.NewServer(con)
	defer srv.Close()

	recs := make([]plugin.Record, 500)
	for i := range recs {
		recs[i].Value = fmt.Appendf(nil, "record %d", i)
	}
	res, err := c.ProcessBatch(t.Context(), "fail", plugin.Config{"match": "7"}, recs)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range res.Results {
		if r.Err != nil {
			failed++
		}
	}
	jobs, err := c.Jobs(t.Context(), true)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Jobs: %v, %v", jobs, err)
	}
	id := jobs[0].ID

	for path, want := range map[string][]string{
		"/":               {`id="worker-worker-1" data-health="healthy"`, `<b>fail</b>`},
		"/jobs":           {`<tr id="job-` + id + `">`, `<span class="badge ok">done</span>`},
		"/jobs/" + id:     {`<dt>Records</dt><dd>500 in`, fmt.Sprintf(`%d failed`, failed)},
		"/plugins":        {`<tr id="plugin-fail">`},
		"/pipelines":      {`No pipeline.`},
		"/dead":           {`No dead letter`},
		"/jobs/anon.nope": {`Cannot read job anon.nope`},
	} {
		// The fleet page waits for the worker's metrics of the job.
		poll.Wait(t, 10*time.Second, path+" to show its data", func() bool {
			_, body := get(t, srv, path)
			for _, w := range want {
				if !strings.Contains(body, w) {
					return false
				}
			}
			return true
		})
	}
	poll.Wait(t, 10*time.Second, "the sampler to chart the job", func() bool {
		for _, s := range con.hist.samples() {
			if s.Plugins["fail"].processed >= 500 {
				return true
			}
		}
		return false
	})
}
