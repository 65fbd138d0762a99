package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
)

// jobs is the worker's view of the jobs in DF_JOBS: which exist, what they
// pinned, and which were cancelled. A watch on the bucket keeps it fresh
// (a cancel reaches the worker within milliseconds); a job the watch has
// not shown yet is read from the bucket directly. It also knows the
// batches running for each job, so that cancelling a job stops them.
//
// A batch runs only when its job exists, is not cancelled or done, and
// pinned the plugin and module the batch names: batches of jobs that do
// not exist (or forged names and digests) are removed unrun, so they
// never become worker state.
type jobs struct {
	kv  jetstream.KeyValue
	ttl time.Duration // the bucket's: a job unseen for longer is forgotten
	log *slog.Logger

	mu      sync.Mutex
	known   map[string]*jobEntry
	running map[string]map[*runningBatch]struct{} // by job id
}

// jobEntry is what the worker knows of one job.
type jobEntry struct {
	plugin, digest string
	steps          []proto.Step // a chain's (plugin is then proto.ChainPlugin)
	priority       fleet.Priority
	state          proto.JobState
	timeout        time.Duration // the job's batch timeout, 0 for the worker's
	seen           time.Time     // when the record was last read
	compress       bool          // its readers take compressed results
}

// runningBatch is a batch running for a job, with the way to stop it.
type runningBatch struct {
	cancel context.CancelCauseFunc
}

// errJobCancelled is the cause of a batch stopped because its job was
// cancelled (or its record is gone).
var errJobCancelled = errors.New("worker: the batch's job was cancelled")

func newJobs(kv jetstream.KeyValue, ttl time.Duration, log *slog.Logger) *jobs {
	return &jobs{kv: kv, ttl: ttl, log: log, known: make(map[string]*jobEntry), running: make(map[string]map[*runningBatch]struct{})}
}

// openJobs binds to the jobs bucket, waiting for a coordinator to have
// created it.
func openJobs(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*jobs, error) {
	for {
		kv, err := js.KeyValue(ctx, proto.BucketJobs)
		if err == nil {
			st, serr := kv.Status(ctx)
			ttl := time.Duration(0)
			if serr == nil {
				ttl = st.TTL()
			}
			return newJobs(kv, ttl, log), nil
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) && !proto.Unavailable(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// watch applies the bucket's changes until ctx ends, and forgets jobs not
// seen for longer than the bucket keeps them.
func (j *jobs) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := j.kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			j.log.Warn("watching jobs failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		j.follow(ctx, w)
		w.Stop()
	}
}

// follow applies w's updates until ctx ends or w stops.
func (j *jobs) follow(ctx context.Context, w jetstream.KeyWatcher) {
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			j.forgetOld(time.Now())
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				j.apply(e)
			}
		}
	}
}

// apply records one change of the bucket.
func (j *jobs) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		j.drop(e.Key())
		return
	}
	var rec proto.Job
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return
	}
	j.set(e.Key(), &rec)
}

// set records a job's record, and stops its batches once it is cancelled.
func (j *jobs) set(id string, rec *proto.Job) *jobEntry {
	je := &jobEntry{plugin: rec.Plugin, digest: rec.Digest, steps: rec.Steps, priority: rec.Priority, state: rec.State,
		timeout: rec.Timeout, seen: time.Now(), compress: rec.Compress == proto.CompressS2}
	j.mu.Lock()
	j.known[id] = je
	j.mu.Unlock()
	if rec.State == proto.JobCancelled {
		j.stop(id)
	}
	return je
}

// drop forgets a job whose record is gone, and stops its batches.
func (j *jobs) drop(id string) {
	j.mu.Lock()
	delete(j.known, id)
	j.mu.Unlock()
	j.stop(id)
}

// forgetOld forgets the jobs whose records the bucket no longer keeps.
func (j *jobs) forgetOld(now time.Time) {
	if j.ttl <= 0 {
		return
	}
	var old []string
	j.mu.Lock()
	for id, je := range j.known {
		if now.Sub(je.seen) > j.ttl {
			old = append(old, id)
		}
	}
	j.mu.Unlock()
	for _, id := range old {
		j.drop(id)
	}
}

// lookup returns what the worker knows of job id, reading its record when
// the watch has not shown it; nil when there is no such job.
func (j *jobs) lookup(ctx context.Context, id string) (*jobEntry, error) {
	j.mu.Lock()
	je := j.known[id]
	j.mu.Unlock()
	if je != nil {
		return je, nil
	}
	e, err := j.kv.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var rec proto.Job
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, nil // not a job record: as good as none
	}
	return j.set(id, &rec), nil
}

// start registers a batch of job id running under ctx and returns the
// context to run it with, cancelled with errJobCancelled when the job is;
// done unregisters it.
func (j *jobs) start(ctx context.Context, id string) (_ context.Context, done func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	rb := &runningBatch{cancel: cancel}
	j.mu.Lock()
	set := j.running[id]
	if set == nil {
		set = make(map[*runningBatch]struct{})
		j.running[id] = set
	}
	set[rb] = struct{}{}
	cancelled := j.known[id] != nil && j.known[id].state == proto.JobCancelled
	j.mu.Unlock()
	if cancelled {
		cancel(errJobCancelled)
	}
	return ctx, func() {
		j.mu.Lock()
		delete(set, rb)
		if len(set) == 0 && j.running[id] != nil && len(j.running[id]) == 0 {
			delete(j.running, id)
		}
		j.mu.Unlock()
		cancel(nil)
	}
}

// stop cancels the running batches of job id.
func (j *jobs) stop(id string) {
	j.mu.Lock()
	var cancels []context.CancelCauseFunc
	for rb := range j.running[id] {
		cancels = append(cancels, rb.cancel)
	}
	j.mu.Unlock()
	for _, c := range cancels {
		c(errJobCancelled)
	}
	if len(cancels) > 0 {
		j.log.Info("job cancelled: its running batches stop", "job", id, "batches", len(cancels))
	}
}

// size returns how many jobs the view holds, for the heartbeat's bound
// checks and tests.
func (j *jobs) size() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.known)
}

// compresses reports whether the readers of job id take compressed result
// messages (it said so when it was created).
func (j *jobs) compresses(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.known[id]
	return e != nil && e.compress
}
