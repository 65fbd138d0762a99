package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/plugin"
)

// JobState is where a job is in its life.
type JobState string

// Job states.
const (
	JobOpen      JobState = "open"      // accepting batches
	JobSealed    JobState = "sealed"    // every batch submitted; total known
	JobDone      JobState = "done"      // every result read by the client
	JobCancelled JobState = "cancelled" // stopped; remaining batches are dropped
)

// Step is one plugin of a chain: a job (or a pipeline) with steps runs
// them over each record in turn, in one pass on a worker.
type Step struct {
	Plugin string `json:"plugin"`
	// Version selects a WebAssembly plugin's version ("" = newest);
	// Digest is the module the job pinned (empty for native plugins).
	Version string            `json:"version,omitempty"`
	Digest  string            `json:"digest,omitempty"`
	Config  map[string]string `json:"config,omitempty"`
}

// ChainPlugin is the plugin name a job with steps has, and its batches'
// subject carries: the worker runs the job's steps.
const ChainPlugin = "_chain"

// MaxSteps bounds the steps of a chain.
const MaxSteps = 16

// JobCreate is the request on df.job.create.<owner>.
type JobCreate struct {
	// Plugin is the plugin's name.
	Plugin string `json:"plugin"`
	// Version selects a WebAssembly plugin version ("" = newest).
	Version string `json:"version,omitempty"`
	// Config is the plugin configuration handed over with every batch.
	Config map[string]string `json:"config,omitempty"`
	// Timeout bounds one batch's run (0: the workers' own, which also
	// caps it).
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// Priority orders the job among its owner's (default normal).
	Priority fleet.Priority `json:"priority,omitempty"`
	// Steps, instead of Plugin, Version and Config, makes a chain.
	Steps []Step `json:"steps,omitempty"`
	// Lease is how often the submitter reports what it has sent while
	// the job is open (df.job.progress): a job that has not heard from it
	// for a few leases is abandoned. 0: the submitter does not report.
	Lease time.Duration `json:"lease_ns,omitempty"`
	// Compress is the compression the job's readers decode in result
	// messages: CompressS2, or "" for none (a client that predates it).
	Compress string `json:"compress,omitempty"`
}

// CompressS2 is JobCreate.Compress of a client that reads result
// messages compressed with S2 (batch.FlagS2).
const CompressS2 = "s2"

// Job is a job's record in the DF_JOBS bucket, and the reply to JobCreate
// and to job requests.
type Job struct {
	ID      string            `json:"id"`
	Plugin  string            `json:"plugin"`
	Version string            `json:"version,omitempty"`
	Digest  string            `json:"digest,omitempty"` // pinned module digest; empty for native plugins
	Config  map[string]string `json:"config,omitempty"`
	// Timeout bounds one batch's run on a worker (0: the worker's own
	// BatchTimeout, which also caps it).
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// Priority orders the job among its owner's: its batches are queued
	// under it (BatchSubject).
	Priority fleet.Priority `json:"priority,omitempty"`
	// Steps are a chain's plugins, with their pinned digests (Plugin is
	// then ChainPlugin).
	Steps   []Step    `json:"steps,omitempty"`
	State   JobState  `json:"state"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Batches and Records are the job's totals, known once sealed.
	Batches uint64 `json:"batches,omitempty"`
	Records uint64 `json:"records,omitempty"`
	// Progress as last reported by the job's client.
	Progress Progress `json:"progress"`
	// BatchSize is the size the coordinator wants batches cut at now.
	BatchSize int `json:"batch_size,omitempty"`
	// MaxBatchBytes is the largest batch message the coordinator accepts.
	MaxBatchBytes int `json:"max_batch_bytes,omitempty"`
	// BatchStream is the stream the job's batches go to: its owner's, or
	// the shared one of a fleet without fair sharing.
	BatchStream string `json:"batch_stream,omitempty"`
	// Lease is JobCreate's; Sent what the submitter last reported.
	Lease time.Duration `json:"lease_ns,omitempty"`
	Sent  JobSent       `json:"sent,omitzero"`
	// TraceID is the trace the job was created in, when the client
	// traced it.
	TraceID string `json:"trace_id,omitempty"`
	// Compress is JobCreate's: whether workers may compress the job's
	// result messages.
	Compress string `json:"compress,omitempty"`
	// Abandoned is set on replies (never stored) about an open job whose
	// submitter has not reported for AbandonedAfter.
	Abandoned bool `json:"abandoned,omitempty"`
}

// AbandonedAfter returns how long an open job of lease may go without a
// report from its submitter before it counts as abandoned: three leases,
// and the time a coordinator may answer from its cache.
func AbandonedAfter(lease time.Duration) time.Duration { return 3*lease + 2*time.Second }

// Progress counts a job's results.
type Progress struct {
	Results   uint64 `json:"results"`
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
}

// JobSeal is the request on df.job.seal.<job>: the submitter's totals;
// also the request on df.job.progress.<job>, what it has sent so far.
type JobSeal struct {
	Batches uint64 `json:"batches"`
	Records uint64 `json:"records"`
}

// JobReject is the request on df.job.reject.<job>: a record the client
// cannot send (over a size limit) gets its error as a result, stored like
// every other result so that a reader of the job — the client, or another
// one after Attach — finds it in its place.
type JobReject struct {
	Index   uint64 `json:"index"`
	Message string `json:"message"`
}

// JobFinish is the request on df.job.done.<job>: the client read every result.
type JobFinish struct {
	Progress Progress `json:"progress"`
}

// Error is an error carried in a reply. Its Code is one of plugin.Code's:
// plugin.CodeInvalidInput for a malformed request, CodeUnknownPlugin,
// CodeTooLarge, CodeNoWorkers, CodeJobNotFound, CodeJobClosed, CodeBusy,
// and CodeUnknown for anything else.
type Error struct {
	Code    plugin.Code `json:"code"`
	Message string      `json:"message"`
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error of code with a formatted message.
func Errorf(code plugin.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Reply wraps a JSON reply body with an optional error. Data is omitted when
// Error is set.
type Reply[T any] struct {
	Data  *T     `json:"data,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// ErrBadReply is wrapped when a reply cannot be decoded.
var ErrBadReply = errors.New("proto: malformed reply")

// DecodeReply decodes a Reply; an Error in it is returned as the error.
func DecodeReply[T any](b []byte) (*T, error) {
	var r Reply[T]
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	if r.Error != nil {
		return nil, r.Error
	}
	if r.Data == nil {
		return nil, fmt.Errorf("%w: no data", ErrBadReply)
	}
	return r.Data, nil
}

// EncodeReply encodes data, or err as an *Error (plugin.CodeUnknown unless
// err is an *Error already).
func EncodeReply[T any](data *T, err error) []byte {
	var r Reply[T]
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: plugin.CodeUnknown, Message: err.Error()}
		}
		r.Error = pe
	} else {
		r.Data = data
	}
	b, _ := json.Marshal(r) // cannot fail: plain data
	return b
}

