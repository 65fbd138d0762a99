package batch

import (
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/dataflare/dataflare/plugin"
)

// ResultSet is one result message: the results of one batch, in record
// order. The zero value is empty; a ResultSet can be decoded into again and
// again, reusing its memory.
type ResultSet struct {
	// Job is the job id.
	Job string
	// Worker is the id of the worker that produced the results.
	Worker string
	// Seq is the batch's number within its job.
	Seq uint64
	// Base is the job-wide index of the batch's first record.
	Base uint64
	// Duration is the batch's processing time on the worker.
	Duration time.Duration
	// Results holds one Result per record of the batch. Decoded values
	// alias the message; decoded errors are *plugin.Error values carrying
	// the Code and Message that crossed the wire.
	Results []plugin.Result
}

// AppendResults appends the encoding of r to dst and returns the extended
// buffer. It checks r against DefaultLimits first and writes nothing when r
// does not fit: the error is an *Error wrapping ErrLimit (too many results,
// a job or worker id or a value too large) or ErrMalformed (a negative
// Duration). Error messages longer than MaxErrorSize are shortened to it (at
// a UTF-8 boundary). A result's status is "error" when its Err is set, else
// "dropped" when Dropped is set, else "value". With a dst of enough capacity
// it does not allocate.
func AppendResults(dst []byte, r *ResultSet) ([]byte, error) {
	return DefaultLimits.AppendResults(dst, r)
}

// AppendResults is the package-level AppendResults checking against l.
func (l Limits) AppendResults(dst []byte, r *ResultSet) ([]byte, error) {
	l = l.orDefault()
	size, err := l.checkResults(r)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, size)
	start := len(dst)
	dst = append(dst, resultMagic...)
	dst = append(dst, Version)
	dst = le.AppendUint32(dst, 0) // header_len, patched below
	dst = le.AppendUint32(dst, uint32(len(r.Results)))
	dst = le.AppendUint32(dst, 0) // flags
	dst = le.AppendUint64(dst, r.Seq)
	dst = le.AppendUint64(dst, r.Base)
	dst = le.AppendUint64(dst, uint64(r.Duration))
	dst = appendStr(dst, r.Job)
	dst = appendStr(dst, r.Worker)
	le.PutUint32(dst[start+4:], uint32(len(dst)-start))
	for i := range r.Results {
		dst = appendEntry(dst, &r.Results[i], l.MaxErrorSize)
	}
	return dst, nil
}

// checkResults checks r against l and returns its encoded size.
func (l Limits) checkResults(r *ResultSet) (int, error) {
	if err := l.checkString("job", r.Job); err != nil {
		return 0, err
	}
	if err := l.checkString("worker", r.Worker); err != nil {
		return 0, err
	}
	if r.Duration < 0 {
		return 0, malformed(noIndex, "duration_ns", "%s is negative", r.Duration)
	}
	if err := l.checkCount("result_count", len(r.Results), l.MaxRecords); err != nil {
		return 0, err
	}
	size := resultFixed + 4 + len(r.Job) + 4 + len(r.Worker)
	for i := range r.Results {
		res := &r.Results[i]
		if err := l.checkResult(i, res); err != nil {
			return 0, err
		}
		size += entrySize(res, l.MaxErrorSize)
	}
	return size, nil
}

// ResultsSize returns the exact length of r's encoding by AppendResults: the
// header plus the EntrySize of every result.
func ResultsSize(r *ResultSet) int {
	return DefaultLimits.resultsSize(r)
}

func (l Limits) resultsSize(r *ResultSet) int {
	n := resultFixed + 4 + len(r.Job) + 4 + len(r.Worker)
	for i := range r.Results {
		n += entrySize(&r.Results[i], l.MaxErrorSize)
	}
	return n
}

// EntrySize returns the exact length of AppendEntry's encoding of r:
// EntryOverhead plus the value (status value) or the error message (status
// error, shortened to DefaultLimits.MaxErrorSize).
func EntrySize(r plugin.Result) int {
	return entrySize(&r, DefaultLimits.MaxErrorSize)
}

func entrySize(r *plugin.Result, maxErr int) int {
	switch {
	case r.Err != nil:
		_, msg := errorParts(r.Err, maxErr)
		return EntryOverhead + len(msg)
	case r.Dropped:
		return EntryOverhead
	default:
		return EntryOverhead + len(r.Value)
	}
}

