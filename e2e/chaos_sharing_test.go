//go:build chaos

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// mixedJob is one job of TestChaosMixedOwners.
type mixedJob struct {
	owner    string
	priority fleet.Priority
	n        int
	late     bool // submitted after the coordinator kill, through the survivor

	job   *client.Job
	start time.Time
	took  time.Duration
	tally tally
	err   error
}

// TestChaosMixedOwners is issue 14's oracle under faults: jobs of two
// owners — alice with weight 3, bob with 1 — at every priority run at once
// on 3 worker processes, one SIGKILLed every AckWait + 1.5 s plus a seeded
// jitter (on a fixed, logged schedule) and replaced, while one of the two
// coordinators is SIGKILLed once mid-run and two more jobs are submitted
// through the survivor. Every job's oracle holds: each record exactly one
// good result, in input order; afterwards every owner's queues are drained.
func TestChaosMixedOwners(t *testing.T) {
	rng := rand.New(rand.NewPCG(chaosSeed(t), 14))
	f := newFleetProcs(t)
	weights := []string{"--owner-weight", "alice=3"}
	coords := []*proc{f.coordinator(weights...), f.coordinator(weights...)}
	workers := []*proc{f.worker(), f.worker(), f.worker()}
	f.waitHealthy(3)
	acks := watchAcks(t, f.url)
	clients := map[string]*client.Client{
		// A request unanswered for 1 s (a killed coordinator's) is retried
		// and reaches the other.
		"alice": f.client(client.WithOwner("alice"), client.WithTimeout(time.Second)),
		"bob":   f.client(client.WithOwner("bob"), client.WithTimeout(time.Second)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Every record sleeps 1 ms in the delay plugin: about 320 s of slot
	// time on 12 slots (some 30 s), so that several kills land while the
	// jobs run.
	jobs := []*mixedJob{
		{owner: "alice", priority: fleet.Normal, n: 100_000},
		{owner: "alice", priority: fleet.High, n: 30_000},
		{owner: "alice", priority: fleet.Low, n: 50_000},
		{owner: "bob", priority: fleet.Normal, n: 60_000},
		{owner: "bob", priority: fleet.High, n: 25_000},
		{owner: "bob", priority: fleet.Low, n: 50_000},
		{owner: "alice", priority: fleet.High, n: 5_000, late: true},
		{owner: "bob", priority: fleet.Normal, n: 5_000, late: true},
	}
	var readers sync.WaitGroup
	var mu sync.Mutex // guards the jobs' job fields: the killer counts results
	submit := func(mj *mixedJob) {
		t.Helper()
		mj.start = time.Now()
		job, err := clients[mj.owner].Submit(ctx, "delay", inputs(mj.n, nil),
			client.WithConfig(plugin.Config{"ms": "1"}), client.WithPriority(mj.priority))
		if err != nil {
			t.Fatalf("submit %s's %v job: %v", mj.owner, mj.priority, err)
		}
		mu.Lock()
		mj.job = job
		mu.Unlock()
		readers.Add(1)
		// Stops when the job's results are all read, or it fails.
		go func() {
			defer readers.Done()
			mj.tally, mj.err = tallyJob(job, mj.n, value)
			mj.took = time.Since(mj.start)
		}()
	}
	total := 0
	for _, mj := range jobs {
		total += mj.n
		if !mj.late {
			submit(mj)
		}
	}
	results := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, mj := range jobs {
			if mj.job != nil {
				n += int(mj.job.Progress().Results)
			}
		}
		return n
	}

	// The coordinator kill: when a seeded 10–30 % of the first jobs'
	// results have come.
	coordVictim := rng.IntN(len(coords))
	coordAt := total * (10 + rng.IntN(20)) / 100
	t.Logf("schedule: coordinator %s killed at %d results; a worker killed every %v + up to 1.5 s",
		coords[coordVictim].name, coordAt, testAckWait+1500*time.Millisecond)
	if err := poll.Until(ctx, 2*time.Minute, func() error { return atLeast("results", uint64(results()), uint64(coordAt)) }); err != nil {
		t.Fatal(err)
	}
	if err := listening(f.srv, proto.JobCreateSubject("*"), len(coords)); err != nil {
		t.Fatal(err)
	}
	coords[coordVictim].kill(syscall.SIGKILL)
	t.Logf("killed coordinator %s at %d results", coords[coordVictim].name, results())
	// The late jobs go to the survivor once the server has dropped the
	// victim's subscriptions: a request the dying coordinator took is not
	// retried (Submit's create is sent once, and with a deadline on ctx it
	// waits for the whole of it), which is not what this test is about.
	if err := coords[coordVictim].wait(t, 10*time.Second); err == nil {
		t.Fatalf("coordinator %s survived SIGKILL", coords[coordVictim].name)
	}
	if err := poll.Until(ctx, 10*time.Second, func() error { return listening(f.srv, proto.JobCreateSubject("*"), 1) }); err != nil {
		t.Fatal(err)
	}

	var kills []time.Time
	done := make(chan struct{})
	killed := make(chan struct{})
	// The worker killer. Stops on done.
	go func() {
		defer close(killed)
		for {
			wait := testAckWait + 1500*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
			select {
			case <-done:
				return
			case <-time.After(wait):
			}
			i := rng.IntN(len(workers))
			workers[i].kill(syscall.SIGKILL)
			kills = append(kills, time.Now())
			t.Logf("kill %d: worker %s at %d results", len(kills), workers[i].name, results())
			workers[i] = f.worker()
		}
	}()

	// Two jobs created, sent and sealed through the surviving coordinator.
	for _, mj := range jobs {
		if mj.late {
			submit(mj)
		}
	}
	readers.Wait()
	close(done)
	<-killed
	end := time.Now()

	t.Logf("after %d worker kills and 1 coordinator kill:", len(kills))
	for _, mj := range jobs {
		if mj.err != nil {
			t.Errorf("%s's %v job %s: %v", mj.owner, mj.priority, mj.job.ID(), mj.err)
			continue
		}
		t.Logf("%s's %v job of %d records (late %v): done in %v", mj.owner, mj.priority, mj.n, mj.late, mj.took.Round(time.Millisecond))
		t.Run(fmt.Sprintf("%s-%v-%d", mj.owner, mj.priority, mj.n), func(t *testing.T) {
			requireOracle(t, mj.tally, mj.n)
		})
	}
	if len(kills) < 3 {
		t.Errorf("only %d worker kills before the jobs ended: make them longer", len(kills))
	}
	var worst time.Duration
	redone := 0
	for i, k := range kills {
		next := end
		if i+1 < len(kills) {
			next = kills[i+1]
		}
		d, m := acks.redoneAfter(k, next)
		redone += m
		worst = max(worst, d)
	}
	t.Logf("batches redelivered and completed after the kills: %d; worst kill → redone batch acknowledged: %v", redone, worst)

	// Every owner's queues end empty: nothing was left behind unacked.
	js, err := jetstream.New(natstest.Connect(t, f.url))
	if err != nil {
		t.Fatal(err)
	}
	if err := poll.Until(ctx, 30*time.Second, func() error { return natstest.BatchesDrained(ctx, js) }); err != nil {
		t.Errorf("batch queues not drained: %v", err)
	}
}

// listening returns nil when exactly want connections to srv subscribe to
// subject.
func listening(srv *server.Server, subject string, want int) error {
	cz, err := srv.Connz(&server.ConnzOptions{Subscriptions: true, Limit: 10_000})
	if err != nil {
		return err
	}
	n := 0
	for _, c := range cz.Conns {
		if slices.Contains(c.Subs, subject) {
			n++
		}
	}
	if n != want {
		return fmt.Errorf("%d connections subscribe to %s, want %d", n, subject, want)
	}
	return nil
}
