package batch

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/dataflare/dataflare/plugin"
)

// Batch is one batch message: a job's records and what a worker needs to run
// them. The zero value is an empty batch; a Batch can be decoded into again
// and again, reusing its memory.
type Batch struct {
	// Job is the job id.
	Job string
	// Seq is the batch's number within its job.
	Seq uint64
	// Base is the job-wide index of the batch's first record.
	Base uint64
	// Plugin is the plugin name.
	Plugin string
	// Digest is the pinned module digest ("sha256:<hex>"), empty for native
	// plugins.
	Digest string
	// Config is the job's plugin configuration; nil when it has none. A
	// decoded Config may be shared with earlier decodes: do not modify it.
	Config plugin.Config
	// Records are the batch's records. Decoded records alias the message.
	Records []plugin.Record

	// headers is the backing array of the decoded records' Headers, kept
	// for the next decode.
	headers []plugin.Header
}

// AppendBatch appends the encoding of b to dst and returns the extended
// buffer. It checks b against DefaultLimits first and writes nothing when b
// does not fit: the error is an *Error wrapping ErrLimit (a count or size
// over a limit) or ErrMalformed (a timestamp outside the range of int64
// nanoseconds). Config pairs are written sorted by key, so equal batches
// encode to equal bytes. With a dst of enough capacity it does not allocate
// (unless Config has more than 16 pairs).
func AppendBatch(dst []byte, b *Batch) ([]byte, error) {
	return DefaultLimits.AppendBatch(dst, b)
}

// AppendBatch is the package-level AppendBatch checking against l.
func (l Limits) AppendBatch(dst []byte, b *Batch) ([]byte, error) {
	l = l.orDefault()
	size, err := l.checkBatch(b)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, size)
	start := len(dst)
	dst = append(dst, batchMagic...)
	dst = append(dst, Version)
	dst = le.AppendUint32(dst, 0) // header_len, patched below
	dst = le.AppendUint32(dst, uint32(len(b.Records)))
	dst = le.AppendUint32(dst, 0) // flags
	dst = le.AppendUint64(dst, b.Seq)
	dst = le.AppendUint64(dst, b.Base)
	dst = appendStr(dst, b.Job)
	dst = appendStr(dst, b.Plugin)
	dst = appendStr(dst, b.Digest)
	dst = appendConfig(dst, b.Config)
	le.PutUint32(dst[start+4:], uint32(len(dst)-start))
	for i := range b.Records {
		dst = appendRecord(dst, &b.Records[i]) // checked, room made by slices.Grow
	}
	return dst, nil
}

// appendConfig appends config_count and the pairs sorted by key.
func appendConfig(dst []byte, c plugin.Config) []byte {
	dst = le.AppendUint32(dst, uint32(len(c)))
	if len(c) == 0 {
		return dst
	}
	keys := make([]string, 0, 16) // on the stack for up to 16 pairs
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = appendStr(dst, k)
		dst = appendStr(dst, c[k])
	}
	return dst
}

// checkBatch checks b against l and returns its encoded size.
func (l Limits) checkBatch(b *Batch) (int, error) {
	if err := l.checkString("job", b.Job); err != nil {
		return 0, err
	}
	if err := l.checkString("plugin", b.Plugin); err != nil {
		return 0, err
	}
	if err := l.checkString("digest", b.Digest); err != nil {
		return 0, err
	}
	if err := l.checkCount("config_count", len(b.Config), l.MaxConfigPairs); err != nil {
		return 0, err
	}
	for k, v := range b.Config {
		if err := l.checkString("config key", k); err != nil {
			return 0, err
		}
		if err := l.checkString("config value", v); err != nil {
			return 0, err
		}
	}
	if err := l.checkCount("record_count", len(b.Records), l.MaxRecords); err != nil {
		return 0, err
	}
	size := headerSize(b)
	for i := range b.Records {
		r := &b.Records[i]
		if err := l.checkRecord(i, r); err != nil {
			return 0, err
		}
		size += RecordSize(r)
	}
	return size, nil
}

// BatchSize returns the exact length of b's encoding: the header (BatchSize
// of a batch without records) plus the RecordSize of every record. A
// coordinator uses it to cut batches within a message size limit.
func BatchSize(b *Batch) int {
	n := headerSize(b)
	for i := range b.Records {
		n += RecordSize(&b.Records[i])
	}
	return n
}

// headerSize returns the size of b's encoding up to header_len.
func headerSize(b *Batch) int {
	n := batchFixed + 4 + len(b.Job) + 4 + len(b.Plugin) + 4 + len(b.Digest) + 4
	for k, v := range b.Config {
		n += HeaderOverhead + len(k) + len(v)
	}
	return n
}

// RecordSize returns the exact length of r's encoding in a batch:
// RecordOverhead plus its key and value, plus HeaderOverhead and the key and
// value of each header.
func RecordSize(r *plugin.Record) int {
	n := RecordOverhead + len(r.Key) + len(r.Value)
	for j := range r.Headers {
		n += HeaderOverhead + len(r.Headers[j].Key) + len(r.Headers[j].Value)
	}
	return n
}

