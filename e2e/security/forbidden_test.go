package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
)

// violationWait bounds the wait for the server's permission error: it comes
// back within a round trip.
const violationWait = 3 * time.Second

// attempt is one thing a role may not do. do performs it and returns when
// it is done or ctx ends; the server must report the violation named by
// denied to the connection. ctx ends as soon as the violation is seen, so
// requests that will never get an answer do not wait for a timeout.
type attempt struct {
	name   string
	do     func(ctx context.Context, c *conn) error
	denied string
}

// pub publishes data on subject, with a reply inbox as a request would.
func pub(name, subject string, data []byte) attempt {
	return attempt{
		name: name,
		do: func(_ context.Context, c *conn) error {
			return c.PublishMsg(&nats.Msg{Subject: subject, Reply: c.NewInbox(), Data: data})
		},
		denied: fmt.Sprintf("Publish to %q", subject),
	}
}

// sub subscribes to subject; a message that arrives before the denial
// fails the test.
func sub(name, subject string) attempt {
	return attempt{
		name: name,
		do: func(ctx context.Context, c *conn) error {
			s, err := c.SubscribeSync(subject)
			if err != nil {
				return err
			}
			defer s.Unsubscribe()
			if m, err := s.NextMsgWithContext(ctx); err == nil {
				return fmt.Errorf("received a message on %s: %.80q", m.Subject, m.Data)
			}
			return nil
		},
		denied: fmt.Sprintf("Subscription to %q", subject),
	}
}

// api is a raw JetStream API request: what the jetstream package sends.
func api(name, subject string, data []byte) attempt {
	return pub(name, "$JS.API."+subject, data)
}

// try runs the attempts as c, each as a subtest: each must be reported as a
// permission violation, and an error do returns must be one the denial
// explains (no answer).
func try(t *testing.T, c *conn, attempts []attempt) {
	t.Helper()
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), violationWait)
			defer cancel()
			from := c.errs.mark()
			done := make(chan error, 1)
			// Stops when the attempt is done or ctx ends.
			go func() { done <- a.do(ctx, c) }()
			got, ok := c.errs.waitFor(a.denied, from, violationWait)
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
				!errors.Is(err, nats.ErrTimeout) && !errors.Is(err, client.ErrNoCoordinator) && !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("%s as %s: got error %v, want a denial (or no answer)", a.name, c.role.user, err)
			}
			if !ok {
				t.Fatalf("%s as %s: no permission violation for %s", a.name, c.role.user, a.denied)
			}
			if !errors.Is(got, nats.ErrPermissionViolation) {
				t.Errorf("%s as %s: got %v, want a permission violation", a.name, c.role.user, got)
			}
		})
	}
}

// consumerCreate is the body of a JetStream consumer creation request.
func consumerCreate(stream, name, filter string) []byte {
	b, _ := json.Marshal(map[string]any{
		"stream_name": stream,
		"config":      map[string]any{"name": name, "filter_subject": filter, "ack_policy": "none"},
	})
	return b
}

