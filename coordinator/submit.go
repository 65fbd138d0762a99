package coordinator

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/internal/tracing"
)

var tracer = tracing.Tracer("github.com/dataflare/dataflare/coordinator")

// batchPool recycles decoded batches between submissions: decoding reuses
// their record slices.
var batchPool = sync.Pool{New: func() any { return new(batch.Batch) }}

// handleSubmit handles one batch submitted on df.submit.<plugin>.
func (c *Coordinator) handleSubmit(ctx context.Context, m *nats.Msg) {
	ctx = tracing.Extract(ctx, m.Header)
	ctx, span := tracer.Start(ctx, "coordinator.submit", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	reply, err := c.submit(ctx, m, span)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		c.metrics.submitErrors.WithLabelValues(errorCode(err)).Inc()
	} else {
		c.metrics.submitSeconds.Observe(time.Since(start).Seconds())
	}
	respond(c, m, reply, err)
}

func errorCode(err error) string {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return proto.CodeInternal
}

func (c *Coordinator) submit(ctx context.Context, m *nats.Msg, span trace.Span) (*proto.SubmitReply, error) {
	name := proto.LastToken(m.Subject)
	if len(m.Data) > c.cfg.MaxBatchBytes {
		return nil, proto.Errorf(proto.CodeTooLarge, "batch of %d bytes is over the limit of %d", len(m.Data), c.cfg.MaxBatchBytes)
	}
	b := batchPool.Get().(*batch.Batch)
	defer batchPool.Put(b)
	if err := batch.DecodeBatch(m.Data, b); err != nil {
		code := proto.CodeInvalid
		if errors.Is(err, batch.ErrLimit) {
			code = proto.CodeTooLarge
		}
		return nil, proto.Errorf(code, "coordinator: %v", err)
	}
	n := len(b.Records)
	span.SetAttributes(attribute.String("dataflare.job", b.Job), attribute.Int64("dataflare.seq", int64(b.Seq)),
		attribute.Int("dataflare.records", n), attribute.String("dataflare.plugin", b.Plugin))
	switch {
	case n == 0:
		return nil, proto.Errorf(proto.CodeInvalid, "coordinator: empty batch")
	case b.Plugin != name:
		return nil, proto.Errorf(proto.CodeInvalid, "coordinator: batch for plugin %q submitted on the subject of %q", b.Plugin, name)
	case !proto.ValidJobID(b.Job):
		return nil, proto.Errorf(proto.CodeInvalid, "coordinator: invalid job id %q", b.Job)
	}
	job, err := c.job(ctx, b.Job)
	if err != nil {
		return nil, err
	}
	switch {
	case job.State != proto.JobOpen:
		return nil, proto.Errorf(proto.CodeJobClosed, "job %s is %s", job.ID, job.State)
	case job.Plugin != b.Plugin || job.Digest != b.Digest:
		return nil, proto.Errorf(proto.CodeInvalid, "coordinator: batch names plugin %s %s but job %s pinned %s %s",
			b.Plugin, b.Digest, job.ID, job.Plugin, job.Digest)
	case !maps.Equal(job.Config, map[string]string(b.Config)):
		return nil, proto.Errorf(proto.CodeInvalid, "coordinator: batch configuration differs from job %s's", job.ID)
	}

	out := &nats.Msg{
		Subject: proto.BatchSubject(b.Plugin, b.Job),
		Data:    m.Data, // forwarded as is: it decoded, so it is well-formed
		Header:  nats.Header{},
	}
	out.Header.Set(proto.HeaderMsgID, proto.MsgID(b.Job, b.Seq))
	tracing.Inject(ctx, out.Header)
	ack, err := c.js.PublishMsg(ctx, out)
	if err != nil {
		return nil, publishError(err)
	}
	c.metrics.batches.Inc()
	c.metrics.records.Add(float64(n))
	if ack.Duplicate {
		c.metrics.duplicates.Inc()
	}
	return &proto.SubmitReply{
		BatchSize: c.view.batchSize(b.Plugin, len(m.Data)/n),
		Duplicate: ack.Duplicate,
	}, nil
}

// publishError classifies a failed JetStream publish. Every failure is
// retryable from the client's side: the batch keeps its id, so a retry that
// follows a publish which did land is dropped as a duplicate.
func publishError(err error) *proto.Error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum") {
		return proto.Errorf(proto.CodeBusy, "the batch queue is full (%s): retry later", apiErr.Description)
	}
	return proto.Errorf(proto.CodeBusy, "coordinator: publish batch: %v", err)
}
