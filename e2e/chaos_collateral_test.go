//go:build chaos

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/plugin"
)

// TestChaosKillersBesideInnocents is TestKillerBesideInnocentBatches with
// more of everything: two records that kill their worker process, in
// different batches of alice's job, beside bob's innocent job, on 3 worker
// processes of 3 slots each (and the spare), restarted as they die, while
// an operator SIGKILLs a worker twice more (no culprit at all), on a
// fixed, logged schedule. Only the two killing records get poison errors
// and dead letters; every other record of both jobs its result, exactly
// one each, in order. With MaxDeliver 3, the operator's two kills cannot
// poison anything by themselves.
func TestChaosKillersBesideInnocents(t *testing.T) {
	rng := rand.New(rand.NewPCG(chaosSeed(t), 15))
	f := newFleetProcs(t)
	f.ackArg = "500ms"
	const maxDeliver = 3
	f.coordinator("--max-deliver", fmt.Sprint(maxDeliver))
	const workers = 3
	args := []string{"--parallel", "3"}
	var mu sync.Mutex
	current := make([]*proc, workers)
	for i := range current {
		current[i] = f.testworker(args...)
	}
	f.waitHealthy(workers)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	deaths := 0
	for i := range workers {
		wg.Add(1)
		// Keeps worker i running: starts another when it dies. Stops on
		// stop.
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				w := current[i]
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-w.done:
				}
				mu.Lock()
				deaths++
				current[i] = f.testworker(args...)
				mu.Unlock()
			}
		}()
	}
	operatorKills := 0
	wg.Add(1)
	// The operator: two SIGKILLs of a worker, more than AckWait apart.
	// Stops on stop, or after them.
	go func() {
		defer wg.Done()
		for range 2 {
			select {
			case <-stop:
				return
			case <-time.After(time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))): // the fault's schedule
			}
			mu.Lock()
			current[rng.IntN(workers)].kill(syscall.SIGKILL)
			operatorKills++
			mu.Unlock()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 600
	killers := []int{101, 402}
	src, val := marked(n, func(i int) bool { return slices.Contains(killers, i) }, "crash")
	alice, err := f.client(client.WithOwner("alice")).Submit(ctx, "crash", src, client.WithBatchSize(4),
		client.WithConfig(plugin.Config{"match": "crash", "ms": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := f.client(client.WithOwner("bob")).Submit(ctx, "crash", inputs(n, nil), client.WithBatchSize(4),
		client.WithConfig(plugin.Config{"match": "crash", "ms": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	var tlA, tlB tally
	var errA, errB error
	var readers sync.WaitGroup
	readers.Add(2)
	// Each stops when its job's results are all read.
	go func() { defer readers.Done(); tlA, errA = tallyJob(alice, n, val) }()
	go func() { defer readers.Done(); tlB, errB = tallyJob(bob, n, value) }()
	readers.Wait()
	close(stop)
	wg.Wait()
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d worker deaths, %d of them the operator's", deaths, operatorKills)
	t.Logf("alice: %v; records with errors %v", tlA, tlA.failedIdx)
	t.Logf("bob: %v; records with errors %v", tlB, tlB.failedIdx)
	want := []uint64{uint64(killers[0]), uint64(killers[1])}
	if !slices.Equal(tlA.failedIdx, want) || tlA.ok != n-len(want) || tlA.lost+tlA.dup+tlA.unexpected+tlA.wrong+tlA.disorder != 0 {
		t.Errorf("alice: %v, records with errors %v, want exactly %v (first error: %s)", tlA, tlA.failedIdx, want, tlA.firstError)
	}
	requireOracle(t, tlB, n)
	if got := deadCount(t, f.url, alice.ID()); got != uint64(len(want)) {
		t.Errorf("alice: %d dead letters, want %d", got, len(want))
	}
	if got := deadCount(t, f.url, bob.ID()); got != 0 {
		t.Errorf("bob: %d dead letters, want 0", got)
	}
}