// readerOf returns the name of the consumer that reads stream (a job's
// ordered consumer), waiting for it to exist.
func readerOf(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) string {
	t.Helper()
	var name string
	err := poll.Until(ctx, 10*time.Second, func() error {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		names := s.ConsumerNames(ctx)
		for n := range names.Name() {
			name = n
		}
		if err := names.Err(); err != nil {
			return err
		}
		if name == "" {
			return fmt.Errorf("no consumer on %s yet", stream)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestForbidden runs a job for bob and leaves its results unread, then lets
// alice, the worker and the coordinator try everything their roles forbid:
// every attempt is denied with a permission error, a canary subscribed to
// every subject sees none of the attempts' data, bob's streams, the
// workers' consumers, the queue entries and the plugin store are intact,
// and bob still reads all his results.
func TestForbidden(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	marker := "LEAK-" + nuid.Next()
	k := newCanary(t, f.admin, marker)
	data := []byte(marker)
	ajs := f.admin.js(t)

	// Bob's job: results waiting in his result stream while the others try.
	bobJob, bobRecs := f.bobsJob(ctx, t)
	bobID := bobJob.ID()
	bobSubject := proto.ResultSubject(bobID)
	waitForResults(t, ajs, bobID, 3)
	var (
		bobResults   = proto.ResultStream("bob")
		bobBatches   = proto.BatchStream("bob")
		aliceResults = proto.ResultStream("alice")
		aliceBatches = proto.BatchStream("alice")
		// bobReader is the consumer bob's client reads his results with.
		bobReader = readerOf(ctx, t, ajs, bobResults)
		queues    = "KV_" + proto.BucketQueues
		high      = proto.WorkerConsumer(fleet.High)
		normal    = proto.WorkerConsumer(fleet.Normal)
		low       = proto.WorkerConsumer(fleet.Low)
	)

	alice := dial(t, f.url, aliceRole)
	aliceJS := alice.js(t)
	aliceClient, err := client.New(alice.Conn, client.WithOwner("alice"), client.WithTimeout(time.Second), client.WithRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	worker := dial(t, f.url, workerRole)
	workerJS := worker.js(t)
	coord := dial(t, f.url, coordinatorRole)

	t.Run("alice", func(t *testing.T) {
		try(t, alice, []attempt{
			// Reading bob's results, by every way there is.
			{
				name: "attach to bob's job",
				do: func(ctx context.Context, c *conn) error {
					j, err := aliceClient.Attach(ctx, bobID)
					if err == nil {
						j.Close()
						return errors.New("attached to bob's job")
					}
					return err
				},
				denied: fmt.Sprintf("Publish to %q", proto.JobSubject("get", bobID)),
			},
			{
				name: "consumer on bob's results",
				do: func(ctx context.Context, c *conn) error {
					cons, err := aliceJS.OrderedConsumer(ctx, bobResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bobSubject}})
					if err != nil {
						return err
					}
					if m, err := cons.Next(jetstream.FetchContext(ctx)); err == nil {
						return fmt.Errorf("read bob's result %s", m.Subject())
					}
					return nil
				},
				denied: "." + bobSubject + `"`,
			},
			{
				name: "consumer on her result stream, filtered on bob's results",
				do: func(ctx context.Context, c *conn) error {
					cons, err := aliceJS.OrderedConsumer(ctx, aliceResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bobSubject}})
					if err != nil {
						return err
					}
					if m, err := cons.Next(jetstream.FetchContext(ctx)); err == nil {
						return fmt.Errorf("read bob's result %s", m.Subject())
					}
					return nil
				},
				denied: "." + bobSubject + `"`,
			},
			api("consumer create, bob's filter", "CONSUMER.CREATE."+bobResults+".x."+bobSubject, consumerCreate(bobResults, "x", bobSubject)),
			api("consumer create on bob's stream, her own filter", "CONSUMER.CREATE."+bobResults+".x.df.result.alice.>", consumerCreate(bobResults, "x", "df.result.alice.>")),
			api("consumer create, all results", "CONSUMER.CREATE."+bobResults+".x.df.result.>", consumerCreate(bobResults, "x", "df.result.>")),
			api("consumer create, no filter", "CONSUMER.CREATE."+bobResults+".x", consumerCreate(bobResults, "x", "")),
			api("consumer create, legacy ephemeral", "CONSUMER.CREATE."+bobResults, consumerCreate(bobResults, "", "")),
			api("consumer create, legacy durable", "CONSUMER.DURABLE.CREATE."+bobResults+".x", consumerCreate(bobResults, "x", "")),
			api("consumer create on her stream, no filter", "CONSUMER.CREATE."+aliceResults+".x", consumerCreate(aliceResults, "x", "")),
			api("consumer create on her stream, legacy durable", "CONSUMER.DURABLE.CREATE."+aliceResults+".x", consumerCreate(aliceResults, "x", "")),
			api("pull from bob's reader", "CONSUMER.MSG.NEXT."+bobResults+"."+bobReader, []byte(`{"batch":10}`)),
			api("delete bob's reader", "CONSUMER.DELETE."+bobResults+"."+bobReader, nil),
			api("consumer names", "CONSUMER.NAMES."+bobResults, nil),
			api("consumer list", "CONSUMER.LIST."+bobResults, nil),
			api("consumer info", "CONSUMER.INFO."+bobResults+"."+bobReader, nil),
			api("message get", "STREAM.MSG.GET."+bobResults, []byte(`{"last_by_subj":"`+bobSubject+`"}`)),
			api("direct get", "DIRECT.GET."+bobResults+"."+bobSubject, nil),
			api("stream info", "STREAM.INFO."+bobResults, nil),
			sub("subscribe to every result", "df.result.>"),
			sub("subscribe to bob's results", "df.result.bob.>"),
			sub("subscribe to every inbox", "_INBOX.>"),
			sub("subscribe to bob's inbox", "_INBOX_bob.>"),
			sub("subscribe to the worker's inbox", "_INBOX_worker.>"),
			sub("subscribe to everything", ">"),
			sub("subscribe to job requests", "df.job.>"),
			sub("subscribe to batches", "df.batch.>"),
			sub("subscribe to work hints", "df.work.>"),
			sub("subscribe to heartbeats", "df.hb.*"),
			sub("subscribe to advisories", "$JS.EVENT.>"),
			sub("answer status requests", "df.status"),
			// Acting on bob's job.
			pub("create a job as bob", proto.JobCreateSubject("bob"), data),
			pub("cancel bob's job", proto.JobSubject("cancel", bobID), data),
			pub("seal bob's job", proto.JobSubject("seal", bobID), data),
			pub("finish bob's job", proto.JobSubject("done", bobID), data),
			// Forging what only the fleet writes, and writing into
			// bob's queues.
			pub("forge bob's results", bobSubject, data),
			pub("forge own results", "df.result.alice.x", data),
			pub("forge a dead letter", "df.dead.alice.x", data),
			pub("inject a batch into bob's job", proto.BatchSubject(bobID, fleet.Normal, "upper"), data),
			pub("inject a high-priority batch into bob's queue", proto.BatchSubject(proto.JobID("bob", "x"), fleet.High, "upper"), data),
			pub("a batch of another priority than there are", "df.batch.alice.urgent.upper.x", data),
			pub("a batch subject too short", "df.batch.alice.normal.upper", data),
			pub("a batch subject too long", "df.batch.alice.normal.upper.x.y", data),
			pub("a batch outside any owner", "df.batch.x", data),
			pub("hint bob's queue", proto.WorkSubject("bob", fleet.Normal), data),
			pub("define a pipeline as bob", proto.PipelineSubject("create", "bob", "x"), data),
			pub("list bob's pipelines", "df.pipeline.list.bob", data),
			pub("fake heartbeat", "df.hb.w1", data),
			pub("forge a job record", "$KV.DF_JOBS.bob.x", data),
			pub("write her queue entry", "$KV."+proto.BucketQueues+"."+aliceBatches, data),
			pub("write bob's queue entry", "$KV."+proto.BucketQueues+"."+bobBatches, data),
			pub("push a plugin chunk", "$O.DF_PLUGINS.C.x", data),
			pub("push a plugin manifest", "$O.DF_PLUGINS.M.x", data),
			pub("announce a plugin", proto.SubjectPluginsChanged, data),
			// Administering JetStream.
			api("create a stream", "STREAM.CREATE.X", data),
			api("delete bob's results", "STREAM.DELETE."+bobResults, data),
			api("purge bob's results", "STREAM.PURGE."+bobResults, data),
			api("update bob's results", "STREAM.UPDATE."+bobResults, data),
			api("delete a result", "STREAM.MSG.DELETE."+bobResults, data),
			api("purge her own results", "STREAM.PURGE."+aliceResults, data),
			api("purge bob's batches", "STREAM.PURGE."+bobBatches, data),
			api("purge her own batches", "STREAM.PURGE."+aliceBatches, data),
			api("raise her own queue's limit", "STREAM.UPDATE."+aliceBatches, data),
			api("stream names", "STREAM.NAMES", data),
			api("account info", "INFO", data),
			api("steal bob's batches", "CONSUMER.MSG.NEXT."+bobBatches+"."+normal, data),
			api("pull from her own queue", "CONSUMER.MSG.NEXT."+aliceBatches+"."+high, data),
			api("pull from the shared queue", "CONSUMER.MSG.NEXT."+proto.StreamBatches+"."+low, data),
			api("workers' consumer info", "CONSUMER.INFO."+bobBatches+"."+normal, data),
			api("delete the workers' consumer", "CONSUMER.DELETE."+bobBatches+"."+normal, data),
			api("change the workers' consumer", "CONSUMER.CREATE."+bobBatches+"."+normal+".df.batch.bob.normal.>", consumerCreate(bobBatches, normal, "df.batch.bob.normal.>")),
			api("own consumer on her batches", "CONSUMER.CREATE."+aliceBatches+".x.df.batch.alice.>", consumerCreate(aliceBatches, "x", "df.batch.alice.>")),
			pub("ack a batch", "$JS.ACK."+bobBatches+"."+normal+".1.1.1.1.1.0", data),
			api("read a job record", "DIRECT.GET.KV_DF_JOBS.$KV.DF_JOBS."+bobID, data),
			api("read a queue entry", "DIRECT.GET."+queues+".$KV."+proto.BucketQueues+"."+bobBatches, data),
			api("delete a queue entry", "STREAM.MSG.DELETE."+queues, data),
			api("purge the queue entries", "STREAM.PURGE."+queues, data),
			api("update the plugin bucket", "STREAM.UPDATE.OBJ_DF_PLUGINS", data),
			{
				name: "create a stream with the jetstream package",
				do: func(ctx context.Context, c *conn) error {
					_, err := aliceJS.CreateStream(ctx, jetstream.StreamConfig{Name: "ALICE", Subjects: []string{"alice.>"}})
					if err == nil {
						return errors.New("stream created")
					}
					return nil
				},
				denied: `Publish to "$JS.API.STREAM.CREATE.ALICE"`,
			},
		})
		// A consumer creation naming alice's filter in its subject but
		// all results in its body: allowed to send, refused by JetStream.
		t.Run("consumer filter in the body differs from the subject", func(t *testing.T) {
			subj := "$JS.API.CONSUMER.CREATE." + aliceResults + ".sneak.df.result.alice.x"
			m, err := alice.Request(subj, consumerCreate(aliceResults, "sneak", "df.result.>"), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var resp struct {
				Error *struct {
					ErrCode int    `json:"err_code"`
					Desc    string `json:"description"`
				} `json:"error"`
			}
			if err := json.Unmarshal(m.Data, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Error == nil || resp.Error.ErrCode != int(server.JSConsumerCreateFilterSubjectMismatchErr) {
				t.Errorf("got response %s, want error %d (filter subject mismatch)", m.Data, server.JSConsumerCreateFilterSubjectMismatchErr)
			}
		})
	})

	t.Run("worker", func(t *testing.T) {
		try(t, worker, []attempt{
			{
				name: "create a stream with the jetstream package",
				do: func(ctx context.Context, c *conn) error {
					_, err := workerJS.CreateStream(ctx, jetstream.StreamConfig{Name: "WORKER", Subjects: []string{"worker.>"}})
					if err == nil {
						return errors.New("stream created")
					}
					return nil
				},
				denied: `Publish to "$JS.API.STREAM.CREATE.WORKER"`,
			},
			api("delete a batch stream", "STREAM.DELETE."+bobBatches, data),
			api("purge a batch stream", "STREAM.PURGE."+bobBatches, data),
			api("update a batch stream", "STREAM.UPDATE."+bobBatches, data),
			api("purge the results", "STREAM.PURGE."+bobResults, data),
			api("update the plugin bucket", "STREAM.UPDATE.OBJ_DF_PLUGINS", data),
			api("purge the plugin bucket", "STREAM.PURGE.OBJ_DF_PLUGINS", data),
			api("delete a plugin chunk", "STREAM.MSG.DELETE.OBJ_DF_PLUGINS", data),
			api("own consumer on the batches", "CONSUMER.CREATE."+bobBatches+".x.df.batch.bob.>", consumerCreate(bobBatches, "x", "df.batch.bob.>")),
			api("durable consumer on the batches", "CONSUMER.DURABLE.CREATE."+bobBatches+".x", data),
			api("change a workers' consumer", "CONSUMER.CREATE."+bobBatches+"."+high+".df.batch.bob.high.>", consumerCreate(bobBatches, high, "df.batch.bob.high.>")),
			api("delete the high workers' consumer", "CONSUMER.DELETE."+bobBatches+"."+high, data),
			api("delete the normal workers' consumer", "CONSUMER.DELETE."+bobBatches+"."+normal, data),
			api("delete the low workers' consumer", "CONSUMER.DELETE."+bobBatches+"."+low, data),
			api("pull from another consumer of the batches", "CONSUMER.MSG.NEXT."+bobBatches+".x", data),
			api("list the consumers of the batches", "CONSUMER.LIST."+bobBatches, data),
			api("pull from bob's reader", "CONSUMER.MSG.NEXT."+bobResults+"."+bobReader, data),
			api("consumer on the results", "CONSUMER.CREATE."+bobResults+".x."+bobSubject, consumerCreate(bobResults, "x", bobSubject)),
			api("consumer on the dead letters", "CONSUMER.CREATE.DF_DEAD.x", data),
			api("read a result", "STREAM.MSG.GET."+bobResults, data),
			api("direct get a result", "DIRECT.GET."+bobResults+"."+bobSubject, data),
			pub("forge a job record", "$KV.DF_JOBS.bob.x", data),
			api("delete a job record", "STREAM.MSG.DELETE.KV_DF_JOBS", data),
			api("purge the job records", "STREAM.PURGE.KV_DF_JOBS", data),
			pub("write a queue entry", "$KV."+proto.BucketQueues+"."+proto.BatchStream("mallory"), data),
			pub("overwrite bob's queue entry", "$KV."+proto.BucketQueues+"."+bobBatches, data),
			api("delete a queue entry", "STREAM.MSG.DELETE."+queues, data),
			api("purge the queue entries", "STREAM.PURGE."+queues, data),
			api("update the queue bucket", "STREAM.UPDATE."+queues, data),
			pub("push a plugin chunk", "$O.DF_PLUGINS.C.x", data),
			pub("push a plugin manifest", "$O.DF_PLUGINS.M.x", data),
			pub("create a job", proto.JobCreateSubject("alice"), data),
			pub("cancel bob's job", proto.JobSubject("cancel", bobID), data),
			pub("ask for status", proto.SubjectStatus, data),
			pub("publish a work hint", proto.WorkSubject("bob", fleet.Normal), data),
			pub("a batch off the consumers' subjects", "df.batch.bob.urgent.upper.x", data),
			sub("subscribe to job requests", "df.job.>"),
			sub("subscribe to results", "df.result.>"),
			sub("subscribe to batches", "df.batch.>"),
			sub("subscribe to heartbeats", "df.hb.*"),
			sub("subscribe to every inbox", "_INBOX.>"),
			sub("subscribe to alice's inbox", "_INBOX_alice.>"),
			sub("subscribe to everything", ">"),
			sub("subscribe to advisories", "$JS.EVENT.>"),
		})
	})

	t.Run("coordinator", func(t *testing.T) {
		try(t, coord, []attempt{
			pub("push a plugin chunk", "$O.DF_PLUGINS.C.x", data),
			pub("push a plugin manifest", "$O.DF_PLUGINS.M.x", data),
			pub("fake heartbeat", "df.hb.w1", data),
			pub("write into alice's inbox", "_INBOX_alice.x", data),
			pub("publish outside the pipelines' sinks", "orders.x", data),
			pub("publish a batch on no workers' subject", "df.batch.alice.urgent.upper.x", data),
			sub("subscribe to alice's inbox", "_INBOX_alice.>"),
			sub("subscribe to results", "df.result.>"),
			sub("subscribe to batches", "df.batch.>"),
			sub("subscribe to work hints", "df.work.>"),
			sub("subscribe to everything", ">"),
		})
	})

	t.Run("intact", func(t *testing.T) {
		for _, name := range []string{bobBatches, bobResults, proto.StreamDead, "KV_" + proto.BucketJobs, queues, "OBJ_" + proto.BucketPlugins} {
			if _, err := ajs.Stream(ctx, name); err != nil {
				t.Errorf("stream %s: %v", name, err)
			}
		}
		for _, p := range fleet.Priorities {
			if _, err := ajs.Consumer(ctx, bobBatches, proto.WorkerConsumer(p)); err != nil {
				t.Errorf("consumer %s of %s: %v", proto.WorkerConsumer(p), bobBatches, err)
			}
		}
		for _, name := range []string{"ALICE", "WORKER", "X", aliceBatches, aliceResults} {
			if _, err := ajs.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("stream %s: got %v, want %v", name, err, jetstream.ErrStreamNotFound)
			}
		}
		// DF_QUEUES names bob's queue, as the coordinator wrote it, and
		// nothing else.
		kv, err := ajs.KeyValue(ctx, proto.BucketQueues)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != bobBatches {
			t.Errorf("DF_QUEUES holds %v, want only %s", keys, bobBatches)
		}
		e, err := kv.Get(ctx, bobBatches)
		if err != nil {
			t.Fatal(err)
		}
		var q proto.Queue
		if err := json.Unmarshal(e.Value(), &q); err != nil || q.Owner != "bob" || q.Stream != bobBatches || q.Weight != 1 {
			t.Errorf("bob's queue entry: %s (%v)", e.Value(), err)
		}
		obs, err := ajs.ObjectStore(ctx, proto.BucketPlugins)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := obs.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 || objs[0].Name != wasmPlugin+"/1.0.0" {
			t.Errorf("plugin store holds %d objects, want only %s/1.0.0", len(objs), wasmPlugin)
		}
		// Bob reads every one of his results.
		readsAllHisResults(t, bobJob, bobRecs)
	})

	// The canary saw none of the attempts' data, on any subject.
	if err := f.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if leaks := k.leaks(); len(leaks) > 0 {
		t.Errorf("the canary saw %d messages it should not have:\n%s", len(leaks), strings.Join(leaks, "\n"))
	}
}
