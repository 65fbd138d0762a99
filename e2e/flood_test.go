package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/nats-io/nats.go"
)

// TestRequestFlood (RELIABILITY row 24): owner mallory floods a
// coordinator process with status, report and job requests, without
// waiting for the answers (about 20,000 a second). Meanwhile bob
// creates jobs one after another: each create is answered within 100 ms
// on a quiet machine (1 s is what the test holds),
// and every one of mallory's requests is answered — with its answer or
// "busy" —, none is dropped unanswered.
func TestRequestFlood(t *testing.T) {
	f := newFleetProcs(t)
	f.coordinator()
	f.worker()
	f.waitHealthy(1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mallory := natstest.Connect(t, f.url)
	inbox := mallory.NewInbox()
	var sent, answered, busy atomic.Int64
	sub, err := mallory.Subscribe(inbox+".*", func(m *nats.Msg) {
		answered.Add(1)
		var r proto.Reply[json.RawMessage]
		if json.Unmarshal(m.Data, &r) == nil && r.Error != nil && r.Error.Code == plugin.CodeBusy {
			busy.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	create, _ := json.Marshal(proto.JobCreate{Plugin: "upper"})
	requests := []struct {
		subject string
		body    []byte
	}{
		{proto.SubjectStatus, nil}, {proto.SubjectReport, nil},
		{proto.JobSubject("get", proto.JobID("mallory", "nosuchjob")), nil}, {proto.JobCreateSubject("mallory"), create},
	}
	flooded := make(chan struct{})
	// Stops when cancel is called.
	go func() {
		defer close(flooded)
		for n := 0; ctx.Err() == nil; n++ {
			r := requests[n%len(requests)]
			if err := mallory.PublishRequest(r.subject, inbox+"."+strconv.Itoa(n), r.body); err != nil {
				return
			}
			sent.Add(1)
			if n%200 == 199 {
				// About 20,000 requests a second: twenty times what one
				// owner may ask, and more than the coordinator answers.
				mallory.Flush()
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()

	// The flood is on before bob starts.
	if err := poll.Until(ctx, 30*time.Second, func() error { return atLeast("answers", uint64(answered.Load()), 2000) }); err != nil {
		t.Fatal(err)
	}
	bob := natstest.Connect(t, f.url)
	var lat []time.Duration
	for range 100 {
		start := time.Now()
		m, err := bob.Request(proto.JobCreateSubject("bob"), create, 5*time.Second)
		lat = append(lat, time.Since(start))
		if err != nil {
			t.Fatalf("bob's job create: %v", err)
		}
		if _, err := proto.DecodeReply[proto.Job](m.Data); err != nil {
			t.Fatalf("bob's job create: %v", err)
		}
	}
	cancel()
	<-flooded
	// Every request of mallory's gets its answer.
	err = poll.Until(context.Background(), 20*time.Second, func() error {
		return atLeast("answers", uint64(answered.Load()), uint64(sent.Load()))
	})

	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("bob's job creates beside mallory's flood: p50 %v, p99 %v, max %v; mallory: %d requests, %d answered (%d busy)",
		p50.Round(time.Microsecond), p99.Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond),
		sent.Load(), answered.Load(), busy.Load())
	// The target, p99 ≤ 100 ms, is a figure (docs/reliability.md, row 24:
	// 14 – 15 ms on a quiet machine); what this test holds on a machine
	// also running every other package's tests is that bob is not queued
	// behind mallory's backlog of thousands of requests.
	if p99 > time.Second {
		t.Errorf("bob's job create p99 %v beside the flood, want ≤ 1 s (the target on a quiet machine: 100 ms)", p99)
	}
	if err != nil {
		t.Errorf("mallory's requests: %v — some went unanswered", err)
	}
}
