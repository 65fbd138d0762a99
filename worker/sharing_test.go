package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

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
	"github.com/dataflare/dataflare/worker"
)

// openJob submits a job of plugin whose records wait for release (the job
// exists and is open; no batch is sent until then).
func openJob(ctx context.Context, t *testing.T, c *client.Client, name string, recs []plugin.Record, opts ...client.SubmitOption) (*client.Job, chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		select {
		case <-release:
		case <-ctx.Done():
			return
		}
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
	job, err := c.Submit(ctx, name, src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(job.Close)
	return job, release
}

// drained waits until the workers' consumer has taken and settled every
// batch.
func drained(t *testing.T, js jetstream.JetStream, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	if err := poll.Until(ctx, within, func() error { return natstest.BatchesDrained(ctx, js) }); err != nil {
		t.Fatalf("the batch queue did not drain: %v", err)
	}
}

// RELIABILITY row 19: thousands of batches with made-up plugin names,
// digests and jobs are removed unrun and leave no state on the worker: its
// heartbeat still lists the native plugins only and stays small, no result
// is stored for them, and the fleet serves a real job afterwards.
func TestForgedBatchesLeaveNoState(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := f.Client()
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	real, release := openJob(ctx, t, c, "upper", []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}})

	rng := rand.New(rand.NewPCG(1, 2))
	digest := func() string { return fmt.Sprintf("sha256:%064x", rng.Uint64()) }
	const each = 1000
	publish := func(b *batch.Batch) {
		data, err := batch.AppendBatch(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(proto.BatchSubject(b.Job, fleet.Normal, b.Plugin), data); err != nil {
			t.Fatal(err)
		}
	}
	rec := []plugin.Record{{Value: []byte("x")}}
	for i := range each {
		name := "p" + strconv.Itoa(i)
		// A job that does not exist, of a made-up plugin and module.
		publish(&batch.Batch{Job: proto.JobID("anon", proto.NewToken()), Plugin: name, Digest: digest(), Records: rec})
		// The real job, with another plugin than it pinned.
		publish(&batch.Batch{Job: real.ID(), Seq: uint64(1000 + i), Plugin: name, Records: rec})
		// The real job and plugin, with a module it did not pin.
		publish(&batch.Batch{Job: real.ID(), Seq: uint64(2000 + i), Plugin: "upper", Digest: digest(), Records: rec})
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("forged batches not published")
	}
	drained(t, js, 60*time.Second)

	// The worker's heartbeat: the native plugins, nothing more.
	nc := f.Connect()
	beats := make(chan *nats.Msg, 4)
	sub, err := nc.ChanSubscribe(proto.HeartbeatSubject("worker-1"), beats)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m := <-beats
	var hb proto.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range hb.Plugins {
		names = append(names, p.Name)
	}
	if len(hb.Plugins) != len(builtin.All()) || len(m.Data) > 64<<10 {
		t.Errorf("heartbeat of %d bytes lists %d plugins %v, want the %d native ones", len(m.Data), len(hb.Plugins), names, len(builtin.All()))
	}
	t.Logf("after %d forged batches: heartbeat %d bytes, %d plugins", 3*each, len(m.Data), len(hb.Plugins))

	// Nothing was stored for them; the real job runs.
	results, err := js.Stream(ctx, proto.ResultStream(proto.DefaultOwner))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := results.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("DF_RESULTS holds %v messages (%v), want none", info.State.Msgs, err)
	}
	close(release)
	var got []string
	for o, err := range real.Results() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(o.Value))
	}
	if strings.Join(got, ",") != "A,B" {
		t.Errorf("the real job's results = %v, want A, B", got)
	}
}