// AppendEntry appends one result entry to dst, the unit of the results
// section that a WebAssembly plugin writes (one per record, in order): status
// error with the code from plugin.CodeOf and the error's message (shortened
// to DefaultLimits.MaxErrorSize) when r.Err is set, else status dropped when
// r.Dropped is set, else status value with r.Value. The message of a
// *plugin.Error is its Message field. AppendEntry checks no other limit: the
// decoder does.
func AppendEntry(dst []byte, r plugin.Result) []byte {
	return appendEntry(dst, &r, DefaultLimits.MaxErrorSize)
}

// AppendUnchanged appends a result entry of status unchanged: the record's
// result is its input value. Only a plugin's output (DecodeEntries) may hold
// it.
func AppendUnchanged(dst []byte) []byte {
	return append(dst, statusUnchanged, 0, 0, 0, 0, 0, 0, 0)
}

func appendEntry(dst []byte, r *plugin.Result, maxErr int) []byte {
	switch {
	case r.Err != nil:
		code, msg := errorParts(r.Err, maxErr)
		dst = append(dst, statusError, byte(code), 0, 0)
		dst = le.AppendUint32(dst, uint32(len(msg)))
		return append(dst, msg...)
	case r.Dropped:
		return append(dst, statusDropped, 0, 0, 0, 0, 0, 0, 0)
	default:
		dst = append(dst, statusValue, 0, 0, 0, 0, 0, 0, 0)
		le.PutUint32(dst[len(dst)-4:], uint32(len(r.Value)))
		return append(dst, r.Value...)
	}
}

// errorParts returns the code and the wire message of err, the message cut
// to at most max bytes. A *plugin.Error's message is its Message field (which
// may be empty: its Error method then names the code, on both sides of the
// wire).
func errorParts(err error, max int) (plugin.Code, string) {
	var code plugin.Code
	var msg string
	if pe, ok := err.(*plugin.Error); ok {
		if pe != nil {
			code, msg = pe.Code, pe.Message
		}
	} else {
		code, msg = plugin.CodeOf(err), err.Error()
	}
	return code, truncate(msg, max)
}

// truncate cuts s to at most max bytes, at a rune boundary when s is UTF-8.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && i > max-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	if !utf8.RuneStart(s[i]) {
		i = max // not UTF-8: cut anywhere
	}
	return s[:i]
}

// DecodeResults decodes the result message data into dst, checking it
// against DefaultLimits. It does not copy: the results' values are
// sub-slices of data (capacity-clipped), valid as long as data is; an empty
// value decodes as nil. A per-record error becomes a *plugin.Error with the
// Code and Message of the wire (two allocations each: the error and its message); errors.Is matches it
// against the sentinel of its code. dst.Results keeps its capacity, and Job
// and Worker are kept when equal, so a steady stream of results does not
// allocate except for errors.
//
// The error is an *Error wrapping ErrVersion, ErrLimit (also matching
// plugin.ErrTooLarge) or ErrMalformed (anything else that is not a valid
// version 1 result message, including status 3 "unchanged" and trailing
// bytes); it names the field and the record index. On error dst.Results is
// empty and the other fields are unspecified.
func DecodeResults(data []byte, dst *ResultSet) error {
	return DefaultLimits.DecodeResults(data, dst)
}

// DecodeResults is the package-level DecodeResults checking against l.
func (l Limits) DecodeResults(data []byte, dst *ResultSet) error {
	err := l.orDefault().decodeResults(data, dst)
	if err != nil {
		clear(dst.Results)
		dst.Results = dst.Results[:0]
	}
	return err
}

func (l Limits) decodeResults(data []byte, dst *ResultSet) error {
	hlen, n, err := prelude(data, resultMagic, resultFixed, "result_count", l.MaxRecords)
	if err != nil {
		return err
	}
	d := le.Uint64(data[32:])
	if d > math.MaxInt64 {
		return malformed(noIndex, "duration_ns", "%d is over the largest int64", d)
	}
	hr := headerReader{b: data[:hlen], off: resultFixed}
	job, err := hr.str("job", l.MaxStringSize)
	if err != nil {
		return err
	}
	worker, err := hr.str("worker", l.MaxStringSize)
	if err != nil {
		return err
	}
	// Bytes left before header_len are fields a later revision of version 1
	// may add; this one skips them.
	if need := uint64(n) * EntryOverhead; need > uint64(len(data)-hlen) {
		return malformed(noIndex, "result_count", "%d results need at least %d bytes, %d left", n, need, len(data)-hlen)
	}
	dst.Seq = le.Uint64(data[16:])
	dst.Base = le.Uint64(data[24:])
	dst.Duration = time.Duration(d)
	dst.Job = reuse(dst.Job, job)
	dst.Worker = reuse(dst.Worker, worker)
	res := dst.Results
	if cap(res) < n {
		res = make([]plugin.Result, n)
	} else {
		clear(res[n:max(n, len(res))])
		res = res[:n]
	}
	dst.Results = res
	return l.decodeEntries(data[hlen:], nil, res)
}

