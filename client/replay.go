package client

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// ReplaySpec selects the dead letters Replay runs again, and how.
type ReplaySpec struct {
	// Job replays one job's dead letters; All every dead letter of the
	// client's owner. One of the two.
	Job string
	All bool
	// Plugin runs the records with another plugin than their job's
	// (with the job's configuration when it is the same plugin), Version
	// with another version of a WebAssembly plugin. By default each job's
	// own plugin or steps, version and configuration run them again (a
	// job whose record expired: the plugin its dead letters name, without
	// configuration).
	Plugin, Version string
}

// ReplayReport is what Replay did: a new job per job whose dead letters
// it replayed, and the outcome of every record.
type ReplayReport struct {
	// Jobs are the new jobs, in the order of Records.
	Jobs    []string
	Records []ReplayRecord
	// Succeeded counts the records that now have a value (or were
	// dropped), Failed those with an error again.
	Succeeded, Failed int
}

// ReplayRecord is the outcome of one dead-lettered record.
type ReplayRecord struct {
	// DeadLetter is the dead letter's id; Job and Index the record's
	// place in its first job.
	DeadLetter string
	Job        string
	Index      uint64
	// Replay is the new job, "" when the record could not be sent again
	// (Err says why).
	Replay string
	// OK says that the record now succeeds: Value is its value, or it
	// was Dropped. Otherwise Err is its error.
	OK      bool
	Value   []byte
	Dropped bool
	Err     error
}

