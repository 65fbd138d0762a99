package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// The raw mode's streams, consumer and subjects.
const (
	rawIn          = "BENCH_RAW_IN"
	rawOut         = "BENCH_RAW_OUT"
	rawConsumer    = "bench-raw"
	rawInSubject   = "bench.raw.in."
	rawOutSubject  = "bench.raw.out."
	rawFetchWait   = time.Second
	rawSettleAfter = 10 * time.Second
)

// rawLegs is the raw mode: the JetStream legs of a fleet job with none of
// the fleet's code. Its streams have the settings of DF_BATCHES and
// DF_RESULTS (file storage, de-duplication); its concurrency is the
// fleet's: Senders publishers with a window of Window messages ahead of the
// read-back (the client's defaults), and per worker one connection whose
// pull loop fetches as many messages as it has free slots out of Parallel
// (the worker's loop), each handled on its own goroutine: publish its bytes
// with a message id, then double-ack (as the worker settles a batch).
type rawLegs struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	conns    []*nats.Conn
	cons     []jetstream.Consumer
	cjs      []jetstream.JetStream
	msgs     [][]byte
	pubAt    []atomic.Int64
	parallel int
	run      string
}

// Client defaults the raw mode copies (see client.WithWindow, WithSenders).
const (
	rawWindow  = 32
	rawSenders = 4
)

func newRawLegs(ctx context.Context, e *env, size int) (*rawLegs, error) {
	t, err := proto.Topology{}.WithDefaults()
	if err != nil {
		return nil, err
	}
	in, out := t.BatchStream("bench"), t.ResultStream("bench")
	in.Name, in.Subjects, in.Description = rawIn, []string{rawInSubject + ">"}, "bench: raw batches"
	out.Name, out.Subjects, out.Description = rawOut, []string{rawOutSubject + ">"}, "bench: raw results"
	for _, sc := range []jetstream.StreamConfig{in, out} {
		if _, err := e.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("bench: raw stream %s: %w", sc.Name, err)
		}
	}
	cc := t.WorkerConsumer("bench", fleet.Normal)
	cc.Durable, cc.Description, cc.FilterSubject = rawConsumer, "bench: raw consumer", rawInSubject+">"
	if _, err := e.js.CreateOrUpdateConsumer(ctx, rawIn, cc); err != nil {
		return nil, fmt.Errorf("bench: raw consumer: %w", err)
	}
	r := &rawLegs{nc: e.nc, js: e.js, parallel: e.cfg.Parallel, run: nuid.Next()}
	for i := range e.cfg.Workers {
		nc, err := e.st.Conn(fmt.Sprintf("bench-raw-%d", i))
		if err != nil {
			return nil, err
		}
		r.conns = append(r.conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		cons, err := js.Consumer(ctx, rawIn, rawConsumer)
		if err != nil {
			return nil, fmt.Errorf("bench: raw consumer: %w", err)
		}
		r.cjs, r.cons = append(r.cjs, js), append(r.cons, cons)
	}
	// The messages are the fleet's batch messages, encoded beforehand.
	var recs []plugin.Record
	for lo := 0; lo < e.in.n; lo += size {
		recs = e.in.fill(recs, lo, min(lo+size, e.in.n))
		b := batch.Batch{Job: "bench.raw", Plugin: e.cfg.Plugin, Config: e.cfg.PluginConfig, Seq: uint64(len(r.msgs)),
			Base: uint64(lo), Records: recs}
		data, err := batch.AppendBatch(nil, &b)
		if err != nil {
			return nil, fmt.Errorf("bench: raw message: %w", err)
		}
		r.msgs = append(r.msgs, data)
	}
	r.pubAt = make([]atomic.Int64, len(r.msgs))
	return r, nil
}

func (r *rawLegs) close() {
	for _, nc := range r.conns {
		nc.Close()
	}
}

