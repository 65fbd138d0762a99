package client

import (
	"context"
	"fmt"
	"time"

	"github.com/dataflare/dataflare/internal/proto"
)

// PipelineSpec defines a pipeline: a coordinator reads Source (its
// messages matching Filter, from the first or where the pipeline stopped),
// runs Steps over each message (value: the payload, key: the subject,
// headers: the message's), and publishes each result value on Sink, with
// the message's headers and Df-Source-Seq, exactly once per source message
// in a sink stream, in source order. Dropped records publish nothing;
// records with errors go to dead letters, naming the step that failed.
type PipelineSpec struct {
	Source string
	Filter string
	Steps  []Step
	Sink   string
}

// Pipeline is a pipeline's definition and, when a coordinator runs it,
// how it goes.
type Pipeline struct {
	Name   string
	Owner  string
	Spec   PipelineSpec
	Paused bool
	// Revision counts the definition's changes.
	Revision         uint64
	Created, Updated time.Time
	// Status is the running coordinator's last report; nil when none has
	// reported.
	Status *PipelineStatus
}

// PipelineStatus is how a running pipeline goes.
type PipelineStatus struct {
	// Coordinator runs it, as job Job, at definition Revision; State is
	// "running", "paused" or why it cannot run now.
	Coordinator, Job, State string
	Revision                uint64
	At                      time.Time
	// Processed counts source messages done, of which Errors were
	// dead-lettered and Dropped filtered out; Rate is per second.
	Processed, Errors, Dropped uint64
	Rate                       float64
	// Lag counts source messages not yet in the sink; LastSeq is the last
	// source sequence whose result is there.
	Lag, LastSeq uint64
	// LatencyP50 and LatencyP99 go from a message's arrival in the source
	// to its result's in the sink, over the last minute.
	LatencyP50, LatencyP99 time.Duration
}

// CreatePipeline defines and starts pipeline name of the client's owner.
// The error matches ErrInvalid (a name, subject or stream that cannot be,
// a pipeline of that name already, a sink its source captures),
// ErrUnknownPlugin, ErrNoCoordinator.
func (c *Client) CreatePipeline(ctx context.Context, name string, spec PipelineSpec) (*Pipeline, error) {
	if !proto.ValidName(name) {
		return nil, fmt.Errorf("%w: pipeline name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalid, name)
	}
	req := proto.Pipeline{Source: spec.Source, Filter: spec.Filter, Sink: spec.Sink, Steps: protoSteps(spec.Steps)}
	return c.pipelineRequest(ctx, "create", name, req)
}

// PipelineInfo returns pipeline name's definition and status. The error
// matches ErrJobNotFound when there is no such pipeline.
func (c *Client) PipelineInfo(ctx context.Context, name string) (*Pipeline, error) {
	return c.pipelineRequest(ctx, "get", name, nil)
}

// Pipelines returns the client's owner's pipelines.
func (c *Client) Pipelines(ctx context.Context) ([]Pipeline, error) {
	list, err := request[proto.PipelineList](ctx, c, proto.PipelineListSubject(c.opts.owner), nil)
	if err != nil {
		return nil, err
	}
	return pipelinesOf(list), nil
}

// AllPipelines returns every owner's pipelines, by owner and name. Where
// NATS permissions are on, only the admin role may ask; another user's
// request is refused, and the error matches ErrJobNotFound, as for
// Jobs(ctx, true).
func (c *Client) AllPipelines(ctx context.Context) ([]Pipeline, error) {
	list, err := request[proto.PipelineList](ctx, c, proto.SubjectAdminPipelineList, nil)
	if err != nil {
		return nil, c.denied(proto.SubjectAdminPipelineList, err)
	}
	return pipelinesOf(list), nil
}

// pipelinesOf returns the pipelines of a list.
func pipelinesOf(list *proto.PipelineList) []Pipeline {
	out := make([]Pipeline, len(list.Pipelines))
	for i := range list.Pipelines {
		out[i] = pipelineOf(&list.Pipelines[i])
	}
	return out
}

// PausePipeline stops a pipeline: its batches in flight finish, nothing
// more is read until it resumes.
func (c *Client) PausePipeline(ctx context.Context, name string) (*Pipeline, error) {
	return c.pipelineRequest(ctx, "pause", name, nil)
}

// ResumePipeline starts a paused pipeline where it stopped.
func (c *Client) ResumePipeline(ctx context.Context, name string) (*Pipeline, error) {
	return c.pipelineRequest(ctx, "resume", name, nil)
}

// UpdatePipeline gives a pipeline new steps: its batches in flight finish
// on the old ones, and the messages after them run the new ones; nothing
// is lost or published twice.
func (c *Client) UpdatePipeline(ctx context.Context, name string, steps []Step) (*Pipeline, error) {
	return c.pipelineRequest(ctx, "update", name, proto.Pipeline{Steps: protoSteps(steps)})
}

// RemovePipeline deletes a pipeline and its place in its source.
func (c *Client) RemovePipeline(ctx context.Context, name string) error {
	_, err := c.pipelineRequest(ctx, "rm", name, nil)
	return err
}

// pipelineRequest sends a pipeline request and converts its reply.
func (c *Client) pipelineRequest(ctx context.Context, verb, name string, body any) (*Pipeline, error) {
	if !proto.ValidName(name) {
		return nil, fmt.Errorf("%w: pipeline name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalid, name)
	}
	info, err := request[proto.PipelineInfo](ctx, c, proto.PipelineSubject(verb, c.opts.owner, name), body)
	if err != nil {
		return nil, err
	}
	p := pipelineOf(info)
	return &p, nil
}

func protoSteps(steps []Step) []proto.Step {
	out := make([]proto.Step, len(steps))
	for i, st := range steps {
		out[i] = proto.Step{Plugin: st.Plugin, Version: st.Version, Config: st.Config}
	}
	return out
}

// pipelineOf converts a reply.
func pipelineOf(info *proto.PipelineInfo) Pipeline {
	d := info.Pipeline
	p := Pipeline{Name: d.Name, Owner: d.Owner, Paused: d.State == proto.PipelinePaused, Revision: d.Revision,
		Created: d.Created, Updated: d.Updated,
		Spec: PipelineSpec{Source: d.Source, Filter: d.Filter, Sink: d.Sink}}
	for _, st := range d.Steps {
		p.Spec.Steps = append(p.Spec.Steps, Step{Plugin: st.Plugin, Version: st.Version, Config: st.Config})
	}
	if s := info.Status; s != nil {
		p.Status = &PipelineStatus{Coordinator: s.Coordinator, Job: s.Job, State: s.State, Revision: s.Revision, At: s.At, Processed: s.Processed,
			Errors: s.Errors, Dropped: s.Dropped, Rate: s.Rate, Lag: s.Lag, LastSeq: s.LastSeq,
			LatencyP50: s.LatencyP50, LatencyP99: s.LatencyP99}
	}
	return p
}