// Replay runs dead-lettered records again as new jobs of the client's
// owner — one per job they came from, their records in their first order
// — and reports for every record whether it now succeeds. The dead letters
// stay in DF_DEAD (until the fleet's retention passes); a record that
// fails again on every delivery gets a dead letter of its new job. A dead
// letter the store kept only the start of (over its size limit) cannot be
// replayed: its outcome is an error saying so.
//
// No dead letter to replay is an empty report. Errors: ErrInvalid (a spec
// that selects nothing or both, an id that cannot be one),
// ErrJobNotFound (another owner's job), ErrUnknownPlugin, ErrNoWorkers,
// ErrNoCoordinator, and a job's failure.
func (c *Client) Replay(ctx context.Context, spec ReplaySpec) (*ReplayReport, error) {
	if spec.All == (spec.Job != "") {
		return nil, fmt.Errorf("%w: replay one job's dead letters or all of them, not both nor neither", ErrInvalid)
	}
	if spec.Plugin != "" && !proto.ValidName(spec.Plugin) {
		return nil, fmt.Errorf("%w: plugin name %q: use 1-64 of [A-Za-z0-9_-]", ErrInvalid, spec.Plugin)
	}
	letters, err := c.allDeadLetters(ctx, spec.Job)
	if err != nil {
		return nil, err
	}
	rep := &ReplayReport{}
	for _, group := range byJob(letters) {
		if err := c.replayJob(ctx, spec, group, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// allDeadLetters returns job's dead letters whole, or with job "" the
// client's owner's, page by page, oldest first.
func (c *Client) allDeadLetters(ctx context.Context, job string) ([]proto.DeadEntry, error) {
	subject, err := c.deadListSubject(job, false)
	if err != nil {
		return nil, err
	}
	var out []proto.DeadEntry
	after := uint64(0)
	for {
		page, err := request[proto.DeadList](ctx, c, subject, proto.DeadListRequest{Job: job, Full: true, After: after, Limit: proto.MaxListLimit})
		if err != nil {
			return nil, c.denied(subject, err)
		}
		out = append(out, page.Letters...)
		if !page.More || page.Next <= after {
			return out, nil
		}
		after = page.Next
	}
}

// byJob groups dead letters by job, in the order the jobs first come, each
// job's by index, one per record (the newest, when a record has several).
func byJob(letters []proto.DeadEntry) [][]proto.DeadEntry {
	index := map[string]int{}
	var groups [][]proto.DeadEntry
	for _, e := range letters {
		g, ok := index[e.Job]
		if !ok {
			g = len(groups)
			index[e.Job] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], e)
	}
	for g := range groups {
		// Stable: of a record's entries, oldest first, the last is kept.
		es := groups[g]
		slices.SortStableFunc(es, func(a, b proto.DeadEntry) int { return cmp.Compare(a.Index, b.Index) })
		kept := es[:0]
		for i, e := range es {
			if i+1 < len(es) && es[i+1].Index == e.Index {
				continue
			}
			kept = append(kept, e)
		}
		groups[g] = kept
	}
	return groups
}

// replayJob submits the dead letters of one job as a new job and adds
// their outcomes to rep.
func (c *Client) replayJob(ctx context.Context, spec ReplaySpec, group []proto.DeadEntry, rep *ReplayReport) error {
	name, opts, err := c.replayPlan(ctx, spec, &group[0])
	if err != nil {
		return err
	}
	var recs []plugin.Record
	var sent []int // the rep.Records of recs, in order
	for _, e := range group {
		r := ReplayRecord{DeadLetter: e.ID, Job: e.Job, Index: e.Index}
		if e.Truncated {
			r.Err = fmt.Errorf("dead letter %s holds only the first %d of the record's %d bytes: it cannot be replayed", e.ID, len(e.Value), e.ValueBytes)
			rep.Failed++
		} else {
			sent = append(sent, len(rep.Records))
			recs = append(recs, plugin.Record{Key: e.Key, Value: e.Value})
		}
		rep.Records = append(rep.Records, r)
	}
	if len(recs) == 0 {
		return nil
	}
	job, err := c.Submit(ctx, name, Records(recs), opts...)
	if err != nil {
		return fmt.Errorf("replay the dead letters of job %s: %w", group[0].Job, err)
	}
	rep.Jobs = append(rep.Jobs, job.ID())
	for out, err := range job.Results() {
		if err != nil {
			return fmt.Errorf("replay the dead letters of job %s as job %s: %w", group[0].Job, job.ID(), err)
		}
		r := &rep.Records[sent[out.Index]]
		r.Replay = job.ID()
		r.OK, r.Value, r.Dropped, r.Err = out.Err == nil, bytes.Clone(out.Value), out.Dropped, out.Err
		if r.OK {
			rep.Succeeded++
		} else {
			rep.Failed++
		}
	}
	return nil
}

// replayPlan returns what Submit gets to replay the dead letters of e's
// job: the plugin's name and the options (steps, version, configuration).
func (c *Client) replayPlan(ctx context.Context, spec ReplaySpec, e *proto.DeadEntry) (string, []SubmitOption, error) {
	orig, err := c.JobInfo(ctx, e.Job)
	switch {
	case errors.Is(err, ErrJobNotFound):
		orig = nil // expired: what the dead letter says
	case err != nil:
		return "", nil, err
	}
	version := spec.Version
	switch {
	case spec.Plugin != "":
		opts := []SubmitOption{WithVersion(version)}
		if orig != nil && orig.Plugin == spec.Plugin {
			opts = append(opts, WithConfig(orig.Config))
		}
		return spec.Plugin, opts, nil
	case orig == nil && e.Plugin == proto.ChainPlugin:
		return "", nil, fmt.Errorf("%w: job %s, a chain, expired: name the plugin to replay its dead letters with", ErrJobNotFound, e.Job)
	case orig == nil:
		return e.Plugin, []SubmitOption{WithVersion(version)}, nil
	case len(orig.Steps) > 0:
		if version != "" {
			return "", nil, fmt.Errorf("%w: job %s is a chain: a version needs a plugin", ErrInvalid, e.Job)
		}
		return "", []SubmitOption{WithSteps(orig.Steps...), WithPriority(orig.Priority)}, nil
	}
	if version == "" {
		version = orig.Version
	}
	return orig.Plugin, []SubmitOption{WithVersion(version), WithConfig(orig.Config), WithPriority(orig.Priority)}, nil
}
