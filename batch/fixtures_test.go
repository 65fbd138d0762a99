package batch

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/dataflare/dataflare/plugin"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpOpts compares decoded values with expected ones: unexported fields
// (reused memory) are ignored, nil and empty slices and maps are equal
// (TestDecodeEmptyIsNil checks which one the decoders give), times compare
// with Equal.
var cmpOpts = []cmp.Option{cmpopts.IgnoreUnexported(Batch{}), cmpopts.EquateEmpty()}

// exampleBatch is the batch of the hex example in docs/wire-format.md.
func exampleBatch() *Batch {
	return &Batch{
		Job: "j1", Seq: 7, Base: 700, Plugin: "upper",
		Config: plugin.Config{"mode": "fast"},
		Records: []plugin.Record{{
			Key: []byte("k"), Value: []byte("hello"),
			Headers:   []plugin.Header{{Key: []byte("h"), Value: []byte("v")}},
			Timestamp: time.Unix(0, 1_700_000_000_000_000_000),
		}},
	}
}

// exampleResults is the result message of the hex example in
// docs/wire-format.md.
func exampleResults() *ResultSet {
	return &ResultSet{
		Job: "j1", Worker: "w1", Seq: 7, Base: 700, Duration: 1500 * time.Microsecond,
		Results: []plugin.Result{
			{Value: []byte("HELLO")},
			{Dropped: true},
			{Err: &plugin.Error{Code: plugin.CodeProcessing, Message: "bad"}},
		},
	}
}

// fullBatch exercises every field: several config pairs, records with and
// without keys, headers and timestamps, binary bytes.
func fullBatch() *Batch {
	b := &Batch{
		Job: "job-0123456789", Seq: 1<<64 - 1, Base: 1 << 40, Plugin: "wasm-upper",
		Digest: "sha256:" + strings.Repeat("ab", 32),
		Config: plugin.Config{"z": "", "a": "1", "mode": "fast", "ünï": "cödé"},
	}
	for i := range 12 {
		r := plugin.Record{Value: []byte(strings.Repeat(string(rune('a'+i)), i*3))}
		if i%2 == 0 {
			r.Key = []byte{byte(i), 0, 0xff}
		}
		for j := range i % 4 {
			r.Headers = append(r.Headers, plugin.Header{Key: []byte{'h', byte('0' + j)}, Value: []byte(strings.Repeat("v", j))})
		}
		if i%3 != 0 {
			r.Timestamp = time.Unix(0, int64(i)*-1_000_000_007+int64(i%2)*4_000_000_000_000_000_000)
		}
		b.Records = append(b.Records, r)
	}
	return b
}

// fullResults exercises every status and several codes.
func fullResults() *ResultSet {
	return &ResultSet{
		Job: "job-0123456789", Worker: "worker-α", Seq: 3, Base: 3000, Duration: 42 * time.Second,
		Results: []plugin.Result{
			{Value: []byte("v0")},
			{},
			{Dropped: true},
			{Err: &plugin.Error{Code: plugin.CodeTimeout, Message: "plugin: deadline exceeded"}},
			{Err: &plugin.Error{Code: plugin.CodeUnknown, Message: ""}},
			{Err: &plugin.Error{Code: plugin.Code(200), Message: "a code from a newer version"}},
			{Value: []byte{0, 1, 2, 0xff}},
		},
	}
}

// exampleEntries is a results section as a plugin writes it for three
// records: value, unchanged, error.
func exampleEntries() []byte {
	var b []byte
	b = AppendEntry(b, plugin.Value([]byte("X")))
	b = AppendUnchanged(b)
	b = AppendEntry(b, plugin.Fail(plugin.Errorf(plugin.CodeInvalidInput, "no")))
	return b
}

// msg builds raw messages, valid or not, field by field.
type msg []byte

func (m msg) u8(v ...byte) msg { return append(m, v...) }
func (m msg) u16(v uint16) msg { return binary.LittleEndian.AppendUint16(m, v) }
func (m msg) u32(v uint32) msg { return binary.LittleEndian.AppendUint32(m, v) }
func (m msg) u64(v uint64) msg { return binary.LittleEndian.AppendUint64(m, v) }
func (m msg) raw(s string) msg { return append(m, s...) }
func (m msg) str(s string) msg { return m.u32(uint32(len(s))).raw(s) }

// pair appends a config pair or a record header: str key, str value.
func (m msg) pair(k, v string) msg { return m.str(k).str(v) }

// record appends a record's framing and bytes, with no headers.
func (m msg) record(key, value string, ts int64) msg {
	return m.u32(uint32(len(key))).u32(uint32(len(value))).u32(0).u64(uint64(ts)).raw(key).raw(value)
}

// batchHeader returns a batch header through the digest, with the given
// header_len and record_count; add config_count and pairs after it.
func batchHeader(hlen, count uint32) msg {
	return msg(nil).raw("DFB\x01").u32(hlen).u32(count).u32(0).u64(1).u64(2).str("j").str("p").str("")
}

// simpleBatch returns a valid batch: job "j", plugin "p", no config, and the
// given records (header_len 50).
func simpleBatch(count uint32) msg {
	return batchHeader(50, count).u32(0)
}

// resultHeader returns a result header with job "j", worker "w"
// (header_len 50).
func resultHeader(count uint32) msg {
	return msg(nil).raw("DFR\x01").u32(50).u32(count).u32(0).u64(1).u64(2).u64(3).str("j").str("w")
}

// entry appends a raw entry.
func (m msg) entry(status, code byte, payload string) msg {
	return m.u8(status, code).u16(0).str(payload)
}
