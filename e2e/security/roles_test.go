package security

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/plugin"
)

// records returns n records "<prefix>-<i>".
func records(prefix string, n int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i] = plugin.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}
	}
	return recs
}

// runJob runs plugin over recs as c and checks every result.
func runJob(t *testing.T, c *client.Client, plugin string, recs []plugin.Record, want func(i int) string, opts ...client.SubmitOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	j, err := c.Submit(ctx, plugin, client.Records(recs), append([]client.SubmitOption{client.WithBatchSize(10)}, opts...)...)
	if err != nil {
		t.Fatalf("submit %s: %v", plugin, err)
	}
	n := 0
	for o, err := range j.Results() {
		if err != nil {
			t.Fatalf("job %s: %v", j.ID(), err)
		}
		if o.Err != nil {
			t.Fatalf("job %s: record %d: %v", j.ID(), o.Index, o.Err)
		}
		if got, want := string(o.Value), want(int(o.Index)); got != want {
			t.Errorf("job %s: record %d: got %q, want %q", j.ID(), o.Index, got, want)
		}
		n++
	}
	if n != len(recs) {
		t.Errorf("job %s: got %d results, want %d", j.ID(), n, len(recs))
	}
}

// TestRolesDoTheirJobs runs the fleet with least-privilege roles, with a
// batch stream per owner and with the shared FIFO stream: native jobs of
// client alice at every priority (each priority has its own consumer, its
// own work hints) and a WebAssembly job complete, and no component hits a
// permission error on the way.
func TestRolesDoTheirJobs(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			f := startFleetWith(t, tp.topo)
			c, nc := f.clientConn(t, aliceRole)
			for _, tc := range []struct {
				plugin   string
				priority fleet.Priority
			}{{"upper", fleet.High}, {"upper", fleet.Normal}, {"upper", fleet.Low}, {wasmPlugin, fleet.Normal}} {
				t.Run(tc.plugin+"/"+tc.priority.String(), func(t *testing.T) {
					recs := records("alice-"+tc.plugin, 35)
					runJob(t, c, tc.plugin, recs, func(i int) string { return fmt.Sprintf("ALICE-%s-%d", toUpper(tc.plugin), i) },
						client.WithPriority(tc.priority))
				})
			}
			if _, err := c.SystemStatus(context.Background()); err != nil {
				t.Errorf("status: %v", err)
			}
			if _, err := c.Report(context.Background()); err != nil {
				t.Errorf("report: %v", err)
			}
			t.Run("pipeline", func(t *testing.T) { runPipeline(t, f, c) })
			// A coordinator's web console samples the fleet over the
			// coordinator's own connection.
			t.Run("coordinator console", func(t *testing.T) {
				cc, cnc := f.clientConn(t, coordinatorRole)
				ctx := context.Background()
				if _, err := cc.SystemStatus(ctx); err != nil {
					t.Errorf("status: %v", err)
				}
				if _, err := cc.Report(ctx); err != nil {
					t.Errorf("report: %v", err)
				}
				if _, err := cc.AllPipelines(ctx); err != nil {
					t.Errorf("every owner's pipelines: %v", err)
				}
				if _, err := cc.Jobs(ctx, true); err != nil {
					t.Errorf("every owner's jobs: %v", err)
				}
				if _, err := cc.DeadLetters(ctx, client.DeadFilter{All: true}); err != nil {
					t.Errorf("dead letters: %v", err)
				}
				for _, err := range cnc.permissionViolations() {
					t.Errorf("the coordinator's console: %v", err)
				}
			})
			for _, err := range nc.permissionViolations() {
				t.Errorf("alice, running her jobs and her pipeline: %v", err)
			}
			for _, err := range f.coord.permissionViolations() {
				t.Errorf("the coordinator: %v", err)
			}
		})
	}
}

// runPipeline: the admin makes alice's source and sink streams; alice
// defines a pipeline from one to the other (within the coordinator's
// grant), and the sink gets every source message upper-cased. She may not
// define one into another sink.
func runPipeline(t *testing.T, f *testFleet, c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js := f.admin.js(t)
	for _, sc := range []jetstream.StreamConfig{
		{Name: "alice_orders", Subjects: []string{"alice.orders.>"}, Storage: jetstream.MemoryStorage},
		{Name: "alice_out", Subjects: []string{"out.alice.enriched"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	spec := client.PipelineSpec{Source: "alice_orders", Sink: "out.alice.enriched", Steps: []client.Step{{Plugin: "upper"}}}
	if _, err := c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatalf("alice's pipeline: %v", err)
	}
	defer func() {
		if err := c.RemovePipeline(context.Background(), "enrich"); err != nil {
			t.Errorf("rm: %v", err)
		}
	}()
	bad := spec
	bad.Sink = "out.bob.enriched"
	if _, err := c.CreatePipeline(ctx, "elsewhere", bad); err == nil {
		t.Error("alice defined a pipeline into bob's sink")
	}
	const n = 50
	for i := range n {
		if _, err := js.Publish(ctx, "alice.orders.x", []byte(fmt.Sprintf("order-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	sink, err := js.Stream(ctx, "alice_out")
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 30*time.Second, func() error {
		info, err := sink.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != n {
			return fmt.Errorf("the sink holds %d messages, want %d", info.State.Msgs, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m, err := sink.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("ORDER-%d", i); string(m.Data) != want {
			t.Errorf("sink message %d = %q, want %q", i+1, m.Data, want)
		}
	}
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
