package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// createJob handles df.job.create.<owner>: it resolves the plugin, pins a
// WebAssembly plugin's digest, and records the job.
func (c *Coordinator) createJob(ctx context.Context, owner string, body []byte) (*proto.Job, error) {
	req, err := parseJobCreate(owner, body)
	if err != nil {
		return nil, err
	}
	if err := c.view.waitForWorkers(ctx, c.started); err != nil {
		return nil, err
	}
	now := c.cfg.Clock()
	job := &proto.Job{
		ID:            proto.JobID(owner, proto.NewToken()),
		Plugin:        req.Plugin,
		Config:        req.Config,
		Timeout:       req.Timeout,
		Priority:      req.Priority,
		State:         proto.JobOpen,
		Created:       now,
		Updated:       now,
		MaxBatchBytes: c.cfg.MaxBatchBytes,
		Lease:         req.Lease,
		TraceID:       traceID(ctx),
		Compress:      req.Compress,
	}
	if len(req.Steps) > 0 {
		job.Plugin = proto.ChainPlugin
		if job.Steps, err = c.pinSteps(ctx, req.Steps); err != nil {
			return nil, err
		}
	} else if job.Digest, job.Version, err = c.pinPlugin(ctx, req.Plugin, req.Version); err != nil {
		return nil, err
	}
	if job.BatchStream, err = c.ensureOwner(ctx, owner); err != nil {
		return nil, err
	}
	job.BatchSize = c.jobBatchSize(job)
	if err := c.recordJob(ctx, job); err != nil {
		return nil, err
	}
	c.jobs.put(job, now)
	c.metrics.jobs.Inc()
	c.log.Info("job created", "job", job.ID, "plugin", job.Plugin, "digest", job.Digest)
	return job, nil
}

// parseJobCreate decodes a job request and checks its owner and plugin
// names.
func parseJobCreate(owner string, body []byte) (proto.JobCreate, error) {
	req, err := decodeRequest[proto.JobCreate](body, "job")
	if err != nil {
		return req, err
	}
	if !proto.ValidName(owner) {
		return req, proto.Errorf(plugin.CodeInvalidInput, "coordinator: invalid owner %q: use 1-64 of [A-Za-z0-9_-]", owner)
	}
	if err := checkPlugins(req); err != nil {
		return req, err
	}
	if !req.Priority.Valid() {
		return req, proto.Errorf(plugin.CodeInvalidInput, "coordinator: priority %v: use high, normal or low", req.Priority)
	}
	if req.Lease < 0 || req.Lease > MaxJobTimeout {
		return req, proto.Errorf(plugin.CodeInvalidInput, "coordinator: lease %v is outside [0, %v]", req.Lease, MaxJobTimeout)
	}
	if req.Compress != "" && req.Compress != proto.CompressS2 {
		return req, proto.Errorf(plugin.CodeInvalidInput, "coordinator: compression %q: this coordinator knows %q", req.Compress, proto.CompressS2)
	}
	if req.Timeout < 0 || req.Timeout > MaxJobTimeout {
		return req, proto.Errorf(plugin.CodeInvalidInput, "coordinator: batch timeout %v is outside [0, %v]", req.Timeout, MaxJobTimeout)
	}
	entries, size := configSize(req.Config)
	for _, st := range req.Steps {
		e, n := configSize(st.Config)
		entries, size = entries+e, size+n
	}
	if entries > MaxConfigEntries || size > MaxConfigBytes {
		return req, proto.Errorf(plugin.CodeTooLarge, "coordinator: configuration of %d entries and %d bytes: at most %d entries and %d bytes",
			entries, size, MaxConfigEntries, MaxConfigBytes)
	}
	return req, nil
}

// checkPlugins checks the plugin names of a job request: one plugin, or
// steps (at most proto.MaxSteps) and no plugin.
func checkPlugins(req proto.JobCreate) error {
	if len(req.Steps) == 0 {
		if !proto.ValidName(req.Plugin) || req.Plugin == proto.ChainPlugin {
			return proto.Errorf(plugin.CodeInvalidInput, "coordinator: invalid plugin name %q: use 1-64 of [A-Za-z0-9_-]", req.Plugin)
		}
		return nil
	}
	if req.Plugin != "" || len(req.Steps) > proto.MaxSteps {
		return proto.Errorf(plugin.CodeInvalidInput, "coordinator: a job has a plugin or 1 to %d steps, not both", proto.MaxSteps)
	}
	for i, st := range req.Steps {
		if !proto.ValidName(st.Plugin) || st.Plugin == proto.ChainPlugin {
			return proto.Errorf(plugin.CodeInvalidInput, "coordinator: step %d: invalid plugin name %q: use 1-64 of [A-Za-z0-9_-]", i+1, st.Plugin)
		}
	}
	return nil
}

