package batch

import (
	"slices"

	"github.com/dataflare/dataflare/plugin"
)

// Writer builds a batch message record by record, for a producer that gets
// its records one at a time and may not keep them (a client reading a
// stream whose source reuses its buffers): each record is checked and
// copied once, straight into the message, instead of into a holding area
// first. The message is byte for byte what AppendBatch writes for the same
// batch. The zero Writer is not ready: start it with Reset.
//
//	var w batch.Writer
//	err := w.Reset(buf[:0], &batch.Batch{Job: id, Plugin: "upper", Seq: 7, Base: 700})
//	for _, r := range recs {
//		if err := w.Add(&r); err != nil { ... } // r does not fit: nothing written
//	}
//	msg := w.Bytes()
type Writer struct {
	buf   []byte
	start int // offset of the message in buf
	n     int
	l     Limits
}

// Reset starts a new batch message, appended to dst, with b's header (Job,
// Seq, Base, Plugin, Digest, Config; b.Records is ignored), checked against
// DefaultLimits. The error is AppendBatch's for the header; the Writer is
// then empty.
func (w *Writer) Reset(dst []byte, b *Batch) error {
	return w.ResetLimits(dst, b, DefaultLimits)
}

// ResetLimits is Reset checking against l (for the header and every record
// added).
func (w *Writer) ResetLimits(dst []byte, b *Batch, l Limits) error {
	h := *b
	h.Records = nil
	w.l = l.orDefault()
	w.start, w.n = len(dst), 0
	out, err := w.l.AppendBatch(dst, &h)
	if err != nil {
		w.buf = dst
		return err
	}
	w.buf = out
	return nil
}

// Add appends r to the batch. It checks r first (as CheckRecord does, and
// that the batch holds fewer than MaxRecords records) and writes nothing
// when r does not fit: the error is then an *Error wrapping ErrLimit or
// ErrMalformed, with Index the record's place in the batch.
func (w *Writer) Add(r *plugin.Record) error {
	if w.n >= w.l.MaxRecords {
		return overLimit(noIndex, "record_count", uint64(w.n+1), w.l.MaxRecords)
	}
	if err := w.l.checkRecord(w.n, r); err != nil {
		return err
	}
	w.buf = slices.Grow(w.buf, RecordSize(r))
	w.buf = appendRecord(w.buf, r)
	w.n++
	le.PutUint32(w.buf[w.start+8:], uint32(w.n))
	return nil
}

// Records returns the number of records added.
func (w *Writer) Records() int { return w.n }

// Len returns the size of the message so far (BatchSize of its batch).
func (w *Writer) Len() int { return len(w.buf) - w.start }

// Bytes returns the dst given to Reset with the message appended: a
// complete batch message of the records added so far. It aliases the
// Writer's buffer, which Add may move; it is valid until the next Add or
// Reset.
func (w *Writer) Bytes() []byte { return w.buf }

// appendRecord appends r's encoding, which must have been checked and for
// which dst must have capacity.
func appendRecord(dst []byte, r *plugin.Record) []byte {
	ns, _ := timestampNanos(r.Timestamp) // checked
	n := len(dst)
	dst = dst[:n+RecordOverhead] // capacity made by the caller
	le.PutUint32(dst[n:], uint32(len(r.Key)))
	le.PutUint32(dst[n+4:], uint32(len(r.Value)))
	le.PutUint32(dst[n+8:], uint32(len(r.Headers)))
	le.PutUint64(dst[n+12:], uint64(ns))
	dst = append(dst, r.Key...)
	dst = append(dst, r.Value...)
	for j := range r.Headers {
		h := &r.Headers[j]
		dst = le.AppendUint32(dst, uint32(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = le.AppendUint32(dst, uint32(len(h.Value)))
		dst = append(dst, h.Value...)
	}
	return dst
}
