package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/batch/batchz"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// The operators' requests: lists of jobs and dead letters, a job's detail,
// one dead letter. An owner's request names the owner in its subject, and
// NATS permissions keep each owner to its own subjects; the requests about
// every owner are under df.admin., which only the admin role may publish.
//
// Lists are bounded: the newest entries of a stream on a subject filter are
// found by counting what a consumer from a sequence would deliver (a few
// consumer creations, however many entries there are), then reading only
// those.

// handleOps answers the operators' requests, and returns false for any
// other subject.
func (c *Coordinator) handleOps(ctx context.Context, m *nats.Msg) bool {
	subj := m.Subject
	switch {
	case subj == proto.SubjectAdminJobList:
		list, err := c.listJobs(ctx, "", m.Data)
		respond(c, m, list, err)
	case strings.HasPrefix(subj, proto.SubjectJobList):
		owner := strings.TrimPrefix(subj, proto.SubjectJobList)
		list, err := c.listJobs(ctx, owner, m.Data)
		respond(c, m, list, err)
	case strings.HasPrefix(subj, proto.SubjectJobPrefix+"info."):
		d, err := c.jobDetail(ctx, strings.TrimPrefix(subj, proto.SubjectJobPrefix+"info."))
		respond(c, m, d, err)
	case subj == proto.SubjectAdminPipelineList:
		list, err := c.listPipelines(ctx, "")
		respond(c, m, list, err)
	case subj == proto.SubjectAdminDeadList:
		list, err := c.listDead(ctx, "", m.Data)
		respond(c, m, list, err)
	case strings.HasPrefix(subj, proto.SubjectDeadLetterPrefix+"list."):
		list, err := c.listDead(ctx, strings.TrimPrefix(subj, proto.SubjectDeadLetterPrefix+"list."), m.Data)
		respond(c, m, list, err)
	case strings.HasPrefix(subj, proto.SubjectDeadLetterPrefix+"get."):
		e, err := c.deadLetter(ctx, strings.TrimPrefix(subj, proto.SubjectDeadLetterPrefix+"get."))
		respond(c, m, e, err)
	case strings.HasPrefix(subj, proto.SubjectAdminPrefix), strings.HasPrefix(subj, proto.SubjectDeadLetterPrefix):
		respond[proto.Job](c, m, nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: unknown request %q", subj))
	default:
		return false
	}
	return true
}

// listLimit returns a request's limit, checked.
func listLimit(n int) (int, error) {
	switch {
	case n == 0:
		return proto.DefaultListLimit, nil
	case n < 0 || n > proto.MaxListLimit:
		return 0, proto.Errorf(plugin.CodeInvalidInput, "coordinator: limit %d is outside [1, %d]", n, proto.MaxListLimit)
	}
	return n, nil
}

// replyBudget is how many bytes of entries a list reply carries at most:
// half the server's max payload, the rest for the envelope.
func (c *Coordinator) replyBudget() int { return int(c.nc.MaxPayload() / 2) }

// listJobs answers df.job.list.<owner> (owner "": df.admin.job.list, every
// owner's): the jobs most recently changed first, without their
// configuration.
func (c *Coordinator) listJobs(ctx context.Context, owner string, body []byte) (*proto.JobList, error) {
	req, err := decodeOptional[proto.JobListRequest](body, "job list")
	if err != nil {
		return nil, err
	}
	limit, err := listLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	filter := "$KV." + proto.BucketJobs + ".>"
	if owner != "" {
		if !proto.ValidName(owner) {
			return nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: invalid owner %q", owner)
		}
		filter = "$KV." + proto.BucketJobs + "." + owner + ".*"
	}
	msgs, more, err := c.newest(ctx, "KV_"+proto.BucketJobs, filter, limit)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Clock()
	list := &proto.JobList{Jobs: []proto.Job{}, More: more}
	size := 0
	for i := len(msgs) - 1; i >= 0; i-- { // newest first
		var job proto.Job
		if len(msgs[i].Data) == 0 || json.Unmarshal(msgs[i].Data, &job) != nil {
			continue // a delete marker, or not a job
		}
		job.Config = nil
		for s := range job.Steps {
			job.Steps[s].Config = nil
		}
		job.Abandoned = abandoned(&job, now)
		b, _ := json.Marshal(&job)
		if size += len(b); size > c.replyBudget() {
			list.More = true
			break
		}
		list.Jobs = append(list.Jobs, job)
	}
	return list, nil
}

// decodeOptional decodes a request body that may be empty.
func decodeOptional[T any](body []byte, what string) (T, error) {
	if len(body) == 0 {
		var zero T
		return zero, nil
	}
	return decodeRequest[T](body, what)
}

// abandoned reports whether job is open and its submitter silent for
// longer than its lease allows, at now.
func abandoned(job *proto.Job, now time.Time) bool {
	if job.State != proto.JobOpen || job.Lease <= 0 {
		return false
	}
	last := job.Created
	if job.Sent.At.After(last) {
		last = job.Sent.At
	}
	return now.Sub(last) > proto.AbandonedAfter(job.Lease)
}

// reportProgress handles df.job.progress.<owner>.<id>: the submitter of an
// open job says what it has sent so far, and that it is still there.
func (c *Coordinator) reportProgress(ctx context.Context, id string, body []byte) (*proto.Job, error) {
	req, err := decodeRequest[proto.JobSeal](body, "progress")
	if err != nil {
		return nil, err
	}
	return c.updateJob(ctx, id, func(j *proto.Job) error {
		if j.State != proto.JobOpen {
			return proto.Errorf(plugin.CodeJobClosed, "job %s is %s", id, j.State)
		}
		j.Sent = proto.JobSent{Batches: req.Batches, Records: req.Records, At: c.cfg.Clock()}
		return nil
	})
}

// traceID returns the id of the trace ctx carries, "" when none.
func traceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// jobDetail answers df.job.info.<owner>.<id>: the job's record, read from
// the bucket, and what its streams hold now.
func (c *Coordinator) jobDetail(ctx context.Context, id string) (*proto.JobDetail, error) {
	if !proto.ValidJobID(id) {
		return nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: bad job id %q", id)
	}
	job, _, err := c.loadJob(ctx, id)
	if err != nil {
		return nil, err
	}
	job.Abandoned = abandoned(job, c.cfg.Clock())
	d := &proto.JobDetail{Job: *job}
	if job.State != proto.JobDone && job.State != proto.JobCancelled {
		if d.Stored, d.ResultMessages, err = c.storedResults(ctx, id); err != nil {
			return nil, err
		}
		d.QueuedBatches = c.subjectMsgs(ctx, job.BatchStream, proto.BatchSubject(id, job.Priority, job.Plugin))
	}
	d.DeadLetters = c.subjectMsgs(ctx, proto.StreamDead, proto.DeadSubject(id))
	return d, nil
}

// subjectMsgs returns how many messages stream holds on the literal
// subject, 0 when it cannot be read.
func (c *Coordinator) subjectMsgs(ctx context.Context, stream, subject string) uint64 {
	if stream == "" {
		return 0
	}
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0
	}
	return info.State.Subjects[subject]
}

