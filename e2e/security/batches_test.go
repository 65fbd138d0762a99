package security

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// TestBatchForAnotherJob: clients publish their batches to DF_BATCHES
// themselves, and NATS lets alice publish only under her own jobs'
// subjects. She publishes, on such a subject, a well-formed batch that
// names bob's job, so that its results would land among his. The worker
// removes it unrun: bob reads exactly his own results, and no result of
// hers is stored under his job.
func TestBatchForAnotherJob(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ajs := f.admin.js(t)

	job, recs := f.bobsJob(ctx, t)
	bobSubject := proto.ResultSubject(job.ID())
	waitForResults(t, ajs, bobSubject, 3)

	marker := "forged-" + nuid.Next()
	forged, err := batch.AppendBatch(nil, &batch.Batch{
		Job: job.ID(), Seq: 1000, Base: 1000, Plugin: "upper",
		Records: []plugin.Record{{Value: []byte(marker)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := dial(t, f.url, aliceRole)
	m := &nats.Msg{Subject: proto.BatchSubject("upper", proto.JobID("alice", nuid.Next())), Data: forged, Header: nats.Header{}}
	m.Header.Set(proto.HeaderMsgID, marker)
	if _, err := alice.js(t).PublishMsg(ctx, m); err != nil {
		t.Fatalf("alice may publish under her own jobs' subjects: %v", err)
	}

	// The worker has taken everything from the queue once the consumer
	// has nothing pending and nothing unacknowledged.
	cons, err := ajs.Consumer(ctx, proto.StreamBatches, proto.ConsumerWorker)
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(context.Background(), 10*time.Second, func() error { return natstest.Drained(ctx, cons) })
	if err != nil {
		t.Fatalf("the batch queue did not drain: %v", err)
	}
	results, err := ajs.Stream(ctx, proto.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := results.Info(ctx, jetstream.WithSubjectFilter("df.result.>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[bobSubject]; got != 3 {
		t.Errorf("bob's job holds %d result messages, want his 3", got)
	}
	// Bob reads his results, all of them, unchanged.
	readsAllHisResults(t, job, recs)
}

// TestForgedBatchIDs (RELIABILITY row 18): JetStream de-duplicates batch
// ids stream-wide, so an id anyone who knows a job's id could compute
// would let another owner swallow the job's batches by publishing the ids
// first. Alice learns bob's job id before bob's first batch is sent and
// publishes, on her own subject, batches under every id she can derive
// from it (the old "<job>.<seq>" scheme, and the job id with seq suffixes
// and guessed keys). Bob's job completes with all his results.
func TestForgedBatchIDs(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	recs := records("bob-secret", 30)
	release := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		<-release // the job exists; its batches are not sent yet
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
	job, err := f.client(t, bobRole).Submit(ctx, "upper", src, client.WithBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(job.Close)
	if !strings.HasPrefix(job.ID(), "bob.") || len(job.ID()) != len("bob.")+22 {
		t.Errorf("job id %q: want bob. and a 128-bit random token", job.ID())
	}

	alice := dial(t, f.url, aliceRole)
	ajs := alice.js(t)
	forged, err := batch.AppendBatch(nil, &batch.Batch{Job: job.ID(), Seq: 0, Plugin: "upper",
		Records: []plugin.Record{{Value: []byte("forged")}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := range uint64(5) {
		ids = append(ids, proto.ResultMsgID(job.ID(), seq), job.ID()+"."+strconv.FormatUint(seq, 10))
		for _, key := range []string{"", "0", "key", job.ID(), proto.LastToken(job.ID())} {
			ids = append(ids, proto.BatchMsgID(job.ID(), key, seq))
		}
	}
	for _, id := range ids {
		m := &nats.Msg{Subject: proto.BatchSubject("upper", proto.JobID("alice", nuid.Next())), Data: forged, Header: nats.Header{}}
		m.Header.Set(proto.HeaderMsgID, id)
		if _, err := ajs.PublishMsg(ctx, m); err != nil {
			t.Fatalf("alice may publish under her own jobs' subjects: %v", err)
		}
	}
	close(release)
	readsAllHisResults(t, job, recs)
}
