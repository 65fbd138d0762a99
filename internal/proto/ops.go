package proto

import (
	"strconv"
	"strings"
	"time"

	"github.com/dataflare/dataflare/fleet"
)

// Operators' requests: lists of jobs and dead letters. An owner's request
// carries the owner in its subject, so that NATS permissions keep each
// owner to its own (deploy/nats/auth.conf); the lists of every owner's are
// under SubjectAdminPrefix, which only the admin role may publish to.
const (
	// SubjectJobList: df.job.list.<owner>: request, owner's jobs
	// (JobListRequest → JobList).
	SubjectJobList = SubjectJobPrefix + "list."
	// SubjectDeadLetterPrefix: df.deadletter.list.<owner> (DeadListRequest
	// → DeadList) and df.deadletter.get.<owner>.<seq> (→ DeadEntry):
	// requests on owner's dead letters. (DF_DEAD itself is on df.dead.>.)
	SubjectDeadLetterPrefix = "df.deadletter."
	// SubjectAdminPrefix starts the requests about every owner at once.
	SubjectAdminPrefix = "df.admin."
	// SubjectAdminJobList: request, every owner's jobs (JobListRequest →
	// JobList).
	SubjectAdminJobList = SubjectAdminPrefix + "job.list"
	// SubjectAdminDeadList: request, every owner's dead letters
	// (DeadListRequest → DeadList).
	SubjectAdminDeadList = SubjectAdminPrefix + "deadletter.list"
	// SubjectAdminPipelineList: request, every owner's pipelines (→
	// PipelineList).
	SubjectAdminPipelineList = SubjectAdminPrefix + "pipeline.list"
)

// JobListSubject returns the subject of the list of owner's jobs.
func JobListSubject(owner string) string { return SubjectJobList + owner }

// DeadListSubject returns the subject of the list of owner's dead letters.
func DeadListSubject(owner string) string { return SubjectDeadLetterPrefix + "list." + owner }

// DeadGetSubject returns the subject of a request for the dead letter of
// id ("<owner>.<seq>", DeadID).
func DeadGetSubject(id string) string { return SubjectDeadLetterPrefix + "get." + id }

// DeadID returns the id of owner's dead letter at seq in DF_DEAD:
// "<owner>.<seq>".
func DeadID(owner string, seq uint64) string { return owner + "." + strconv.FormatUint(seq, 10) }

// ParseDeadID splits a dead letter's id into its owner and DF_DEAD
// sequence; ok is false when id is not one.
func ParseDeadID(id string) (owner string, seq uint64, ok bool) {
	owner, n, found := strings.Cut(id, ".")
	if !found || !ValidName(owner) {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil || seq == 0 {
		return "", 0, false
	}
	return owner, seq, true
}

// Bounds of the lists.
const (
	// DefaultListLimit is how many jobs or dead letters a list holds when
	// the request does not say.
	DefaultListLimit = 100
	// MaxListLimit is the most a list may hold.
	MaxListLimit = 1000
	// DeadPreviewBytes is how much of a dead letter's key and value a list
	// carries (DeadEntry.Truncated says when they were cut); a get or a
	// list with Full carries them whole (as stored).
	DeadPreviewBytes = 256
)

// JobListRequest is the body of a job list request.
type JobListRequest struct {
	// Limit bounds the jobs returned (0: DefaultListLimit; at most
	// MaxListLimit).
	Limit int `json:"limit,omitempty"`
}

// JobList is the reply to a job list request: the jobs most recently
// changed first, without their configuration. More says that there are
// jobs beyond Limit (or beyond what fits one reply).
type JobList struct {
	Jobs []Job `json:"jobs"`
	More bool  `json:"more,omitempty"`
}

// JobDetail is the reply to df.job.info.<owner>.<id>: the job's record and
// what its streams hold now.
type JobDetail struct {
	Job Job `json:"job"`
	// Stored counts the results in DF_RESULTS not yet read to the end by
	// the job's client (all of them until the job is done): their records
	// and result messages.
	Stored Progress `json:"stored"`
	// ResultMessages counts the job's result messages there.
	ResultMessages uint64 `json:"result_messages"`
	// QueuedBatches counts the job's batches in its batch stream: waiting
	// for a worker or running.
	QueuedBatches uint64 `json:"queued_batches"`
	// DeadLetters counts the job's dead letters in DF_DEAD.
	DeadLetters uint64 `json:"dead_letters"`
}

// JobSent is what the submitter of an open job has sent, as it last
// reported (df.job.progress.<owner>.<id>, every Job.Lease).
type JobSent struct {
	Batches uint64    `json:"batches"`
	Records uint64    `json:"records"`
	At      time.Time `json:"at,omitzero"`
}

// DeadListRequest is the body of a dead-letter list request.
type DeadListRequest struct {
	// Job restricts the list to one job's dead letters.
	Job string `json:"job,omitempty"`
	// Limit bounds the entries returned (0: DefaultListLimit; at most
	// MaxListLimit).
	Limit int `json:"limit,omitempty"`
	// Full asks for whole entries, oldest first from the sequence After
	// on (a page: DeadList.Next continues it), instead of previews newest
	// first. A reply holds what fits one message.
	Full  bool   `json:"full,omitempty"`
	After uint64 `json:"after,omitempty"`
}

// DeadEntry is a dead letter as requests return it.
type DeadEntry struct {
	// ID is "<owner>.<seq>": its owner, and its sequence in DF_DEAD.
	ID    string `json:"id"`
	Owner string `json:"owner"`
	Seq   uint64 `json:"seq"`
	fleet.DeadLetter
	// Preview says that Key and Value were cut to DeadPreviewBytes for
	// the list.
	Preview bool `json:"preview,omitempty"`
}

// DeadList is the reply to a dead-letter list request. More says there
// are entries beyond those returned; for a Full list, Next is the
// sequence to ask After for the next page (0: none).
type DeadList struct {
	Letters []DeadEntry `json:"letters"`
	More    bool        `json:"more,omitempty"`
	Next    uint64      `json:"next,omitempty"`
}
