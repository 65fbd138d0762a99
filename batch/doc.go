// Package batch is the wire codec for batches (coordinator → worker) and
// results (worker → client): the version 1 format of docs/wire-format.md.
// It is pure Go with no dependency beyond the standard library and package
// plugin, so a WebAssembly plugin (GOOS=wasip1) can use it too.
//
// Encoding appends to a caller's buffer and checks Limits before it writes:
//
//	b := &batch.Batch{Job: "j1", Seq: 7, Plugin: "upper", Records: recs}
//	msg, err := batch.AppendBatch(buf[:0], b) // err wraps batch.ErrLimit for an oversize record
//
// Decoding is zero copy — the records alias the message — and reuses the
// destination, so a worker that decodes every batch into the same Batch
// allocates nothing per batch once warm:
//
//	var b batch.Batch
//	for msg := range msgs {
//		if err := batch.DecodeBatch(msg.Data, &b); err != nil {
//			// errors.Is(err, batch.ErrMalformed / batch.ErrLimit / batch.ErrVersion)
//		}
//		res, err := p.ProcessBatch(ctx, b.Config, b.Records) // b's slices die with msg.Data
//	}
//
// Results travel the same way (AppendResults, DecodeResults). A WebAssembly
// plugin writes only the results section — one entry per record, with
// AppendEntry and AppendUnchanged — and the worker reads it back with
// DecodeEntries against the batch's records.
//
// BatchSize and RecordSize give exact encoded sizes, so a coordinator can cut
// batches within a message size limit; Limits.CheckRecord tells it which
// record is too large to send at all.
//
// Every error about a message or a value is an *Error naming the field and
// the record index, wrapping ErrMalformed, ErrLimit (which also matches
// plugin.ErrTooLarge) or ErrVersion.
package batch