// DecodeBatch decodes the batch message data into dst, checking it against
// DefaultLimits. It does not copy: the records' keys, values and headers are
// sub-slices of data (capacity-clipped, so appending to one does not touch
// the next), valid as long as data is. Empty keys, values and headers decode
// as nil; a timestamp of 0 decodes as the zero time.Time.
//
// dst's memory is reused: its Records and the backing array of their Headers
// keep their capacity, and Job, Plugin, Digest and Config are kept when the
// message holds equal values, so decoding successive batches of a job into
// the same dst does not allocate. A Config is never modified once decoded:
// a different configuration gets a new map.
//
// The error is an *Error wrapping ErrVersion (an unknown version byte),
// ErrLimit (a count or size over a limit; it also matches
// plugin.ErrTooLarge) or ErrMalformed (anything else that is not a valid
// version 1 batch message, trailing bytes included); it names the field and
// the record index. On error dst.Records is empty and the other fields are
// unspecified.
func DecodeBatch(data []byte, dst *Batch) error {
	return DefaultLimits.DecodeBatch(data, dst)
}

// DecodeBatch is the package-level DecodeBatch checking against l.
func (l Limits) DecodeBatch(data []byte, dst *Batch) error {
	err := l.orDefault().decodeBatch(data, dst)
	if err != nil {
		clear(dst.Records)
		dst.Records = dst.Records[:0]
	}
	return err
}

func (l Limits) decodeBatch(data []byte, dst *Batch) error {
	hlen, n, err := prelude(data, batchMagic, batchFixed, "record_count", l.MaxRecords)
	if err != nil {
		return err
	}
	dst.Seq = le.Uint64(data[16:])
	dst.Base = le.Uint64(data[24:])
	hr := headerReader{b: data[:hlen], off: batchFixed}
	job, err := hr.str("job", l.MaxStringSize)
	if err != nil {
		return err
	}
	name, err := hr.str("plugin", l.MaxStringSize)
	if err != nil {
		return err
	}
	digest, err := hr.str("digest", l.MaxStringSize)
	if err != nil {
		return err
	}
	if err := l.decodeConfig(&hr, dst); err != nil {
		return err
	}
	// Bytes left before header_len are fields a later revision of version 1
	// may add; this one skips them.
	dst.Job = reuse(dst.Job, job)
	dst.Plugin = reuse(dst.Plugin, name)
	dst.Digest = reuse(dst.Digest, digest)
	return l.decodeRecords(data, hlen, n, dst)
}

// decodeConfig reads config_count and the pairs, and sets dst.Config: kept
// when it equals the message's, else a new map (nil for no pairs).
func (l Limits) decodeConfig(hr *headerReader, dst *Batch) error {
	c, err := hr.u32("config_count")
	if err != nil {
		return err
	}
	if uint64(c) > uint64(l.MaxConfigPairs) {
		return overLimit(noIndex, "config_count", uint64(c), l.MaxConfigPairs)
	}
	if need := uint64(c) * HeaderOverhead; need > uint64(len(hr.b)-hr.off) {
		return malformed(noIndex, "config_count", "%d pairs need at least %d bytes, %d left", c, need, len(hr.b)-hr.off)
	}
	n := int(c)
	if n == 0 {
		dst.Config = nil
		return nil
	}
	// First pass: check the pairs and compare them with dst.Config.
	start := hr.off
	equal := len(dst.Config) == n
	var prev []byte
	for i := range n {
		k, v, err := l.configPair(hr, i)
		if err != nil {
			return err
		}
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			return malformed(noIndex, pairField(i, "key"), "%q after %q: keys must be in strictly increasing order", k, prev)
		}
		prev = k
		if equal {
			old, ok := dst.Config[string(k)]
			equal = ok && old == string(v)
		}
	}
	if equal {
		return nil
	}
	// Second pass: build the new map.
	end := hr.off
	hr.off = start
	m := make(plugin.Config, n)
	for i := range n {
		k, v, _ := l.configPair(hr, i) // checked by the first pass
		m[string(k)] = string(v)
	}
	hr.off = end
	dst.Config = m
	return nil
}

// configPair reads config pair p.
func (l Limits) configPair(hr *headerReader, p int) (k, v []byte, err error) {
	if k, err = l.pairStr(hr, p, "key"); err != nil {
		return nil, nil, err
	}
	v, err = l.pairStr(hr, p, "value")
	return k, v, err
}

func (l Limits) pairStr(hr *headerReader, p int, part string) ([]byte, error) {
	left := len(hr.b) - hr.off
	if left < 4 {
		return nil, truncated(noIndex, pairField(p, part+" length"), 4, left)
	}
	n := uint64(le.Uint32(hr.b[hr.off:]))
	hr.off += 4
	left -= 4
	if n > uint64(l.MaxStringSize) {
		return nil, overLimit(noIndex, pairField(p, part), n, l.MaxStringSize)
	}
	if n > uint64(left) {
		return nil, truncated(noIndex, pairField(p, part), n, left)
	}
	s := hr.b[hr.off : hr.off+int(n)]
	hr.off += int(n)
	return s, nil
}