// PipelineState is whether a pipeline runs.
type PipelineState string

// Pipeline states.
const (
	PipelineRunning PipelineState = "running"
	PipelinePaused  PipelineState = "paused"
)

// Pipeline is a pipeline's definition, in DF_PIPELINES under
// "def.<owner>.<name>", and the body of create and update requests.
type Pipeline struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	// Source is the stream read from its first message (or where the
	// pipeline stopped), Filter a subject filter on it ("": all).
	Source string `json:"source"`
	Filter string `json:"filter,omitempty"`
	// Steps run over each message; Sink is the subject every result
	// value is published on.
	Steps []Step        `json:"steps"`
	Sink  string        `json:"sink"`
	State PipelineState `json:"state"`
	// Revision counts the definition's changes: a runner that sees a new
	// one finishes its batches on the old steps and starts the new ones.
	Revision uint64    `json:"revision"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

// PipelineStatus is what the coordinator running a pipeline reports, in
// DF_PIPELINES under "status.<owner>.<name>", every second.
type PipelineStatus struct {
	Coordinator string    `json:"coordinator"`
	Job         string    `json:"job,omitempty"` // the job its batches run as now
	Revision    uint64    `json:"revision"`
	State       string    `json:"state"` // running, paused, or why it cannot run
	At          time.Time `json:"at"`
	// Processed counts source messages done (published, dropped or
	// dead-lettered), of which Errors went to dead letters and Dropped
	// were filtered out.
	Processed uint64 `json:"processed"`
	Errors    uint64 `json:"errors"`
	Dropped   uint64 `json:"dropped"`
	// Rate is messages per second over the last seconds; Lag the source
	// messages not yet in the sink.
	Rate float64 `json:"rate"`
	Lag  uint64  `json:"lag"`
	// LatencyP50 and LatencyP99 are from a message's arrival in the
	// source to its result's in the sink, over the last minute.
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP99 time.Duration `json:"latency_p99_ns"`
	// LastSeq is the last source sequence whose result is in the sink.
	LastSeq uint64 `json:"last_seq"`
}

// PipelineInfo is the reply to a pipeline request: its definition and,
// when a coordinator runs it, its status.
type PipelineInfo struct {
	Pipeline Pipeline        `json:"pipeline"`
	Status   *PipelineStatus `json:"status,omitempty"`
}

// PipelineList is the reply to df.pipeline.list.<owner>.
type PipelineList struct {
	Pipelines []PipelineInfo `json:"pipelines"`
}
