// Package proto is the fleet's protocol: subject names, headers, stream and
// bucket settings, and the JSON messages that coordinators, workers and
// clients exchange. Batches and results themselves are binary (package
// batch); everything small is JSON.
package proto

import (
	"github.com/dataflare/dataflare/fleet"

	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Subjects. Tokens in angle brackets are filled in by the functions below.
const (
	// SubjectJobCreatePrefix: df.job.create.<owner>: request, a client
	// creates a job of owner (JobCreate → Job). The owner is in the subject
	// so that NATS permissions decide who may create jobs as whom.
	SubjectJobCreatePrefix = "df.job.create."
	// SubjectJobPrefix: df.job.<verb>.<owner>.<id> requests on a job (seal,
	// cancel, get, done, reject, progress, info), and df.job.list.<owner>.
	SubjectJobPrefix = "df.job."
	// SubjectBatchPrefix: df.batch.<owner>.<priority>.<plugin>.<id>:
	// batches, in their owner's batch stream (DF_BATCHES_<owner>, or the
	// shared DF_BATCHES of a fleet without fair sharing), published by
	// clients (the owner token lets NATS permissions keep a client to its
	// own jobs) and by workers' poison splits. A worker runs a batch only
	// on its own job's subject.
	SubjectBatchPrefix = "df.batch."
	// SubjectWorkPrefix: df.work.<owner>.<priority>: a hint (core NATS, no
	// body) that a client published batches to that queue, so that an
	// idle worker looks there at once.
	SubjectWorkPrefix = "df.work."
	// SubjectResultPrefix: df.result.<owner>.<id>: result messages in
	// their owner's result stream (DF_RESULTS_<owner>). The owner token
	// lets NATS permissions keep a client to its own results.
	SubjectResultPrefix = "df.result."
	// SubjectDeadPrefix: df.dead.<job>: dead-letter entries in DF_DEAD.
	SubjectDeadPrefix = "df.dead."
	// SubjectHeartbeatPrefix: df.hb.<worker>: worker heartbeats (core NATS).
	SubjectHeartbeatPrefix = "df.hb."
	// SubjectPipelinePrefix: df.pipeline.<verb>.<owner>.<name> requests on
	// a pipeline (create, get, pause, resume, update, rm), and
	// df.pipeline.list.<owner>.
	SubjectPipelinePrefix = "df.pipeline."
	// SubjectStatus: request, the fleet's status (→ FleetStatus).
	SubjectStatus = "df.status"
	// SubjectReport: request, the fleet's performance report.
	SubjectReport = "df.report"
	// SubjectPluginsChanged: a WebAssembly plugin was pushed or removed
	// (core NATS, informational; workers also watch the object store).
	SubjectPluginsChanged = "df.plugins.changed"
)

// Stream, consumer and bucket names. Batches and results live in streams
// of their owner (BatchStream, ResultStream); a fleet without fair sharing
// queues every owner's batches in StreamBatches.
const (
	StreamBatches = "DF_BATCHES"
	StreamDead    = "DF_DEAD"
	BucketJobs    = "DF_JOBS"
	BucketPlugins = "DF_PLUGINS"
	// BucketPipelines holds pipelines: "def.<owner>.<name>" their
	// definitions, "lease.<owner>.<name>" which coordinator runs each,
	// "status.<owner>.<name>" how it goes.
	BucketPipelines = "DF_PIPELINES"
	// BucketQueues holds one entry per batch stream (a Queue value),
	// which workers watch to know where to take work from.
	BucketQueues = "DF_QUEUES"
	// QueueCoordinators is the queue group coordinators share requests in.
	QueueCoordinators = "df-coordinators"
)

// Headers.
const (
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderSplit marks a batch cut from a poison batch: "<depth>".
	HeaderSplit = "Df-Split"
	// HeaderError carries a request's error on a reply (error code).
	HeaderError = "Df-Error"
	// HeaderAlone marks a batch that runs alone on its worker (its
	// workers died with it): "<deliveries>", how many times it already
	// ran alone (or was released while alone) before this copy.
	HeaderAlone = "Df-Alone"
)

// JobCreateSubject returns the subject a client creates jobs of owner on.
func JobCreateSubject(owner string) string { return SubjectJobCreatePrefix + owner }

// BatchSubject returns the subject of the batches of job, of priority p,
// for plugin: df.batch.<owner>.<priority>.<plugin>.<id>.
func BatchSubject(job string, p fleet.Priority, plugin string) string {
	owner, id, _ := strings.Cut(job, ".")
	return SubjectBatchPrefix + owner + "." + p.String() + "." + plugin + "." + id
}

// WorkSubject returns the subject of the hints of work in owner's queue
// of priority p.
func WorkSubject(owner string, p fleet.Priority) string {
	return SubjectWorkPrefix + owner + "." + p.String()
}

// BatchStream returns the name of owner's batch stream; owner "" names the
// stream every owner shares (FIFO).
func BatchStream(owner string) string {
	if owner == "" {
		return StreamBatches
	}
	return StreamBatches + "_" + owner
}

// ResultStream returns the name of owner's result stream.
func ResultStream(owner string) string { return "DF_RESULTS_" + owner }

// WorkerConsumer returns the name of the workers' consumer of the batches
// of priority p, in every batch stream.
func WorkerConsumer(p fleet.Priority) string { return "df-workers-" + p.String() }

// ResultSubject returns the DF_RESULTS subject of job's results.
func ResultSubject(job string) string { return SubjectResultPrefix + job }

// DeadSubject returns the DF_DEAD subject of job's dead letters.
func DeadSubject(job string) string { return SubjectDeadPrefix + job }

// HeartbeatSubject returns the subject worker sends heartbeats on.
func HeartbeatSubject(worker string) string { return SubjectHeartbeatPrefix + worker }

// PipelineSubject returns the subject of a request on pipeline name of
// owner: verb is "create", "get", "pause", "resume", "update" or "rm".
func PipelineSubject(verb, owner, name string) string {
	return SubjectPipelinePrefix + verb + "." + owner + "." + name
}

// PipelineListSubject returns the subject of the list of owner's
// pipelines.
func PipelineListSubject(owner string) string { return SubjectPipelinePrefix + "list." + owner }

// JobSubject returns the subject of a job request: verb is "seal",
// "cancel", "get", "done", "reject", "progress" or "info".
func JobSubject(verb, job string) string { return SubjectJobPrefix + verb + "." + job }

// BatchMsgID returns the de-duplication id of batch seq of job in
// DF_BATCHES: "<job>.<key>.<seq>", where key is a secret of the job's
// submitter (NewToken). De-duplication is stream-wide: an id that anyone
// who learns the job id could compute would let another owner publish it
// first and have the real batch dropped as a duplicate.
func BatchMsgID(job, key string, seq uint64) string {
	return job + "." + key + "." + strconv.FormatUint(seq, 10)
}

// ResultMsgID returns the de-duplication id of the results of batch seq of
// job in DF_RESULTS ("<job>.<seq>"; only workers publish there).
func ResultMsgID(job string, seq uint64) string { return job + "." + strconv.FormatUint(seq, 10) }

// PartMsgID returns the id of a part of a batch or of its results: the
// parent's id, then ".s<base>-<count>", unique for every range of records.
// A batch split by a worker gets parts of its own (unguessable) id.
func PartMsgID(parent string, base uint64, count int) string {
	return fmt.Sprintf("%s.s%d-%d", parent, base, count)
}

// NewToken returns a new random token of 128 bits, 22 characters of
// [A-Za-z0-9_-] (one subject token): what job ids and batch keys are made
// of, so that nobody can guess one from their own.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidName reports whether s can be a plugin name, owner or worker id: 1
// to 64 characters from [A-Za-z0-9_-], so that it is one subject token.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DefaultOwner owns the jobs of clients that do not name an owner.
const DefaultOwner = "anon"

// JobID returns the id of a job: "<owner>.<id>", two subject tokens, so
// that every subject about the job (df.result.<owner>.<id>, …) can be
// permitted per owner.
func JobID(owner, id string) string { return owner + "." + id }

// ValidJobID reports whether s is "<owner>.<id>" with both valid names.
func ValidJobID(s string) bool {
	owner, id, ok := strings.Cut(s, ".")
	return ok && ValidName(owner) && ValidName(id)
}

// JobOwner returns the owner part of a valid job id.
func JobOwner(job string) string {
	owner, _, _ := strings.Cut(job, ".")
	return owner
}

// LastToken returns the last dot-separated token of subject.
func LastToken(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}