// maxCountedResults bounds the result messages a job's detail decodes to
// count its stored results.
const maxCountedResults = 20_000

// storedResults counts the results of job id stored in its owner's result
// stream: their records, by outcome, and their messages.
func (c *Coordinator) storedResults(ctx context.Context, id string) (proto.Progress, uint64, error) {
	var p proto.Progress
	n := uint64(0)
	err := c.scan(ctx, proto.ResultStream(proto.JobOwner(id)), proto.ResultSubject(id), 0, maxCountedResults, func(m *message) bool {
		n++
		var rs batch.ResultSet
		data, err := batchz.Plain(nil, m.Data)
		if err != nil || batch.DecodeResults(data, &rs) != nil || rs.Job != id {
			return true
		}
		for _, r := range rs.Results {
			p.Results++
			switch {
			case r.Err != nil:
				p.Failed++
			case r.Dropped:
				p.Dropped++
			default:
				p.Succeeded++
			}
		}
		return true
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = nil
	}
	return p, n, err
}

// listDead answers df.deadletter.list.<owner> (owner "":
// df.admin.deadletter.list, every owner's): previews of the newest dead
// letters first, or whole entries oldest first from a sequence on (Full).
func (c *Coordinator) listDead(ctx context.Context, owner string, body []byte) (*proto.DeadList, error) {
	req, err := decodeOptional[proto.DeadListRequest](body, "dead-letter list")
	if err != nil {
		return nil, err
	}
	limit, err := listLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	filter := proto.SubjectDeadPrefix + ">"
	if owner != "" {
		if !proto.ValidName(owner) {
			return nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: invalid owner %q", owner)
		}
		filter = proto.SubjectDeadPrefix + owner + ".>"
	}
	if req.Job != "" {
		if !proto.ValidJobID(req.Job) || owner != "" && proto.JobOwner(req.Job) != owner {
			// Another owner's job is as unknown as none.
			return nil, proto.Errorf(plugin.CodeJobNotFound, "job %s not found", req.Job)
		}
		filter = proto.DeadSubject(req.Job)
	}
	list := &proto.DeadList{Letters: []proto.DeadEntry{}}
	if req.Full {
		return list, c.pageDead(ctx, filter, req.After, limit, list)
	}
	msgs, more, err := c.newest(ctx, proto.StreamDead, filter, limit)
	if err != nil {
		return nil, err
	}
	list.More = more
	for i := len(msgs) - 1; i >= 0; i-- {
		e, ok := deadEntry(msgs[i])
		if !ok {
			continue
		}
		e.Preview = len(e.Key) > proto.DeadPreviewBytes || len(e.Value) > proto.DeadPreviewBytes
		e.Key, e.Value = e.Key[:min(len(e.Key), proto.DeadPreviewBytes)], e.Value[:min(len(e.Value), proto.DeadPreviewBytes)]
		list.Letters = append(list.Letters, e)
	}
	return list, nil
}

// pageDead fills list with whole dead letters on filter, oldest first from
// the sequence after on, as many as limit and the reply budget allow.
func (c *Coordinator) pageDead(ctx context.Context, filter string, after uint64, limit int, list *proto.DeadList) error {
	size := 0
	err := c.scan(ctx, proto.StreamDead, filter, after+1, limit+1, func(m *message) bool {
		e, ok := deadEntry(m)
		if !ok {
			return true
		}
		b, _ := json.Marshal(&e)
		if len(list.Letters) == limit || size+len(b) > c.replyBudget() && len(list.Letters) > 0 {
			list.More, list.Next = true, m.Seq
			return false
		}
		size += len(b)
		list.Letters = append(list.Letters, e)
		return true
	})
	if list.Next > 0 {
		list.Next-- // the client asks After the last one it has
	}
	return err
}

// deadEntry decodes a DF_DEAD message; false when it is not a dead letter.
func deadEntry(m *message) (proto.DeadEntry, bool) {
	rest, ok := strings.CutPrefix(m.Subject, proto.SubjectDeadPrefix)
	owner, _, _ := strings.Cut(rest, ".")
	if !ok || !proto.ValidName(owner) {
		return proto.DeadEntry{}, false
	}
	var dl fleet.DeadLetter
	if json.Unmarshal(m.Data, &dl) != nil {
		return proto.DeadEntry{}, false
	}
	return proto.DeadEntry{ID: proto.DeadID(owner, m.Seq), Owner: owner, Seq: m.Seq, DeadLetter: dl}, true
}

// deadLetter answers df.deadletter.get.<owner>.<seq>: the dead letter,
// whole, if it is owner's.
func (c *Coordinator) deadLetter(ctx context.Context, id string) (*proto.DeadEntry, error) {
	owner, seq, ok := proto.ParseDeadID(id)
	if !ok {
		return nil, proto.Errorf(plugin.CodeInvalidInput, "coordinator: bad dead-letter id %q: want <owner>.<number>", id)
	}
	notFound := proto.Errorf(plugin.CodeJobNotFound, "dead letter %s not found (or expired)", id)
	s, err := c.js.Stream(ctx, proto.StreamDead)
	if err != nil {
		return nil, kvError("read dead letters", err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, kvError("read dead letter "+id, err)
	}
	e, ok := deadEntry(&message{Subject: raw.Subject, Seq: raw.Sequence, Data: raw.Data})
	if !ok || e.Owner != owner {
		return nil, notFound
	}
	return &e, nil
}

// message is a stream message as the scans read it.
type message struct {
	Subject string
	Seq     uint64
	Data    []byte
}

// scanBatch is how many messages a scan asks for at once.
const scanBatch = 256

// scan reads stream's messages on filter from sequence from (0: the
// first) in order, at most limit of them, calling f with each until it
// returns false. It reads through a consumer of its own, removed after.
func (c *Coordinator) scan(ctx context.Context, stream, filter string, from uint64, limit int, f func(*message) bool) error {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cons, pending, err := openScan(ctx, s, filter, max(from, 1))
	if err != nil {
		return err
	}
	defer c.closeScan(s, cons)
	left := int(min(pending, uint64(limit)))
	for left > 0 {
		batch, err := cons.Fetch(min(left, scanBatch), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return kvError("read "+stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			if !f(&message{Subject: m.Subject(), Seq: meta.Sequence.Stream, Data: m.Data()}) {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return kvError("read "+stream, err)
		}
		if got == 0 {
			return nil // fewer than counted: removed meanwhile
		}
		left -= got
	}
	return nil
}

// openScan creates a consumer of s on filter from sequence seq, and
// returns it with the messages it has to deliver.
func openScan(ctx context.Context, s jetstream.Stream, filter string, seq uint64) (jetstream.Consumer, uint64, error) {
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:       "DataFlare operators' scan",
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       seq,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, 0, kvError("scan "+s.CachedInfo().Config.Name, err)
	}
	return cons, cons.CachedInfo().NumPending, nil
}

// closeScan removes a scan's consumer; one left behind goes by itself
// after its inactive threshold.
func (c *Coordinator) closeScan(s jetstream.Stream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	if err := s.DeleteConsumer(ctx, cons.CachedInfo().Name); err != nil {
		c.log.Debug("scan consumer not removed", "err", err)
	}
}

// count returns how many messages of s on filter there are from sequence
// seq on.
func (c *Coordinator) count(ctx context.Context, s jetstream.Stream, filter string, seq uint64) (uint64, error) {
	cons, n, err := openScan(ctx, s, filter, seq)
	if err != nil {
		return 0, err
	}
	c.closeScan(s, cons)
	return n, nil
}

// newest returns the last limit messages of stream on filter, oldest first,
// and whether there are more before them. It finds the sequence they start
// at by counting from a few sequences — galloping back from the end, then
// halving — so that it reads limit messages, not every one.
func (c *Coordinator) newest(ctx context.Context, stream, filter string, limit int) ([]*message, bool, error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil, false, kvError("read "+stream, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return nil, false, nil
	}
	want := uint64(limit)
	total, err := c.count(ctx, s, filter, st.FirstSeq)
	if err != nil {
		return nil, false, err
	}
	start := st.FirstSeq
	if total > want {
		// count(lo) >= want > count(hi)
		lo, hi := st.FirstSeq, st.LastSeq+1
		for step := want; ; step *= 4 {
			if hi-lo <= step {
				break
			}
			n, err := c.count(ctx, s, filter, hi-step)
			if err != nil {
				return nil, false, err
			}
			if n >= want {
				lo = hi - step
				break
			}
			hi -= step
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			n, err := c.count(ctx, s, filter, mid)
			if err != nil {
				return nil, false, err
			}
			if n >= want {
				lo = mid
			} else {
				hi = mid
			}
		}
		start = lo
	}
	var out []*message
	err = c.scan(ctx, stream, filter, start, limit, func(m *message) bool {
		out = append(out, m)
		return true
	})
	if err != nil {
		return nil, false, err
	}
	// More came meanwhile: keep the newest.
	if len(out) > limit {
		out = slices.Delete(out, 0, len(out)-limit)
	}
	return out, total > uint64(len(out)), nil
}
