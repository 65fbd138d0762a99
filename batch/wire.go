package batch

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"
)

var le = binary.LittleEndian

// Wire constants, as in docs/wire-format.md.
const (
	// RecordOverhead is the framing of one record in a batch: key_len,
	// value_len, header_count and timestamp.
	RecordOverhead = 20
	// EntryOverhead is the framing of one result entry: status, code,
	// reserved and len.
	EntryOverhead = 8
	// HeaderOverhead is the framing of one record header or config pair:
	// the u32 lengths of its key and its value.
	HeaderOverhead = 8

	// Version is the wire format version this package reads and writes.
	Version = 1

	// FlagS2 is the bit of a message's flags that says its body — the
	// records of a batch, the entries of a result message: everything
	// from header_len to the end — is one S2 block, while the header
	// before it stays as it is (docs/wire-format.md, "Compression";
	// package batchz compresses and decompresses). This package's
	// decoders read plain messages only, and say so of a compressed one;
	// decoders that predate the flag refuse it, as they refuse any flag.
	FlagS2 = 1

	batchMagic  = "DFB"
	resultMagic = "DFR"
	batchFixed  = 32 // magic, header_len, record_count, flags, seq, base
	resultFixed = 40 // magic, header_len, result_count, flags, seq, base, duration_ns
)

// Entry statuses.
const (
	statusValue     = 0
	statusDropped   = 1
	statusError     = 2
	statusUnchanged = 3
)

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
	// Times with whole seconds strictly between these are in range.
	minSec = minTime.Unix()
	maxSec = maxTime.Unix()
)

// timestampNanos returns t as wire nanoseconds: 0 for the zero Time, else
// t.UnixNano(); ok is false when t is outside the range of int64 nanoseconds.
func timestampNanos(t time.Time) (ns int64, ok bool) {
	if s := t.Unix(); s > minSec && s < maxSec {
		return t.UnixNano(), true
	}
	if t.IsZero() {
		return 0, true
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, false
	}
	return t.UnixNano(), true
}

// timestamp is the inverse of timestampNanos.
func timestamp(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func headerField(j int, part string) string {
	return "header " + strconv.Itoa(j) + " " + part
}

// sub returns b[off:off+n] with its capacity clipped, so that appending to it
// never overwrites the bytes after it; or nil when n is 0.
func sub(b []byte, off, n int) []byte {
	if n == 0 {
		return nil
	}
	return b[off : off+n : off+n]
}

// reuse returns old when it holds the bytes of b, else a new string. The
// comparison does not allocate.
func reuse(old string, b []byte) string {
	if old == string(b) {
		return old
	}
	return string(b)
}

// appendStr appends s as a wire str (u32 length, then the bytes).
func appendStr(dst []byte, s string) []byte {
	dst = le.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// prelude checks a message's magic, version, flags and header_len and returns
// header_len and the count (record_count or result_count).
func prelude(data []byte, magic string, fixed int, countField string, maxCount int) (hlen, count int, err error) {
	if len(data) < fixed {
		if len(data) >= 4 && string(data[:3]) == magic && data[3] != Version {
			return 0, 0, &Error{Err: ErrVersion, Index: noIndex, Field: "magic", Detail: "version " + strconv.Itoa(int(data[3]))}
		}
		return 0, 0, truncated(noIndex, "header", uint64(fixed), len(data))
	}
	if string(data[:3]) != magic {
		return 0, 0, malformed(noIndex, "magic", "% x is not %q", data[:3], magic)
	}
	if data[3] != Version {
		return 0, 0, &Error{Err: ErrVersion, Index: noIndex, Field: "magic", Detail: "version " + strconv.Itoa(int(data[3]))}
	}
	if f := le.Uint32(data[12:]); f == FlagS2 {
		return 0, 0, malformed(noIndex, "flags", "the body is compressed (S2): decode what batchz.Plain makes of it")
	} else if f != 0 {
		return 0, 0, malformed(noIndex, "flags", "unknown bits %#x", f)
	}
	h := le.Uint32(data[4:])
	if uint64(h) < uint64(fixed) || uint64(h) > uint64(len(data)) {
		return 0, 0, malformed(noIndex, "header_len", "%d is outside [%d, %d] (the message's length)", h, fixed, len(data))
	}
	c := le.Uint32(data[8:])
	if uint64(c) > uint64(maxCount) {
		return 0, 0, overLimit(noIndex, countField, uint64(c), maxCount)
	}
	return int(h), int(c), nil
}

// headerReader reads the variable part of a message header, up to header_len.
type headerReader struct {
	b   []byte // the message up to header_len
	off int
}

func (r *headerReader) u32(field string) (uint32, error) {
	if len(r.b)-r.off < 4 {
		return 0, truncated(noIndex, field, 4, len(r.b)-r.off)
	}
	v := le.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

// str reads a wire str of at most max bytes.
func (r *headerReader) str(field string, max int) ([]byte, error) {
	if len(r.b)-r.off < 4 {
		return nil, truncated(noIndex, field+" length", 4, len(r.b)-r.off)
	}
	n := le.Uint32(r.b[r.off:])
	r.off += 4
	if uint64(n) > uint64(max) {
		return nil, overLimit(noIndex, field, uint64(n), max)
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		return nil, truncated(noIndex, field, uint64(n), len(r.b)-r.off)
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}