func pairField(p int, part string) string {
	return "config pair " + strconv.Itoa(p) + " " + part
}

// decodeRecords decodes the n records that start at data[off:].
func (l Limits) decodeRecords(data []byte, off, n int, dst *Batch) error {
	if need := uint64(n) * RecordOverhead; need > uint64(len(data)-off) {
		return malformed(noIndex, "record_count", "%d records need at least %d bytes, %d left", n, need, len(data)-off)
	}
	recs := dst.Records
	if cap(recs) < n {
		recs = make([]plugin.Record, n)
	} else {
		// Drop the last decode's references into its message.
		clear(recs[n:max(n, len(recs))])
		recs = recs[:n]
	}
	dst.Records = recs
	oldHeaders := len(dst.headers)
	hdrs := dst.headers[:0]
	hcap := cap(hdrs)
	maxKey := uint64(l.MaxKeySize)
	maxValue := uint64(l.MaxValueSize)
	maxHeaders := uint64(l.MaxHeaders)
	for i := range recs {
		if len(data)-off < RecordOverhead {
			return truncated(i, "framing", RecordOverhead, len(data)-off)
		}
		kl := uint64(le.Uint32(data[off:]))
		vl := uint64(le.Uint32(data[off+4:]))
		hc := uint64(le.Uint32(data[off+8:]))
		ns := int64(le.Uint64(data[off+12:]))
		off += RecordOverhead
		if kl > maxKey {
			return overLimit(i, "key", kl, l.MaxKeySize)
		}
		if vl > maxValue {
			return overLimit(i, "value", vl, l.MaxValueSize)
		}
		if hc > maxHeaders {
			return overLimit(i, "header_count", hc, l.MaxHeaders)
		}
		if need := kl + vl + hc*HeaderOverhead; need > uint64(len(data)-off) {
			return truncated(i, "key, value and headers", need, len(data)-off)
		}
		r := &recs[i]
		r.Key = sub(data, off, int(kl))
		off += int(kl)
		r.Value = sub(data, off, int(vl))
		off += int(vl)
		r.Timestamp = timestamp(ns)
		if hc == 0 {
			r.Headers = nil
			continue
		}
		first := len(hdrs)
		hdrs = slices.Grow(hdrs, int(hc))[:first+int(hc)]
		for j := range hdrs[first:] {
			kl, vl, err := l.headerLengths(data, off, i, j)
			if err != nil {
				dst.headers = hdrs
				return err
			}
			off += 4
			key := sub(data, off, kl)
			off += kl + 4
			hdrs[first+j] = plugin.Header{Key: key, Value: sub(data, off, vl)}
			off += vl
		}
		r.Headers = hdrs[first:len(hdrs):len(hdrs)]
	}
	if off != len(data) {
		dst.headers = hdrs
		return malformed(noIndex, "message", "%d trailing bytes after the last record", len(data)-off)
	}
	if cap(hdrs) != hcap {
		// hdrs grew: point every record's Headers into the final array.
		h := 0
		for i := range recs {
			if k := len(recs[i].Headers); k > 0 {
				recs[i].Headers = hdrs[h : h+k : h+k]
				h += k
			}
		}
	} else {
		clear(hdrs[len(hdrs):max(len(hdrs), oldHeaders)])
	}
	dst.headers = hdrs
	return nil
}

// headerLengths reads and checks the key and value lengths of header j of
// record i, which starts at data[off:].
func (l Limits) headerLengths(data []byte, off, i, j int) (kl, vl int, err error) {
	left := len(data) - off
	if left < 4 {
		return 0, 0, truncated(i, headerField(j, "key length"), 4, left)
	}
	k := uint64(le.Uint32(data[off:]))
	left -= 4
	if k > uint64(l.MaxHeaderSize) {
		return 0, 0, overLimit(i, headerField(j, "key"), k, l.MaxHeaderSize)
	}
	if k+4 > uint64(left) {
		return 0, 0, truncated(i, headerField(j, "key and value length"), k+4, left)
	}
	v := uint64(le.Uint32(data[off+4+int(k):]))
	left -= int(k) + 4
	if k+v > uint64(l.MaxHeaderSize) {
		return 0, 0, overLimit(i, headerField(j, "key + value"), k+v, l.MaxHeaderSize)
	}
	if v > uint64(left) {
		return 0, 0, truncated(i, headerField(j, "value"), v, left)
	}
	return int(k), int(v), nil
}

// Count returns the record_count a batch message's header states, or 0
// when data is too short to hold one or is not a batch. It decodes nothing
// else: for a scheduler's cost estimate, not for trust.
func Count(data []byte) int {
	if len(data) < 12 || string(data[:3]) != batchMagic {
		return 0
	}
	return int(le.Uint32(data[8:]))
}
