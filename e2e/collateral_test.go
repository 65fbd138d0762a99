package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// TestKillerBesideInnocentBatches is RELIABILITY row 7 for a record that
// kills its worker process while other batches run beside it: one worker
// process at a time (restarted as it dies), with two slots, or one slot and
// the spare another owner's batch takes. Every batch beside the killing one
// dies with it, again and again; only the killing record may get a poison
// error and a dead letter: the other records, of its own batch and of the
// batches beside, get their results, exactly one each, in order.
func TestKillerBesideInnocentBatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parallel string
		other    string // the owner of a second, innocent job; "" for none
	}{
		{"two slots", "2", ""},
		{"one slot and the spare", "1", "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			killerBeside(t, tc.parallel, tc.other)
		})
	}
}

// killerBeside runs a job of owner alice whose record 1 kills its worker,
// and, when other is set, an innocent job of that owner beside it, on
// one testworker process at a time with parallel slots.
func killerBeside(t *testing.T, parallel, other string) {
	f := newFleetProcs(t)
	f.ackArg = "300ms"
	const maxDeliver = 2
	f.coordinator("--max-deliver", fmt.Sprint(maxDeliver))
	first := f.testworker("--parallel", parallel)
	f.waitHealthy(1)

	stop := make(chan struct{})
	supervised := make(chan int)
	// The supervisor: starts a worker process when the last one dies, so
	// that there is always exactly one. Stops on stop.
	go func() {
		kills := 0
		w := first
		for {
			select {
			case <-stop:
				supervised <- kills
				return
			case <-w.done:
				kills++
				w = f.testworker("--parallel", parallel)
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 24
	const killer = 1
	src, val := marked(n, func(i int) bool { return i == killer }, "crash")
	type run struct {
		owner  string
		n      int
		want   func(int) []byte
		cfg    plugin.Config
		poison []uint64
		job    *client.Job
		tally  tally
		err    error
	}
	// 2 records a batch, 10 ms each: a batch beside the killing one is
	// still running when the process exits.
	runs := []*run{{owner: "alice", n: n, want: val, cfg: plugin.Config{"match": "crash", "ms": "10"}, poison: []uint64{killer}}}
	if other != "" {
		// One record of 500 ms: it runs through every death of the
		// killing batch, beside it in the spare slot.
		runs = append(runs, &run{owner: other, n: 1, want: value, cfg: plugin.Config{"match": "crash", "ms": "500"}})
	}
	// The innocent job first: its batch runs when the killing one starts.
	for _, r := range slices.Backward(runs) {
		in := src
		if r.owner != "alice" {
			in = inputs(r.n, nil)
		}
		job, err := f.client(client.WithOwner(r.owner)).Submit(ctx, "crash", in, client.WithBatchSize(2), client.WithConfig(r.cfg))
		if err != nil {
			t.Fatal(err)
		}
		r.job = job
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		// Stops when the job's results are all read, or ctx ends.
		go func() {
			defer wg.Done()
			r.tally, r.err = tallyJob(r.job, r.n, r.want)
		}()
	}
	wg.Wait()
	close(stop)
	kills := <-supervised

	for _, r := range runs {
		if r.err != nil {
			t.Fatalf("%s: %v", r.owner, r.err)
		}
		tl := r.tally
		t.Logf("%s: %v; records with errors %v", r.owner, tl, tl.failedIdx)
		if !slices.Equal(tl.failedIdx, r.poison) {
			t.Errorf("%s: records with errors %v, want exactly %v (first error: %s)", r.owner, tl.failedIdx, r.poison, tl.firstError)
		}
		if tl.ok != r.n-len(r.poison) || tl.lost+tl.dup+tl.unexpected+tl.wrong+tl.disorder+tl.dropped != 0 {
			t.Errorf("%s: oracle %v (first wrong: %s)", r.owner, tl, tl.firstWrong)
		}
		if got := deadCount(t, f.url, r.job.ID()); got != uint64(len(r.poison)) {
			t.Errorf("%s: %d dead letters, want %d", r.owner, got, len(r.poison))
		}
	}
	if len(runs[0].poison) == 1 {
		dls := deadLetters(t, f.url, runs[0].job.ID(), 1)
		if len(dls) != 1 || dls[0].Index != killer || string(dls[0].Value) != string(val(killer)) {
			t.Errorf("dead letters %+v, want record %d's", dls, killer)
		}
	}
	// The killing batch: freeDeliveries (2) beside others, then MaxDeliver
	// alone; the killing record alone, MaxDeliver more.
	t.Logf("%d worker processes killed", kills)
	if limit := 2 + 2*maxDeliver; kills < 1 || kills > limit {
		t.Errorf("%d worker processes killed, want 1 to %d", kills, limit)
	}
}

// deadCount returns how many dead letters job has in DF_DEAD.
func deadCount(t *testing.T, url, job string) uint64 {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, proto.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	subject := proto.DeadSubject(job)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