// RELIABILITY row 20: cancelling jobs whose batches run for a long time
// stops their running batches at once; a new job runs right after.
func TestCancelStopsRunningBatches(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Parallel: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := f.Client()
	slow := plugin.Config{"ms": strconv.Itoa(builtin.MaxDelayMillis)} // a minute per record
	var jobs []*client.Job
	for range 3 {
		job, err := c.Submit(ctx, "delay", client.Records([]plugin.Record{{Value: []byte("x")}}), client.WithConfig(slow))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(job.Close)
		jobs = append(jobs, job)
	}
	// Both slots run a minute-long batch.
	err := poll.Until(ctx, 30*time.Second, func() error {
		st, err := c.SystemStatus(ctx)
		if err != nil {
			return err
		}
		if len(st.Workers) != 1 || st.Workers[0].InFlight != 2 {
			return fmt.Errorf("workers %+v: want one running 2 batches", st.Workers)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, j := range jobs {
		if err := j.Cancel(ctx); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.ProcessRecord(ctx, "upper", nil, plugin.Record{Value: []byte("next")})
	took := time.Since(start)
	if err != nil || string(res.Value) != "NEXT" {
		t.Fatalf("a new job after the cancels: %v, %v", res, err)
	}
	// A minute if the cancelled batches ran on; a heartbeat or two
	// (workers learn of the cancel through the job bucket at once, the
	// client's job reaches a free slot) when they stop.
	if took > 10*time.Second {
		t.Errorf("a new job waited %v after the cancels, want far less than the cancelled batches' minute", took)
	}
	t.Logf("cancel of 3 jobs → a new job's result: %v", took.Round(time.Millisecond))
}

// RELIABILITY row 21: a batch that times out is not a poison storm. A
// batch of 64 records that each take a second, with a batch timeout of
// 300 ms, would be halved into 126 runs of 300 ms (38 s) without a
// budget; with one it ends within two timeouts and every record gets an
// error saying why.
func TestTimeoutIsNotAPoisonStorm(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := make([]plugin.Record, 64)
	for i := range recs {
		recs[i].Value = []byte("x")
	}
	start := time.Now()
	job, err := f.Client().Submit(ctx, "delay", client.Records(recs), client.WithConfig(plugin.Config{"ms": "1000"}),
		client.WithBatchSize(64), client.WithBatchTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	n := 0
	for o, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(o.Err, plugin.ErrTimeout) {
			t.Errorf("record %d: err = %v, want a timeout", o.Index, o.Err)
		}
		n++
	}
	took := time.Since(start)
	if n != len(recs) {
		t.Errorf("%d results, want %d", n, len(recs))
	}
	if took > 20*time.Second {
		t.Errorf("the job took %v: the isolation of a timed-out batch has no budget", took)
	}
	t.Logf("64 records of 1 s with a 300 ms batch timeout: every record failed with a timeout in %v", took.Round(time.Millisecond))
}

// RELIABILITY row 22: a results stream that is full (a reader that does
// not read) does not turn good results into poison: the worker keeps the
// batch's lease and retries, and once space frees the job finishes with
// its results, no dead letter, and its batches delivered once.
func TestFullResultsStreamIsNotPoison(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := localtest.Start(t, local.Config{Workers: 1, Registerer: reg,
		Coordinator: coordinator.Config{Topology: proto.Topology{MaxResultBytes: 256 << 10, AckWait: time.Second}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := f.Client()
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	// A job whose results nobody reads fills its owner's result stream.
	// Random bytes, so that compression leaves them their size.
	big := make([]plugin.Record, 64)
	for i := range big {
		big[i].Value = randomBytes(8 << 10)
	}
	hog, err := c.Submit(ctx, "identity", client.Records(big), client.WithBatchSize(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hog.Close)
	results, err := js.Stream(ctx, proto.ResultStream(proto.DefaultOwner))
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, 30*time.Second, func() error {
		info, err := results.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Bytes < 200<<10 {
			return fmt.Errorf("DF_RESULTS holds %d bytes", info.State.Bytes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another job's results cannot be stored meanwhile.
	value := randomBytes(32 << 10)
	job, err := c.Submit(ctx, "identity", client.Records([]plugin.Record{{Value: value}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(job.Close)
	err = poll.Until(ctx, 30*time.Second, func() error {
		if n := counter(t, reg, "dataflare_result_store_retries_total"); n < 3 {
			return fmt.Errorf("%v retries", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the worker did not retry storing the results: %v", err)
	}
	// Space frees: the hog is cancelled and its results purged.
	if err := hog.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	for o, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if o.Err != nil || !bytes.Equal(o.Value, value) {
			t.Errorf("result %d: %v (%d bytes)", o.Index, o.Err, len(o.Value))
		}
	}
	if n := counter(t, reg, "dataflare_dead_lettered_total"); n != 0 {
		t.Errorf("%v dead letters, want none", n)
	}
	if n := counter(t, reg, "dataflare_redeliveries_total"); n != 0 {
		t.Errorf("%v redeliveries, want none: the lease was kept", n)
	}
}

// counter returns the sum of the counter name's series in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return localtest.Counter(t, reg, name)
}

// Owners of weights 1 and 3 that both saturate a worker share its slots
// 1:3: a quarter of the records processed for one, three quarters for the
// other (issue 14's target: ±5 %).
func TestWeightsShareTheWorkers(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Parallel: 4},
		Coordinator: coordinator.Config{Weights: map[string]float64{"a": 1, "b": 3}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := make([]plugin.Record, 3000)
	for i := range recs {
		recs[i].Value = []byte("x")
	}
	jobs := map[string]*client.Job{}
	for _, owner := range []string{"a", "b"} {
		job, err := f.Client(client.WithOwner(owner)).Submit(ctx, "delay", client.Records(recs),
			client.WithConfig(plugin.Config{"ms": "10"}), client.WithBatchSize(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(job.Close)
		jobs[owner] = job
		// Stops when the job is closed or cancelled.
		go func() {
			for _, err := range job.Results() {
				if err != nil {
					return
				}
			}
		}()
	}
	// Once both are running, count what each gets over two seconds.
	err := poll.Until(ctx, 30*time.Second, func() error {
		return errors.Join(atLeast(jobs["a"].Progress().Results, 20), atLeast(jobs["b"].Progress().Results, 20))
	})
	if err != nil {
		t.Fatal(err)
	}
	a0, b0 := jobs["a"].Progress().Results, jobs["b"].Progress().Results
	time.Sleep(2 * time.Second) // the measurement window, not a synchronisation
	a, b := jobs["a"].Progress().Results-a0, jobs["b"].Progress().Results-b0
	share := float64(a) / float64(a+b)
	t.Logf("weights 1:3 over 2 s: a %d records, b %d: a's share %.3f", a, b, share)
	if share < 0.20 || share > 0.30 {
		t.Errorf("a's share %.3f of the records, want 0.25 ± 0.05 (a %d, b %d)", share, a, b)
	}
	for _, j := range jobs {
		j.Cancel(ctx)
	}
}

// atLeast returns an error when got < want.
func atLeast(got, want uint64) error {
	if got < want {
		return fmt.Errorf("%d, want at least %d", got, want)
	}
	return nil
}

// randomBytes returns n random bytes: incompressible.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}
