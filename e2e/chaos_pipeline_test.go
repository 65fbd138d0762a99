//go:build chaos

package e2e

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// TestChaosPipelineNodeRestart is issue 15's run on a 3-node cluster with
// R3 streams: 100,000 messages published while the pipeline runs; at 20%
// a worker is SIGKILLed, at 40% a NATS node (chosen by the seed), which
// comes back 4 s later, and at 60% the coordinator holding the pipeline.
// The publisher sends again what a node's loss failed (with message ids).
// The sink holds exactly one message per good source message, in order.
func TestChaosPipelineNodeRestart(t *testing.T) {
	rng := rand.New(rand.NewPCG(chaosSeed(t), 15))
	const n = 100_000
	cl, f := clusterFleet(t, 2)
	f.coordinator("--replicas", "3")
	r := newPipelineRun(t, f, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	published := make(chan error, 1)
	start := time.Now()
	go func() { published <- r.publish(ctx, n) }()

	if _, err := r.waitProcessed(ctx, n/5); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	var worker *proc
	for _, p := range f.procs {
		if p.name[0] == 'w' {
			worker = p
			break
		}
	}
	f.mu.Unlock()
	worker.kill(syscall.SIGKILL)
	t.Logf("killed worker %s at %v", worker.name, time.Since(start).Round(time.Millisecond))

	if _, err := r.waitProcessed(ctx, 2*n/5); err != nil {
		t.Fatal(err)
	}
	victim := rng.IntN(3)
	cl.nodes[victim].proc.kill(syscall.SIGKILL)
	t.Logf("killed node %s at %v", cl.nodes[victim].name, time.Since(start).Round(time.Millisecond))
	time.Sleep(4 * time.Second) // the outage being injected
	cl.start(victim)
	t.Logf("restarted node %s", cl.nodes[victim].name)

	holder := r.killHolder(ctx, 3*n/5)
	t.Logf("killed coordinator %s at %v", holder, time.Since(start).Round(time.Millisecond))

	if err := <-published; err != nil {
		t.Fatal(err)
	}
	v := r.check(ctx, n)
	t.Logf("%d messages in %v: %v", n, time.Since(start).Round(time.Millisecond), v)
	r.checkDead(ctx, t, v)
}
