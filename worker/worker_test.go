package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/pool"
	"github.com/dataflare/dataflare/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

func TestNewValidates(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	for _, cfg := range []worker.Config{
		{ID: "has space"},
		{ID: "dots.are.subjects"},
		{Parallel: -1},
		{Heartbeat: time.Microsecond},
		{FetchWait: time.Microsecond},
	} {
		if _, err := worker.New(nc, cfg); !errors.Is(err, worker.ErrInvalidConfig) {
			t.Errorf("New(%+v): err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := worker.New(nil, worker.Config{}); !errors.Is(err, worker.ErrInvalidConfig) {
		t.Errorf("nil conn: err = %v", err)
	}
	w, err := worker.New(nc, worker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.ValidName(w.ID()) {
		t.Errorf("default id %q is not a valid name", w.ID())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled context: %v", err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, worker.ErrClosed) {
		t.Errorf("second Run: err = %v, want ErrClosed", err)
	}
}

// TestDrainFinishesRunningBatches: a worker told to stop while it runs
// batches stops pulling, finishes them and publishes their results; the
// batches are not delivered a second time.
func TestDrainFinishesRunningBatches(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Parallel: 2}})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 4 batches of 10 records × 40 ms: 400 ms each.
	recs := make([]plugin.Record, 40)
	for i := range recs {
		recs[i].Value = []byte{byte('a' + i%26)}
	}
	job, err := c.Submit(ctx, "delay", client.Records(recs), client.WithBatchSize(10), client.WithConfig(plugin.Config{"ms": "40"}))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the worker runs two batches, then stop it.
	err = poll.Until(context.Background(), 10*time.Second, func() error {
		st, err := c.SystemStatus(ctx)
		if err != nil {
			return err
		}
		if len(st.Workers) != 1 || st.Workers[0].InFlight != 2 {
			return errors.New("worker not busy yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Stop("worker-1"); err != nil {
		t.Fatalf("stop: %v", err)
	}
	f.StartWorker()
	n := 0
	for _, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(recs) {
		t.Fatalf("got %d results, want %d", n, len(recs))
	}
	js, _ := jetstream.New(f.Connect())
	redelivered, err := natstest.Redelivered(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if redelivered != 0 {
		t.Errorf("%d batches were redelivered: the drained worker did not finish its own", redelivered)
	}
}

// inflate returns, for each record, a value of the size its value names
// (in KiB).
type inflate struct{}

func (inflate) Info() plugin.Info {
	return plugin.Info{Name: "inflate", Version: "1", APIVersion: plugin.APIVersion}
}
func (inflate) ProcessBatch(_ context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	out := make([]plugin.Result, len(recs))
	for i, r := range recs {
		var kib int
		for _, c := range r.Value {
			kib = kib*10 + int(c-'0')
		}
		out[i].Value = bytes.Repeat([]byte{'z'}, kib<<10)
	}
	return &plugin.BatchResult{Results: out}, nil
}

// TestResultsOverMessageLimit: results bigger than a message go in several
// messages; a single result over the limit becomes that record's error.
func TestResultsOverMessageLimit(t *testing.T) {
	plugins := builtin.All()
	plugins["inflate"] = inflate{}
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Plugins: plugins}})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 3 MiB each: 12 MiB of results for an 8 MiB message limit, and one
	// of 9 MiB that fits no message.
	sizes := []string{"3072", "3072", "9216", "3072", "3072"}
	var recs []plugin.Record
	for _, s := range sizes {
		recs = append(recs, plugin.Record{Value: []byte(s)})
	}
	res, err := c.ProcessBatch(ctx, "inflate", nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Results {
		if i == 2 {
			if !errors.Is(r.Err, plugin.ErrTooLarge) {
				t.Errorf("record 2: err = %v, want ErrTooLarge", r.Err)
			}
			continue
		}
		if r.Err != nil || len(r.Value) != 3<<20 {
			t.Errorf("record %d: %d bytes, err %v", i, len(r.Value), r.Err)
		}
	}
}

// TestHeartbeatReportsWork: heartbeats carry the plugins, their metrics
// and cost model, and the pool.
func TestHeartbeatReportsWork(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]plugin.Record, 1000)
	for i := range recs {
		recs[i].Value = []byte("hello")
	}
	if _, err := c.ProcessBatch(ctx, "upper", nil, recs); err != nil {
		t.Fatal(err)
	}
	nc := f.Connect()
	beats := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(proto.HeartbeatSubject("worker-1"), beats)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	deadline := time.After(10 * time.Second)
	for {
		var hb proto.Heartbeat
		select {
		case m := <-beats:
			if err := json.Unmarshal(m.Data, &hb); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no heartbeat with the job's records")
		}
		var upper *proto.PluginBeat
		for i := range hb.Plugins {
			if hb.Plugins[i].Name == "upper" {
				upper = &hb.Plugins[i]
			}
		}
		if upper == nil || upper.Metrics.TotalProcessed < uint64(len(recs)) {
			continue
		}
		if !upper.Native || upper.Estimate.Samples == 0 || hb.Parallel < 1 || len(hb.Pool.Tiers) != pool.NumTiers || hb.Started.IsZero() {
			t.Errorf("heartbeat = %+v", hb)
		}
		break
	}
	st, err := c.SystemStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workers) != 1 || st.Workers[0].Health != fleet.Healthy {
		t.Errorf("status workers = %+v", st.Workers)
	}
}

