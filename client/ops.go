package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// JobState is where a job is in its life.
type JobState string

// Job states.
const (
	// JobOpen: its submitter is sending records.
	JobOpen JobState = "open"
	// JobSealed: every record was sent; its results are being made or
	// wait to be read.
	JobSealed JobState = "sealed"
	// JobDone: its results were read to the end.
	JobDone JobState = "done"
	// JobCancelled: stopped; its batches and unread results are gone.
	JobCancelled JobState = "cancelled"
)

// JobInfo is a job as operators see it (Jobs, JobInfo).
type JobInfo struct {
	ID    string
	Owner string
	// Plugin is the job's plugin; Steps a chain's, in order (Plugin is
	// then ""). Version and Digest are the WebAssembly module the job
	// pinned (empty for a native plugin).
	Plugin          string
	Steps           []Step
	Version, Digest string
	// Config is the plugin's configuration (JobInfo only; nil in Jobs).
	Config   plugin.Config
	State    JobState
	Priority fleet.Priority
	Created  time.Time
	Updated  time.Time
	// Age is how long ago the job was created, as its coordinator saw it.
	Age time.Duration
	// Records and Batches are the job's totals once sealed; while it is
	// open, what its submitter last reported sending (SentAt).
	Records, Batches uint64
	SentAt           time.Time
	// Abandoned: the job is open and its submitter has not reported for
	// several of its leases (it stopped, or lost the fleet).
	Abandoned bool
	// Counted says that the counts below are known: a done job's, as its
	// reader reported them; in JobInfo, an open or sealed job's results
	// stored so far. Results counts the records with a result, of which
	// Succeeded, Failed and Dropped.
	Counted                             bool
	Results, Succeeded, Failed, Dropped uint64
	// QueuedBatches counts the job's batches waiting for a worker or
	// running, ResultMessages its result messages waiting to be read,
	// DeadLetters its dead letters (JobInfo only).
	QueuedBatches, ResultMessages, DeadLetters uint64
	// TraceID is the trace the job was created in, when its client traced
	// it ("" otherwise).
	TraceID string
}

// ListOption configures a list (Jobs).
type ListOption func(*listOptions) error

type listOptions struct{ limit int }

// WithLimit bounds how many entries a list returns (default 100, at most
// 1000).
func WithLimit(n int) ListOption {
	return func(o *listOptions) error {
		if n < 1 || n > proto.MaxListLimit {
			return invalidOption("limit %d not in 1..%d", n, proto.MaxListLimit)
		}
		o.limit = n
		return nil
	}
}

// Jobs returns the client's owner's jobs, most recently changed first
// (at most WithLimit, default 100); with all, every owner's, which only
// the admin role may ask (deploy/nats/auth.conf: NATS refuses the request
// of another user, and the error is then ErrNoCoordinator after the
// client's timeout, or a permission violation on the connection's error
// handler). Errors: ErrNoCoordinator, ErrInvalidOption.
func (c *Client) Jobs(ctx context.Context, all bool, opts ...ListOption) ([]JobInfo, error) {
	var lo listOptions
	for _, o := range opts {
		if err := o(&lo); err != nil {
			return nil, err
		}
	}
	subject := proto.JobListSubject(c.opts.owner)
	if all {
		subject = proto.SubjectAdminJobList
	}
	list, err := request[proto.JobList](ctx, c, subject, proto.JobListRequest{Limit: lo.limit})
	if err != nil {
		return nil, c.denied(subject, err)
	}
	out := make([]JobInfo, len(list.Jobs))
	for i := range list.Jobs {
		out[i] = jobInfoOf(&list.Jobs[i])
	}
	return out, nil
}

// JobInfo returns job id, with what its streams hold now: its results
// stored so far, its batches queued, its dead letters. The error matches
// ErrJobNotFound when there is no such job — or it is another owner's,
// which the NATS user may not ask about —, ErrInvalid for an id that
// cannot be one, ErrNoCoordinator.
func (c *Client) JobInfo(ctx context.Context, id string) (*JobInfo, error) {
	if !proto.ValidJobID(id) {
		return nil, fmt.Errorf("%w: job id %q: want <owner>.<id>", ErrInvalid, id)
	}
	subject := proto.JobSubject("info", id)
	d, err := request[proto.JobDetail](ctx, c, subject, nil)
	if err != nil {
		return nil, c.denied(subject, err)
	}
	info := jobInfoOf(&d.Job)
	if !info.Counted && (d.Job.State == proto.JobOpen || d.Job.State == proto.JobSealed) {
		info.Counted = true
		info.Results, info.Succeeded, info.Failed, info.Dropped = d.Stored.Results, d.Stored.Succeeded, d.Stored.Failed, d.Stored.Dropped
	}
	info.QueuedBatches, info.ResultMessages, info.DeadLetters = d.QueuedBatches, d.ResultMessages, d.DeadLetters
	return &info, nil
}

// CancelJob cancels job id in the fleet: its pending batches and unread
// results are removed, and its running batches stop. The error matches
// ErrJobNotFound (as JobInfo's), ErrJobClosed for a job already done,
// ErrInvalid, ErrNoCoordinator. Cancelling a cancelled job succeeds.
func (c *Client) CancelJob(ctx context.Context, id string) error {
	if !proto.ValidJobID(id) {
		return fmt.Errorf("%w: job id %q: want <owner>.<id>", ErrInvalid, id)
	}
	subject := proto.JobSubject("cancel", id)
	_, err := request[proto.Job](ctx, c, subject, struct{}{})
	return c.denied(subject, err)
}