// round publishes every message, has the consumers move them to the
// results stream, reads them back and purges them, as a client reads a
// job's results and has them purged. It returns the time that took, and
// appends each message's latency to lat.
func (r *rawLegs) round(ctx context.Context, round int, lat []time.Duration) (time.Duration, []time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(err error) { cancel(err) }
	start := time.Now()
	prefix := fmt.Sprintf("%s.%d.", r.run, round)

	var handlers sync.WaitGroup
	var loops sync.WaitGroup
	for i, cons := range r.cons {
		loops.Add(1)
		// Stops when ctx is cancelled: after the read-back, or on a failure.
		go func() {
			defer loops.Done()
			r.consume(ctx, r.cjs[i], cons, &handlers, fail)
		}()
	}

	oc, err := r.js.OrderedConsumer(ctx, rawOut, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{rawOutSubject + prefix + ">"},
	})
	if err != nil {
		return 0, lat, fmt.Errorf("bench: raw read-back: %w", err)
	}
	it, err := oc.Messages()
	if err != nil {
		return 0, lat, fmt.Errorf("bench: raw read-back: %w", err)
	}
	stopIt := context.AfterFunc(ctx, it.Stop)
	defer stopIt()

	room := make(chan struct{}, rawWindow)
	sendq := make(chan int)
	var senders sync.WaitGroup
	for range rawSenders {
		senders.Add(1)
		// Stops when sendq is closed.
		go func() {
			defer senders.Done()
			for i := range sendq {
				m := &nats.Msg{Subject: rawInSubject + prefix + strconv.Itoa(i), Data: r.msgs[i], Header: nats.Header{}}
				m.Header.Set(proto.HeaderMsgID, prefix+strconv.Itoa(i))
				r.pubAt[i].Store(int64(time.Since(start)))
				if _, err := r.js.PublishMsg(ctx, m); err != nil {
					fail(fmt.Errorf("bench: raw publish: %w", err))
				}
			}
		}()
	}
	senders.Add(1)
	// Stops when every message was queued, or ctx ends.
	go func() {
		defer senders.Done()
		defer close(sendq)
		for i := range r.msgs {
			select {
			case room <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case sendq <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	var readErr error
	for got := 0; got < len(r.msgs); got++ {
		m, err := it.Next()
		if err != nil {
			readErr = err
			break
		}
		i, err := strconv.Atoi(m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:])
		if err != nil || i >= len(r.msgs) || len(m.Data()) != len(r.msgs[i]) {
			readErr = fmt.Errorf("unexpected message %s (%d bytes)", m.Subject(), len(m.Data()))
			break
		}
		lat = append(lat, time.Since(start)-time.Duration(r.pubAt[i].Load()))
		<-room
	}
	if readErr == nil {
		readErr = r.purge(ctx, rawOut, rawOutSubject+prefix+">")
	}
	elapsed := time.Since(start)
	if readErr != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			readErr = c
		}
		cancel(readErr)
	}
	cancel(nil)
	senders.Wait()
	loops.Wait()
	handlers.Wait()
	if readErr != nil {
		return 0, lat, fmt.Errorf("bench: raw read-back: %w", readErr)
	}
	return elapsed, lat, nil
}

// consume is the worker's pull loop with the batch's work left out.
func (r *rawLegs) consume(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, handlers *sync.WaitGroup, fail func(error)) {
	slots := make(chan struct{}, r.parallel)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
		for free < r.parallel {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		fctx, cancel := context.WithTimeout(ctx, rawFetchWait)
		msgs, err := cons.Fetch(free, jetstream.FetchContext(fctx))
		got := 0
		if err == nil {
			for m := range msgs.Messages() {
				got++
				handlers.Add(1)
				// Stops once the message is settled; it does not follow
				// ctx, so that no message is left unacknowledged.
				go func() {
					defer func() { <-slots; handlers.Done() }()
					if err := r.settle(js, m); err != nil {
						fail(err)
					}
				}()
			}
			err = msgs.Error()
		}
		cancel()
		for range free - got {
			<-slots
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			fail(fmt.Errorf("bench: raw fetch: %w", err))
			return
		}
	}
}

func (r *rawLegs) settle(js jetstream.JetStream, m jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), rawSettleAfter)
	defer cancel()
	rest := strings.TrimPrefix(m.Subject(), rawInSubject)
	out := &nats.Msg{Subject: rawOutSubject + rest, Data: m.Data(), Header: nats.Header{}}
	out.Header.Set(proto.HeaderMsgID, rest)
	if _, err := js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("bench: raw result publish: %w", err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		return fmt.Errorf("bench: raw ack: %w", err)
	}
	return nil
}

// purge removes subject's messages from stream.
func (r *rawLegs) purge(ctx context.Context, stream, subject string) error {
	s, err := r.js.Stream(ctx, stream)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(subject))
	}
	if err != nil {
		return fmt.Errorf("purge %s: %w", stream, err)
	}
	return nil
}
