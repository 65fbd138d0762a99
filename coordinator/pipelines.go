package coordinator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// Pipelines: definitions live in DF_PIPELINES under "def.<owner>.<name>";
// any coordinator answers their requests, and one at a time runs each
// (runner.go).

// pipelineKey returns the DF_PIPELINES key of kind ("def", "lease",
// "status") of owner's pipeline name.
func pipelineKey(kind, owner, name string) string { return kind + "." + owner + "." + name }

// pipelineVerbs holds the method that answers each pipeline request verb,
// called with the owner, the pipeline's name and the request's body.
var pipelineVerbs = map[string]func(c *Coordinator, ctx context.Context, owner, name string, body []byte) (*proto.PipelineInfo, error){
	"create": (*Coordinator).createPipeline,
	"get":    (*Coordinator).getPipeline,
	"pause":  (*Coordinator).pausePipeline,
	"resume": (*Coordinator).resumePipeline,
	"update": (*Coordinator).updatePipeline,
	"rm":     (*Coordinator).removePipeline,
}

// handlePipeline answers df.pipeline.<verb>.<owner>[.<name>].
func (c *Coordinator) handlePipeline(ctx context.Context, m *nats.Msg) {
	rest := strings.TrimPrefix(m.Subject, proto.SubjectPipelinePrefix)
	parts := strings.Split(rest, ".")
	switch {
	case len(parts) == 2 && parts[0] == "list" && proto.ValidName(parts[1]):
		list, err := c.listPipelines(ctx, parts[1])
		respond(c, m, list, err)
		return
	case len(parts) != 3 || !proto.ValidName(parts[1]) || !proto.ValidName(parts[2]):
		respond[proto.PipelineInfo](c, m, nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: bad pipeline subject %q", m.Subject))
		return
	}
	answer, ok := pipelineVerbs[parts[0]]
	if !ok {
		respond[proto.PipelineInfo](c, m, nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: unknown pipeline request %q", parts[0]))
		return
	}
	info, err := answer(c, ctx, parts[1], parts[2], m.Data)
	respond(c, m, info, err)
}

// createPipeline stores a new pipeline's definition, checked: its source
// stream exists, its steps' plugins are known, its sink does not feed its
// source. A coordinator picks it up within a second (runner.go).
func (c *Coordinator) createPipeline(ctx context.Context, owner, name string, body []byte) (*proto.PipelineInfo, error) {
	req, err := decodeRequest[proto.Pipeline](body, "pipeline")
	if err != nil {
		return nil, err
	}
	now := c.cfg.Clock()
	p := proto.Pipeline{Name: name, Owner: owner, Source: req.Source, Filter: req.Filter, Steps: req.Steps, Sink: req.Sink,
		State: proto.PipelineRunning, Revision: 1, Created: now, Updated: now}
	if err := c.checkPipeline(ctx, &p); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(p) // cannot fail: plain data
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if _, err := c.pipelines.Create(kctx, pipelineKey("def", owner, name), b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, proto.Errorf(plugin.CodeInvalidInput, "pipeline %s exists: update it, or remove it first", name)
		}
		return nil, kvError("record pipeline", err)
	}
	c.log.Info("pipeline created", "pipeline", owner+"/"+name, "source", p.Source, "sink", p.Sink, "steps", len(p.Steps))
	return &proto.PipelineInfo{Pipeline: p}, nil
}

// checkPipeline checks a definition: names and subjects well formed, the
// source stream there, the steps' plugins known, and a sink its source
// does not capture (the pipeline would feed itself).
func (c *Coordinator) checkPipeline(ctx context.Context, p *proto.Pipeline) error {
	switch {
	case !validStreamName(p.Source):
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: source stream %q is not a stream name", p.Name, p.Source)
	case p.Filter != "" && !validSubject(p.Filter, true):
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: filter %q is not a subject", p.Name, p.Filter)
	case !validSubject(p.Sink, false):
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: sink %q is not a subject (no wildcards)", p.Name, p.Sink)
	case strings.HasPrefix(p.Sink, "df.") || strings.HasPrefix(p.Sink, "$") || strings.HasPrefix(p.Sink, "_INBOX"):
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: sink %q is in the fleet's or the server's own namespace, or an inbox", p.Name, p.Sink)
	}
	if len(p.Steps) == 0 {
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: no step", p.Name)
	}
	if err := checkPlugins(proto.JobCreate{Steps: p.Steps}); err != nil {
		return err
	}
	if _, err := c.pinSteps(ctx, p.Steps); err != nil {
		return err
	}
	return c.checkSource(ctx, p)
}

// checkSource checks that p may read its source and write its sink: a
// grant allows it, the source is a stream of the users' own, and it does
// not capture the sink. A runner checks again before each generation (the
// grants or the stream may have changed since the pipeline was defined).
func (c *Coordinator) checkSource(ctx context.Context, p *proto.Pipeline) error {
	if err := c.granted(p); err != nil {
		return err
	}
	s, err := c.js.Stream(ctx, p.Source)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: no stream %s", p.Name, p.Source)
	case err != nil:
		return kvError("read stream "+p.Source, err)
	}
	if err := fleetStream(p, s.CachedInfo().Config); err != nil {
		return err
	}
	for _, subject := range s.CachedInfo().Config.Subjects {
		if subjectMatches(subject, p.Sink) && (p.Filter == "" || subjectMatches(p.Filter, p.Sink)) {
			return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: its source %s captures its sink %s: it would feed itself", p.Name, p.Source, p.Sink)
		}
	}
	return nil
}

