package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
)

// pipelineOut is 'pipeline info --json' as a script reads it: the keys
// are the contract.
type pipelineOut struct {
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	Source   string `json:"source"`
	Filter   string `json:"filter"`
	Sink     string `json:"sink"`
	Paused   bool   `json:"paused"`
	Revision uint64 `json:"revision"`
	Created  time.Time
	Updated  time.Time
	Steps    []struct {
		Plugin  string            `json:"plugin"`
		Version string            `json:"version"`
		Config  map[string]string `json:"config"`
	} `json:"steps"`
	Status *struct {
		State       string  `json:"state"`
		Coordinator string  `json:"coordinator"`
		Job         string  `json:"job"`
		Revision    uint64  `json:"revision"`
		Processed   uint64  `json:"processed"`
		Errors      uint64  `json:"errors"`
		Dropped     uint64  `json:"dropped"`
		Rate        float64 `json:"rate"`
		Lag         uint64  `json:"lag"`
		LastSeq     uint64  `json:"last_seq"`
		LatencyP50  int64   `json:"latency_p50_ns"`
		LatencyP99  int64   `json:"latency_p99_ns"`
		At          time.Time
	} `json:"status"`
}

// decodeStrict decodes JSON into v, failing on a key v does not know.
func decodeStrict(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in:\n%s", err, s)
	}
}

// pipelineBench is a fleet with a source stream ORDERS (orders.>) and a
// sink stream ENRICHED (enriched.out, with a duplicate window), and the
// CLI's --nats flag for it.
type pipelineBench struct {
	js   jetstream.JetStream
	nats string
	next int // the next source message to publish
}