// configSize returns a configuration's entries and bytes.
func configSize(cfg map[string]string) (entries, size int) {
	for k, v := range cfg {
		size += len(k) + len(v)
	}
	return len(cfg), size
}

// Limits of a job request: its configuration travels with every batch
// and in the job's record, and its batch timeout holds a worker's slot.
const (
	MaxConfigEntries = 64
	MaxConfigBytes   = 8 << 10
	MaxJobTimeout    = time.Hour
)

// pinPlugin returns the module digest and version a new job runs: none for
// a native plugin that a live worker has, when no version is asked;
// otherwise the module Config.Modules resolves.
//
// A coordinator that started less than a heartbeat ago may not have heard
// every worker yet: before it calls a plugin unknown, it waits until it has.
func (c *Coordinator) pinPlugin(ctx context.Context, name, version string) (digest, resolved string, err error) {
	if c.view.hasNative(name) && version == "" {
		return "", "", nil
	}
	if c.cfg.Modules != nil {
		digest, resolved, err = c.cfg.Modules(ctx, name, version)
		if err != nil {
			return "", "", proto.Errorf(plugin.CodeUnknown, "coordinator: resolve plugin %s: %v", name, err)
		}
		if digest != "" {
			return digest, resolved, nil
		}
	}
	if version == "" && c.view.waitHeardAll(ctx, c.started) && c.view.hasNative(name) {
		return "", "", nil
	}
	return "", "", unknownPlugin(name, version)
}

// pinSteps returns a chain's steps with each plugin resolved and pinned as
// pinPlugin does.
func (c *Coordinator) pinSteps(ctx context.Context, steps []proto.Step) ([]proto.Step, error) {
	out := make([]proto.Step, len(steps))
	for i, st := range steps {
		digest, version, err := c.pinPlugin(ctx, st.Plugin, st.Version)
		var pe *proto.Error
		if errors.As(err, &pe) {
			return nil, proto.Errorf(pe.Code, "step %d: %s", i+1, pe.Message)
		} else if err != nil {
			return nil, err
		}
		out[i] = proto.Step{Plugin: st.Plugin, Version: version, Digest: digest, Config: st.Config}
	}
	return out, nil
}

// jobBatchSize is the size job's batches are cut at now: its plugin's, or
// for a chain the smallest of its steps' (the slowest step sets the pace).
func (c *Coordinator) jobBatchSize(job *proto.Job) int {
	if len(job.Steps) == 0 {
		return c.view.batchSize(job.Plugin, 0)
	}
	size := 0
	for _, st := range job.Steps {
		if n := c.view.batchSize(st.Plugin, 0); size == 0 || n < size {
			size = n
		}
	}
	return size
}

// recordJob creates a new job's entry in the bucket.
func (c *Coordinator) recordJob(ctx context.Context, job *proto.Job) error {
	b, _ := json.Marshal(job)
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if _, err := c.kv.Create(kctx, job.ID, b); err != nil {
		return kvError("record job", err)
	}
	return nil
}

func unknownPlugin(name, version string) *proto.Error {
	if version != "" {
		return proto.Errorf(plugin.CodeUnknownPlugin, "unknown plugin %s version %s", name, version)
	}
	return proto.Errorf(plugin.CodeUnknownPlugin, "unknown plugin %s: no worker has it and no module of that name was pushed", name)
}

// decodeRequest decodes a request's JSON body; a malformed one is invalid
// input. what names the request in the error.
func decodeRequest[T any](body []byte, what string) (T, error) {
	var req T
	if err := json.Unmarshal(body, &req); err != nil {
		return req, proto.Errorf(plugin.CodeInvalidInput, "coordinator: malformed %s request: %v", what, err)
	}
	return req, nil
}

// getJob handles df.job.get.<owner>.<id>. Submitting clients and readers
// ask every second or less: it answers from the cache, with the batch size
// the sizer wants now.
func (c *Coordinator) getJob(ctx context.Context, id string, _ []byte) (*proto.Job, error) {
	cached, err := c.job(ctx, id)
	if err != nil {
		return nil, err
	}
	job := *cached
	job.BatchSize = c.jobBatchSize(&job)
	job.Abandoned = abandoned(&job, c.cfg.Clock())
	return &job, nil
}