// granted checks that the coordinator's grants let p's owner read its
// source and write its sink.
func (c *Coordinator) granted(p *proto.Pipeline) error {
	if c.cfg.PipelineGrants == nil {
		return nil
	}
	for _, g := range c.cfg.PipelineGrants {
		if g.allows(p.Owner, p.Source, p.Sink) {
			return nil
		}
	}
	return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: owner %q may not read stream %s into %s (no pipeline grant on the coordinators allows it)", p.Name, p.Owner, p.Source, p.Sink)
}

// fleetStream refuses a source that is one of the fleet's or the server's
// own streams (batches, results, dead letters, buckets and object stores:
// other owners' work, read through the coordinator's rights), by name or
// by the subjects it holds.
func fleetStream(p *proto.Pipeline, cfg jetstream.StreamConfig) error {
	if fleetName(cfg.Name) {
		return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: stream %s is the fleet's or the server's own, not a source", p.Name, cfg.Name)
	}
	for _, subject := range cfg.Subjects {
		if strings.HasPrefix(subject, "df.") || strings.HasPrefix(subject, "$") {
			return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: stream %s holds subjects of the fleet or the server (%s), not a source", p.Name, cfg.Name, subject)
		}
	}
	copied := cfg.Sources
	if cfg.Mirror != nil {
		copied = append(copied, cfg.Mirror)
	}
	for _, from := range copied {
		if from != nil && fleetName(from.Name) {
			return proto.Errorf(plugin.CodeInvalidInput, "pipeline %s: stream %s copies %s, the fleet's or the server's own, not a source", p.Name, cfg.Name, from.Name)
		}
	}
	return nil
}

// fleetName reports whether a stream name is of the fleet's streams
// (DF_) or the server's buckets and object stores (KV_, OBJ_).
func fleetName(stream string) bool {
	for _, prefix := range []string{"DF_", "KV_", "OBJ_"} {
		if strings.HasPrefix(stream, prefix) {
			return true
		}
	}
	return false
}

// getPipeline returns a pipeline's definition and status.
func (c *Coordinator) getPipeline(ctx context.Context, owner, name string, _ []byte) (*proto.PipelineInfo, error) {
	p, _, err := c.pipeline(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	return &proto.PipelineInfo{Pipeline: *p, Status: c.pipelineStatus(ctx, owner, name)}, nil
}

// pausePipeline stops a pipeline: its batches in flight finish, nothing
// more is read from its source until it resumes.
func (c *Coordinator) pausePipeline(ctx context.Context, owner, name string, _ []byte) (*proto.PipelineInfo, error) {
	return c.changePipeline(ctx, owner, name, func(p *proto.Pipeline) error {
		p.State = proto.PipelinePaused
		return nil
	})
}

// resumePipeline starts a paused pipeline again where it stopped.
func (c *Coordinator) resumePipeline(ctx context.Context, owner, name string, _ []byte) (*proto.PipelineInfo, error) {
	return c.changePipeline(ctx, owner, name, func(p *proto.Pipeline) error {
		p.State = proto.PipelineRunning
		return nil
	})
}

// updatePipeline gives a pipeline new steps: the batches in flight finish
// on the old ones; the messages after them run the new ones.
func (c *Coordinator) updatePipeline(ctx context.Context, owner, name string, body []byte) (*proto.PipelineInfo, error) {
	req, err := decodeRequest[proto.Pipeline](body, "pipeline update")
	if err != nil {
		return nil, err
	}
	return c.changePipeline(ctx, owner, name, func(p *proto.Pipeline) error {
		p.Steps = req.Steps
		return c.checkPipeline(ctx, p)
	})
}

// removePipeline deletes a pipeline: its runner stops, its source consumer
// and status go.
func (c *Coordinator) removePipeline(ctx context.Context, owner, name string, _ []byte) (*proto.PipelineInfo, error) {
	p, rev, err := c.pipeline(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if err := c.pipelines.Delete(kctx, pipelineKey("def", owner, name), jetstream.LastRevision(rev)); err != nil {
		return nil, kvError("remove pipeline", err)
	}
	_ = c.pipelines.Delete(kctx, pipelineKey("status", owner, name))
	if err := c.js.DeleteConsumer(kctx, p.Source, pipelineConsumer(owner, name)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		c.log.Warn("pipeline consumer not deleted", "pipeline", owner+"/"+name, "err", err)
	}
	c.log.Info("pipeline removed", "pipeline", owner+"/"+name)
	return &proto.PipelineInfo{Pipeline: *p}, nil
}

// listPipelines returns owner's pipelines (owner "": every owner's, for
// df.admin.pipeline.list), by owner and name.
func (c *Coordinator) listPipelines(ctx context.Context, owner string) (*proto.PipelineList, error) {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	lister, err := c.pipelines.ListKeys(kctx, jetstream.MetaOnly())
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, kvError("list pipelines", err)
	}
	out := &proto.PipelineList{Pipelines: []proto.PipelineInfo{}}
	if lister == nil {
		return out, nil
	}
	type key struct{ owner, name string }
	var keys []key
	for k := range lister.Keys() {
		rest, ok := strings.CutPrefix(k, "def.")
		if !ok {
			continue
		}
		o, name, ok := strings.Cut(rest, ".")
		if ok && (owner == "" || o == owner) {
			keys = append(keys, key{o, name})
		}
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(strings.Compare(a.owner, b.owner), strings.Compare(a.name, b.name)) })
	for _, k := range keys {
		if info, err := c.getPipeline(ctx, k.owner, k.name, nil); err == nil {
			out.Pipelines = append(out.Pipelines, *info)
		}
	}
	return out, nil
}

