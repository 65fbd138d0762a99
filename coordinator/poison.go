package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// maxDeliveriesSubject is the advisory JetStream publishes when a batch
// reached MaxDeliver deliveries without an ack.
const maxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + proto.StreamBatches + "." + proto.ConsumerWorker

// maxDeliveriesAdvisory is the part of JetStream's advisory we read.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// onMaxDeliveries handles a batch that failed every delivery: the workers
// running it died or stalled each time (a batch whose plugin merely fails is
// split on the worker itself). The batch is split in halves, each a new
// batch; a single record that fails every delivery gets a poison error as
// its result and an entry in the dead-letter stream. Either way the original
// is deleted, so it does not hold its place in the work queue.
func (c *Coordinator) onMaxDeliveries(ctx context.Context, data []byte) {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(data, &adv); err != nil || adv.Stream != proto.StreamBatches {
		c.log.Warn("malformed max-deliveries advisory", "err", err)
		return
	}
	if err := c.splitPoison(ctx, adv); err != nil {
		c.log.Error("poison batch not handled", "stream_seq", adv.StreamSeq, "err", err)
	}
}

func (c *Coordinator) splitPoison(ctx context.Context, adv maxDeliveriesAdvisory) error {
	s, err := c.js.Stream(ctx, proto.StreamBatches)
	if err != nil {
		return err
	}
	raw, err := s.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // acknowledged late, or handled already
	}
	if err != nil {
		return err
	}
	var b batch.Batch
	if err := batch.DecodeBatch(raw.Data, &b); err != nil {
		c.log.Error("undecodable batch removed", "stream_seq", adv.StreamSeq, "err", err)
		return s.DeleteMsg(ctx, adv.StreamSeq)
	}
	depth, _ := strconv.Atoi(raw.Header.Get(proto.HeaderSplit))
	log := c.log.With("job", b.Job, "seq", b.Seq, "base", b.Base, "records", len(b.Records), "deliveries", adv.Deliveries)
	if len(b.Records) > 1 {
		half := len(b.Records) / 2
		for _, part := range []struct {
			base uint64
			recs []plugin.Record
		}{{b.Base, b.Records[:half]}, {b.Base + uint64(half), b.Records[half:]}} {
			p := b
			p.Base, p.Records = part.base, part.recs
			data, err := batch.AppendBatch(nil, &p)
			if err != nil {
				return err
			}
			m := &nats.Msg{Subject: raw.Subject, Data: data, Header: nats.Header{}}
			m.Header.Set(proto.HeaderMsgID, proto.SplitMsgID(b.Job, b.Seq, part.base, len(part.recs)))
			m.Header.Set(proto.HeaderSplit, strconv.Itoa(depth+1))
			if tp := raw.Header.Get("traceparent"); tp != "" {
				m.Header.Set("traceparent", tp)
			}
			if _, err := c.js.PublishMsg(ctx, m); err != nil {
				return fmt.Errorf("publish half: %w", err)
			}
		}
		c.metrics.splits.Inc()
		log.Warn("batch failed every delivery: split in halves")
		return s.DeleteMsg(ctx, adv.StreamSeq)
	}

	rec := b.Records[0]
	perr := &plugin.Error{Code: plugin.CodePoison, Message: fmt.Sprintf(
		"record %d failed on every one of %d deliveries: the workers running it died or stalled each time", b.Base, adv.Deliveries)}
	res := batch.ResultSet{Job: b.Job, Worker: c.cfg.ID, Seq: b.Seq, Base: b.Base, Results: []plugin.Result{plugin.Fail(perr)}}
	data, err := batch.AppendResults(nil, &res)
	if err != nil {
		return err
	}
	dl := &fleet.DeadLetter{Job: b.Job, Index: b.Base, Plugin: b.Plugin, Digest: b.Digest, Error: perr.Message,
		Key: rec.Key, Value: rec.Value, Worker: c.cfg.ID, Attempts: int(adv.Deliveries), At: c.cfg.Clock()}
	if _, err := c.js.PublishMsg(ctx, proto.DeadLetterMsg(dl)); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	m := &nats.Msg{Subject: proto.ResultSubject(b.Job), Data: data, Header: nats.Header{}}
	m.Header.Set(proto.HeaderMsgID, proto.SplitMsgID(b.Job, b.Seq, b.Base, 1)+".dead")
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish poison result: %w", err)
	}
	c.metrics.deadLettered.Inc()
	log.Warn("record dead-lettered")
	return s.DeleteMsg(ctx, adv.StreamSeq)
}