// sealJob handles df.job.seal.<owner>.<id>: the client has published all
// of an open job's batches, and their counts go to the metrics. A retried
// seal (same counts) succeeds again, and is not counted again.
func (c *Coordinator) sealJob(ctx context.Context, id string, body []byte) (*proto.Job, error) {
	req, err := decodeRequest[proto.JobSeal](body, "seal")
	if err != nil {
		return nil, err
	}
	sealed := false
	job, err := c.updateJob(ctx, id, func(j *proto.Job) error {
		sealed = false // updateJob may call this again after a conflict
		switch j.State {
		case proto.JobOpen:
		case proto.JobSealed:
			if j.Batches == req.Batches && j.Records == req.Records {
				return nil // a retried seal
			}
			fallthrough
		default:
			return proto.Errorf(plugin.CodeJobClosed, "job %s is %s", id, j.State)
		}
		j.State, j.Batches, j.Records = proto.JobSealed, req.Batches, req.Records
		sealed = true
		return nil
	})
	if err == nil && sealed {
		c.metrics.sealedBatches.Add(float64(req.Batches))
		c.metrics.sealedRecords.Add(float64(req.Records))
	}
	return job, err
}

// finishJob handles df.job.done.<owner>.<id>: the client has read every
// result. The job is done, unless it was cancelled, and its results are
// purged: they need not wait for their retention to pass.
func (c *Coordinator) finishJob(ctx context.Context, id string, body []byte) (*proto.Job, error) {
	req, err := decodeRequest[proto.JobFinish](body, "done")
	if err != nil {
		return nil, err
	}
	job, err := c.updateJob(ctx, id, func(j *proto.Job) error {
		if j.State == proto.JobCancelled {
			return nil
		}
		j.State, j.Progress = proto.JobDone, req.Progress
		return nil
	})
	if err == nil {
		// The reader has its results: their purge need not hold its reply.
		c.later(ctx, func(ctx context.Context) {
			c.purge(ctx, proto.ResultStream(proto.JobOwner(id)), proto.ResultSubject(id))
		})
	}
	return job, err
}

// rejectRecord handles df.job.reject.<owner>.<id>: the client could not
// send a record of an open job (too large), and its error is stored as the
// record's result.
func (c *Coordinator) rejectRecord(ctx context.Context, id string, body []byte) (*proto.Job, error) {
	req, err := decodeRequest[proto.JobReject](body, "reject")
	if err != nil {
		return nil, err
	}
	job, err := c.job(ctx, id)
	if err != nil {
		return nil, err
	}
	if job.State != proto.JobOpen {
		return nil, proto.Errorf(plugin.CodeJobClosed, "job %s is %s", id, job.State)
	}
	return job, c.publishRejection(ctx, id, req)
}

// cancelJob handles df.job.cancel.<owner>.<id>: a job not done is
// cancelled, and its batches and results are purged.
func (c *Coordinator) cancelJob(ctx context.Context, id string, _ []byte) (*proto.Job, error) {
	job, err := c.updateJob(ctx, id, func(j *proto.Job) error {
		if j.State == proto.JobDone {
			return proto.Errorf(plugin.CodeJobClosed, "job %s is done", id)
		}
		j.State = proto.JobCancelled
		return nil
	})
	if err == nil {
		c.purge(ctx, job.BatchStream, proto.BatchSubject(id, job.Priority, job.Plugin))
		c.purge(ctx, proto.ResultStream(proto.JobOwner(id)), proto.ResultSubject(id))
	}
	return job, err
}

// publishRejection stores a record's error as its result in DF_RESULTS.
func (c *Coordinator) publishRejection(ctx context.Context, job string, req proto.JobReject) error {
	perr := &plugin.Error{Code: plugin.CodeTooLarge, Message: req.Message}
	rs := batch.ResultSet{Job: job, Worker: c.cfg.ID, Base: req.Index, Results: []plugin.Result{plugin.Fail(perr)}}
	data, err := batch.AppendResults(nil, &rs)
	if err != nil {
		return proto.Errorf(plugin.CodeInvalidInput, "coordinator: reject: %v", err)
	}
	m := &nats.Msg{Subject: proto.ResultSubject(job), Data: data, Header: nats.Header{}}
	m.Header.Set(proto.HeaderMsgID, job+".reject."+strconv.FormatUint(req.Index, 10))
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return publishError(err)
	}
	return nil
}

// publishError classifies a failed JetStream publish: retryable from the
// client's side (busy), since the message keeps its id and a retry of a
// publish that did land is dropped as a duplicate.
func publishError(err error) *proto.Error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum") {
		return proto.Errorf(plugin.CodeBusy, "the stream is full (%s): retry later", apiErr.Description)
	}
	return proto.Errorf(plugin.CodeBusy, "coordinator: publish: %v", err)
}

