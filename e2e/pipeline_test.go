package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/plugin"
)

// pipelineRun is a pipeline "enrich" from stream "orders" (orders.>) to
// stream "enriched" (enriched.out) on a fleet of processes, with the
// oracle that checks the sink against the source message by message.
type pipelineRun struct {
	t  *testing.T
	f  *fleetProcs
	js jetstream.JetStream
	c  *client.Client
}

const (
	pipelineSource = "orders"
	pipelineSink   = "enriched"
	pipelineName   = "enrich"
)

// orderValue is the payload of source message i; every 997th is "bad",
// which the pipeline's first step fails.
func orderValue(i int) string {
	if i%997 == 5 {
		return fmt.Sprintf("bad-%08d", i)
	}
	return fmt.Sprintf("order-%08d", i)
}

// newPipelineRun makes the source and sink streams with replicas and
// creates the pipeline: fail the bad ones, then upper-case.
func newPipelineRun(t *testing.T, f *fleetProcs, replicas int) *pipelineRun {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, f.url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{
		{Name: pipelineSource, Subjects: []string{"orders.>"}, Replicas: replicas, Duplicates: 10 * time.Minute},
		{Name: pipelineSink, Subjects: []string{"enriched.out"}, Replicas: replicas, Duplicates: 10 * time.Minute},
	} {
		err := poll.Until(ctx, 50*time.Second, func() error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			t.Fatalf("stream %s: %v", sc.Name, err)
		}
	}
	r := &pipelineRun{t: t, f: f, js: js, c: f.client(client.WithTimeout(5 * time.Second))}
	spec := client.PipelineSpec{Source: pipelineSource, Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "fail", Config: plugin.Config{"match": "bad"}}, {Plugin: "upper"}}}
	err = poll.Until(ctx, 50*time.Second, func() error {
		_, err := r.c.CreatePipeline(ctx, pipelineName, spec)
		if errors.Is(err, client.ErrInvalid) && strings.Contains(err.Error(), "already") {
			return nil // an earlier try was answered too late
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// publish puts source messages [0, n) on the source, each with a message
// id, so that one sent again after an error (a NATS node away) is stored
// once. It returns when every one is stored, or fails t.
func (r *pipelineRun) publish(ctx context.Context, n int) error {
	const window = 2000
	for from := 0; from < n; from += window {
		to := min(from+window, n)
		futures := make([]jetstream.PubAckFuture, 0, to-from)
		for i := from; i < to; i++ {
			f, err := r.js.PublishMsgAsync(orderMsg(i))
			if err != nil {
				futures = append(futures, nil)
				continue
			}
			futures = append(futures, f)
		}
		for k, f := range futures {
			ok := false
			if f != nil {
				select {
				case <-f.Ok():
					ok = true
				case <-f.Err():
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if ok {
				continue
			}
			// Again, until stored: the id makes a second copy a duplicate.
			err := poll.Until(ctx, 2*time.Minute, func() error {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := r.js.PublishMsg(pctx, orderMsg(from+k))
				return err
			})
			if err != nil {
				return fmt.Errorf("source message %d: %w", from+k, err)
			}
		}
	}
	return nil
}

func orderMsg(i int) *nats.Msg {
	m := nats.NewMsg("orders." + strconv.Itoa(i%5))
	m.Data = []byte(orderValue(i))
	m.Header.Set("Order", strconv.Itoa(i))
	m.Header.Set(nats.MsgIdHdr, "order-"+strconv.Itoa(i))
	return m
}

// waitProcessed waits until the pipeline reports the source messages up
// to sequence min done (the counts start again with each holder; the last
// sequence done does not), and returns the coordinator running it.
func (r *pipelineRun) waitProcessed(ctx context.Context, min uint64) (string, error) {
	var holder string
	err := poll.Until(ctx, 2*time.Minute, func() error {
		pl, err := r.c.PipelineInfo(ctx, pipelineName)
		if err != nil {
			return err
		}
		if pl.Status == nil || pl.Status.LastSeq < min {
			return fmt.Errorf("pipeline status %+v, want source sequence %d done", pl.Status, min)
		}
		holder = pl.Status.Coordinator
		return nil
	})
	return holder, err
}

// killHolder waits until the pipeline has done the source messages up
// to sequence min, SIGKILLs the coordinator process running it, and
// returns its name.
func (r *pipelineRun) killHolder(ctx context.Context, min uint64) string {
	r.t.Helper()
	holder, err := r.waitProcessed(ctx, min)
	if err != nil {
		r.t.Fatal(err)
	}
	r.f.mu.Lock()
	owner := r.f.procs[holder]
	r.f.mu.Unlock()
	if owner == nil {
		r.t.Fatalf("the pipeline's coordinator %q is no process of this fleet", holder)
	}
	owner.kill(syscall.SIGKILL)
	return holder
}

// pipelineVerdict is what the oracle found in the sink.
type pipelineVerdict struct {
	source, sink, bad                           int
	lost, duplicated, outOfOrder, wrong, extras int
	first                                       []string // the first few problems
}

func (v pipelineVerdict) ok() bool {
	return v.lost+v.duplicated+v.outOfOrder+v.wrong+v.extras == 0
}

func (v pipelineVerdict) String() string {
	return fmt.Sprintf("source %d (bad %d), sink %d: lost %d, duplicated %d, out of order %d, wrong value %d, unexpected %d %v",
		v.source, v.bad, v.sink, v.lost, v.duplicated, v.outOfOrder, v.wrong, v.extras, v.first)
}

// check waits until the sink holds a message for every good source
// message (or two minutes pass without progress) and compares them: in
// source order, exactly one sink message per good source message, whose
// value is the source's upper-cased, carrying the source's sequence and
// headers.
func (r *pipelineRun) check(ctx context.Context, n int) pipelineVerdict {
	r.t.Helper()
	good := 0
	for i := range n {
		if !strings.HasPrefix(orderValue(i), "bad") {
			good++
		}
	}
	sink, err := r.js.Stream(ctx, pipelineSink)
	if err != nil {
		r.t.Fatal(err)
	}
	var last uint64
	lastMove := time.Now()
	err = poll.Until(ctx, 10*time.Minute, func() error {
		info, err := sink.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs >= uint64(good) {
			return nil
		}
		if info.State.Msgs != last {
			last, lastMove = info.State.Msgs, time.Now()
		} else if time.Since(lastMove) > 2*time.Minute {
			r.t.Logf("the sink stays at %d messages, want %d", last, good)
			return nil // the oracle says what is missing
		}
		return fmt.Errorf("the sink holds %d messages, want %d", info.State.Msgs, good)
	})
	if err != nil {
		r.t.Logf("waiting for the sink: %v", err)
	}
	// The source in its order: sequence → the message's index.
	type src struct {
		seq   uint64
		index int
	}
	var order []src
	for m := range r.read(ctx, pipelineSource) {
		meta, err := m.Metadata()
		if err != nil {
			r.t.Fatal(err)
		}
		i, err := strconv.Atoi(m.Headers().Get("Order"))
		if err != nil {
			r.t.Fatalf("source message %d without its Order header", meta.Sequence.Stream)
		}
		order = append(order, src{meta.Sequence.Stream, i})
	}
	v := pipelineVerdict{source: len(order)}
	problem := func(format string, args ...any) {
		if len(v.first) < 5 {
			v.first = append(v.first, fmt.Sprintf(format, args...))
		}
	}
	seen := make(map[uint64]int)
	bySeq := make(map[uint64]int, len(order))
	for _, s := range order {
		bySeq[s.seq] = s.index
	}
	var prev uint64
	for m := range r.read(ctx, pipelineSink) {
		v.sink++
		seq, err := strconv.ParseUint(m.Headers().Get(coordinator.HeaderSourceSeq), 10, 64)
		i, known := bySeq[seq]
		switch {
		case err != nil || !known:
			v.extras++
			problem("sink message %q with source seq %q", m.Data(), m.Headers().Get(coordinator.HeaderSourceSeq))
			continue
		case seen[seq] > 0:
			v.duplicated++
			problem("source seq %d (message %d) twice", seq, i)
		case seq < prev:
			v.outOfOrder++
			problem("source seq %d after %d", seq, prev)
		}
		seen[seq]++
		prev = max(prev, seq)
		want := strings.ToUpper(orderValue(i))
		if string(m.Data()) != want || m.Headers().Get("Order") != strconv.Itoa(i) {
			v.wrong++
			problem("source message %d gave %q (Order %q), want %q", i, m.Data(), m.Headers().Get("Order"), want)
		}
	}
	for _, s := range order {
		bad := strings.HasPrefix(orderValue(s.index), "bad")
		switch {
		case bad && seen[s.seq] > 0:
			v.extras++
			problem("bad source message %d reached the sink", s.index)
		case bad:
			v.bad++
		case seen[s.seq] == 0:
			v.lost++
			problem("source message %d (seq %d) lost", s.index, s.seq)
		}
	}
	if len(order) != n {
		v.lost += n - len(order)
		problem("the source holds %d messages, want %d", len(order), n)
	}
	return v
}

// errStop ends a read early.
var errStop = errors.New("stop")

// read returns every message of stream, in order, through an ordered
// consumer.
func (r *pipelineRun) read(ctx context.Context, stream string) func(yield func(jetstream.Msg) bool) {
	return func(yield func(jetstream.Msg) bool) {
		s, err := r.js.Stream(ctx, stream)
		if err != nil {
			r.t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		// From the message after the last one read: a consumer lost to a
		// node's restart is made again, up to a minute of failures.
		var next uint64 = info.State.FirstSeq
		failing := time.Time{}
		for got := uint64(0); got < info.State.Msgs; {
			n, err := func() (int, error) {
				cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next})
				if err != nil {
					return 0, err
				}
				batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					return 0, err
				}
				n := 0
				for m := range batch.Messages() {
					meta, err := m.Metadata()
					if err != nil {
						return n, err
					}
					n++
					got++
					next = meta.Sequence.Stream + 1
					if !yield(m) {
						return n, errStop
					}
				}
				return n, batch.Error()
			}()
			switch {
			case errors.Is(err, errStop):
				return
			case n > 0:
				failing = time.Time{}
			case failing.IsZero():
				failing = time.Now()
			case time.Since(failing) > time.Minute:
				r.t.Fatalf("read %s: %d of %d messages, then nothing for a minute (%v)", stream, got, info.State.Msgs, err)
			}
		}
	}
}

// TestPipelineKills is issue 15's run with real processes: 100,000
// messages published while the pipeline runs on two coordinator and two
// worker processes; a worker is SIGKILLed at 20% and the coordinator
// that holds the pipeline at 50%. The sink holds exactly one message per
// good source message, in source order, with its value and headers; the
// bad ones are dead letters.
func TestPipelineKills(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	f := newFleetProcs(t)
	f.coordinator()
	f.coordinator()
	workers := []*proc{f.worker(), f.worker()}
	f.waitHealthy(2)
	r := newPipelineRun(t, f, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	published := make(chan error, 1)
	start := time.Now()
	go func() { published <- r.publish(ctx, n) }()

	if _, err := r.waitProcessed(ctx, uint64(n/5)); err != nil {
		t.Fatal(err)
	}
	workers[0].kill(syscall.SIGKILL)
	t.Logf("killed worker %s at %v", workers[0].name, time.Since(start).Round(time.Millisecond))
	holder := r.killHolder(ctx, uint64(n/2))
	killed := time.Now()
	t.Logf("killed coordinator %s, which held the pipeline, at %v", holder, killed.Sub(start).Round(time.Millisecond))
	err := poll.Until(ctx, time.Minute, func() error {
		pl, err := r.c.PipelineInfo(ctx, pipelineName)
		if err != nil {
			return err
		}
		if pl.Status == nil || pl.Status.Coordinator == holder || pl.Status.State != "running" {
			return fmt.Errorf("not taken over yet: %+v", pl.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("taken over %v after the kill", time.Since(killed).Round(time.Millisecond))
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	v := r.check(ctx, n)
	t.Logf("%d messages in %v: %v", n, time.Since(start).Round(time.Millisecond), v)
	r.checkDead(ctx, t, v)
}

// checkDead requires the oracle's verdict v to be clean and every bad
// message to be a dead letter naming the step that failed it (at least
// once: a record failed again after a takeover, under the new job, is a
// second entry), and no other message to be one. On a failure it says
// first what the dead letters hold: a message lost from the sink is most
// often one failed for a reason not its own.
func (r *pipelineRun) checkDead(ctx context.Context, t *testing.T, v pipelineVerdict) {
	t.Helper()
	dead := make(map[uint64]int)
	var wrong []string
	causes := make(map[string]int) // of the dead letters of good messages
	for m := range r.read(ctx, "DF_DEAD") {
		var dl fleet.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		if !strings.HasSuffix(dl.Worker, "/"+pipelineName) {
			// A worker's own entry (a poison record of the pipeline's job).
			causes["worker "+dl.Worker+": "+dl.Error]++
			continue
		}
		if dl.Plugin != "fail" || !strings.HasPrefix(string(dl.Value), "bad-") {
			causes["step "+dl.Plugin+": "+dl.Error]++
			if len(wrong) < 5 {
				wrong = append(wrong, fmt.Sprintf("seq %d %q: %s", dl.Index, dl.Value, dl.Error))
			}
			continue
		}
		dead[dl.Index]++
	}
	for cause, k := range causes {
		t.Logf("%d dead letters of good messages: %s", k, cause)
	}
	if len(wrong) > 0 {
		t.Errorf("good messages dead-lettered, e.g. %v", wrong)
	}
	if !v.ok() {
		t.Fatalf("oracle: %v", v)
	}
	again := 0
	for _, k := range dead {
		again += k - 1
	}
	t.Logf("dead letters: %d records, %d of them twice or more", len(dead), again)
	if len(dead) != v.bad {
		t.Errorf("%d bad records dead-lettered, want %d", len(dead), v.bad)
	}
}
