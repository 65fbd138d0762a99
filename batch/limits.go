package batch

import (
	"math"

	"github.com/dataflare/dataflare/plugin"
)

// Limits bounds what a decoder accepts and an encoder writes. A field that is
// zero or negative takes its DefaultLimits value, so a Limits literal needs
// only the fields it changes; a field above math.MaxInt32 is lowered to it
// (every length on the wire is a u32).
type Limits struct {
	// MaxRecords is the most records in a batch (and results in a result
	// message).
	MaxRecords int
	// MaxKeySize is the largest record key, in bytes.
	MaxKeySize int
	// MaxValueSize is the largest record value or result value, in bytes.
	MaxValueSize int
	// MaxHeaders is the most headers on one record.
	MaxHeaders int
	// MaxHeaderSize is the largest header, key and value together, in bytes.
	MaxHeaderSize int
	// MaxStringSize is the largest job id, plugin name, digest, worker id,
	// config key and config value, each, in bytes.
	MaxStringSize int
	// MaxConfigPairs is the most configuration pairs in a batch.
	MaxConfigPairs int
	// MaxErrorSize is the longest per-record error message, in bytes.
	// Encoders shorten longer messages to it; decoders refuse them.
	MaxErrorSize int
}

// DefaultLimits are the limits of the package-level functions, as listed in
// docs/wire-format.md.
var DefaultLimits = Limits{
	MaxRecords:     100_000,
	MaxKeySize:     64 << 10,
	MaxValueSize:   8 << 20,
	MaxHeaders:     64,
	MaxHeaderSize:  64 << 10,
	MaxStringSize:  4 << 10,
	MaxConfigPairs: 256,
	MaxErrorSize:   64 << 10,
}

// orDefault returns l with its zero and negative fields replaced by
// DefaultLimits' and its large ones lowered to math.MaxInt32.
func (l Limits) orDefault() Limits {
	fix := func(v, def int) int {
		if v <= 0 {
			v = def
		}
		return min(v, math.MaxInt32)
	}
	d := DefaultLimits
	return Limits{
		MaxRecords:     fix(l.MaxRecords, d.MaxRecords),
		MaxKeySize:     fix(l.MaxKeySize, d.MaxKeySize),
		MaxValueSize:   fix(l.MaxValueSize, d.MaxValueSize),
		MaxHeaders:     fix(l.MaxHeaders, d.MaxHeaders),
		MaxHeaderSize:  fix(l.MaxHeaderSize, d.MaxHeaderSize),
		MaxStringSize:  fix(l.MaxStringSize, d.MaxStringSize),
		MaxConfigPairs: fix(l.MaxConfigPairs, d.MaxConfigPairs),
		MaxErrorSize:   fix(l.MaxErrorSize, d.MaxErrorSize),
	}
}

// CheckRecord reports whether r fits l: its key, value, header count, header
// sizes and timestamp. The error is an *Error with Index -1 wrapping ErrLimit
// (or ErrMalformed for a timestamp outside the range of int64 nanoseconds);
// a coordinator can use it to fail one oversize record instead of its whole
// batch.
func (l Limits) CheckRecord(r *plugin.Record) error {
	return l.orDefault().checkRecord(noIndex, r)
}

// CheckResult reports whether r fits l: the value of a successful result must
// be at most MaxValueSize (an error message is shortened, never refused). The
// error is an *Error with Index -1 wrapping ErrLimit.
func (l Limits) CheckResult(r plugin.Result) error {
	return l.orDefault().checkResult(noIndex, &r)
}

func (l Limits) checkRecord(i int, r *plugin.Record) error {
	if len(r.Key) > l.MaxKeySize {
		return overLimit(i, "key", uint64(len(r.Key)), l.MaxKeySize)
	}
	if len(r.Value) > l.MaxValueSize {
		return overLimit(i, "value", uint64(len(r.Value)), l.MaxValueSize)
	}
	if len(r.Headers) > l.MaxHeaders {
		return overLimit(i, "header_count", uint64(len(r.Headers)), l.MaxHeaders)
	}
	for j := range r.Headers {
		h := &r.Headers[j]
		if n := len(h.Key) + len(h.Value); n > l.MaxHeaderSize {
			return overLimit(i, headerField(j, "key + value"), uint64(n), l.MaxHeaderSize)
		}
	}
	if _, ok := timestampNanos(r.Timestamp); !ok {
		return malformed(i, "timestamp", "%s is outside the range of int64 nanoseconds since 1970", r.Timestamp)
	}
	return nil
}

func (l Limits) checkResult(i int, r *plugin.Result) error {
	if r.Err == nil && !r.Dropped && len(r.Value) > l.MaxValueSize {
		return overLimit(i, "value", uint64(len(r.Value)), l.MaxValueSize)
	}
	return nil
}

func (l Limits) checkString(field string, s string) error {
	if len(s) > l.MaxStringSize {
		return overLimit(noIndex, field, uint64(len(s)), l.MaxStringSize)
	}
	return nil
}

func (l Limits) checkCount(field string, n, max int) error {
	if n > max {
		return overLimit(noIndex, field, uint64(n), max)
	}
	return nil
}
