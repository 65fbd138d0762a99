package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// deadLetters reads job's entries from DF_DEAD.
func deadLetters(t *testing.T, url, job string, want int) []fleet.DeadLetter {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, proto.StreamDead, jetstream.OrderedConsumerConfig{FilterSubjects: []string{proto.DeadSubject(job)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []fleet.DeadLetter
	for len(out) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var dl fleet.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		out = append(out, dl)
	}
	return out
}

// TestPoisonRecordsIsolated is RELIABILITY row 7 for a plugin that fails
// whole batches (a panic) on some records every time: exactly those records
// get poison errors and dead-letter entries, every other record its result.
func TestPoisonRecordsIsolated(t *testing.T) {
	f := newFleetProcs(t)
	f.coordinator()
	f.testworker()
	f.testworker()
	f.waitHealthy(2)
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 20_000
	poison := func(i int) bool { return i%1000 == 7 }
	src, val := marked(n, poison, "poison")
	job, err := c.Submit(ctx, "panic", src, client.WithConfig(plugin.Config{"match": "poison"}))
	if err != nil {
		t.Fatal(err)
	}
	var bad []uint64
	var wrongErr error
	tl := tally{n: n}
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case out.Err != nil:
			bad = append(bad, out.Index)
			if !errors.Is(out.Err, plugin.ErrPoison) && wrongErr == nil {
				wrongErr = out.Err
			}
		case string(out.Value) != string(val(int(out.Index))):
			tl.wrong++
		default:
			tl.ok++
		}
	}
	var want []uint64
	for i := range n {
		if poison(i) {
			want = append(want, uint64(i))
		}
	}
	if !slices.Equal(bad, want) {
		t.Fatalf("records with errors = %v, want exactly %v", bad, want)
	}
	if wrongErr != nil {
		t.Errorf("a poison record's error does not match plugin.ErrPoison: %v", wrongErr)
	}
	if tl.ok != n-len(want) || tl.wrong != 0 {
		t.Fatalf("good records: ok=%d wrong=%d, want ok=%d", tl.ok, tl.wrong, n-len(want))
	}
	dls := deadLetters(t, f.url, job.ID(), len(want))
	var got []uint64
	for _, dl := range dls {
		got = append(got, dl.Index)
		if string(dl.Value) != string(val(int(dl.Index))) {
			t.Errorf("dead letter %d holds %q, want the record's value", dl.Index, dl.Value)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("dead letters for records %v, want %v", got, want)
	}
	t.Logf("%d poison records isolated among %d, each with a dead letter", len(want), n)
}

// TestBatchSizeFollowsCost: the delay plugin's cost per record rises 5×
// mid-job (2 ms, then 10 ms per record); the batch size the sizer chooses
// settles near 50, then follows within a few heartbeats to within 20% of
// 10, the sizes that meet the 100 ms target.
func TestBatchSizeFollowsCost(t *testing.T) {
	f := newFleetProcs(t)
	f.coordinator()
	f.worker()
	f.worker()
	f.waitHealthy(2)
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const phase1, phase2 = 8000, 4000
	ms1, ms5 := []plugin.Header{{Key: []byte("ms"), Value: []byte("2")}}, []plugin.Header{{Key: []byte("ms"), Value: []byte("10")}}
	job, err := c.Submit(ctx, "delay", inputs(phase1+phase2, func(i int) []plugin.Header {
		if i < phase1 {
			return ms1
		}
		return ms5
	}))
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		at   time.Time
		size int
	}
	var samples []sample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	sc := f.client()
	// Stops when stop is closed.
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(testHeartbeat / 2):
			}
			st, err := sc.SystemStatus(ctx)
			if err != nil {
				continue
			}
			for _, p := range st.Plugins {
				if p.Name == "delay" {
					samples = append(samples, sample{time.Now(), p.BatchSize})
				}
			}
		}
	}()
	var changed time.Time
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if out.Index == phase1 {
			changed = time.Now() // the first costlier record's result
		}
	}
	close(stop)
	<-sampled
	sizeAt := func(lo, hi time.Time) []int {
		var s []int
		for _, x := range samples {
			if x.at.After(lo) && x.at.Before(hi) {
				s = append(s, x.size)
			}
		}
		return s
	}
	before := sizeAt(changed.Add(-time.Second), changed)
	t.Logf("sizes in the last second of phase 1 (2 ms/record, ideal 50): %v", before)
	const ideal2 = 10 // 100 ms / 10 ms
	var settled time.Time
	for _, x := range samples {
		if x.at.After(changed) && x.size >= ideal2*8/10 && x.size <= ideal2*12/10 {
			settled = x.at
			break
		}
	}
	if settled.IsZero() {
		t.Fatalf("the batch size never came within 20%% of %d after the cost changed; samples after: %v", ideal2, sizeAt(changed, time.Now()))
	}
	lag := settled.Sub(changed)
	t.Logf("cost ×5 at %v: size within 20%% of %d after %v (%.1f heartbeats); sizes after: %v",
		changed.Format("15:04:05.000"), ideal2, lag.Round(time.Millisecond), lag.Seconds()/testHeartbeat.Seconds(), sizeAt(changed, changed.Add(3*time.Second)))
	if lag > 15*testHeartbeat {
		t.Errorf("the batch size took %v (over 15 heartbeats) to follow the cost", lag)
	}
	for _, s := range before {
		if s < 40 || s > 60 {
			t.Errorf("phase 1 size %d not within 20%% of 50", s)
			break
		}
	}
}
