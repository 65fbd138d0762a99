package builtin

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

// Upper upper-cases ASCII letters: 'a'–'z' become 'A'–'Z' and every other
// byte is kept as it is. It needs no configuration.
type Upper struct{}

// Info describes the plugin.
func (Upper) Info() plugin.Info {
	return info(UpperName, plugin.Transformer, "ASCII upper-case of each value")
}

// ProcessBatch returns each record's value upper-cased. The output values of
// a batch share one allocation the size of their total length (a result kept
// after the batch keeps that whole allocation alive). It returns an error
// only when ctx is already done (see Identity).
func (Upper) ProcessBatch(ctx context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	if err := start(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	total := 0
	for i := range recs {
		total += len(recs[i].Value)
	}
	out := make([]plugin.Result, len(recs))
	var slab []byte
	if total > 0 {
		slab = make([]byte, total)
	}
	off := 0
	for i := range recs {
		v := recs[i].Value
		if v == nil {
			continue
		}
		dst := slab[off : off+len(v) : off+len(v)]
		upperInto(dst, v)
		out[i].Value = dst
		off += len(v)
	}
	return &plugin.BatchResult{Results: out, Duration: time.Since(t0)}, nil
}

// AppendUpper appends the ASCII upper-case of src to dst and returns the
// extended slice: the transformation the upper plugin applies to a value;
// dst's spare capacity may overlap src, as with append.
func AppendUpper(dst, src []byte) []byte {
	n := len(dst)
	// Copy first (append moves overlapping bytes correctly), then convert
	// the copy in place: src may have been overwritten by the copy.
	dst = append(dst, src...)
	upperInto(dst[n:], dst[n:])
	return dst
}

const (
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// upper8 upper-cases the ASCII letters among the 8 bytes of w at once: for
// each byte b with its high bit clear, b+0x1f sets bit 7 iff b ≥ 'a' and
// b+0x05 sets it iff b > 'z'; no addition carries into the next byte.
func upper8(w uint64) uint64 {
	h := w &^ high
	ge := h + (0x80-'a')*ones
	gt := h + (0x80-'z'-1)*ones
	lower := ge &^ gt &^ w & high
	return w ^ lower>>2 // 0x80>>2 is 0x20, the case bit
}

// upperInto writes the ASCII upper-case of src into dst, len(dst) ≥ len(src).
func upperInto(dst, src []byte) {
	dst = dst[:len(src)]
	for len(src) >= 16 {
		a := binary.LittleEndian.Uint64(src)
		b := binary.LittleEndian.Uint64(src[8:16])
		binary.LittleEndian.PutUint64(dst, upper8(a))
		binary.LittleEndian.PutUint64(dst[8:16], upper8(b))
		src, dst = src[16:], dst[16:len(src)]
	}
	for i, c := range src {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst[i] = c
	}
}
