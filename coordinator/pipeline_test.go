package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
)

// pipelineFixture is a fleet with a source stream "orders" (orders.>) and
// a sink stream "enriched" (enriched.out).
type pipelineFixture struct {
	f  *localtest.Fleet
	js jetstream.JetStream
	c  *client.Client
}

func newPipelineFixture(t *testing.T, workers int) *pipelineFixture {
	t.Helper()
	f := localtest.Start(t, local.Config{Workers: workers})
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, sc := range []jetstream.StreamConfig{
		{Name: "orders", Subjects: []string{"orders.>"}, Storage: jetstream.MemoryStorage},
		{Name: "enriched", Subjects: []string{"enriched.out"}, Storage: jetstream.MemoryStorage, Duplicates: 10 * time.Minute},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	return &pipelineFixture{f: f, js: js, c: f.Client()}
}

// publish puts messages [from, to) on the source: "order-<i>", every
// tenth one "bad", on orders.<i%3>, with a header.
func (p *pipelineFixture) publish(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		v := "order-" + strconv.Itoa(i)
		if i%10 == 7 {
			v = "bad-" + strconv.Itoa(i)
		}
		m := jetstreamMsg("orders."+strconv.Itoa(i%3), v, strconv.Itoa(i))
		if _, err := p.js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("source messages not published")
	}
}

