package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/worker"
)

// opsFleet starts a fleet of one worker that has picky beside the
// built-in plugins.
func opsFleet(t *testing.T) *localtest.Fleet {
	plugins := builtin.All()
	plugins["picky"] = localtest.Picky{}
	return localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Plugins: plugins}})
}

// values returns records of the values.
func values(vs ...string) []plugin.Record {
	recs := make([]plugin.Record, len(vs))
	for i, v := range vs {
		recs[i] = plugin.Record{Value: []byte(v)}
	}
	return recs
}

func TestJobsListAndInfo(t *testing.T) {
	f := opsFleet(t)
	alice, bob := f.Client(client.WithOwner("alice")), f.Client(client.WithOwner("bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A job read to the end (done), then one whose results wait (sealed).
	if _, err := alice.ProcessBatch(ctx, "upper", nil, values("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	waiting, err := alice.Submit(ctx, "fail", client.Records(values("ok", "no", "ok", "ok")), client.WithConfig(plugin.Config{"match": "no"}))
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()

	var info *client.JobInfo
	err = poll.Until(ctx, 10*time.Second, func() error {
		var err error
		if info, err = alice.JobInfo(ctx, waiting.ID()); err != nil {
			return err
		}
		if info.State != client.JobSealed || info.Results != 4 {
			return fmt.Errorf("job %s: state %s, %d results stored; want sealed, 4", info.ID, info.State, info.Results)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Counted || info.Succeeded != 3 || info.Failed != 1 || info.Records != 4 || info.Batches != 1 || info.QueuedBatches != 0 || info.ResultMessages != 1 {
		t.Errorf("sealed job's info = %+v; want 4 records in 1 batch, 3 succeeded and 1 failed, counted, 1 result message, none queued", info)
	}
	if info.Owner != "alice" || info.Plugin != "fail" || info.Config["match"] != "no" || info.Age <= 0 {
		t.Errorf("sealed job's info = %+v; want owner alice, plugin fail, its config, an age", info)
	}
	if _, err := bob.ProcessBatch(ctx, "upper", nil, values("x")); err != nil {
		t.Fatal(err)
	}

	jobs, err := alice.Jobs(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, fmt.Sprintf("%s %s %d/%d", j.Plugin, j.State, j.Results, j.Records))
		if j.Owner != "alice" || j.Config != nil {
			t.Errorf("alice's list holds %+v: want alice's jobs, without configuration", j)
		}
	}
	// The newest change first; a done job's counts are its reader's.
	if diff := cmp.Diff([]string{"fail sealed 0/4", "upper done 3/3"}, got); diff != "" {
		t.Errorf("alice's jobs (-want +got):\n%s", diff)
	}
	all, err := alice.Jobs(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Owner != "bob" {
		t.Errorf("every owner's jobs: %d, the newest %s's; want 3, bob's first", len(all), all[0].Owner)
	}
	if one, err := alice.Jobs(ctx, false, client.WithLimit(1)); err != nil || len(one) != 1 || one[0].ID != waiting.ID() {
		t.Errorf("alice's newest job: %+v, %v; want %s alone", one, err, waiting.ID())
	}
	if _, err := alice.Jobs(ctx, false, client.WithLimit(0)); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("limit 0: %v, want ErrInvalidOption", err)
	}
	if _, err := alice.JobInfo(ctx, "alice.nosuchjob"); !errors.Is(err, client.ErrJobNotFound) {
		t.Errorf("unknown job: %v, want ErrJobNotFound", err)
	}
	if _, err := alice.JobInfo(ctx, "nodot"); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("malformed id: %v, want ErrInvalid", err)
	}
}

// TestJobsListStaysBounded: with many more jobs than the limit, of two
// owners, a list holds the limit, the newest first.
func TestJobsListStaysBounded(t *testing.T) {
	f := opsFleet(t)
	alice, bob := f.Client(client.WithOwner("alice")), f.Client(client.WithOwner("bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ids []string
	for i := range 40 {
		c := bob
		if i%4 == 0 {
			c = alice
		}
		j, err := c.Submit(ctx, "identity", client.Records(values("v")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Wait(); err != nil {
			t.Fatal(err)
		}
		if c == alice {
			ids = append(ids, j.ID())
		}
	}
	jobs, err := alice.Jobs(ctx, false, client.WithLimit(4))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range jobs {
		got = append(got, j.ID)
	}
	want := []string{ids[9], ids[8], ids[7], ids[6]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alice's 4 newest jobs (-want +got):\n%s", diff)
	}
	if all, err := bob.Jobs(ctx, true, client.WithLimit(7)); err != nil || len(all) != 7 {
		t.Errorf("every owner's 7 newest: %d, %v", len(all), err)
	}
}

func TestCancelJob(t *testing.T) {
	f := opsFleet(t)
	c := f.Client(client.WithOwner("alice"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := c.Submit(ctx, "delay", client.Records(values("a", "b", "c", "d")), client.WithConfig(plugin.Config{"ms": "60000"}), client.WithBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := c.CancelJob(ctx, j.ID()); err != nil {
		t.Fatal(err)
	}
	info, err := c.JobInfo(ctx, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	if info.State != client.JobCancelled || info.QueuedBatches != 0 {
		t.Errorf("cancelled job: state %s, %d batches queued; want cancelled, none", info.State, info.QueuedBatches)
	}
	for _, err := range j.Results() {
		if err != nil {
			if !errors.Is(err, client.ErrJobClosed) {
				t.Errorf("the submitter's results end with %v, want ErrJobClosed", err)
			}
			break
		}
	}
	if err := c.CancelJob(ctx, "alice.nosuchjob"); !errors.Is(err, client.ErrJobNotFound) {
		t.Errorf("cancel an unknown job: %v, want ErrJobNotFound", err)
	}
}

func TestDeadLettersAndReplay(t *testing.T) {
	f := opsFleet(t)
	c := f.Client(client.WithOwner("alice"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := c.Submit(ctx, "picky", client.Records(values("a", "bad-1", "b", "bad-2", "c")), client.WithConfig(plugin.Config{"match": "bad"}))
	if err != nil {
		t.Fatal(err)
	}
	poisoned := 0
	for out, err := range j.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if errors.Is(out.Err, plugin.ErrPoison) {
			poisoned++
		}
	}
	if poisoned != 2 {
		t.Fatalf("%d records poisoned, want 2", poisoned)
	}

	dead, err := c.DeadLetters(ctx, client.DeadFilter{Job: j.ID()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dead {
		got = append(got, fmt.Sprintf("%d %s %s", d.Index, d.Value, d.Plugin))
		if d.Job != j.ID() || d.Owner != "alice" || !strings.HasPrefix(d.ID, "alice.") || !strings.Contains(d.Error, "picky") {
			t.Errorf("dead letter %+v: want alice's, of job %s, with picky's error", d, j.ID())
		}
	}
	if diff := cmp.Diff([]string{"3 bad-2 picky", "1 bad-1 picky"}, got); diff != "" {
		t.Errorf("dead letters, newest first (-want +got):\n%s", diff)
	}
	if mine, err := c.DeadLetters(ctx, client.DeadFilter{}); err != nil || len(mine) != 2 {
		t.Errorf("alice's dead letters: %d, %v; want 2", len(mine), err)
	}
	one, err := c.DeadLetter(ctx, dead[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if one.ID != dead[1].ID || string(one.Value) != "bad-1" || one.ValueBytes != 5 || one.Attempts < 1 {
		t.Errorf("dead letter %s = %+v", dead[1].ID, one)
	}
	if _, err := c.DeadLetter(ctx, "alice.999999"); !errors.Is(err, client.ErrJobNotFound) {
		t.Errorf("unknown dead letter: %v, want ErrJobNotFound", err)
	}
	bob := f.Client(client.WithOwner("bob"))
	if _, err := c.DeadLetter(ctx, "bob."+strings.TrimPrefix(dead[1].ID, "alice.")); !errors.Is(err, client.ErrJobNotFound) {
		t.Errorf("alice's dead letter under bob's name: %v, want ErrJobNotFound", err)
	}
	if _, err := bob.DeadLetters(ctx, client.DeadFilter{Job: "bob." + strings.TrimPrefix(j.ID(), "alice.")}); err != nil {
		t.Errorf("bob's list of a job he does not have: %v", err)
	}

	// Replayed as they ran, the records fail again; with another plugin
	// they succeed.
	rep, err := c.Replay(ctx, client.ReplaySpec{Job: j.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Succeeded != 0 || rep.Failed != 2 || len(rep.Jobs) != 1 || len(rep.Records) != 2 || !errors.Is(rep.Records[0].Err, plugin.ErrPoison) {
		t.Errorf("replay with picky: %+v; want both records poisoned again in one new job", rep)
	}
	rep, err = c.Replay(ctx, client.ReplaySpec{Job: j.ID(), Plugin: "upper"})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, r := range rep.Records {
		got = append(got, fmt.Sprintf("%s %d %v %s", r.DeadLetter, r.Index, r.OK, r.Value))
		if r.Replay != rep.Jobs[0] {
			t.Errorf("record %d replayed as %s, want %s", r.Index, r.Replay, rep.Jobs[0])
		}
	}
	want := []string{dead[1].ID + " 1 true BAD-1", dead[0].ID + " 3 true BAD-2"}
	if diff := cmp.Diff(want, got); diff != "" || rep.Succeeded != 2 || rep.Failed != 0 {
		t.Errorf("replay with upper: %d succeeded, %d failed (-want +got):\n%s", rep.Succeeded, rep.Failed, diff)
	}
	// Everything of alice's: the first job's and the first replay's.
	rep, err = c.Replay(ctx, client.ReplaySpec{All: true, Plugin: "identity"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Jobs) != 2 || rep.Succeeded != 4 {
		t.Errorf("replay all: %d jobs, %d succeeded; want 2 jobs (one per job dead-lettered), 4", len(rep.Jobs), rep.Succeeded)
	}
	if _, err := c.Replay(ctx, client.ReplaySpec{}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("replay of nothing: %v, want ErrInvalid", err)
	}
}

// TestAttachAbandonedJob: a submitter that dies (loses the fleet) before
// sealing its job leaves results for the batches it sent; another process
// attaches, reads them in order, and learns from which record on nothing
// was sent.
func TestAttachAbandonedJob(t *testing.T) {
	defer client.SetLease(100 * time.Millisecond)()
	f := opsFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc := f.Connect()
	submitter, err := client.New(nc, client.WithOwner("alice"))
	if err != nil {
		t.Fatal(err)
	}
	// 25 records, then the source hangs: batches 0 and 1 (records 0-19)
	// go, records 20-24 wait for their batch to fill.
	hold := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		for i := range 25 {
			if !yield(plugin.Record{Value: fmt.Appendf(nil, "r%d", i)}, nil) {
				return
			}
		}
		<-hold
	}
	j, err := submitter.Submit(ctx, "upper", src, client.WithBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	defer close(hold) // before Close: the submission waits on it
	reader := f.Client(client.WithOwner("alice"))
	poll.Wait(t, 10*time.Second, "20 results stored", func() bool {
		info, err := reader.JobInfo(ctx, j.ID())
		return err == nil && info.Results == 20 && info.Records == 20
	})
	// While the submitter lives, the job is open and not abandoned.
	if info, err := reader.JobInfo(ctx, j.ID()); err != nil || info.State != client.JobOpen || info.Abandoned {
		t.Fatalf("job of a live submitter: %+v, %v; want open, not abandoned", info, err)
	}
	nc.Close() // the submitter dies

	attached, err := reader.Attach(ctx, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var end error
	for out, err := range attached.Results() {
		if err != nil {
			end = err
			break
		}
		if out.Index != uint64(n) || string(out.Value) != fmt.Sprintf("R%d", n) {
			t.Errorf("result %d: index %d value %q", n, out.Index, out.Value)
		}
		n++
	}
	if n != 20 {
		t.Errorf("%d results, want 20", n)
	}
	if !errors.Is(end, client.ErrJobClosed) || !strings.Contains(end.Error(), "records from 20 on have no result") {
		t.Errorf("the end: %v; want ErrJobClosed saying records from 20 on were never sent", end)
	}
	if info, err := reader.JobInfo(ctx, j.ID()); err != nil || info.State != client.JobOpen || !info.Abandoned {
		t.Errorf("abandoned job: %+v, %v; want open and abandoned", info, err)
	}
}

// TestAttachRunningJob: a reader attached to a job still being submitted
// reads every result in order, to the end the submitter seals.
func TestAttachRunningJob(t *testing.T) {
	f := opsFleet(t)
	c := f.Client(client.WithOwner("alice"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	more := make(chan struct{})
	src := func(yield func(plugin.Record, error) bool) {
		for i := range 30 {
			if i == 10 {
				<-more
			}
			if !yield(plugin.Record{Value: fmt.Appendf(nil, "r%d", i)}, nil) {
				return
			}
		}
	}
	j, err := c.Submit(ctx, "upper", src, client.WithBatchSize(5))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	attached, err := f.Client(client.WithOwner("alice")).Attach(ctx, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	close(more)
	n := 0
	for out, err := range attached.Results() {
		if err != nil {
			t.Fatal(err)
		}
		if out.Index != uint64(n) || string(out.Value) != fmt.Sprintf("R%d", n) {
			t.Errorf("result %d: index %d value %q", n, out.Index, out.Value)
		}
		n++
	}
	if n != 30 {
		t.Errorf("%d results, want 30", n)
	}
}
