//go:build chaos

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// TestChaosWorkerKills is RELIABILITY row 1 at full length: a 100k-record
// job on 3 worker processes, one SIGKILLed every few seconds (on a fixed,
// logged schedule) and replaced.
func TestChaosWorkerKills(t *testing.T) {
	workerKills(t, 100_000, rand.New(rand.NewPCG(chaosSeed(t), 2)), 1500*time.Millisecond)
}

// TestChaosCrashPoison is RELIABILITY row 7 for records that kill the
// worker process running them: after MaxDeliver deliveries the next worker
// splits the batch unrun, down to the single records, which get poison errors and
// dead letters. Workers are restarted as they die.
func TestChaosCrashPoison(t *testing.T) {
	f := newFleetProcs(t)
	f.ackArg = "1s"
	f.coordinator("--max-deliver", "2")
	var mu sync.Mutex
	workers := []*proc{f.testworker("--parallel", "1"), f.testworker("--parallel", "1"), f.testworker("--parallel", "1")}
	f.waitHealthy(3)
	crashes := 0
	stop := make(chan struct{})
	supervised := make(chan struct{})
	// The supervisor: replaces dead workers. Stops on stop.
	go func() {
		defer close(supervised)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			mu.Lock()
			for i, w := range workers {
				if w.exited() {
					crashes++
					workers[i] = f.testworker("--parallel", "1")
				}
			}
			mu.Unlock()
		}
	}()
	c := f.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 2000
	bad := func(i int) bool { return i%500 == 3 }
	src, val := marked(n, bad, "crash")
	job, err := c.Submit(ctx, "crash", src, client.WithBatchSize(8), client.WithConfig(plugin.Config{"match": "crash"}))
	if err != nil {
		t.Fatal(err)
	}
	var failed []uint64
	good := 0
	for out, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case out.Err != nil:
			if !errors.Is(out.Err, plugin.ErrPoison) {
				t.Errorf("record %d: %v, want a poison error", out.Index, out.Err)
			}
			failed = append(failed, out.Index)
		case string(out.Value) == string(val(int(out.Index))):
			good++
		}
	}
	close(stop)
	<-supervised
	var want []uint64
	for i := range n {
		if bad(i) {
			want = append(want, uint64(i))
		}
	}
	t.Logf("%d worker crashes; poison records %v", crashes, failed)
	if !slices.Equal(failed, want) || good != n-len(want) {
		t.Fatalf("failed records %v (want %v), good %d (want %d)", failed, want, good, n-len(want))
	}
	dls := deadLetters(t, f.url, job.ID(), len(want))
	if len(dls) != len(want) {
		t.Errorf("%d dead letters, want %d", len(dls), len(want))
	}
}

// clusterFleet starts 3 nats-server processes, a coordinator with R3
// streams and workers, all given every node's URL.
func clusterFleet(t *testing.T, workers int) (*natsCluster, *fleetProcs) {
	nc := startNATS(t, 3)
	f := newFleetOn(t, nc.URL())
	f.coordinator("--replicas", "3")
	for range workers {
		f.worker()
	}
	f.waitHealthy(workers)
	return nc, f
}

