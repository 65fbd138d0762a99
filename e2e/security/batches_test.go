package security

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/client"
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

	bob := f.client(t, bobRole)
	recs := records("bob-secret", 30)
	job, err := bob.Submit(ctx, "upper", client.Records(recs), client.WithBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
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
	err = eventually(10*time.Second, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return errPending
		}
		return nil
	})
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
	n := 0
	for o, err := range job.Results() {
		if err != nil {
			t.Fatalf("bob's job: %v", err)
		}
		if strings.Contains(string(o.Value), strings.ToUpper(marker)) {
			t.Fatalf("bob got alice's forged record as result %d", o.Index)
		}
		if got, want := string(o.Value), strings.ToUpper(string(recs[o.Index].Value)); got != want {
			t.Errorf("bob's record %d: got %q, want %q", o.Index, got, want)
		}
		n++
	}
	if n != len(recs) {
		t.Errorf("bob read %d results, want %d", n, len(recs))
	}
}

// errPending says the batch queue still holds work.
var errPending = errString("batches pending")

type errString string

func (e errString) Error() string { return string(e) }