// purge removes subject's messages from stream (those opts also select),
// logging a failure, which it returns: the retention limit removes them
// later anyway.
func (c *Coordinator) purge(ctx context.Context, stream, subject string, opts ...jetstream.StreamPurgeOpt) error {
	s, err := c.js.Stream(ctx, stream)
	if err == nil {
		err = s.Purge(ctx, append([]jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(subject)}, opts...)...)
	}
	if err != nil {
		c.log.Warn("purge failed", "stream", stream, "subject", subject, "err", err)
	}
	return err
}

// kvTimeout bounds one operation on the job bucket, so that a client hears
// "busy" while JetStream has no quorum, rather than its own timeout.
const kvTimeout = 3 * time.Second

// kvError turns a failed operation on the job bucket into a reply error:
// JetStream not answering is busy (retry later), anything else internal.
func kvError(what string, err error) *proto.Error {
	if proto.Unavailable(err) {
		return proto.Errorf(plugin.CodeBusy, "coordinator: %s: JetStream does not answer (a cluster without quorum?): %v", what, err)
	}
	return proto.Errorf(plugin.CodeUnknown, "coordinator: %s: %v", what, err)
}

// loadJob reads a job from the bucket.
func (c *Coordinator) loadJob(ctx context.Context, id string) (*proto.Job, uint64, error) {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	e, err := c.kv.Get(kctx, id)
	cancel()
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, proto.Errorf(plugin.CodeJobNotFound, "job %s not found (or expired)", id)
	}
	if err != nil {
		return nil, 0, kvError("read job "+id, err)
	}
	var job proto.Job
	if err := json.Unmarshal(e.Value(), &job); err != nil {
		return nil, 0, proto.Errorf(plugin.CodeUnknown, "coordinator: job %s is corrupt: %v", id, err)
	}
	job.BatchSize = c.jobBatchSize(&job)
	// The cache shares its jobs with readers: it gets a copy, since
	// the caller may change this one (updateJob does).
	cached := job
	c.jobs.put(&cached, c.cfg.Clock())
	return &job, e.Revision(), nil
}

// updateJob applies change to a job with optimistic concurrency (another
// coordinator may update the same job), retrying on a conflict.
func (c *Coordinator) updateJob(ctx context.Context, id string, change func(*proto.Job) error) (*proto.Job, error) {
	for attempt := 0; ; attempt++ {
		job, rev, err := c.loadJob(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(job); err != nil {
			return nil, err
		}
		job.Updated = c.cfg.Clock()
		b, _ := json.Marshal(job)
		kctx, cancel := context.WithTimeout(ctx, kvTimeout)
		_, err = c.kv.Update(kctx, id, b, rev)
		cancel()
		if err == nil {
			c.jobs.put(job, job.Updated)
			return job, nil
		}
		if attempt >= 5 || ctx.Err() != nil || !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, kvError("update job "+id, err)
		}
	}
}

// jobCache keeps recently seen jobs so that the frequent reads of a job
// (clients' df.job.get) need no bucket read.
// A job in the cache is never changed: updates put a new one.
// An entry is trusted for jobCacheTTL: a job sealed or cancelled through
// another coordinator is noticed within that time.
type jobCache struct {
	mu   sync.Mutex
	jobs map[string]cachedJob
}

type cachedJob struct {
	job *proto.Job
	at  time.Time
}

const (
	jobCacheTTL  = 2 * time.Second
	jobCacheSize = 4096
)

func newJobCache() *jobCache { return &jobCache{jobs: make(map[string]cachedJob)} }

func (jc *jobCache) get(id string, now time.Time) (*proto.Job, bool) {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	e, ok := jc.jobs[id]
	if !ok || now.Sub(e.at) > jobCacheTTL {
		return nil, false
	}
	return e.job, true
}

func (jc *jobCache) put(job *proto.Job, now time.Time) {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	if len(jc.jobs) >= jobCacheSize {
		maps.DeleteFunc(jc.jobs, func(_ string, e cachedJob) bool { return now.Sub(e.at) > jobCacheTTL })
		if len(jc.jobs) >= jobCacheSize {
			clear(jc.jobs)
		}
	}
	jc.jobs[job.ID] = cachedJob{job: job, at: now}
}

// job returns a job from the cache or the bucket. The caller must not
// change it: the cache shares it.
func (c *Coordinator) job(ctx context.Context, id string) (*proto.Job, error) {
	if j, ok := c.jobs.get(id, c.cfg.Clock()); ok {
		return j, nil
	}
	j, _, err := c.loadJob(ctx, id)
	return j, err
}