// TestChaosNodeLoss is RELIABILITY row 5: a 3-node cluster with R3
// streams; one node is SIGKILLed mid-job and restarted later. The job
// completes with nothing lost.
func TestChaosNodeLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(chaosSeed(t), 5))
	cl, f := clusterFleet(t, 2)
	c := f.client(client.WithTimeout(2 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 60_000
	job, err := c.Submit(ctx, "delay", inputs(n, nil), client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	victim := rng.IntN(3)
	chaos := make(chan struct{})
	// Stops after the kill and the restart.
	go func() {
		defer close(chaos)
		if !waitResults(t, job, uint64(n/5)) {
			return
		}
		cl.nodes[victim].proc.kill(syscall.SIGKILL)
		t.Logf("killed node %s at %d results", cl.nodes[victim].name, job.Progress().Results)
		time.Sleep(4 * time.Second) // the outage being injected
		cl.start(victim)
		t.Logf("restarted node %s", cl.nodes[victim].name)
	}()
	tl := collect(t, job, n, value)
	<-chaos
	requireOracle(t, tl, n)
}

// TestChaosQuorumLoss is RELIABILITY row 6: 2 of 3 nodes are down for 10 s.
// A new job cannot be created meanwhile (a clean error, no false success);
// after the nodes return, the running job completes with nothing lost.
func TestChaosQuorumLoss(t *testing.T) {
	cl, f := clusterFleet(t, 2)
	c := f.client(client.WithTimeout(2 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 40_000
	job, err := c.Submit(ctx, "delay", inputs(n, nil), client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	outage := make(chan error, 1)
	// Stops after the outage.
	go func() {
		if !waitResults(t, job, uint64(n/5)) {
			return
		}
		cl.nodes[1].proc.kill(syscall.SIGKILL)
		cl.nodes[2].proc.kill(syscall.SIGKILL)
		down := time.Now()
		probe := f.client(client.WithTimeout(2*time.Second), client.WithRetry(0))
		pctx, pcancel := context.WithTimeout(ctx, 6*time.Second)
		j, err := probe.Submit(pctx, "upper", inputs(10, nil))
		pcancel()
		if err == nil {
			// Created before the cluster noticed? Then its results
			// must not arrive while there is no quorum.
			_, err = j.Wait()
			j.Close()
		}
		time.Sleep(max(0, 10*time.Second-time.Since(down))) // the outage being injected
		cl.start(1)
		cl.start(2)
		outage <- err
	}()
	tl := collect(t, job, n, value)
	probeErr := <-outage
	t.Logf("a job submitted without quorum: %v", probeErr)
	if probeErr == nil {
		t.Error("a job submitted while 2 of 3 nodes were down succeeded")
	}
	requireOracle(t, tl, n)
}

// TestChaosServerStall is RELIABILITY row 9: the server is stopped
// (SIGSTOP) for longer than two pull heartbeats, then resumed. Workers
// notice, resume, and nothing is lost; goroutines do not pile up.
func TestChaosServerStall(t *testing.T) {
	cl := startNATS(t, 1)
	f := newFleetOn(t, cl.URL())
	f.coordinator()
	f.worker()
	f.worker()
	f.waitHealthy(2)
	c := f.client(client.WithTimeout(2 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := goroutines(t, c)
	const n = 40_000
	job, err := c.Submit(ctx, "delay", inputs(n, nil), client.WithConfig(plugin.Config{"ms": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	stalled := make(chan struct{})
	// Stops after the stall.
	go func() {
		defer close(stalled)
		if !waitResults(t, job, uint64(n/5)) {
			return
		}
		cl.nodes[0].proc.kill(syscall.SIGSTOP)
		time.Sleep(6 * time.Second) // the stall being injected: > 2 pull heartbeats
		cl.nodes[0].proc.kill(syscall.SIGCONT)
	}()
	tl := collect(t, job, n, value)
	<-stalled
	requireOracle(t, tl, n)
	f.waitHealthy(2)
	after := goroutines(t, c)
	t.Logf("worker goroutines before %v, after %v", before, after)
	for id, b := range before {
		if a := after[id]; a > b+20 {
			t.Errorf("worker %s: %d goroutines after the stall, %d before", id, a, b)
		}
	}
}

// goroutines returns each live worker's goroutine count from its heartbeat.
func goroutines(t *testing.T, c *client.Client) map[string]int {
	st, err := c.SystemStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, w := range st.Workers {
		out[w.ID] = w.Goroutines
	}
	return out
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// TestChaosLoadHeld is RELIABILITY row 8: a burst of 1M records on 2
// workers. In-flight batches stay within MaxAckPending, worker memory and
// goroutines stay flat, throughput holds.
func TestChaosLoadHeld(t *testing.T) {
	f := newFleetProcs(t)
	f.coordinator()
	ws := []*proc{f.worker(), f.worker()}
	f.waitHealthy(2)
	c := f.client()
	js, err := jetstream.New(natstest.Connect(t, f.url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := 1_000_000
	if s := os.Getenv("DF_LOAD_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	src := func(yield func(plugin.Record, error) bool) {
		v := make([]byte, 100)
		for i := range n {
			copy(v, value(i))
			if !yield(plugin.Record{Value: v}, nil) {
				return
			}
		}
	}
	job, err := c.Submit(ctx, "identity", src)
	if err != nil {
		t.Fatal(err)
	}
	// The job's queue: its owner's batch stream (made with the job), the
	// consumer of its priority.
	cons, err := js.Consumer(ctx, proto.BatchStream(proto.JobOwner(job.ID())), proto.WorkerConsumer(fleet.Normal))
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		at         time.Time
		results    uint64
		rss        []int
		ackPending int
		inFlight   int
	}
	var samples []sample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	// The sampler. Stops on stop.
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			s := sample{at: time.Now(), results: job.Progress().Results}
			for _, w := range ws {
				s.rss = append(s.rss, rssKiB(w.cmd.Process.Pid))
			}
			if info, err := cons.Info(ctx); err == nil {
				s.ackPending = info.NumAckPending
			}
			if st, err := c.SystemStatus(ctx); err == nil {
				for _, w := range st.Workers {
					s.inFlight = max(s.inFlight, w.InFlight)
				}
			}
			samples = append(samples, s)
		}
	}()
	n0 := 0
	for _, err := range job.Results() {
		if err != nil {
			t.Fatal(err)
		}
		n0++
	}
	close(stop)
	<-sampled
	if n0 != n {
		t.Fatalf("%d results, want %d", n0, n)
	}
	if len(samples) < 8 {
		t.Skipf("the job took only %d samples: too fast to judge", len(samples))
	}
	half := len(samples) / 2
	peak := func(ss []sample) (rss, ack, inflight int) {
		for _, s := range ss {
			for _, r := range s.rss {
				rss = max(rss, r)
			}
			ack, inflight = max(ack, s.ackPending), max(inflight, s.inFlight)
		}
		return
	}
	rss1, ack1, in1 := peak(samples[:half])
	rss2, ack2, in2 := peak(samples[half:])
	rate := func(a, b sample) float64 { return float64(b.results-a.results) / b.at.Sub(a.at).Seconds() }
	q := len(samples) / 4
	r1, r4 := rate(samples[0], samples[q]), rate(samples[len(samples)-1-q], samples[len(samples)-1])
	t.Logf("RSS peak first half %d KiB, second half %d KiB; ack pending peak %d/%d (max %d); in flight peak %d/%d; records/s first quarter %.0f, last quarter %.0f",
		rss1, rss2, ack1, ack2, proto.DefaultMaxAckPending, in1, in2, r1, r4)
	if rss2 > rss1+rss1/2+20<<10 {
		t.Errorf("worker RSS grew from %d KiB to %d KiB", rss1, rss2)
	}
	if max(ack1, ack2) > proto.DefaultMaxAckPending {
		t.Errorf("ack pending %d over MaxAckPending %d", max(ack1, ack2), proto.DefaultMaxAckPending)
	}
	if max(in1, in2) > 4 {
		t.Errorf("a worker ran %d batches at once, over its --parallel 4", max(in1, in2))
	}
	if r4 < r1/2 {
		t.Errorf("throughput fell from %.0f to %.0f records/s", r1, r4)
	}
}
