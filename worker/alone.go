package worker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/internal/proto"
)

// Batches that run alone. A worker killed by one of its batches takes the
// others it runs down with it, and JetStream counts a delivery for each: a
// batch that ran beside a killer twice looks like one that killed its
// workers twice. So deaths count toward a batch's poison only when it ran
// alone:
//
//   - The first freeDeliveries deliveries of a batch as its client
//     published it run as any other, beside other batches; they never
//     count. A worker killed once (a deploy, the OOM killer, an operator)
//     thus costs its batches nothing but AckWait.
//   - A batch delivered more often than that, and every half of a split
//     batch (it descends from one that killed its workers alone), is a
//     suspect: it runs alone on its worker. A worker takes no batch while
//     a suspect runs, and an idle worker takes one batch before any other,
//     so that a suspect it gets has nothing beside it.
//   - A suspect that comes to a worker running other batches (it cannot
//     know before it has it) does not run there: it is published again, as
//     a copy carrying in HeaderAlone how many of its deliveries ran alone
//     so far, and this delivery is acknowledged, so that a worker dying
//     meanwhile (of a killer beside) costs it nothing. The worker then
//     takes batches only when idle, one at a time, until it runs a suspect,
//     finds its queues empty, or carefulFor has passed: the copy, at the
//     end of its queue, finds an idle worker.
//   - A suspect whose deliveries alone reach MaxDeliver is split unrun
//     (splitDead); its halves are suspects from their first delivery.
//
// Only JetStream's delivery count and the message's headers hold these
// facts, so they survive any worker's death.

// freeDeliveries is how many deliveries of a batch as its client published
// it may end in its worker's death without counting toward its poison.
const freeDeliveries = 2

// delivery is what a worker knows of one delivery of a batch message.
type delivery struct {
	n       uint64 // JetStream's count of this message's deliveries, this one included
	limit   int    // the queue's MaxDeliver: deliveries alone before the batch is split unrun
	suspect bool   // it runs alone
	alone   int    // deliveries of the batch that ran alone before this one
	solo    bool   // the pull loop started it with nothing beside it, and starts nothing until it settles
}

// deliveryOf reads m's delivery from its metadata and headers.
func (w *Worker) deliveryOf(m jetstream.Msg) delivery {
	d := delivery{n: 1, limit: proto.DefaultMaxDeliver}
	if meta, err := m.Metadata(); err == nil {
		d.n = meta.NumDelivered
		d.limit = int(w.queues.maxDeliver(meta.Stream))
	}
	h := m.Headers()
	free, base := uint64(freeDeliveries), 0
	if v := h.Get(proto.HeaderAlone); v != "" {
		// Anyone who may publish the batch may set it: it only hastens
		// the split of that owner's own batch, and is bounded.
		free = 0
		if c, err := strconv.Atoi(v); err == nil {
			base = min(max(c, 0), d.limit)
		}
	}
	if h.Get(proto.HeaderSplit) != "" {
		free = 0
	}
	if d.n > free {
		d.suspect = true
		d.alone = base + int(min(d.n-1-free, uint64(d.limit)))
	}
	return d
}

// splitUnrun reports whether the batch ran alone MaxDeliver times, its
// worker dying (or stalling) each time: it is split without running.
func (d delivery) splitUnrun() bool { return d.suspect && d.alone >= d.limit }

// last reports whether this is the batch's last delivery before it would
// be split unrun.
func (d delivery) last() bool { return d.suspect && d.alone+1 >= d.limit }

// mustRunAlone reports whether the batch may run only with no other batch
// beside it on its worker.
func (d delivery) mustRunAlone() bool { return d.suspect && !d.splitUnrun() }

// bounce releases a suspect batch that came to the worker while other
// batches run here: it publishes the batch again on its subject, with how
// many of its deliveries ran alone so far, then acknowledges this
// delivery. The copy's id derives from the batch's, so that a second
// bounce of the same delivery (its worker died before the ack) is a
// duplicate. When the copy cannot be stored the batch is released for a
// retry, which counts as a delivery alone.
func (w *Worker) bounce(ctx context.Context, m jetstream.Msg, b *batch.Batch, d delivery) {
	out := &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: nats.Header{}}
	for k, v := range m.Headers() {
		if !strings.HasPrefix(k, "Nats-") { // JetStream's own, and the id, set below
			out.Header[k] = slices.Clone(v)
		}
	}
	out.Header.Set(proto.HeaderMsgID, aloneID(batchMsgID(m, b)))
	out.Header.Set(proto.HeaderAlone, strconv.Itoa(d.alone))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if _, err := w.js.PublishMsg(sctx, out); err != nil {
		w.nak(m, "not_alone", d.n, fmt.Errorf("worker: publish a batch to run alone: %w", err))
		return
	}
	w.metrics.naks.WithLabelValues("not_alone").Inc()
	w.log.Info("batch that must run alone released: other batches run here", "job", b.Job, "seq", b.Seq, "base", b.Base,
		"records", len(b.Records), "ran_alone", d.alone)
	if err := m.DoubleAck(sctx); err != nil {
		// Redelivered, it is published again under the same id: a
		// duplicate, dropped.
		w.log.Warn("ack failed after a batch was released to run alone", "job", b.Job, "seq", b.Seq, "err", err)
	}
}

// batchMsgID returns the id m was published under.
func batchMsgID(m jetstream.Msg, b *batch.Batch) string {
	if id := m.Headers().Get(proto.HeaderMsgID); id != "" {
		return id
	}
	return proto.ResultMsgID(b.Job, b.Seq) + ".unnamed"
}

// aloneSuffix ends the id of a batch published again to run alone:
// ".a<generation>".
const aloneSuffix = ".a"

// aloneID returns the id of the next copy of the batch of id.
func aloneID(id string) string {
	origin, gen := splitAloneID(id)
	return origin + aloneSuffix + strconv.Itoa(gen+1)
}

// originID returns the id of the batch that id is a copy of (id itself
// when it is none): the halves of a batch split unrun derive from it, so
// that whichever copy is split, they have the same ids.
func originID(id string) string {
	origin, _ := splitAloneID(id)
	return origin
}

// splitAloneID cuts id into the id of the batch it copies and the copy's
// generation (0: not a copy).
func splitAloneID(id string) (string, int) {
	i := strings.LastIndex(id, aloneSuffix)
	if i < 0 {
		return id, 0
	}
	gen, err := strconv.Atoi(id[i+len(aloneSuffix):])
	if err != nil || gen < 1 || strconv.Itoa(gen) != id[i+len(aloneSuffix):] {
		return id, 0
	}
	return id[:i], gen
}