// DecodeEntries decodes a results section alone — what a WebAssembly
// plugin writes for a batch: exactly one entry per record of in, in order —
// into dst, checking it against DefaultLimits. len(dst) must equal len(in).
// An entry of status unchanged resolves to in[i].Value. Values alias data
// (or in): copy them before data is reused — a guest's memory, for one, is
// overwritten by its next call. Errors become *plugin.Error values as in
// DecodeResults.
//
// The error is an *Error wrapping ErrLimit (also matching
// plugin.ErrTooLarge) or ErrMalformed (a truncated or unknown entry, or
// bytes after the last entry) naming the record index; or, when len(dst) !=
// len(in), an error that wraps neither. On error dst's contents are
// unspecified.
func DecodeEntries(data []byte, in []plugin.Record, dst []plugin.Result) error {
	return DefaultLimits.DecodeEntries(data, in, dst)
}

// DecodeEntries is the package-level DecodeEntries checking against l.
func (l Limits) DecodeEntries(data []byte, in []plugin.Record, dst []plugin.Result) error {
	if len(dst) != len(in) {
		return fmt.Errorf("batch: DecodeEntries: %d results for %d records", len(dst), len(in))
	}
	if need := uint64(len(in)) * EntryOverhead; need > uint64(len(data)) {
		return malformed(noIndex, "entries", "%d entries need at least %d bytes, %d given", len(in), need, len(data))
	}
	return l.orDefault().decodeEntries(data, in, dst)
}

// decodeEntries decodes len(dst) entries that make up all of data. A nil in
// refuses status unchanged.
func (l Limits) decodeEntries(data []byte, in []plugin.Record, dst []plugin.Result) error {
	maxValue := uint64(l.MaxValueSize)
	maxErr := uint64(l.MaxErrorSize)
	off := 0
	for i := range dst {
		if len(data)-off < EntryOverhead {
			return truncated(i, "framing", EntryOverhead, len(data)-off)
		}
		status, code := data[off], data[off+1]
		reserved := le.Uint16(data[off+2:])
		n := uint64(le.Uint32(data[off+4:]))
		off += EntryOverhead
		if reserved != 0 {
			return malformed(i, "reserved", "%#x is not 0", reserved)
		}
		if code != 0 && status != statusError {
			return malformed(i, "code", "%d with status %d (only status 2 has a code)", code, status)
		}
		switch status {
		case statusValue:
			if n > maxValue {
				return overLimit(i, "value", n, l.MaxValueSize)
			}
			if n > uint64(len(data)-off) {
				return truncated(i, "value", n, len(data)-off)
			}
			dst[i] = plugin.Result{Value: sub(data, off, int(n))}
			off += int(n)
		case statusError:
			if n > maxErr {
				return overLimit(i, "error message", n, l.MaxErrorSize)
			}
			if n > uint64(len(data)-off) {
				return truncated(i, "error message", n, len(data)-off)
			}
			msg := string(data[off : off+int(n)])
			dst[i] = plugin.Result{Err: &plugin.Error{Code: plugin.Code(code), Message: msg}}
			off += int(n)
		case statusDropped, statusUnchanged:
			if n != 0 {
				return malformed(i, "len", "%d with status %d (which has no bytes)", n, status)
			}
			if status == statusDropped {
				dst[i] = plugin.Result{Dropped: true}
			} else if in != nil {
				dst[i] = plugin.Result{Value: in[i].Value}
			} else {
				return malformed(i, "status", "3 (unchanged) is only allowed in a plugin's output")
			}
		default:
			return malformed(i, "status", "unknown status %d", status)
		}
	}
	if off != len(data) {
		return malformed(noIndex, "message", "%d trailing bytes after the last entry", len(data)-off)
	}
	return nil
}