// TestBadBatchesRemovedUnrun: clients publish batches to DF_BATCHES
// themselves, so the worker is the gate. Undecodable bytes, an empty batch,
// and batches whose subject is not the one of the job and plugin they name
// are removed unrun; a good batch behind them runs, and only its results
// are stored.
func TestBadBatchesRemovedUnrun(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc := f.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(proto.JobCreate{Plugin: "upper"})
	m, err := nc.RequestWithContext(ctx, proto.JobCreateSubject(proto.DefaultOwner), req)
	if err != nil {
		t.Fatal(err)
	}
	job, err := proto.DecodeReply[proto.Job](m.Data)
	if err != nil {
		t.Fatal(err)
	}
	other := proto.JobID(proto.DefaultOwner, "other")
	good := batch.Batch{Job: job.ID, Plugin: "upper", Records: []plugin.Record{{Value: []byte("x")}}}
	enc := func(change func(*batch.Batch)) []byte {
		b := good
		change(&b)
		data, err := batch.AppendBatch(nil, &b)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for i, tc := range []struct {
		name, subject string
		data          []byte
	}{
		{"malformed", proto.BatchSubject(job.ID, fleet.Normal, "upper"), []byte("DFB\x01garbage")},
		{"empty", proto.BatchSubject(job.ID, fleet.Normal, "upper"), enc(func(b *batch.Batch) { b.Records = nil })},
		{"another job's subject", proto.BatchSubject(other, fleet.Normal, "upper"), enc(func(*batch.Batch) {})},
		{"another job in the batch", proto.BatchSubject(job.ID, fleet.Normal, "upper"), enc(func(b *batch.Batch) { b.Job = other })},
		{"another plugin's subject", proto.BatchSubject(job.ID, fleet.Normal, "identity"), enc(func(*batch.Batch) {})},
		{"good", proto.BatchSubject(job.ID, fleet.Normal, "upper"), enc(func(*batch.Batch) {})},
	} {
		msg := &nats.Msg{Subject: tc.subject, Data: tc.data, Header: nats.Header{}}
		msg.Header.Set(proto.HeaderMsgID, fmt.Sprintf("bad-batches-%d", i))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
	}
	err = poll.Until(context.Background(), 10*time.Second, func() error { return natstest.BatchesDrained(ctx, js) })
	if err != nil {
		t.Fatal(err)
	}
	results, err := js.Stream(ctx, proto.ResultStream(proto.JobOwner(job.ID)))
	if err != nil {
		t.Fatal(err)
	}
	// The good batch's result is stored before its batch is acknowledged,
	// but the stream's subject counts may lag the drained consumer: poll.
	want := map[string]uint64{proto.ResultSubject(job.ID): 1}
	var diff string
	err = poll.Until(context.Background(), 10*time.Second, func() error {
		info, err := results.Info(ctx, jetstream.WithSubjectFilter("df.result.>"))
		if err != nil {
			return err
		}
		if diff = cmp.Diff(want, info.State.Subjects); diff != "" {
			return errors.New("subjects differ")
		}
		return nil
	})
	if err != nil {
		t.Errorf("result messages by subject (-want +got):\n%s", diff)
	}
}

// killer is a plugin that stands for one that kills its worker: on a batch
// holding the record "x" it tells the test (which kills the worker) and
// hangs until the worker stops. Other records are upper-cased.
type killer struct{ hit chan<- struct{} }

func (killer) Info() plugin.Info { return plugin.Info{Name: "killer", Version: "1.0.0"} }

func (k killer) ProcessBatch(ctx context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	out := make([]plugin.Result, len(recs))
	for i, r := range recs {
		if string(r.Value) == "x" {
			k.hit <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		out[i] = plugin.Value(bytes.ToUpper(r.Value))
	}
	return &plugin.BatchResult{Results: out}, nil
}

// TestBatchThatKillsItsWorkersIsSplit: a batch whose worker dies every
// time it runs (the test kills it) runs twice as any batch, then MaxDeliver
// times alone on its worker; the worker that gets it once more splits it
// unrun, down to the record at fault, which gets a poison error and a dead
// letter; every other record its result, and no dead letter, though the
// worker runs two batches at once (and the halves of a split batch die
// beside each other unless they run alone).
func TestBatchThatKillsItsWorkersIsSplit(t *testing.T) {
	hit := make(chan struct{}, 100) // a worker being killed never waits on it
	plugins := builtin.All()
	plugins["killer"] = killer{hit: hit}
	topo := proto.Topology{AckWait: 300 * time.Millisecond, MaxDeliver: 2}
	f := localtest.Start(t, local.Config{Coordinator: coordinator.Config{Topology: topo},
		Worker: worker.Config{Plugins: plugins, DrainTimeout: 10 * time.Millisecond, Parallel: 2}})
	current := f.StartWorker()
	f.WaitForWorkers(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := f.Client().Submit(ctx, "killer", client.Records([]plugin.Record{
		{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}, {Value: []byte("x")}}), client.WithBatchSize(4))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	// Kills the worker at every run of "x". Stops when the job is read.
	go func() {
		kills := 0
		for {
			select {
			case <-hit:
				f.Kill(current)
				current = f.StartWorker()
				kills++
			case <-ctx.Done():
				done <- kills
				return
			}
		}
	}()
	var got []string
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case errors.Is(out.Err, plugin.ErrPoison):
			got = append(got, "poison")
		case out.Err != nil:
			got = append(got, out.Err.Error())
		default:
			got = append(got, string(out.Value))
		}
	}
	cancel()
	kills := <-done
	if diff := cmp.Diff([]string{"A", "B", "C", "poison"}, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	// [a b c x] twice beside others and MaxDeliver times alone, then
	// [c x] and [x] MaxDeliver times alone each.
	if limit := 2 + 3*topo.MaxDeliver; kills < 3 || kills > limit {
		t.Errorf("%d kills, want 3 to %d", kills, limit)
	}
	js, _ := jetstream.New(f.Connect())
	dead, err := js.Stream(context.Background(), proto.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	// The record at fault has its dead letter, and no other record has
	// one.
	cons, err := dead.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{proto.DeadSubject(job.ID())}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		var dl fleet.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Index == 3 && string(dl.Value) == "x" && dl.Attempts == topo.MaxDeliver {
			found = true
			continue
		}
		t.Errorf("dead letter of a record not at fault: index %d value %q attempts %d", dl.Index, dl.Value, dl.Attempts)
	}
	if !found {
		t.Errorf("no dead letter for record 3 \"x\" after %d attempts", topo.MaxDeliver)
	}
}

// TestLeaseKeepsLongBatches: a batch that runs three times AckWait is
// kept alive by lease renewals and delivered once; batches that settle
// within a quarter of AckWait cost no renewal at all.
func TestLeaseKeepsLongBatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	// A spare slot takes a batch again as soon as JetStream redelivers it.
	cfg := local.Config{Workers: 1, Worker: worker.Config{Parallel: 3}, Registerer: reg}
	cfg.Coordinator.Topology.AckWait = 500 * time.Millisecond
	f := localtest.Start(t, cfg)
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(records, ms int) {
		t.Helper()
		recs := make([]plugin.Record, records)
		for i := range recs {
			recs[i].Value = []byte{'a'}
		}
		job, err := c.Submit(ctx, "delay", client.Records(recs), client.WithBatchSize(10), client.WithConfig(plugin.Config{"ms": strconv.Itoa(ms)}))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, err := range job.Results() {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != records {
			t.Fatalf("got %d results, want %d", n, records)
		}
	}
	counter := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		sum := 0.0
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	run(40, 2) // 4 batches of 20 ms
	if n := counter("dataflare_lease_renewals_total"); n != 0 {
		t.Errorf("%v renewals for batches of 20 ms with AckWait 500 ms, want none", n)
	}
	run(20, 150) // 2 batches of 1.5 s, side by side
	if n := counter("dataflare_lease_renewals_total"); n < 4 {
		t.Errorf("%v renewals for two batches of 1.5 s with AckWait 500 ms, want at least 4", n)
	}
	if n := counter("dataflare_redeliveries_total"); n != 0 {
		t.Errorf("%v batches delivered again: their lease lapsed while they ran", n)
	}
}
