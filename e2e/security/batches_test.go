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
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// openJob submits a job of plugin "upper" for c whose records come only
// once release is closed: a job that exists (and with it, on a fleet with a
// stream per owner, its owner's streams) before any of its batches is sent.
// The job is closed when the test ends.
func openJob(ctx context.Context, t *testing.T, c *client.Client, recs []plugin.Record, release <-chan struct{}) *client.Job {
	t.Helper()
	src := func(yield func(plugin.Record, error) bool) {
		select {
		case <-release:
		case <-ctx.Done():
			return
		}
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
	job, err := c.Submit(ctx, "upper", src, client.WithBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(job.Close)
	return job
}

// TestBatchForAnotherJob: clients publish their batches to their batch
// stream themselves, and NATS lets alice publish only under her own jobs'
// subjects. She publishes, on the subject of a job of hers, a well-formed
// batch that names bob's job, so that its results would land among his.
// The worker removes it unrun: bob reads exactly his own results, no result
// of hers is stored under his job, and her own job is untouched — with a
// batch stream per owner and with the shared FIFO stream.
func TestBatchForAnotherJob(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			f := startFleetWith(t, tp.topo)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ajs := f.admin.js(t)

			job, recs := f.bobsJob(ctx, t)
			bobSubject := proto.ResultSubject(job.ID())
			waitForResults(t, ajs, job.ID(), 3)

			// Alice's own job, its batches held back.
			aliceRecs := records("alice", 20)
			release := make(chan struct{})
			aliceJob := openJob(ctx, t, f.client(t, aliceRole), aliceRecs, release)

			marker := "forged-" + nuid.Next()
			forged, err := batch.AppendBatch(nil, &batch.Batch{
				Job: job.ID(), Seq: 1000, Base: 1000, Plugin: "upper",
				Records: []plugin.Record{{Value: []byte(marker)}},
			})
			if err != nil {
				t.Fatal(err)
			}
			alice := dial(t, f.url, aliceRole)
			m := &nats.Msg{Subject: proto.BatchSubject(aliceJob.ID(), fleet.Normal, "upper"), Data: forged, Header: nats.Header{}}
			m.Header.Set(proto.HeaderMsgID, marker)
			if _, err := alice.js(t).PublishMsg(ctx, m); err != nil {
				t.Fatalf("alice may publish under her own jobs' subjects: %v", err)
			}

			// The worker has taken everything from the queues once their
			// consumers have nothing pending and nothing unacknowledged.
			err = poll.Until(context.Background(), 10*time.Second, func() error { return batchesDrained(ctx, ajs) })
			if err != nil {
				t.Fatalf("the batch queues did not drain: %v", err)
			}
			results, err := ajs.Stream(ctx, proto.ResultStream("bob"))
			if err != nil {
				t.Fatal(err)
			}
			info, err := results.Info(ctx, jetstream.WithSubjectFilter("df.result.>"))
			if err != nil {
				t.Fatal(err)
			}
			if got := info.State.Subjects[bobSubject]; got != 3 || len(info.State.Subjects) != 1 {
				t.Errorf("bob's result stream holds %v, want his job's 3 messages only", info.State.Subjects)
			}
			// Bob reads his results, all of them, unchanged; then alice
			// hers.
			readsAllHisResults(t, job, recs)
			close(release)
			n := 0
			for o, err := range aliceJob.Results() {
				if err != nil {
					t.Fatalf("alice's job: %v", err)
				}
				if got, want := string(o.Value), strings.ToUpper(string(aliceRecs[o.Index].Value)); got != want {
					t.Errorf("alice's record %d: got %q, want %q", o.Index, got, want)
				}
				n++
			}
			if n != len(aliceRecs) {
				t.Errorf("alice read %d results, want %d", n, len(aliceRecs))
			}
		})
	}
}

// TestForgedBatchIDs (RELIABILITY row 18): JetStream de-duplicates batch
// ids stream-wide, so an id anyone who knows a job's id could compute
// would let another owner swallow the job's batches by publishing the ids
// first. Alice learns bob's job id before bob's first batch is sent and
// publishes, on her own subject, batches under every id she can derive
// from it (the old "<job>.<seq>" scheme, and the job id with seq suffixes
// and guessed keys). Bob's job completes with all his results. On the FIFO
// fleet her batches share bob's stream (and its de-duplication window), so
// the secret key in the ids is what protects him; with a stream per owner
// they do not even meet.
func TestForgedBatchIDs(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			f := startFleetWith(t, tp.topo)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// Alice's streams exist once she has a job (whose records never
			// come: the source ends with ctx).
			aliceJob := openJob(ctx, t, f.client(t, aliceRole), records("alice", 1), make(chan struct{}))

			recs := records("bob-secret", 30)
			bobRelease := make(chan struct{})
			job := openJob(ctx, t, f.client(t, bobRole), recs, bobRelease)
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
				m := &nats.Msg{Subject: proto.BatchSubject(aliceJob.ID(), fleet.Normal, "upper"), Data: forged, Header: nats.Header{}}
				m.Header.Set(proto.HeaderMsgID, id)
				if _, err := ajs.PublishMsg(ctx, m); err != nil {
					t.Fatalf("alice may publish under her own jobs' subjects: %v", err)
				}
			}
			close(bobRelease)
			readsAllHisResults(t, job, recs)
		})
	}
}
