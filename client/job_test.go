package client_test

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

func TestInputErrorAfterGoodRecords(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boom := errors.New("disk on fire")
	src := func(yield func(plugin.Record, error) bool) {
		for i := range 250 {
			if !yield(plugin.Record{Value: []byte{byte('a' + i%26)}}, nil) {
				return
			}
		}
		yield(plugin.Record{}, boom)
	}
	job, err := c.Submit(ctx, "upper", src, client.WithBatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var last error
	for out, err := range job.Results() {
		if err != nil {
			last = err
			break
		}
		if out.Index != uint64(n) {
			t.Fatalf("index %d at position %d", out.Index, n)
		}
		n++
	}
	if n != 250 {
		t.Errorf("got %d results before the error, want 250", n)
	}
	if !errors.Is(last, client.ErrInput) || !strings.Contains(last.Error(), "disk on fire") {
		t.Errorf("final error = %v, want ErrInput naming the cause", last)
	}
}

func TestOversizeRecordFailsAlone(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := []plugin.Record{{Value: []byte("a")}, {Key: make([]byte, 70<<10), Value: []byte("b")}, {Value: []byte("c")}}
	res, err := c.ProcessBatch(ctx, "upper", nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Results[1].Err, plugin.ErrTooLarge) {
		t.Errorf("oversize record: err = %v, want ErrTooLarge", res.Results[1].Err)
	}
	if string(res.Results[0].Value) != "A" || string(res.Results[2].Value) != "C" {
		t.Errorf("neighbours = %q, %q", res.Results[0].Value, res.Results[2].Value)
	}
}

// TestBackpressure: a reader slower than the fleet holds the submission
// back to the window instead of piling up data.
func TestBackpressure(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client(client.WithWindow(4))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n, size = 20_000, 100
	src := func(yield func(plugin.Record, error) bool) {
		for range n {
			if !yield(plugin.Record{Value: []byte("x")}, nil) {
				return
			}
		}
	}
	job, err := c.Submit(ctx, "identity", src, client.WithBatchSize(size))
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	for _, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		read++
		if read%5_000 == 0 && read < n {
			// Give the submitter every chance to run ahead.
			err := poll.Until(context.Background(), 200*time.Millisecond, func() error {
				if job.Progress().Submitted >= n {
					return nil
				}
				return errors.New("submitter waits")
			})
			p := job.Progress()
			if err == nil || p.Submitted > uint64(read)+uint64(5*size)+1 {
				t.Fatalf("after %d results read, %d records submitted: over the window of 4 batches", read, p.Submitted)
			}
		}
	}
	if read != n {
		t.Fatalf("read %d, want %d", read, n)
	}
}