func newPipelineBench(t *testing.T) *pipelineBench {
	t.Helper()
	// The fleet's logs are shown when the test fails: why a pipeline
	// stalled, if one did. Registered first, this runs after the fleet
	// has stopped.
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the fleet's logs:\n%s", logs.String())
		}
	})
	f := localtest.Start(t, local.Config{Workers: 1, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	nc := f.Connect()
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{
		{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: jetstream.MemoryStorage},
		{Name: "ENRICHED", Subjects: []string{"enriched.out"}, Storage: jetstream.MemoryStorage, Duplicates: 10 * time.Minute},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	return &pipelineBench{js: js, nats: "--nats=" + f.URL}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// run runs the CLI against the fleet.
func (b *pipelineBench) run(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, "", append([]string{b.nats}, args...)...)
}

// ok runs the CLI and fails the test unless it exits 0 with nothing on
// standard error.
func (b *pipelineBench) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := b.run(t, args...)
	if r.code != ExitOK || r.stderr != "" {
		t.Fatalf("%v: exit %d, stderr %q, stdout %q; want 0 and no error", args, r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// publish puts n more messages on the source, "order-<i>" on
// orders.<i%3>, every tenth one "bad-<i>".
func (b *pipelineBench) publish(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range n {
		i := b.next
		v := "order-" + strconv.Itoa(i)
		if i%10 == 7 {
			v = "bad-" + strconv.Itoa(i)
		}
		if _, err := b.js.Publish(ctx, "orders."+strconv.Itoa(i%3), []byte(v)); err != nil {
			t.Fatal(err)
		}
		b.next++
	}
}

// info returns 'pipeline info NAME --json'.
func (b *pipelineBench) info(t *testing.T, name string) pipelineOut {
	t.Helper()
	var p pipelineOut
	decodeStrict(t, b.ok(t, "pipeline", "info", name, "--json"), &p)
	return p
}

// waitStatus polls 'pipeline info --json' until cond holds for its
// status, and returns the pipeline then.
func (b *pipelineBench) waitStatus(t *testing.T, name, what string, cond func(p pipelineOut) bool) pipelineOut {
	t.Helper()
	var last pipelineOut
	err := poll.Until(context.Background(), 60*time.Second, func() error {
		last = b.info(t, name)
		if last.Status != nil && cond(last) {
			return nil
		}
		return fmt.Errorf("pipeline %s: want %s, have status %+v", name, what, last.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// sink returns the values in the sink stream, once it holds want.
func (b *pipelineBench) sink(t *testing.T, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, "ENRICHED")
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 60*time.Second, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != uint64(want) {
			return fmt.Errorf("the sink holds %d messages, want %d", info.State.Msgs, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for seq := uint64(1); seq <= uint64(want); seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("sink message %d: %v", seq, err)
		}
		if got, want := m.Header.Get("Df-Source-Seq"), ""; got == want {
			t.Fatalf("sink message %d %q has no Df-Source-Seq header", seq, m.Data)
		}
		values = append(values, string(m.Data))
	}
	return values
}

// A pipeline through its life by the CLI: create, ls, info as it
// processes, pause, resume, update, rm, and info of it removed.
func TestPipelineCommands(t *testing.T) {
	b := newPipelineBench(t)
	b.publish(t, 20) // before the pipeline: it reads from the start

	out := b.ok(t, "pipeline", "create", "orders", "--from", "ORDERS", "--step", "fail:match=bad", "--step", "upper", "--to", "enriched.out")
	if want := "created pipeline orders: ORDERS → fail → upper → enriched.out\n"; out != want {
		t.Errorf("create printed %q, want %q", out, want)
	}

	t.Run("ls", func(t *testing.T) {
		out := b.ok(t, "pipeline", "ls")
		header := regexp.MustCompile(`^NAME +STATE +SOURCE +SINK +STEPS +PROCESSED +ERRORS +LAG +RATE/s\n`)
		row := regexp.MustCompile(`\norders +(waiting|running) +ORDERS +enriched\.out +fail → upper +(-|\d+) +(-|\d+) +(-|\d+) +(-|[\d.]+)\n$`)
		if !header.MatchString(out) || !row.MatchString(out) {
			t.Errorf("ls printed:\n%s\nwant a header and one row for orders", out)
		}
		var list []pipelineOut
		decodeStrict(t, b.ok(t, "pipeline", "ls", "--json"), &list)
		if len(list) != 1 || list[0].Name != "orders" || list[0].Owner != "anon" || list[0].Source != "ORDERS" ||
			list[0].Sink != "enriched.out" || len(list[0].Steps) != 2 || list[0].Steps[0].Config["match"] != "bad" || list[0].Steps[1].Plugin != "upper" {
			t.Errorf("ls --json = %+v, want pipeline orders as created", list)
		}
	})

	t.Run("info as it processes", func(t *testing.T) {
		p := b.waitStatus(t, "orders", "20 processed, no lag", func(p pipelineOut) bool { return p.Status.Processed == 20 && p.Status.Lag == 0 })
		st := p.Status
		if st.State != "running" || st.Errors != 2 || st.Dropped != 0 || st.LastSeq != 20 || st.Revision != 1 || st.Coordinator == "" ||
			!strings.HasPrefix(st.Job, "anon.") || st.LatencyP99 < st.LatencyP50 || st.LatencyP50 <= 0 {
			t.Errorf("status %+v: want running, 2 errors, last seq 20, revision 1, a coordinator and a job, latencies", st)
		}
		if p.Revision != 1 || p.Paused || p.Created.IsZero() || p.Updated.Before(p.Created) {
			t.Errorf("definition %+v: want revision 1, not paused, created and updated", p)
		}
		b.publish(t, 10)
		b.waitStatus(t, "orders", "30 processed", func(p pipelineOut) bool { return p.Status.Processed == 30 && p.Status.LastSeq == 30 })
		values := b.sink(t, 27)
		if values[0] != "ORDER-0" || values[6] != "ORDER-6" || values[7] != "ORDER-8" || values[26] != "ORDER-29" {
			t.Errorf("sink %q: want the upper-cased orders but the bad ones, in order", values)
		}

		out := b.ok(t, "pipeline", "info", "orders")
		for _, want := range []string{"name:", "orders", "state:", "running", "source:", "stream ORDERS", "steps:", "1. fail:match=bad", "2. upper",
			"sink:", "enriched.out", "revision:", "created:", "updated:", "coordinator:", "job:", "anon.", "processed:", "30",
			"errors:", "3 (in dead letters)", "dropped:", "rate:", "lag:", "last source seq:", "latency:", "p50 ", "p99 "} {
			if !strings.Contains(out, want) {
				t.Errorf("info lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("pause and resume", func(t *testing.T) {
		out := b.ok(t, "pipeline", "pause", "orders")
		if want := "paused pipeline orders (revision 2)\n"; out != want {
			t.Errorf("pause printed %q, want %q", out, want)
		}
		b.waitStatus(t, "orders", "paused", func(p pipelineOut) bool { return p.Paused && p.Status.State == "paused" })
		b.publish(t, 5)
		// Paused, the new messages wait in the source.
		p := b.waitStatus(t, "orders", "a lag of 5", func(p pipelineOut) bool { return p.Status.Lag == 5 })
		if p.Status.Processed != 30 {
			t.Errorf("paused, it processed %d, want 30", p.Status.Processed)
		}
		out = b.ok(t, "pipeline", "resume", "orders")
		if want := "resumed pipeline orders (revision 3)\n"; out != want {
			t.Errorf("resume printed %q, want %q", out, want)
		}
		b.waitStatus(t, "orders", "35 processed, no lag", func(p pipelineOut) bool {
			return p.Status.State == "running" && p.Status.Processed == 35 && p.Status.Lag == 0
		})
	})

	t.Run("update", func(t *testing.T) {
		var p pipelineOut
		decodeStrict(t, b.ok(t, "pipeline", "update", "orders", "--step", "upper", "--json"), &p)
		if p.Revision != 4 || len(p.Steps) != 1 || p.Steps[0].Plugin != "upper" {
			t.Errorf("update --json = %+v, want revision 4 with the one step upper", p)
		}
		b.waitStatus(t, "orders", "revision 4 running", func(p pipelineOut) bool {
			return p.Status.Revision == 4 && p.Status.State == "running"
		})
		b.publish(t, 5) // 35..39: 37 is bad, and passes now
		b.waitStatus(t, "orders", "40 processed", func(p pipelineOut) bool { return p.Status.Processed == 40 })
		values := b.sink(t, 37)
		if got := values[32:]; fmt.Sprint(got) != "[ORDER-35 ORDER-36 BAD-37 ORDER-38 ORDER-39]" {
			t.Errorf("sink ends %q, want the messages after the update through upper only", got)
		}
		if p := b.info(t, "orders"); p.Status.Errors != 3 {
			t.Errorf("%d errors after the update, want still 3", p.Status.Errors)
		}
	})

	t.Run("another owner", func(t *testing.T) {
		b.ok(t, "pipeline", "create", "mirror", "--owner", "acme", "--from", "ORDERS", "--step", "identity", "--to", "acme.out")
		if out := b.ok(t, "pipeline", "ls"); strings.Contains(out, "mirror") {
			t.Errorf("ls of anon lists acme's pipeline:\n%s", out)
		}
		if out := b.ok(t, "pipeline", "ls", "--owner", "acme"); !strings.Contains(out, "\nmirror ") {
			t.Errorf("ls --owner acme does not list mirror:\n%s", out)
		}
		r := b.run(t, "pipeline", "info", "mirror")
		if r.code != ExitRuntime || r.stderr != "dataflare: no pipeline mirror (see 'dataflare pipeline ls')\n" {
			t.Errorf("info of another owner's pipeline: exit %d, stderr %q", r.code, r.stderr)
		}
		if out := b.ok(t, "pipeline", "rm", "mirror", "--owner", "acme"); out != "removed pipeline mirror of owner acme\n" {
			t.Errorf("rm --owner acme printed %q", out)
		}
	})

	t.Run("rm", func(t *testing.T) {
		if out := b.ok(t, "pipeline", "rm", "orders"); out != "removed pipeline orders\n" {
			t.Errorf("rm printed %q, want %q", out, "removed pipeline orders\n")
		}
		for _, args := range [][]string{{"info", "orders"}, {"rm", "orders"}, {"pause", "orders"}} {
			r := b.run(t, append([]string{"pipeline"}, args...)...)
			if want := "dataflare: no pipeline orders (see 'dataflare pipeline ls')\n"; r.code != ExitRuntime || r.stderr != want || r.stdout != "" {
				t.Errorf("%v of a removed pipeline: exit %d, stdout %q, stderr %q; want 1 and %q", args, r.code, r.stdout, r.stderr, want)
			}
		}
		if out := b.ok(t, "pipeline", "ls"); !strings.HasPrefix(out, "no pipelines; ") {
			t.Errorf("ls after rm printed %q", out)
		}
		if out := b.ok(t, "pipeline", "ls", "--json"); out != "[]\n" {
			t.Errorf("ls --json after rm printed %q, want []", out)
		}
	})
}

// Bad command lines exit 2, and what the fleet refuses exits 1, each with
// one line naming the problem.
func TestPipelineErrors(t *testing.T) {
	b := newPipelineBench(t)
	b.ok(t, "pipeline", "create", "taken", "--from", "ORDERS", "--step", "identity", "--to", "enriched.out")
	create := func(args ...string) []string { return append([]string{"pipeline", "create"}, args...) }
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --from", create("p", "--step", "upper", "--to", "x.out"), ExitUsage, "needs --from STREAM"},
		{"no --to", create("p", "--from", "ORDERS", "--step", "upper"), ExitUsage, "needs --to SUBJECT"},
		{"no --step", create("p", "--from", "ORDERS", "--to", "x.out"), ExitUsage, "needs at least one --step"},
		{"bad --step", create("p", "--from", "ORDERS", "--step", "up per", "--to", "x.out"), ExitUsage, `--step "up per": want PLUGIN[@VERSION][:k=v[,k=v]...]`},
		{"bad step config", create("p", "--from", "ORDERS", "--step", "fail:match", "--to", "x.out"), ExitUsage, `--step "fail:match"`},
		{"a subject for a stream", create("p", "--from", "orders.>", "--step", "upper", "--to", "x.out"), ExitUsage, "a stream name, not a subject"},
		{"a wildcard sink", create("p", "--from", "ORDERS", "--step", "upper", "--to", "x.*"), ExitUsage, `--to "x.*"`},
		{"no name", create("--from", "ORDERS", "--step", "upper", "--to", "x.out"), ExitUsage, "takes 1 argument(s), got 0"},
		{"bad name", create("a.b", "--from", "ORDERS", "--step", "upper", "--to", "x.out"), ExitUsage, `pipeline name "a.b"`},
		{"bad owner", []string{"pipeline", "ls", "--owner", "a b"}, ExitUsage, `--owner "a b"`},
		{"update without steps", []string{"pipeline", "update", "taken"}, ExitUsage, "needs at least one --step"},
		{"no subcommand", []string{"pipeline"}, ExitUsage, "pipeline needs a subcommand"},
		{"unknown subcommand", []string{"pipeline", "frob"}, ExitUsage, `unknown command "frob"`},
		{"unknown plugin", create("p", "--from", "ORDERS", "--step", "upper", "--step", "nope", "--to", "x.out"), ExitRuntime, "pipeline p: step 2: unknown plugin nope"},
		{"missing stream", create("p", "--from", "NOSUCH", "--step", "upper", "--to", "x.out"), ExitRuntime, "pipeline p: no stream NOSUCH"},
		{"a fleet stream", create("p", "--from", "DF_DEAD", "--step", "upper", "--to", "x.out"), ExitRuntime, "stream DF_DEAD is the fleet's or the server's own, not a source"},
		{"a sink the source captures", create("p", "--from", "ORDERS", "--step", "upper", "--to", "orders.out"), ExitRuntime, "it would feed itself"},
		{"a name taken", create("taken", "--from", "ORDERS", "--step", "upper", "--to", "x.out"), ExitRuntime, "pipeline taken exists"},
		{"update to an unknown plugin", []string{"pipeline", "update", "taken", "--step", "nope"}, ExitRuntime, "pipeline taken: step 1: unknown plugin nope"},
		{"info of nothing", []string{"pipeline", "info", "nothing"}, ExitRuntime, "no pipeline nothing (see 'dataflare pipeline ls')"},
		{"rm of nothing, another owner", []string{"pipeline", "rm", "taken", "--owner", "acme"}, ExitRuntime, "no pipeline taken of owner acme (see 'dataflare pipeline ls --owner acme')"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.run(t, tt.args...)
			wantFailure(t, r, tt.code, tt.want)
		})
	}
	// Nothing refused was created.
	var list []pipelineOut
	decodeStrict(t, b.ok(t, "pipeline", "ls", "--json"), &list)
	if len(list) != 1 || list[0].Name != "taken" || list[0].Steps[0].Plugin != "identity" || list[0].Revision != 1 {
		t.Errorf("pipelines after the errors: %+v, want only taken, unchanged", list)
	}
}

func TestPipelineHelp(t *testing.T) {
	for _, sub := range []string{"create", "ls", "info", "pause", "resume", "update", "rm"} {
		r := run(t, "", "pipeline", sub, "--help")
		if r.code != ExitOK || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Examples:\n  dataflare pipeline "+sub) {
			t.Errorf("pipeline %s --help: exit %d, stdout %q; want usage and an example", sub, r.code, r.stdout)
		}
	}
	r := run(t, "", "--help")
	if !strings.Contains(r.stdout, "\n  pipeline ") {
		t.Errorf("--help does not list pipeline:\n%s", r.stdout)
	}
}

// The state ls and info show, from the definition and the last report;
// and the JSON of a pipeline no coordinator has reported on.
func TestPipelineState(t *testing.T) {
	long := "error: pipeline p: no stream ORDERS (it was deleted after the pipeline was created)"
	tests := []struct {
		name   string
		paused bool
		status *client.PipelineStatus
		want   string
	}{
		{"no report", false, nil, "waiting"},
		{"paused, no report", true, nil, "paused"},
		{"running", false, &client.PipelineStatus{State: "running"}, "running"},
		{"paused", true, &client.PipelineStatus{State: "paused"}, "paused"},
		{"pause not yet seen", true, &client.PipelineStatus{State: "running"}, "pausing"},
		{"resume not yet seen", false, &client.PipelineStatus{State: "paused"}, "resuming"},
		{"an error", false, &client.PipelineStatus{State: long}, long},
		{"not running", true, &client.PipelineStatus{State: "not running (no coordinator has reported since …)"}, "not running (no coordinator has reported since …)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := client.Pipeline{Name: "p", Paused: tt.paused, Status: tt.status}
			if got := pipelineState(&pl); got != tt.want {
				t.Errorf("state %q, want %q", got, tt.want)
			}
		})
	}
	if got, want := shorten(long, 40), "error: pipeline p: no stream ORDERS (it…"; got != want {
		t.Errorf("shorten = %q, want %q", got, want)
	}

	pl := client.Pipeline{Name: "w", Owner: "anon", Spec: client.PipelineSpec{Source: "S", Filter: "s.>", Sink: "out", Steps: []client.Step{{Plugin: "identity"}}}}
	var buf bytes.Buffer
	if err := writeJSON(&buf, pipelineJSONOf(&pl)); err != nil {
		t.Fatal(err)
	}
	var p pipelineOut
	decodeStrict(t, buf.String(), &p)
	if p.Status != nil || p.Steps[0].Config == nil || p.Filter != "s.>" {
		t.Errorf("JSON %s: want the filter, an empty config object and a null status", buf.String())
	}
	buf.Reset()
	(&pipelineCtl{owner: "anon"}).printList(&buf, []client.Pipeline{pl})
	if !regexp.MustCompile(`\nw +waiting +S \(s\.>\) +out +identity +- +- +- +-\n$`).MatchString(buf.String()) {
		t.Errorf("ls printed:\n%s\nwant w waiting with no counts", buf.String())
	}
}

// Without a coordinator, or without NATS, every pipeline command fails at
// once with one line saying so.
func TestPipelineNoFleet(t *testing.T) {
	srv := natstest.RunServer(t)
	commands := [][]string{{"ls"}, {"info", "p"}, {"create", "p", "--from", "S", "--step", "upper", "--to", "x"},
		{"pause", "p"}, {"resume", "p"}, {"update", "p", "--step", "upper"}, {"rm", "p"}}
	for _, args := range commands {
		t.Run(args[0], func(t *testing.T) {
			r := run(t, "", append([]string{"--nats", srv.ClientURL(), "pipeline"}, args...)...)
			if r.code != ExitRuntime || r.stderr != "dataflare: "+errNoCoordinator.Error()+"\n" {
				t.Errorf("no coordinator: exit %d, stderr %q; want 1 and one line saying no coordinator answered", r.code, r.stderr)
			}
			r = run(t, "", append([]string{"--nats", "nats://127.0.0.1:1", "pipeline"}, args...)...)
			if want := "dataflare: cannot reach NATS at nats://127.0.0.1:1: "; r.code != ExitRuntime || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("no NATS: exit %d, stderr %q; want 1 and one line starting %q", r.code, r.stderr, want)
			}
		})
	}
}