// pipeline reads a pipeline's definition and its revision in the bucket.
func (c *Coordinator) pipeline(ctx context.Context, owner, name string) (*proto.Pipeline, uint64, error) {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	e, err := c.pipelines.Get(kctx, pipelineKey("def", owner, name))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, proto.Errorf(plugin.CodeJobNotFound, "no pipeline %s", name)
	case err != nil:
		return nil, 0, kvError("read pipeline", err)
	}
	var p proto.Pipeline
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, 0, proto.Errorf(plugin.CodeUnknown, "coordinator: pipeline %s is corrupt: %v", name, err)
	}
	return &p, e.Revision(), nil
}

// changePipeline applies edit to a pipeline's definition, bumps its
// revision and stores it, retrying on a concurrent change.
func (c *Coordinator) changePipeline(ctx context.Context, owner, name string, edit func(*proto.Pipeline) error) (*proto.PipelineInfo, error) {
	for range 5 {
		p, rev, err := c.pipeline(ctx, owner, name)
		if err != nil {
			return nil, err
		}
		if err := edit(p); err != nil {
			return nil, err
		}
		p.Revision++
		p.Updated = c.cfg.Clock()
		b, _ := json.Marshal(p) // cannot fail: plain data
		kctx, cancel := context.WithTimeout(ctx, kvTimeout)
		_, err = c.pipelines.Update(kctx, pipelineKey("def", owner, name), b, rev)
		cancel()
		if err == nil {
			return &proto.PipelineInfo{Pipeline: *p, Status: c.pipelineStatus(ctx, owner, name)}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, kvError("update pipeline", err)
		}
	}
	return nil, proto.Errorf(plugin.CodeBusy, "pipeline %s changes too often: retry", name)
}

// pipelineStatus returns what the coordinator running a pipeline last
// reported, nil when none did lately.
func (c *Coordinator) pipelineStatus(ctx context.Context, owner, name string) *proto.PipelineStatus {
	kctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	e, err := c.pipelines.Get(kctx, pipelineKey("status", owner, name))
	if err != nil {
		return nil
	}
	var st proto.PipelineStatus
	if json.Unmarshal(e.Value(), &st) != nil {
		return nil
	}
	if c.cfg.Clock().Sub(st.At) > 3*leaseTTL {
		st.State = "not running (no coordinator has reported since " + st.At.Format(time.RFC3339) + ")"
	}
	return &st
}

// pipelineConsumer returns the name of a pipeline's durable consumer on
// its source stream.
func pipelineConsumer(owner, name string) string { return "df-pipeline-" + owner + "-" + name }

// validStreamName reports whether s can name a stream.
func validStreamName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, " .*>\t\r\n/\\")
}

// validSubject reports whether s is a subject: dot-separated non-empty
// tokens without spaces, with wildcards only when allowed.
func validSubject(s string, wildcards bool) bool {
	if s == "" || len(s) > 1024 || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return false
		case t == "*" || t == ">":
			if !wildcards || (t == ">" && i != len(tokens)-1) {
				return false
			}
		case strings.ContainsAny(t, "*>"):
			return false
		}
	}
	return true
}

// subjectMatches reports whether subject (no wildcards) matches filter.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range f {
		switch {
		case t == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case t != "*" && t != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}
