package batch

import (
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
)

// FlagS2 is the bit of a message's flags that says its body — the records
// of a batch, the entries of a result message: everything from header_len
// to the end — is one S2 block (github.com/klauspost/compress/s2, the
// block format), while the header before it stays as it is. Decoders
// that predate it refuse the message, as they refuse any flag.
const FlagS2 = 1

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

// Compress appends msg, a batch or result message as AppendBatch or
// AppendResults writes it, to dst with its body compressed (FlagS2), and
// returns the extended slice and true. When the body is short, or a sample
// of it or the whole of it does not compress to 7/8 of its size or less,
// it returns dst unchanged and false: send msg as it is. A message that is
// not a plain one of this package is returned unchanged too.
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
	le.PutUint32(out[start+12:], FlagS2)
	enc := s2.Encode(out[len(out):len(out)+need], body)
	if !pays(len(enc), len(body)) {
		return dst[:start], false
	}
	return out[:len(out)+len(enc)], true
}

// plainHeader returns the header_len of a plain batch or result message
// of this version, or false.
func plainHeader(msg []byte) (int, bool) {
	if len(msg) < batchFixed || msg[3] != Version || le.Uint32(msg[12:]) != 0 {
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

// Compressed reports whether msg is a message of this package whose body
// is compressed (FlagS2).
func Compressed(msg []byte) bool {
	return len(msg) >= batchFixed && (string(msg[:3]) == batchMagic || string(msg[:3]) == resultMagic) &&
		msg[3] == Version && le.Uint32(msg[12:]) == FlagS2
}

// PlainSize returns the size of what Plain makes of msg: len(msg) when it
// is not compressed. The errors are Plain's, found without decompressing.
func PlainSize(msg []byte) (int, error) { return DefaultLimits.PlainSize(msg) }

// PlainSize is the package-level PlainSize under l.
func (l Limits) PlainSize(msg []byte) (int, error) {
	if !Compressed(msg) {
		return len(msg), nil
	}
	hlen, n, err := l.orDefault().plainSize(msg)
	return hlen + n, err
}

func (l Limits) plainSize(msg []byte) (hlen, n int, err error) {
	hlen = int(le.Uint32(msg[4:]))
	if hlen < batchFixed || hlen > len(msg) {
		return 0, 0, malformed(noIndex, "header_len", "%d is outside [%d, %d] (the message's length)", hlen, batchFixed, len(msg))
	}
	n, err = s2.DecodedLen(msg[hlen:])
	if err != nil {
		return 0, 0, malformed(noIndex, "body", "not an S2 block: %v", err)
	}
	if n > l.MaxPlainSize-hlen {
		return 0, 0, overLimit(noIndex, "decompressed message", uint64(hlen)+uint64(n), l.MaxPlainSize)
	}
	return hlen, n, nil
}

// Plain returns msg with its body decompressed, appended to dst, and its
// FlagS2 cleared: a plain message, for DecodeBatch or DecodeResults and for
// WebAssembly guests, which always see plain batches. A message that is not
// compressed is returned as it is (not copied). The error is an *Error
// wrapping ErrMalformed (not an S2 block, or a block that does not decode)
// or ErrLimit (decompressed, over MaxPlainSize: refused before anything is
// allocated).
func Plain(dst, msg []byte) ([]byte, error) { return DefaultLimits.Plain(dst, msg) }

// Plain is the package-level Plain under l.
func (l Limits) Plain(dst, msg []byte) ([]byte, error) {
	if !Compressed(msg) {
		return msg, nil
	}
	hlen, n, err := l.orDefault().plainSize(msg)
	if err != nil {
		return nil, err
	}
	start := len(dst)
	out := slices.Grow(dst, hlen+n)
	out = append(out, msg[:hlen]...)
	le.PutUint32(out[start+12:], 0)
	dec, err := s2.Decode(out[len(out):len(out)+n], msg[hlen:])
	if err != nil || len(dec) != n {
		return nil, malformed(noIndex, "body", "S2 block does not decode: %v", err)
	}
	return out[:len(out)+n], nil
}

// MaxCompressedLen returns the most bytes Compress appends for a message
// of n bytes: what a buffer needs to take it without growing.
func MaxCompressedLen(n int) int { return s2.MaxEncodedLen(n) }