func TestAttachAfterClose(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := records(1000, 10)
	// A record too large to send: its error must be found by a reader
	// that attaches later too.
	recs[500].Key = make([]byte, 70<<10)
	job, err := c.Submit(ctx, "upper", client.Records(recs), client.WithBatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the submission is sealed: every batch accepted.
	if err := poll.Until(context.Background(), 10*time.Second, func() error {
		if job.Progress().Batches < 10 {
			return errors.New("not all batches accepted")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	id := job.ID()
	// The seal follows the last batch; Attach refuses an unsealed job.
	var again *client.Job
	if err := poll.Until(context.Background(), 10*time.Second, func() error {
		var err error
		again, err = f.Client().Attach(ctx, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	job.Close()
	n := 0
	for out, err := range again.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if out.Index == 500 {
			if !errors.Is(out.Err, plugin.ErrTooLarge) {
				t.Errorf("record 500: err = %v, want ErrTooLarge", out.Err)
			}
			n++
			continue
		}
		if string(out.Value) != strings.ToUpper(string(recs[out.Index].Value)) {
			t.Fatalf("record %d = %q", out.Index, out.Value)
		}
		n++
	}
	if n != len(recs) {
		t.Fatalf("attached job gave %d results, want %d", n, len(recs))
	}
	// Read to the end: the results are gone, so is the job's use.
	if _, err := c.Attach(ctx, id); !errors.Is(err, client.ErrJobClosed) {
		t.Errorf("attach a finished job: err = %v, want ErrJobClosed", err)
	}
	if _, err := c.Attach(ctx, "anon.nosuchjob"); !errors.Is(err, client.ErrJobNotFound) {
		t.Errorf("attach unknown: err = %v, want ErrJobNotFound", err)
	}
}

func TestCancel(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := c.Submit(ctx, "delay", client.Records(records(100, 10)), client.WithBatchSize(10), client.WithConfig(plugin.Config{"ms": "20"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := f.Client().Attach(ctx, job.ID())
	if !errors.Is(err, client.ErrJobClosed) || got != nil {
		t.Errorf("attach a cancelled job: %v, %v", got, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	f := localtest.Start(t, local.Config{})
	nc := f.Connect()
	for _, o := range []client.Option{client.WithTimeout(0), client.WithRetry(-1), client.WithWindow(0), client.WithSenders(0), client.WithLogger(nil)} {
		if _, err := client.New(nc, o); !errors.Is(err, client.ErrInvalidOption) {
			t.Errorf("err = %v, want ErrInvalidOption", err)
		}
	}
	if _, err := client.New(nil); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("nil conn: %v", err)
	}
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(context.Background(), "upper", client.Records(nil), client.WithBatchSize(0)); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("batch size 0: %v", err)
	}
	if _, err := c.Submit(context.Background(), "a.b", client.Records(nil)); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
}

func TestNoCoordinator(t *testing.T) {
	s := natstest.RunServer(t)
	c, err := client.New(natstest.Connect(t, s.ClientURL()), client.WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(context.Background(), "upper", client.Records(nil)); !errors.Is(err, client.ErrNoCoordinator) {
		t.Errorf("err = %v, want ErrNoCoordinator", err)
	}
}

func TestOwnerPrefixesJobID(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client(client.WithOwner("alice"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := c.Submit(ctx, "upper", client.Records(records(3, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(job.ID(), "alice.") {
		t.Errorf("job id %q does not start with its owner", job.ID())
	}
	if s, err := job.Wait(); err != nil || s.Succeeded != 3 {
		t.Errorf("wait = %+v, %v", s, err)
	}
	if _, err := client.New(f.Connect(), client.WithOwner("a.b")); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("owner with a dot: %v", err)
	}
}

// TestCancelledElsewhere: a job cancelled by another process while it is
// still being submitted stops with ErrJobClosed — its senders learn it when
// they next ask a coordinator for the job — and no result is handed out
// after the error.
func TestCancelledElsewhere(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 1 ms per record, 10 per batch: 100 s of work, far more than the test.
	job, err := f.Client().Submit(ctx, "delay", client.Records(records(100_000, 10)), client.WithBatchSize(10),
		client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	nc := f.Connect()
	n := 0
	var last error
	for _, err := range job.Results() {
		if err != nil {
			last = err
			break
		}
		if n++; n == 50 {
			m, err := nc.RequestWithContext(ctx, proto.JobSubject("cancel", job.ID()), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := proto.DecodeReply[proto.Job](m.Data); err != nil {
				t.Fatalf("cancel: %v", err)
			}
		}
	}
	if !errors.Is(last, client.ErrJobClosed) {
		t.Fatalf("after %d results: got %v, want ErrJobClosed", n, last)
	}
}

// A batch whose first publication JetStream takes for a duplicate would
// never run: the job fails with ErrDuplicate instead of waiting forever.
func TestDuplicateOnFirstAttempt(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	defer client.SetBatchKey("fixed")()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		<-release
		yield(plugin.Record{Value: []byte("x")}, nil)
	}
	job, err := f.Client().Submit(ctx, "upper", src)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	// Another message takes the first batch's id (it is not a batch: the
	// worker removes it).
	if _, err := js.Publish(ctx, proto.BatchSubject(job.ID(), fleet.Normal, "upper"), []byte("squatter"),
		jetstream.WithMsgID(proto.BatchMsgID(job.ID(), "fixed", 0))); err != nil {
		t.Fatal(err)
	}
	close(release)
	var got error
	for _, err := range job.Results() {
		if err != nil {
			got = err
			break
		}
	}
	if !errors.Is(got, client.ErrDuplicate) {
		t.Errorf("job error = %v, want ErrDuplicate", got)
	}
}

// RELIABILITY row 25: a message on a job's result subject that is not a
// result is skipped and counted; the job completes with all its results.
func TestBadMessageOnResultSubject(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}}
	release := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		<-release
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
	job, err := f.Client().Submit(ctx, "upper", src, client.WithBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	js, err := jetstream.New(f.Connect())
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{[]byte("not a result"), nil} {
		if _, err := js.Publish(ctx, proto.ResultSubject(job.ID()), junk); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	var got []string
	for o, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(o.Value))
	}
	if strings.Join(got, ",") != "A,B" || job.Progress().Skipped != 2 {
		t.Errorf("results %v, skipped %d; want A, B and 2 skipped", got, job.Progress().Skipped)
	}
}

// A chain of native and WebAssembly plugins runs each record through every
// step in one pass: values flow, a failure names its step, and the job
// still gives exactly one result per record, in order.
func TestChain(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.Push(ctx, twins.UpperName, twins.Upper); err != nil {
		t.Fatal(err)
	}
	recs := []plugin.Record{{Value: []byte("one")}, {Value: []byte("bad two")}, {Value: []byte("three")}}
	job, err := f.Client().Submit(ctx, "", client.Records(recs), client.WithSteps(
		client.Step{Plugin: "fail", Config: plugin.Config{"match": "bad"}},
		client.Step{Plugin: twins.UpperName},
		client.Step{Plugin: "identity"},
	))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	var got []string
	for o, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if o.Err != nil {
			got = append(got, "error: "+o.Err.Error())
			continue
		}
		got = append(got, string(o.Value))
	}
	want := []string{"ONE", `error: step 1 (fail): fail: value contains "bad"`, "THREE"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chain results (-want +got):\n%s", diff)
	}
	// A chain names no plugin of its own; steps are checked like plugins.
	if _, err := f.Client().Submit(ctx, "upper", client.Records(recs), client.WithSteps(client.Step{Plugin: "upper"})); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("plugin and steps: err = %v, want ErrInvalid", err)
	}
	if _, err := f.Client().Submit(ctx, "", client.Records(recs), client.WithSteps(client.Step{Plugin: "nope"})); !errors.Is(err, client.ErrUnknownPlugin) || !strings.Contains(err.Error(), "step 1") {
		t.Errorf("unknown step: err = %v, want ErrUnknownPlugin naming step 1", err)
	}
}

// With a linger, a batch that is not full is sent once the Source has
// given nothing for that long: the results of records that trickle in come
// back while the Source is still open.
func TestLinger(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	more := make(chan plugin.Record)
	src := func(yield func(plugin.Record, error) bool) {
		for r := range more {
			if !yield(r, nil) {
				return
			}
		}
	}
	job, err := f.Client().Submit(ctx, "upper", src, client.WithBatchSize(100), client.WithLinger(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	next, stop := iter.Pull2(job.Results())
	defer stop()
	for i, v := range []string{"a", "b", "c"} {
		more <- plugin.Record{Value: []byte(v)}
		o, err, ok := next()
		if !ok || err != nil || o.Index != uint64(i) || string(o.Value) != strings.ToUpper(v) {
			t.Fatalf("result %d while the source is open: %+v, %v, %v", i, o, err, ok)
		}
	}
	close(more)
	if _, _, ok := next(); ok {
		t.Error("a result after the last record")
	}
}

// A steady trickle never pauses for the linger, yet its records do not
// wait for a batch to fill: a batch goes once its first record waited the
// linger, so results come back while the Source is still open.
func TestLingerIsABatchsAge(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 3000
	var yielded atomic.Int64
	src := func(yield func(plugin.Record, error) bool) {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			yielded.Add(1)
			if !yield(plugin.Record{Value: []byte(strconv.Itoa(i))}, nil) {
				return
			}
		}
	}
	job, err := f.Client().Submit(ctx, "upper", src, client.WithBatchSize(10_000), client.WithLinger(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	got := 0
	for o, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if got == 0 {
			at := yielded.Load()
			t.Logf("the first result came after %d of %d records", at, n)
			if at >= n {
				t.Fatal("no result before the source ended: the batch waited to fill")
			}
		}
		if o.Index != uint64(got) {
			t.Fatalf("result %d has index %d", got, o.Index)
		}
		got++
	}
	if got != n {
		t.Fatalf("%d results, want %d", got, n)
	}
}

// TestBatchBytesCapsBatches submits records of 1,000 bytes with the batch
// size at 10,000 records and batches capped at 10,000 bytes: each batch
// holds ten records at most, and a record bigger than the cap still goes,
// alone.
func TestBatchBytesCapsBatches(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 200
	big := bytes.Repeat([]byte("b"), 20_000)
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i] = plugin.Record{Value: bytes.Repeat([]byte{'a' + byte(i%26)}, 1000)}
	}
	recs[n/2] = plugin.Record{Value: big}
	if _, err := f.Client().Submit(ctx, "upper", client.Records(recs), client.WithBatchBytes(0)); err == nil {
		t.Fatal("WithBatchBytes(0) accepted")
	}
	job, err := f.Client().Submit(ctx, "upper", client.Records(recs), client.WithBatchSize(10_000), client.WithBatchBytes(10_000))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	got := 0
	for o, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if o.Err != nil || !bytes.Equal(o.Value, bytes.ToUpper(recs[o.Index].Value)) {
			t.Fatalf("result %d: %v, %d bytes", o.Index, o.Err, len(o.Value))
		}
		got++
	}
	if got != n {
		t.Fatalf("%d results, want %d", got, n)
	}
	// Nine records a batch (1,000 bytes and their framing each), the big
	// one alone and the batch before it cut short by it: never one batch
	// of all.
	if b := job.Progress().Batches; b < n/10 || b > n/9+3 {
		t.Fatalf("%d batches for %d records of 1,000 bytes under a cap of 10,000", b, n)
	}
}