// sink returns the sink's messages, in order.
func (p *pipelineFixture) sink(t *testing.T, want int) []sinkMsg {
	t.Helper()
	ctx := context.Background()
	s, err := p.js.Stream(ctx, "enriched")
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 60*time.Second, func() error {
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if int(info.State.Msgs) < want {
			return fmt.Errorf("the sink holds %d messages, want %d", info.State.Msgs, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []sinkMsg
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			break
		}
		out = append(out, sinkMsg{value: string(m.Data()), seq: m.Headers().Get(coordinator.HeaderSourceSeq), order: m.Headers().Get("Order")})
	}
	return out
}

type sinkMsg struct{ value, seq, order string }

// check holds the sink to the source: for every source message i < n, in
// order, exactly one sink message (upper-cased, or shout's "!" appended
// from messages from on), except the bad ones.
func check(t *testing.T, got []sinkMsg, n, from int) {
	t.Helper()
	j := 0
	for i := 0; i < n; i++ {
		if i%10 == 7 {
			continue
		}
		want := "ORDER-" + strconv.Itoa(i)
		if i >= from {
			want = "order-" + strconv.Itoa(i)
		}
		if j >= len(got) {
			t.Fatalf("the sink ends at message %d; source message %d (%q) is missing", j, i, want)
		}
		if got[j].value != want || got[j].order != strconv.Itoa(i) || got[j].seq != strconv.Itoa(i+1) {
			t.Fatalf("sink message %d = %+v, want %q from source message %d (seq %d)", j, got[j], want, i, i+1)
		}
		j++
	}
	if j != len(got) {
		t.Fatalf("the sink holds %d messages, want %d: %d unexpected", len(got), j, len(got)-j)
	}
}

// A pipeline reads its source from the start, runs its steps, and puts
// exactly one message per surviving source message in the sink, in
// source order, with the source's headers; errors become dead letters
// naming their step. An update switches steps without losing or
// repeating a message; pause stops it, resume goes on where it stopped.
func TestPipeline(t *testing.T) {
	p := newPipelineFixture(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p.publish(t, 0, 500) // before the pipeline: it reads from the start
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}},
		{Plugin: "upper"},
	}}
	if _, err := p.c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatal(err)
	}
	p.publish(t, 500, 1000) // while it runs
	check(t, p.sink(t, 900), 1000, 1000)

	// The errors are dead letters that name the failing step.
	dead, err := p.js.Stream(ctx, proto.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dead.Info(ctx)
	if err != nil || info.State.Msgs != 100 {
		t.Errorf("DF_DEAD holds %v entries (%v), want 100", info.State.Msgs, err)
	}

	// Update: new steps for the messages after the batches in flight.
	if _, err := p.c.UpdatePipeline(ctx, "enrich", []client.Step{{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "identity"}}); err != nil {
		t.Fatal(err)
	}
	// Wait for the update to take: a message after it comes out as is.
	err = poll.Until(ctx, 30*time.Second, func() error {
		pl, err := p.c.PipelineInfo(ctx, "enrich")
		if err != nil || pl.Status == nil || pl.Status.Revision != 2 {
			return fmt.Errorf("revision not running yet: %+v, %v", pl, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.publish(t, 1000, 1200)
	check(t, p.sink(t, 1080), 1200, 1000)

	// Pause, publish, resume: nothing moves while paused.
	if _, err := p.c.PausePipeline(ctx, "enrich"); err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 30*time.Second, func() error {
		pl, err := p.c.PipelineInfo(ctx, "enrich")
		if err != nil || pl.Status == nil || pl.Status.State != "paused" {
			return fmt.Errorf("not paused yet: %+v, %v", pl, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.publish(t, 1200, 1300)
	pl, err := p.c.PipelineInfo(ctx, "enrich")
	if err != nil || !pl.Paused {
		t.Fatalf("info of the paused pipeline: %+v, %v", pl, err)
	}
	if _, err := p.c.ResumePipeline(ctx, "enrich"); err != nil {
		t.Fatal(err)
	}
	check(t, p.sink(t, 1170), 1300, 1000)

	list, err := p.c.Pipelines(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "enrich" {
		t.Errorf("Pipelines = %+v, %v", list, err)
	}
	if err := p.c.RemovePipeline(ctx, "enrich"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.c.PipelineInfo(ctx, "enrich"); !errors.Is(err, client.ErrJobNotFound) {
		t.Errorf("info after rm: %v, want not found", err)
	}

	// The same name again, into the same sink, within its duplicate
	// window: a new pipeline reads the source from its start, and its
	// results are new ones, not duplicates of the old pipeline's.
	if _, err := p.c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatal(err)
	}
	again := p.sink(t, 1170+1170)
	check(t, again[1170:], 1300, 1300)
}

// A pipeline's results do not stay in its owner's result stream once its
// runner has read them: a pipeline runs for ever, and its results would
// otherwise fill the stream (4 GiB by default, a day's retention), after
// which no result of the owner is stored.
func TestPipelineResultsPurged(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{{Plugin: "upper"}}}
	if _, err := p.c.CreatePipeline(ctx, "purged", spec); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	p.publish(t, 0, n)
	if got := len(p.sink(t, n)); got != n {
		t.Fatalf("the sink holds %d messages, want %d", got, n)
	}
	results, err := p.js.Stream(ctx, proto.ResultStream(proto.DefaultOwner))
	if err != nil {
		t.Fatal(err)
	}
	var held uint64
	err = poll.Until(ctx, 30*time.Second, func() error {
		info, err := results.Info(ctx)
		if err != nil {
			return err
		}
		if held = info.State.Msgs; held != 0 {
			return fmt.Errorf("the result stream still holds %d messages (%d bytes)", held, info.State.Bytes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pipeline goes on after a purge.
	p.publish(t, n, n+500)
	if got := len(p.sink(t, n+500)); got != n+500 {
		t.Fatalf("the sink holds %d messages, want %d", got, n+500)
	}
}

// TestPipelineAcksInRuns: a pipeline acknowledges its source messages a
// run at a time (one acknowledgement for many: its consumer is AckAll), and
// every one of them once nothing is on its way.
func TestPipelineAcksInRuns(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc := p.f.Connect()
	consumer := coordinator.PipelineConsumer(proto.DefaultOwner, "runs")
	acks, err := nc.SubscribeSync("$JS.ACK.orders." + consumer + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	p.publish(t, 0, n)
	// Failed messages (every tenth) are dead letters: settled as well.
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"},
	}}
	if _, err := p.c.CreatePipeline(ctx, "runs", spec); err != nil {
		t.Fatal(err)
	}
	check(t, p.sink(t, n-n/10), n, n)
	cons, err := p.js.Consumer(ctx, "orders", consumer)
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 20*time.Second, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream != n || info.NumAckPending != 0 {
			return fmt.Errorf("source acknowledged up to %d with %d pending, want %d and 0", info.AckFloor.Stream, info.NumAckPending, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sent, _, err := acks.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if sent == 0 || sent > n/16 {
		t.Fatalf("%d acknowledgements for %d source messages, want between 1 and %d", sent, n, n/16)
	}
	t.Logf("%d acknowledgements for %d source messages", sent, n)
}

// TestPipelineTakenWhenDefined runs the coordinator's rounds an hour
// apart: a pipeline created, updated, paused and resumed is taken, changed,
// stopped and started again by the watch on its definition alone, at once.
func TestPipelineTakenWhenDefined(t *testing.T) {
	defer coordinator.SetPipelineRounds(time.Hour)()
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p.publish(t, 0, 100)
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"},
	}}
	if _, err := p.c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatal(err)
	}
	check(t, p.sink(t, 90), 100, 100)
	if _, err := p.c.UpdatePipeline(ctx, "enrich", []client.Step{{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "identity"}}); err != nil {
		t.Fatal(err)
	}
	err := poll.Until(ctx, 20*time.Second, func() error {
		pl, err := p.c.PipelineInfo(ctx, "enrich")
		if err != nil || pl.Status == nil || pl.Status.Revision != 2 {
			return fmt.Errorf("revision 2 not running: %+v, %v", pl, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.publish(t, 100, 200)
	check(t, p.sink(t, 180), 200, 100)
}

// A sink subject that no stream captures gets the results as plain
// messages, in order, to whoever listens.
func TestPipelineSinkWithoutStream(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := p.f.Connect().SubscribeSync("loose.out")
	if err != nil {
		t.Fatal(err)
	}
	p.publish(t, 0, 100)
	spec := client.PipelineSpec{Source: "orders", Sink: "loose.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"},
	}}
	if _, err := p.c.CreatePipeline(ctx, "loose", spec); err != nil {
		t.Fatal(err)
	}
	var got []sinkMsg
	for len(got) < 90 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("after %d plain messages: %v", len(got), err)
		}
		if m.Header.Get(proto.HeaderMsgID) != "" {
			t.Fatalf("a plain message with a message id: %v", m.Header)
		}
		got = append(got, sinkMsg{value: string(m.Data), seq: m.Header.Get(coordinator.HeaderSourceSeq), order: m.Header.Get("Order")})
	}
	check(t, got, 100, 100)
}

// Pipelines lists the client's owner's pipelines; AllPipelines every
// owner's, by owner and name.
func TestAllPipelines(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, bob := p.f.Client(client.WithOwner("alice")), p.f.Client(client.WithOwner("bob"))
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{{Plugin: "upper"}}}
	for _, c := range []struct {
		cl   *client.Client
		name string
	}{{bob, "b1"}, {alice, "a1"}, {bob, "b0"}} {
		if _, err := c.cl.CreatePipeline(ctx, c.name, spec); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ps []client.Pipeline, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.Owner+"/"+p.Name)
		}
		return strings.Join(out, " ")
	}
	if got := names(alice.Pipelines(ctx)); got != "alice/a1" {
		t.Errorf("alice's pipelines: %q", got)
	}
	if got := names(alice.AllPipelines(ctx)); got != "alice/a1 bob/b0 bob/b1" {
		t.Errorf("every owner's pipelines: %q", got)
	}
}

// Definitions that cannot work are refused with a clear error.
func TestPipelineRefused(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx := context.Background()
	// bob's results exist once bob ran a job.
	if _, err := p.f.Client(client.WithOwner("bob")).ProcessBatch(ctx, "upper", nil, []plugin.Record{{Value: []byte("secret")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.js.CreateStream(ctx, jetstream.StreamConfig{Name: "jobcopy", Mirror: &jetstream.StreamSource{Name: "KV_DF_JOBS"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		spec client.PipelineSpec
		want string
	}{
		{"no source stream", client.PipelineSpec{Source: "nope", Sink: "out", Steps: []client.Step{{Plugin: "upper"}}}, "no stream nope"},
		{"unknown plugin", client.PipelineSpec{Source: "orders", Sink: "out", Steps: []client.Step{{Plugin: "nope"}}}, "step 1"},
		{"no step", client.PipelineSpec{Source: "orders", Sink: "out"}, "no step"},
		{"wildcard sink", client.PipelineSpec{Source: "orders", Sink: "out.*", Steps: []client.Step{{Plugin: "upper"}}}, "not a subject"},
		{"sink feeds the source", client.PipelineSpec{Source: "orders", Sink: "orders.x", Steps: []client.Step{{Plugin: "upper"}}}, "feed itself"},
		{"fleet namespace", client.PipelineSpec{Source: "orders", Sink: "df.result.x", Steps: []client.Step{{Plugin: "upper"}}}, "namespace"},
		{"an inbox", client.PipelineSpec{Source: "orders", Sink: "_INBOX.abc", Steps: []client.Step{{Plugin: "upper"}}}, "inbox"},
		// Another owner's results, the job records, the fleet's dead
		// letters: read with the coordinator's rights, they would leak.
		{"another owner's results", client.PipelineSpec{Source: "DF_RESULTS_bob", Sink: "out", Steps: []client.Step{{Plugin: "upper"}}}, "fleet's or the server's own"},
		{"the job records", client.PipelineSpec{Source: "KV_DF_JOBS", Sink: "out", Steps: []client.Step{{Plugin: "upper"}}}, "fleet's or the server's own"},
		{"the dead letters", client.PipelineSpec{Source: "DF_DEAD", Sink: "out", Steps: []client.Step{{Plugin: "upper"}}}, "fleet's or the server's own"},
		{"a mirror of the job records", client.PipelineSpec{Source: "jobcopy", Sink: "out", Steps: []client.Step{{Plugin: "upper"}}}, "copies KV_DF_JOBS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.c.CreatePipeline(ctx, "p", tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CreatePipeline = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// jetstreamMsg returns a message on subject with value and an "Order"
// header.
func jetstreamMsg(subject, value, order string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(value)
	m.Header.Set("Order", order)
	return m
}

// The coordinator running a pipeline dies: another takes the pipeline over
// within seconds, and the sink still holds exactly one message per source
// message, in order.
func TestPipelineTakeover(t *testing.T) {
	p := newPipelineFixture(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p.f.StartCoordinator() // a second one, to take over
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"}}}
	if _, err := p.c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatal(err)
	}
	p.publish(t, 0, 2000)
	var holder string
	var seen uint64
	err := poll.Until(ctx, 30*time.Second, func() error {
		pl, err := p.c.PipelineInfo(ctx, "enrich")
		if err != nil || pl.Status == nil || pl.Status.Processed < 300 {
			return fmt.Errorf("not running yet: %v", err)
		}
		holder, seen = pl.Status.Coordinator, pl.Status.Processed
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	p.f.Kill(holder)
	p.publish(t, 2000, 3000)
	got := p.sink(t, 2700)
	took := time.Since(killed)
	check(t, got, 3000, 3000)
	// The new holder counts on from the old one's last report, neither
	// twice what it redoes (not acknowledged when the old one died) nor
	// what the old one settled after its report: every source message
	// once.
	var pl *client.Pipeline
	err = poll.Until(ctx, 30*time.Second, func() error {
		pl, err = p.c.PipelineInfo(ctx, "enrich")
		if err != nil || pl.Status == nil || pl.Status.Coordinator == holder || pl.Status.Processed != 3000 {
			return fmt.Errorf("after the kill, seen %d processed: %+v, %v; want another coordinator counting on to 3,000", seen, pl.Status, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("coordinator %s killed at %d of 3000: the sink complete %v later, run by %s", holder, seen, took.Round(time.Millisecond), pl.Status.Coordinator)
}

// With grants, a coordinator runs only the pipelines they allow: another
// owner, another source or a sink outside the grant is refused at create,
// and a pipeline whose grant is gone when a coordinator takes it over does
// not run there.
func TestPipelineGrants(t *testing.T) {
	grants := []coordinator.PipelineGrant{{Owner: "alice", Source: "orders", Sink: "enriched.>"}}
	f := localtest.Start(t, local.Config{Workers: 1, Coordinator: coordinator.Config{PipelineGrants: grants}})
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{"orders", "payroll"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob := f.Client(client.WithOwner("alice")), f.Client(client.WithOwner("bob"))
	upper := []client.Step{{Plugin: "upper"}}
	for _, tt := range []struct {
		name string
		c    *client.Client
		spec client.PipelineSpec
	}{
		{"another owner", bob, client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: upper}},
		{"another source", alice, client.PipelineSpec{Source: "payroll", Sink: "enriched.out", Steps: upper}},
		{"a sink outside the grant", alice, client.PipelineSpec{Source: "orders", Sink: "billing.out", Steps: upper}},
	} {
		if _, err := tt.c.CreatePipeline(ctx, "p", tt.spec); err == nil || !strings.Contains(err.Error(), "no pipeline grant") {
			t.Errorf("%s: CreatePipeline = %v, want refused for no grant", tt.name, err)
		}
	}
	if _, err := alice.CreatePipeline(ctx, "p", client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: upper}); err != nil {
		t.Fatalf("a granted pipeline: %v", err)
	}
	if _, err := coordinator.ParsePipelineGrant("alice:orders"); err == nil {
		t.Error("ParsePipelineGrant accepted a grant without a sink")
	}
	if g, err := coordinator.ParsePipelineGrant("*:orders:enriched.>"); err != nil || g != (coordinator.PipelineGrant{Owner: "*", Source: "orders", Sink: "enriched.>"}) {
		t.Errorf("ParsePipelineGrant = %+v, %v", g, err)
	}

	// The pipeline, defined, runs on the coordinator that has the grant;
	// one started without it (the only one left) reports why it does not.
	if err := poll.Until(ctx, 30*time.Second, func() error {
		pl, err := alice.PipelineInfo(ctx, "p")
		if err != nil || pl.Status == nil || pl.Status.State != "running" {
			return fmt.Errorf("not running: %+v %v", pl, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const first = "coordinator-1"
	other, err := coordinator.New(f.Connect(), coordinator.Config{ID: "other", Heartbeat: 100 * time.Millisecond,
		Topology:       proto.Topology{AckWait: 2 * time.Second},
		PipelineGrants: []coordinator.PipelineGrant{{Owner: "bob", Source: "*", Sink: ">"}}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- other.Run(runCtx) }()
	defer func() { stop(); <-done }()
	f.Kill(first)
	if err := poll.Until(ctx, 30*time.Second, func() error {
		pl, err := alice.PipelineInfo(ctx, "p")
		if err != nil {
			return err
		}
		if st := pl.Status; st == nil || st.Coordinator == first || !strings.Contains(st.State, "no pipeline grant") {
			return fmt.Errorf("not refused by the new coordinator yet: %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A source message delivered but never read by the runner (here another
// reader takes it from the pipeline's consumer; on a network, a fetch's
// answer lost on the way) would come again only after the consumer's
// AckWait, minutes later and out of order. The runner sees the gap in the
// delivery sequence and reads the source again from its last acknowledged
// message: the sink still holds every message once, in order.
func TestPipelineSourceGap(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"}}}
	if _, err := p.c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatal(err)
	}
	p.publish(t, 0, 100)
	check(t, p.sink(t, 90), 100, 1000)

	// A thief waits on the pipeline's consumer while messages come one
	// at a time, until it has taken one (and never acknowledges it).
	cons, err := p.js.Consumer(ctx, "orders", "df-pipeline-"+proto.DefaultOwner+"-enrich")
	if err != nil {
		t.Fatal(err)
	}
	stolen := make(chan uint64, 1)
	go func() {
		for ctx.Err() == nil {
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				continue
			}
			for m := range batch.Messages() {
				meta, _ := m.Metadata()
				stolen <- meta.Sequence.Stream
				return
			}
		}
	}()
	n := 100
	var seq uint64
	for seq == 0 && n < 600 {
		p.publish(t, n, n+1)
		n++
		select {
		case seq = <-stolen:
		case <-time.After(20 * time.Millisecond):
		}
	}
	if seq == 0 {
		t.Fatal("the thief took none of 500 messages")
	}
	t.Logf("source message %d taken by another reader", seq)
	p.publish(t, n, n+200)
	n += 200
	check(t, p.sink(t, n-n/10), n, 1000)
}

// Another writer on the sink stream breaks the chain of expected last
// message ids the runner publishes its window under: the runner sends the
// refused results again one at a time, then publishes one result at a
// time; the pipeline's messages in the sink are still each source
// message's once, in order.
func TestPipelineSinkWithAnotherWriter(t *testing.T) {
	p := newPipelineFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if _, err := p.js.UpdateStream(ctx, jetstream.StreamConfig{Name: "enriched", Subjects: []string{"enriched.out", "enriched.other"},
		Storage: jetstream.MemoryStorage, Duplicates: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	other := make(chan struct{})
	otherDone := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-other:
				otherDone <- n
				return
			default:
			}
			if _, err := p.js.Publish(ctx, "enriched.other", []byte("noise")); err == nil {
				n++
			}
		}
	}()
	spec := client.PipelineSpec{Source: "orders", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"}}}
	if _, err := p.c.CreatePipeline(ctx, "enrich", spec); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	p.publish(t, 0, n)
	err := poll.Until(ctx, 60*time.Second, func() error {
		pl, err := p.c.PipelineInfo(ctx, "enrich")
		if err != nil || pl.Status == nil || pl.Status.Processed < n {
			return fmt.Errorf("not done: %+v %v", pl, err)
		}
		return nil
	})
	close(other)
	noise := <-otherDone
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.js.Stream(ctx, "enriched")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"enriched.out"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []sinkMsg
	for len(got) < n-n/10 {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("the sink after %d of the pipeline's messages: %v", len(got), err)
		}
		got = append(got, sinkMsg{value: string(m.Data()), seq: m.Headers().Get(coordinator.HeaderSourceSeq), order: m.Headers().Get("Order")})
	}
	t.Logf("%d messages of another writer in the sink meanwhile", noise)
	if noise == 0 {
		t.Fatal("the other writer published nothing: the test tests nothing")
	}
	check(t, got, n, n)
}