// denied turns the timeout of a request that NATS refused to pass (the
// connection reported a permission violation on its subject) into a
// not-found error: another owner's job, or its dead letters, are as
// unknown to a client as jobs that do not exist.
func (c *Client) denied(subject string, err error) error {
	if err == nil || !errors.Is(err, ErrNoCoordinator) {
		return err
	}
	last := c.nc.LastError()
	if last != nil && errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), `"`+subject+`"`) {
		return &Error{Code: plugin.CodeJobNotFound, Message: "not found (or not yours): " + subject}
	}
	return err
}

// jobInfoOf converts a job record.
func jobInfoOf(j *proto.Job) JobInfo {
	info := JobInfo{ID: j.ID, Owner: proto.JobOwner(j.ID), Plugin: j.Plugin, Version: j.Version, Digest: j.Digest,
		Config: j.Config, State: JobState(j.State), Priority: j.Priority, Created: j.Created, Updated: j.Updated,
		Records: j.Records, Batches: j.Batches, Abandoned: j.Abandoned, TraceID: j.TraceID}
	if len(j.Steps) > 0 {
		info.Plugin = ""
		for _, st := range j.Steps {
			info.Steps = append(info.Steps, Step{Plugin: st.Plugin, Version: st.Version, Config: st.Config})
		}
	}
	if j.State == proto.JobOpen {
		info.Records, info.Batches, info.SentAt = j.Sent.Records, j.Sent.Batches, j.Sent.At
	}
	if j.State == proto.JobDone {
		p := j.Progress
		info.Counted = true
		info.Results, info.Succeeded, info.Failed, info.Dropped = p.Results, p.Succeeded, p.Failed, p.Dropped
	}
	info.Age = time.Since(j.Created)
	return info
}

// DeadFilter selects dead letters (DeadLetters).
type DeadFilter struct {
	// Job selects one job's dead letters.
	Job string
	// All selects every owner's, which only the admin role may ask;
	// otherwise the client's owner's (or Job's owner's).
	All bool
	// Limit bounds how many are returned, the newest (default 100, at
	// most 1000).
	Limit int
}

// DeadLetterInfo is a dead letter: a record that failed on every delivery
// (its plugin failed its batch whatever the split, or its workers died
// running it), kept in DF_DEAD with its error until the fleet's retention
// passes.
type DeadLetterInfo struct {
	// ID is "<owner>.<sequence>", for DeadLetter.
	ID    string
	Owner string
	// Job is the job the record was in, Index its index there; Plugin
	// and Digest what ran it.
	Job         string
	Index       uint64
	Plugin      string
	Digest      string
	Error       string
	Key, Value  []byte
	ValueBytes  int
	ValueSHA256 string
	Worker      string
	Attempts    int
	At          time.Time
	Truncated   bool // the store keeps only the first bytes of Key or Value: it cannot be replayed
	Preview     bool // Key and Value were cut for the list: DeadLetter has them as stored
}

// DeadLetters returns dead letters, newest first, with Key and Value cut
// to a preview (Preview says so; DeadLetter returns one whole). The error
// matches ErrJobNotFound for a Job of another owner, ErrInvalid,
// ErrNoCoordinator.
func (c *Client) DeadLetters(ctx context.Context, f DeadFilter) ([]DeadLetterInfo, error) {
	subject, err := c.deadListSubject(f.Job, f.All)
	if err != nil {
		return nil, err
	}
	if f.Limit < 0 || f.Limit > proto.MaxListLimit {
		return nil, fmt.Errorf("%w: limit %d not in 1..%d", ErrInvalid, f.Limit, proto.MaxListLimit)
	}
	list, err := request[proto.DeadList](ctx, c, subject, proto.DeadListRequest{Job: f.Job, Limit: f.Limit})
	if err != nil {
		return nil, c.denied(subject, err)
	}
	out := make([]DeadLetterInfo, len(list.Letters))
	for i := range list.Letters {
		out[i] = deadLetterOf(&list.Letters[i])
	}
	return out, nil
}

// deadListSubject returns the subject of a list of job's dead letters, of
// every owner's (all), or of the client's owner's.
func (c *Client) deadListSubject(job string, all bool) (string, error) {
	switch {
	case job != "" && !proto.ValidJobID(job):
		return "", fmt.Errorf("%w: job id %q: want <owner>.<id>", ErrInvalid, job)
	case all:
		return proto.SubjectAdminDeadList, nil
	case job != "":
		return proto.DeadListSubject(proto.JobOwner(job)), nil
	}
	return proto.DeadListSubject(c.opts.owner), nil
}

// DeadLetter returns dead letter id whole (as stored). The error matches
// ErrJobNotFound when there is none of that id, or it is another owner's;
// ErrInvalid for an id that cannot be one; ErrNoCoordinator.
func (c *Client) DeadLetter(ctx context.Context, id string) (*DeadLetterInfo, error) {
	if _, _, ok := proto.ParseDeadID(id); !ok {
		return nil, fmt.Errorf("%w: dead letter id %q: want <owner>.<number>", ErrInvalid, id)
	}
	subject := proto.DeadGetSubject(id)
	e, err := request[proto.DeadEntry](ctx, c, subject, nil)
	if err != nil {
		return nil, c.denied(subject, err)
	}
	dl := deadLetterOf(e)
	return &dl, nil
}

// deadLetterOf converts an entry.
func deadLetterOf(e *proto.DeadEntry) DeadLetterInfo {
	return DeadLetterInfo{ID: e.ID, Owner: e.Owner, Job: e.Job, Index: e.Index, Plugin: e.Plugin, Digest: e.Digest,
		Error: e.Error, Key: e.Key, Value: e.Value, ValueBytes: e.ValueBytes, ValueSHA256: e.ValueSHA256, Worker: e.Worker,
		Attempts: e.Attempts, At: e.At, Truncated: e.Truncated, Preview: e.Preview}
}
