package security

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// waitForResults waits until job's subject holds n messages of its
// owner's result stream.
func waitForResults(t *testing.T, js jetstream.JetStream, job string, n uint64) {
	t.Helper()
	ctx := context.Background()
	subject := proto.ResultSubject(job)
	s, err := js.Stream(ctx, proto.ResultStream(proto.JobOwner(job)))
	if err != nil {
		t.Fatal(err)
	}
	err = poll.Until(context.Background(), 10*time.Second, func() error {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return err
		}
		if got := info.State.Subjects[subject]; got != n {
			return fmt.Errorf("%s holds %d results, want %d", subject, got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRepliesCannotBorrowRights: a requester chooses the subject its answer
// goes to. Alice asks the coordinator things she may ask, naming as reply
// subjects what only the fleet may publish on — JetStream API calls, bob's
// results, a heartbeat, batches, a work hint, a job record, a queue entry.
// The coordinator,
// which holds those rights, must not publish there: nothing arrives on
// them, and bob's results are still there to read.
func TestRepliesCannotBorrowRights(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ajs := f.admin.js(t)

	job, recs := f.bobsJob(ctx, t)
	bobSubject := proto.ResultSubject(job.ID())
	waitForResults(t, ajs, job.ID(), 3)

	marker := nuid.Next()
	replies := []string{
		"$JS.API.STREAM.PURGE." + proto.ResultStream("bob"),
		"$JS.API.STREAM.PURGE." + proto.BatchStream("bob"),
		"$JS.API.CONSUMER.DELETE." + proto.BatchStream("bob") + "." + proto.WorkerConsumer(fleet.Normal),
		bobSubject,
		"df.hb.w-" + marker,
		proto.BatchSubject(proto.JobID("alice", marker), fleet.Normal, "upper"),
		proto.BatchSubject(proto.JobID("bob", marker), fleet.High, "upper"),
		// Bob's job is of normal priority: nothing else hints his high queue.
		proto.WorkSubject("bob", fleet.High),
		"df.dead.alice." + marker,
		"$KV.DF_JOBS.alice." + marker,
		"$KV." + proto.BucketQueues + "." + proto.BatchStream("mallory"),
		"$O.DF_PLUGINS.M." + marker,
	}
	// The admin watches every one of those subjects.
	var watches []*nats.Subscription
	for _, r := range replies {
		s, err := f.admin.SubscribeSync(r)
		if err != nil {
			t.Fatal(err)
		}
		watches = append(watches, s)
	}
	if err := f.admin.Flush(); err != nil {
		t.Fatal(err)
	}

	alice, anc := f.clientConn(t, aliceRole)
	requests := []struct{ subject, data string }{
		{proto.SubjectStatus, ""},
		{proto.SubjectReport, ""},
		{proto.JobCreateSubject("alice"), `{"plugin":"upper"}`},
		{proto.JobSubject("get", "alice.nosuchjob"), ""},
	}
	for _, r := range replies {
		for _, req := range requests {
			if err := anc.PublishRequest(req.subject, r, []byte(req.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The coordinator handles requests in order: once a later one is
	// answered, the ones above were handled.
	if _, err := alice.SystemStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, s := range watches {
		t.Run(replies[i], func(t *testing.T) {
			if m, err := s.NextMsg(50 * time.Millisecond); err == nil {
				t.Errorf("got a message on %s: %.120q", m.Subject, m.Data)
			}
		})
	}
	st, err := alice.SystemStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Workers {
		if strings.Contains(w.ID, marker) {
			t.Errorf("a fake worker %s is in the fleet", w.ID)
		}
	}
	readsAllHisResults(t, job, recs)
}

// TestJetStreamRepliesIntoAnotherOwnersStreams: the server answers a
// JetStream API request on whatever reply subject the requester names,
// without checking it against the requester's permissions (docs/security.md,
// "What is not protected"), and a stream captures the answer like any
// message. Alice names subjects of bob's batch and result streams as the
// reply subjects of requests she may send. Bob's job still completes with
// exactly his results, and what landed on the subjects of bob's queues is
// removed unrun by the workers. What lands on a subject of his batch
// stream that none of the workers' consumers takes stays there, counting
// against his queue's bytes until Retention: while it does, the test ends
// with a skip that says so.
func TestJetStreamRepliesIntoAnotherOwnersStreams(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ajs := f.admin.js(t)

	job, recs := f.bobsJob(ctx, t)
	waitForResults(t, ajs, job.ID(), 3)

	marker := nuid.Next()
	junkResults := proto.ResultSubject(proto.JobID("bob", marker))
	const n = 10
	alice := dial(t, f.url, aliceRole)
	request := "$JS.API.CONSUMER.DELETE." + proto.ResultStream("alice") + ".nosuch"
	for _, reply := range []string{
		proto.BatchSubject(job.ID(), fleet.Normal, "upper"),
		proto.BatchSubject(proto.JobID("bob", marker), fleet.High, "upper"),
		"df.batch.bob." + marker,
		junkResults, // last: once these are stored, the ones above were answered
	} {
		for range n {
			if err := alice.PublishRequest(request, reply, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Alice may send the request: the denial of nothing is expected.
	if err := alice.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, err := range alice.permissionViolations() {
		t.Errorf("alice: %v", err)
	}
	waitForResults(t, ajs, proto.JobID("bob", marker), n)

	// The workers take what the consumers deliver and remove it unrun.
	err := poll.Until(ctx, 10*time.Second, func() error { return batchesDrained(ctx, ajs) })
	if err != nil {
		t.Fatalf("the batch queues did not drain: %v", err)
	}
	readsAllHisResults(t, job, recs)

	s, err := ajs.Stream(ctx, proto.BatchStream("bob"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d answers stay in %s under a subject of no job (known limit: needs accounts)", n, proto.ResultStream("bob"))
	// A batch stream captures exactly its consumers' filters: an answer on
	// a subject no consumer takes is not stored at all.
	if info.State.Msgs > 0 {
		t.Errorf("%d answers stay in %s on subjects no workers' consumer takes (%v), counting against bob's queue until Retention",
			info.State.Msgs, proto.BatchStream("bob"), info.State.Subjects)
	}
}

// TestRequestsWithoutAnInboxIgnored: alice knows bob's job id and makes
// the server publish a JetStream API answer on the job's cancel subject
// (the reply subject of her request). The coordinators ignore it: they act
// only on requests that have an inbox to answer, and bob's job completes.
func TestRequestsWithoutAnInboxIgnored(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := records("bob-secret", 30)
	release := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		<-release
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
	alice := dial(t, f.url, aliceRole)
	request := "$JS.API.CONSUMER.DELETE." + proto.ResultStream("alice") + ".nosuch"
	for _, verb := range []string{"cancel", "seal", "done"} {
		if err := alice.PublishRequest(request, proto.JobSubject(verb, job.ID()), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.Flush(); err != nil {
		t.Fatal(err)
	}
	// The answers reach the coordinators before bob's batches go.
	ajs := f.admin.js(t)
	kv, err := ajs.KeyValue(ctx, proto.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, job.ID())
	if err != nil {
		t.Fatal(err)
	}
	var rec proto.Job
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.State != proto.JobOpen {
		t.Fatalf("bob's job is %q (%v) after alice's answers, want open", rec.State, err)
	}
	close(release)
	readsAllHisResults(t, job, recs)
}
