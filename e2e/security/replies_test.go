package security

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
)

// waitForResults waits until subject holds n messages of DF_RESULTS.
func waitForResults(t *testing.T, js jetstream.JetStream, subject string, n uint64) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, proto.StreamResults)
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
// subjects what only the fleet may publish on — a JetStream API call,
// bob's results, a heartbeat, a batch, a job record. The coordinator,
// which holds those rights, must not publish there: nothing arrives on
// them, and bob's results are still there to read.
func TestRepliesCannotBorrowRights(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ajs := f.admin.js(t)

	job, recs := f.bobsJob(ctx, t)
	bobSubject := proto.ResultSubject(job.ID())
	waitForResults(t, ajs, bobSubject, 3)

	marker := nuid.Next()
	replies := []string{
		"$JS.API.STREAM.PURGE." + proto.StreamResults,
		"$JS.API.STREAM.PURGE." + proto.StreamBatches,
		bobSubject,
		"df.hb.w-" + marker,
		"df.batch.upper.alice." + marker,
		"df.dead.alice." + marker,
		"$KV.DF_JOBS.alice." + marker,
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
