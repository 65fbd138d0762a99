// Package batchz compresses the body of batch and result messages with S2
// and makes them plain again: the envelope of docs/wire-format.md,
// "Compression", flagged by batch.FlagS2 in a message's header. It is a
// package of its own so that WebAssembly guests, which link package batch
// and only ever see plain batches, do not carry the codec.
package batchz

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/dataflare/dataflare/batch"
)

var le = binary.LittleEndian

// The parts of a message's header this package reads (docs/wire-format.md).
const (
	batchMagic  = "DFB"
	resultMagic = "DFR"
	batchFixed  = 32 // magic, header_len, record_count, flags, seq, base
	resultFixed = 40 // magic, header_len, result_count, flags, seq, base, duration_ns
)

// DefaultMaxPlainSize is the largest message Plain makes of a compressed
// one: what a few bytes on the wire may make a reader allocate.
const DefaultMaxPlainSize = 64 << 20

// Compression thresholds: a body shorter than minCompress is sent as it
// is; a sample of the first sampleSize bytes must compress to 7/8 of its
// size or less before the whole body is compressed, and the whole body
// too.
const (
	minCompress = 512
	sampleSize  = 8 << 10
)

var samples = sync.Pool{New: func() any { b := make([]byte, s2.MaxEncodedLen(sampleSize)); return &b }}

// pays reports whether n bytes compressed to c is worth a flag: at most
// 7/8 of them.
func pays(c, n int) bool { return 8*c <= 7*n }

// Compress appends msg, a batch or result message as batch.AppendBatch or
// batch.AppendResults writes it, to dst with its body compressed
// (batch.FlagS2), and returns the extended slice and true. When the body is
// short, or a sample of it or the whole of it does not compress to 7/8 of
// its size or less, it returns dst unchanged and false: send msg as it is.
// A message that is not a plain one of package batch is returned unchanged
// too.
func Compress(dst, msg []byte) ([]byte, bool) {
	hlen, ok := plainHeader(msg)
	if !ok || len(msg)-hlen < minCompress {
		return dst, false
	}
	body := msg[hlen:]
	sp := samples.Get().(*[]byte)
	sample := s2.Encode(*sp, body[:min(len(body), sampleSize)])
	samples.Put(sp)
	if !pays(len(sample), min(len(body), sampleSize)) {
		return dst, false
	}
	start := len(dst)
	need := s2.MaxEncodedLen(len(body))
	if need < 0 {
		return dst, false
	}
	out := slices.Grow(dst, hlen+need)
	out = append(out, msg[:hlen]...)
	le.PutUint32(out[start+12:], batch.FlagS2)
	enc := s2.Encode(out[len(out):len(out)+need], body)
	if !pays(len(enc), len(body)) {
		return dst[:start], false
	}
	return out[:len(out)+len(enc)], true
}

// MaxCompressedLen returns the most bytes Compress appends for a message
// of n bytes: what a buffer needs to take it without growing.
func MaxCompressedLen(n int) int { return s2.MaxEncodedLen(n) }

// plainHeader returns the header_len of a plain batch or result message
// of this version, or false.
func plainHeader(msg []byte) (int, bool) {
	if len(msg) < batchFixed || msg[3] != batch.Version || le.Uint32(msg[12:]) != 0 {
		return 0, false
	}
	switch string(msg[:3]) {
	case batchMagic:
	case resultMagic:
		if len(msg) < resultFixed {
			return 0, false
		}
	default:
		return 0, false
	}
	h := int(le.Uint32(msg[4:]))
	return h, h >= batchFixed && h <= len(msg)
}

// Compressed reports whether msg is a batch or result message whose body
// is compressed (batch.FlagS2).
func Compressed(msg []byte) bool {
	return len(msg) >= batchFixed && (string(msg[:3]) == batchMagic || string(msg[:3]) == resultMagic) &&
		msg[3] == batch.Version && le.Uint32(msg[12:]) == batch.FlagS2
}

// PlainSize returns the size of what Plain makes of msg: len(msg) when it
// is not compressed. The errors are Plain's, found without decompressing.
func PlainSize(msg []byte) (int, error) {
	if !Compressed(msg) {
		return len(msg), nil
	}
	hlen, n, err := plainSize(msg, DefaultMaxPlainSize)
	return hlen + n, err
}

func plainSize(msg []byte, max int) (hlen, n int, err error) {
	hlen = int(le.Uint32(msg[4:]))
	if hlen < batchFixed || hlen > len(msg) {
		return 0, 0, fail(batch.ErrMalformed, "header_len", "%d is outside [%d, %d] (the message's length)", hlen, batchFixed, len(msg))
	}
	n, err = s2.DecodedLen(msg[hlen:])
	if err != nil {
		return 0, 0, fail(batch.ErrMalformed, "body", "not an S2 block: %v", err)
	}
	if n > max-hlen {
		return 0, 0, fail(batch.ErrLimit, "decompressed message", "%d > limit %d", uint64(hlen)+uint64(n), max)
	}
	return hlen, n, nil
}

// fail returns the *batch.Error of a message header's field.
func fail(sentinel error, field, format string, args ...any) error {
	return &batch.Error{Err: sentinel, Index: -1, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Plain returns msg with its body decompressed, appended to dst, and its
// batch.FlagS2 cleared: a plain message, for batch.DecodeBatch or
// batch.DecodeResults and for WebAssembly guests, which always see plain
// batches. A message that is not compressed is returned as it is (not
// copied). The error is a *batch.Error wrapping batch.ErrMalformed (not an
// S2 block, or a block that does not decode) or batch.ErrLimit
// (decompressed, over DefaultMaxPlainSize: refused before anything is
// allocated).
func Plain(dst, msg []byte) ([]byte, error) { return PlainMax(dst, msg, DefaultMaxPlainSize) }

// PlainMax is Plain with max, instead of DefaultMaxPlainSize, the largest
// plain message it makes.
func PlainMax(dst, msg []byte, max int) ([]byte, error) {
	if !Compressed(msg) {
		return msg, nil
	}
	hlen, n, err := plainSize(msg, max)
	if err != nil {
		return nil, err
	}
	start := len(dst)
	out := slices.Grow(dst, hlen+n)
	out = append(out, msg[:hlen]...)
	le.PutUint32(out[start+12:], 0)
	dec, err := s2.Decode(out[len(out):len(out)+n], msg[hlen:])
	if err != nil || len(dec) != n {
		return nil, fail(batch.ErrMalformed, "body", "S2 block does not decode: %v", err)
	}
	return out[:len(out)+n], nil
}
