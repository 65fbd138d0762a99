package e2e

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// ackWatch records the acknowledgements workers send for batches, straight
// off the wire ($JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...,
// for every batch stream), to see redeliveries and when they complete.
type ackWatch struct {
	mu     sync.Mutex
	events []ackEvent
}

type ackEvent struct {
	at        time.Time
	kind      string // +ACK, +WPI, -NAK, +TERM
	delivered int
	seq       uint64
}

func watchAcks(t *testing.T, url string) *ackWatch {
	nc := natstest.Connect(t, url)
	w := &ackWatch{}
	_, err := nc.Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		toks := strings.Split(m.Subject, ".")
		// Any batch stream: an owner's DF_BATCHES_<owner>, or the
		// shared DF_BATCHES.
		i := slices.IndexFunc(toks, func(tok string) bool {
			return tok == proto.StreamBatches || strings.HasPrefix(tok, proto.StreamBatches+"_")
		})
		if i < 0 || len(toks) < i+5 {
			return
		}
		delivered, _ := strconv.Atoi(toks[i+2])
		seq, _ := strconv.ParseUint(toks[i+3], 10, 64)
		kind, _, _ := strings.Cut(string(m.Data), " ")
		w.mu.Lock()
		w.events = append(w.events, ackEvent{at: time.Now(), kind: kind, delivered: delivered, seq: seq})
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// redoneAfter returns, for a kill at time kill, how long until the last
// batch redelivered after it was completed (acknowledged), and how many such
// batches there were.
func (w *ackWatch) redoneAfter(kill, until time.Time) (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Duration
	n := 0
	for _, e := range w.events {
		if e.kind == "+ACK" && e.delivered >= 2 && e.at.After(kill) && e.at.Before(until) {
			n++
			last = max(last, e.at.Sub(kill))
		}
	}
	return last, n
}

// TestWorkerKilledMidBatch is RELIABILITY row 1: SIGKILL one of 3 worker
// processes again and again during a job; no record is lost or duplicated,
// and a killed worker's batches are redone within AckWait + 1 s (plus the
// batch's own run time). TestChaosWorkerKills is the longer run.
func TestWorkerKilledMidBatch(t *testing.T) {
	workerKills(t, 90_000, rand.New(rand.NewPCG(chaosSeed(t), 1)), 0)
}

// workerKills runs n records through the delay plugin (1 ms each) on 3
// worker processes, SIGKILLing one (chosen by rng) every AckWait + 1.5 s
// plus up to jitter and starting a replacement; then checks the oracle and
// how long each kill's batches took to be redone.
func workerKills(t *testing.T, n int, rng *rand.Rand, jitter time.Duration) {
	f := newFleetProcs(t)
	f.coordinator()
	workers := []*proc{f.worker(), f.worker(), f.worker()}
	f.waitHealthy(3)
	acks := watchAcks(t, f.url)
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	job, err := c.Submit(ctx, "delay", inputs(n, nil), client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	var kills []time.Time
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	// Stops when the job's results are all read.
	go func() {
		defer wg.Done()
		for {
			// Kills are further apart than AckWait + 1 s, so each
			// redelivered batch belongs to the kill before it.
			wait := testAckWait + 1500*time.Millisecond
			if jitter > 0 {
				wait += time.Duration(rng.Int64N(int64(jitter)))
			}
			select {
			case <-done:
				return
			case <-time.After(wait):
			}
			i := rng.IntN(len(workers))
			workers[i].kill(syscall.SIGKILL)
			kills = append(kills, time.Now())
			workers[i] = f.worker()
		}
	}()
	tl := collect(t, job, n, value)
	close(done)
	wg.Wait()
	end := time.Now()
	t.Logf("after %d kills:", len(kills))
	requireOracle(t, tl, n)
	if len(kills) == 0 {
		t.Fatal("the job ended before any worker was killed: make it longer")
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
	t.Logf("batches redelivered and completed: %d; worst kill → redone batch acknowledged: %v (AckWait %v)", redone, worst, testAckWait)
	// A batch runs ~100 ms (the sizer aims there); allow for scheduling
	// noise on a loaded 2-core machine beside AckWait + 1 s.
	if limit := testAckWait + time.Second + 500*time.Millisecond; worst > limit {
		t.Errorf("a killed worker's batch took %v to be redone, over %v", worst, limit)
	}
}

// TestStalledWorker is RELIABILITY row 3: a worker stopped (SIGSTOP) past
// AckWait while it holds batches, then resumed (SIGCONT). Its batches are
// redone elsewhere; its late results and acks change nothing.
func TestStalledWorker(t *testing.T) {
	f := newFleetProcs(t)
	f.coordinator()
	zombie := f.worker()
	f.worker()
	f.worker()
	f.waitHealthy(3)
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 40_000
	job, err := c.Submit(ctx, "delay", inputs(n, nil), client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	stalled := make(chan struct{})
	// Stops after one stall.
	go func() {
		defer close(stalled)
		// Let the zombie take batches, then freeze it past AckWait.
		// (Up to 10 s: a zombie that took nothing is frozen all the same.)
		_ = poll.Until(context.Background(), 10*time.Second, func() error {
			return atLeast("results", job.Progress().Results, uint64(n/10))
		})
		zombie.kill(syscall.SIGSTOP)
		time.Sleep(testAckWait + 1500*time.Millisecond) // the fault being injected, not a synchronisation
		zombie.kill(syscall.SIGCONT)
	}()
	tl := collect(t, job, n, value)
	<-stalled
	requireOracle(t, tl, n)
	// The resumed worker goes back to work.
	f.waitHealthy(3)
	if zombie.exited() {
		t.Fatal("the stalled worker exited")
	}
}

// TestCoordinatorKilledMidSubmission is RELIABILITY row 4: of two
// coordinators, one is killed while a client submits; the client's retries
// reach the other, duplicates are dropped by JetStream, the job completes.
func TestCoordinatorKilledMidSubmission(t *testing.T) {
	f := newFleetProcs(t)
	victim := f.coordinator()
	f.coordinator()
	f.worker()
	f.worker()
	f.waitHealthy(2)
	c := f.client(client.WithTimeout(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 200_000
	job, err := c.Submit(ctx, "upper", inputs(n, nil), client.WithBatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	killed := make(chan struct{})
	// Stops after the kill.
	go func() {
		defer close(killed)
		if err := poll.Until(context.Background(), 2*time.Minute, func() error {
			return atLeast("batches", job.Progress().Batches, 200)
		}); err != nil {
			t.Error(err)
			return
		}
		victim.kill(syscall.SIGKILL)
	}()
	tl := collect(t, job, n, upper)
	<-killed
	requireOracle(t, tl, n)
}
