package batch

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
	"github.com/google/go-cmp/cmp"
)

func TestBatchRoundTrip(t *testing.T) {
	many := &Batch{Job: "j", Plugin: "p"}
	for i := range 300 {
		r := plugin.Record{Value: []byte{byte(i)}}
		if i%7 == 0 {
			r.Headers = []plugin.Header{{Key: []byte("a"), Value: []byte{byte(i)}}, {Key: []byte("b")}}
		}
		many.Records = append(many.Records, r)
	}
	tests := []struct {
		name string
		in   *Batch
		want *Batch // nil: same as in
	}{
		{name: "zero", in: &Batch{}},
		{name: "header only", in: &Batch{Job: "j", Seq: 1, Base: 2, Plugin: "p", Digest: "sha256:00", Config: plugin.Config{"k": "v"}}},
		{name: "example", in: exampleBatch()},
		{name: "full", in: fullBatch()},
		{name: "many records with headers", in: many},
		{
			name: "empty slices decode as nil",
			in: &Batch{Config: plugin.Config{}, Records: []plugin.Record{{
				Key: []byte{}, Value: []byte{}, Headers: []plugin.Header{{Key: []byte{}, Value: []byte{}}},
			}}},
			want: &Batch{Records: []plugin.Record{{Headers: []plugin.Header{{}}}}},
		},
		{
			name: "epoch timestamp is unset",
			in:   &Batch{Records: []plugin.Record{{Value: []byte("v"), Timestamp: time.Unix(0, 0)}}},
			want: &Batch{Records: []plugin.Record{{Value: []byte("v")}}},
		},
		{
			name: "extreme timestamps",
			in: &Batch{Records: []plugin.Record{
				{Timestamp: time.Unix(0, math.MinInt64)},
				{Timestamp: time.Unix(0, math.MaxInt64).UTC()},
				{Timestamp: time.Unix(0, -1)},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			enc, err := AppendBatch(nil, tt.in)
			if err != nil {
				t.Fatalf("AppendBatch: %v", err)
			}
			if got, want := len(enc), BatchSize(tt.in); got != want {
				t.Errorf("len(AppendBatch) = %d, BatchSize = %d", got, want)
			}
			var got Batch
			if err := DecodeBatch(enc, &got); err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if diff := cmp.Diff(want, &got, cmpOpts...); diff != "" {
				t.Errorf("DecodeBatch(AppendBatch(b)) mismatch (-want +got):\n%s", diff)
			}
			// Again into a dst that holds a bigger, different batch.
			reused := fullBatch()
			if err := DecodeBatch(mustAppendBatch(t, many), reused); err != nil {
				t.Fatalf("DecodeBatch(many): %v", err)
			}
			if err := DecodeBatch(enc, reused); err != nil {
				t.Fatalf("DecodeBatch into a used dst: %v", err)
			}
			if diff := cmp.Diff(want, reused, cmpOpts...); diff != "" {
				t.Errorf("DecodeBatch into a used dst mismatch (-want +got):\n%s", diff)
			}
			// Re-encoding gives the same bytes.
			again, err := AppendBatch(nil, &got)
			if err != nil {
				t.Fatalf("AppendBatch(decoded): %v", err)
			}
			if !bytes.Equal(again, enc) {
				t.Errorf("AppendBatch(DecodeBatch(m)) != m:\n got %x\nwant %x", again, enc)
			}
		})
	}
}

func mustAppendBatch(t testing.TB, b *Batch) []byte {
	t.Helper()
	enc, err := AppendBatch(nil, b)
	if err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	return enc
}

func TestDecodeEmptyIsNil(t *testing.T) {
	enc := mustAppendBatch(t, &Batch{Config: plugin.Config{}, Records: []plugin.Record{{
		Key: []byte{}, Value: []byte{}, Headers: []plugin.Header{{Key: []byte{}, Value: []byte{}}},
	}}})
	b := fullBatch() // a used dst, with a Config
	if err := DecodeBatch(enc, b); err != nil {
		t.Fatal(err)
	}
	r := b.Records[0]
	if b.Config != nil || r.Key != nil || r.Value != nil || r.Headers[0].Key != nil || r.Headers[0].Value != nil {
		t.Errorf("empty fields did not decode as nil: %#v", b)
	}
	var rs ResultSet
	if err := DecodeResults(mustAppendResults(t, &ResultSet{Results: []plugin.Result{{Value: []byte{}}}}), &rs); err != nil {
		t.Fatal(err)
	}
	if rs.Results[0].Value != nil {
		t.Errorf("empty result value = %#v, want nil", rs.Results[0].Value)
	}
}

func TestAppendBatchKeepsPrefix(t *testing.T) {
	prefix := []byte("prefix")
	enc, err := AppendBatch(append([]byte(nil), prefix...), exampleBatch())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, prefix) {
		t.Fatalf("AppendBatch lost the prefix: %q", enc[:len(prefix)])
	}
	var got Batch
	if err := DecodeBatch(enc[len(prefix):], &got); err != nil {
		t.Fatalf("DecodeBatch after a prefix: %v", err)
	}
	if diff := cmp.Diff(exampleBatch(), &got, cmpOpts...); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestAppendBatchSortsConfig(t *testing.T) {
	c := plugin.Config{}
	for i := range 40 { // more than the stack-allocated key array
		c[string(rune('A'+i))+"key"] = "v"
	}
	first := mustAppendBatch(t, &Batch{Config: c})
	for range 10 {
		if again := mustAppendBatch(t, &Batch{Config: c}); !bytes.Equal(again, first) {
			t.Fatal("two encodings of the same config differ")
		}
	}
	var got Batch
	if err := DecodeBatch(first, &got); err != nil {
		t.Fatalf("DecodeBatch: %v", err)
	}
	if diff := cmp.Diff(c, got.Config); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeBatchAliasesMessage(t *testing.T) {
	enc := mustAppendBatch(t, &Batch{Records: []plugin.Record{
		{Key: []byte("k0"), Value: []byte("v0"), Headers: []plugin.Header{{Key: []byte("h"), Value: []byte("x")}}},
		{Key: []byte("k1"), Value: []byte("v1")},
	}})
	orig := append([]byte(nil), enc...)
	b := fullBatch() // a used dst, with a Config
	if err := DecodeBatch(enc, b); err != nil {
		t.Fatal(err)
	}
	r := b.Records[0]
	for _, s := range [][]byte{r.Key, r.Value, r.Headers[0].Key, r.Headers[0].Value} {
		if i := bytes.Index(enc, s); i < 0 || &enc[i] != &s[0] {
			// bytes.Index finds the first occurrence, which is the field
			// itself: each test string is unique in the message.
			t.Errorf("%q does not alias the message", s)
		}
		if cap(s) != len(s) {
			t.Errorf("cap(%q) = %d, want %d (clipped)", s, cap(s), len(s))
		}
	}
	if cap(r.Headers) != len(r.Headers) {
		t.Errorf("cap(Headers) = %d, want %d (clipped)", cap(r.Headers), len(r.Headers))
	}
	_ = append(r.Value, "XXXXXXXX"...)
	_ = append(r.Headers, plugin.Header{})
	if !bytes.Equal(enc, orig) {
		t.Error("appending to a decoded value changed the message")
	}
}

func TestDecodeBatchReusesDst(t *testing.T) {
	a := fullBatch()
	encA := mustAppendBatch(t, a)
	var dst Batch
	if err := DecodeBatch(encA, &dst); err != nil {
		t.Fatal(err)
	}
	cfg := dst.Config
	allocs := testing.AllocsPerRun(20, func() {
		if err := DecodeBatch(encA, &dst); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decoding the same job again: %v allocs, want 0", allocs)
	}
	if reflect.ValueOf(dst.Config).UnsafePointer() != reflect.ValueOf(cfg).UnsafePointer() {
		t.Error("an equal Config was replaced")
	}

	// A different configuration gets a new map; the old one is untouched.
	b := fullBatch()
	b.Config = plugin.Config{"a": "2"}
	if err := DecodeBatch(mustAppendBatch(t, b), &dst); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a.Config, cfg); diff != "" {
		t.Errorf("a handed-out Config was modified (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(b.Config, dst.Config); diff != "" {
		t.Errorf("new Config mismatch (-want +got):\n%s", diff)
	}
	// A subset of the old configuration is not equal to it.
	b.Config = plugin.Config{"a": "1"}
	if err := DecodeBatch(mustAppendBatch(t, b), &dst); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.Config, dst.Config); diff != "" {
		t.Errorf("subset Config mismatch (-want +got):\n%s", diff)
	}
	// Fewer records: the tail no longer references the old message.
	if err := DecodeBatch(mustAppendBatch(t, &Batch{Records: make([]plugin.Record, 1)}), &dst); err != nil {
		t.Fatal(err)
	}
	for i, r := range dst.Records[1:cap(dst.Records)] {
		if r.Value != nil || r.Key != nil || r.Headers != nil {
			t.Fatalf("record %d past the end still references an old message", i+1)
		}
	}
}

// testLimits are small limits for the error tests.
var testLimits = Limits{
	MaxRecords: 4, MaxKeySize: 8, MaxValueSize: 16, MaxHeaders: 2, MaxHeaderSize: 10,
	MaxStringSize: 12, MaxConfigPairs: 2, MaxErrorSize: 20,
}

// errCase is one malformed or over-limit message and the error it must give.
type errCase struct {
	name  string
	data  []byte
	want  error  // sentinel
	index int    // *Error.Index
	msg   string // substring of the message
}

func checkErr(t *testing.T, tt errCase, err error) {
	t.Helper()
	if !errors.Is(err, tt.want) {
		t.Fatalf("error = %v, want one wrapping %v", err, tt.want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	if e.Index != tt.index {
		t.Errorf("Index = %d, want %d (%v)", e.Index, tt.index, err)
	}
	if !strings.Contains(err.Error(), tt.msg) {
		t.Errorf("error = %q, want it to contain %q", err, tt.msg)
	}
	if got, want := errors.Is(err, plugin.ErrTooLarge), tt.want == ErrLimit; got != want {
		t.Errorf("errors.Is(err, plugin.ErrTooLarge) = %v, want %v", got, want)
	}
	if tt.want == ErrLimit && plugin.CodeOf(err) != plugin.CodeTooLarge {
		t.Errorf("plugin.CodeOf(err) = %v, want %v", plugin.CodeOf(err), plugin.CodeTooLarge)
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	valid := simpleBatch(1).record("k", "v", 0)
	withVersion := func(v byte) []byte { m := append(msg(nil), valid...); m[3] = v; return m }
	tests := []errCase{
		{"empty", nil, ErrMalformed, -1, "header: needs 32 bytes, 0 left"},
		{"short", valid[:31], ErrMalformed, -1, "header: needs 32 bytes, 31 left"},
		{"short newer version", withVersion(2)[:10], ErrVersion, -1, "magic: version 2"},
		{"bad magic", msg(nil).raw("XYZ\x01").raw(string(valid[4:])), ErrMalformed, -1, `magic: 58 59 5a is not "DFB"`},
		{"result message", resultHeader(0), ErrMalformed, -1, `is not "DFB"`},
		{"version 2", withVersion(2), ErrVersion, -1, "version 2"},
		{"version 0", withVersion(0), ErrVersion, -1, "version 0"},
		{"flags", msg(nil).raw("DFB\x01").u32(50).u32(0).u32(4).raw(string(valid[16:50])), ErrMalformed, -1, "flags: unknown bits 0x4"},
		{"header_len small", batchHeader(31, 0).u32(0), ErrMalformed, -1, "header_len: 31 is outside [32, 50]"},
		{"header_len past end", batchHeader(51, 0).u32(0), ErrMalformed, -1, "header_len: 51 is outside [32, 50]"},
		{"record_count limit", simpleBatch(5), ErrLimit, -1, "record_count: 5 > limit 4"},
		{"record_count vs bytes", simpleBatch(2).record("k", "v", 0), ErrMalformed, -1, "record_count: 2 records need at least 40 bytes, 22 left"},
		{"job limit", msg(nil).raw("DFB\x01").u32(61).u32(0).u32(0).u64(0).u64(0).str("0123456789abc").str("").str("").u32(0), ErrLimit, -1, "job: 13 > limit 12"},
		{"job truncated", msg(nil).raw("DFB\x01").u32(38).u32(0).u32(0).u64(0).u64(0).str("abcdefgh"), ErrMalformed, -1, "job: needs 8 bytes, 2 left"},
		{"plugin missing", msg(nil).raw("DFB\x01").u32(38).u32(0).u32(0).u64(0).u64(0).str("ab"), ErrMalformed, -1, "plugin length: needs 4 bytes, 0 left"},
		{"digest limit", msg(nil).raw("DFB\x01").u32(65).u32(0).u32(0).u64(0).u64(0).str("").str("").str("sha256:abcdefghij").u32(0), ErrLimit, -1, "digest: 17 > limit 12"},
		{"config_count missing", batchHeader(46, 0), ErrMalformed, -1, "config_count: needs 4 bytes, 0 left"},
		{"config_count limit", batchHeader(50, 0).u32(3), ErrLimit, -1, "config_count: 3 > limit 2"},
		{"config_count vs bytes", batchHeader(58, 0).u32(2).pair("", ""), ErrMalformed, -1, "config_count: 2 pairs need at least 16 bytes, 8 left"},
		{"config key limit", batchHeader(71, 0).u32(1).pair("0123456789abc", ""), ErrLimit, -1, "config pair 0 key: 13 > limit 12"},
		{"config value limit", batchHeader(71, 0).u32(1).pair("", "0123456789abc"), ErrLimit, -1, "config pair 0 value: 13 > limit 12"},
		{"config key truncated", batchHeader(58, 0).u32(1).pair("abcdefghij", "")[:58], ErrMalformed, -1, "config pair 0 key: needs 10 bytes, 4 left"},
		{"config value length truncated", batchHeader(59, 0).u32(1).pair("abc", "de")[:59], ErrMalformed, -1, "config pair 0 value length: needs 4 bytes, 2 left"},
		{"config value truncated", batchHeader(62, 0).u32(1).pair("abc", "de")[:62], ErrMalformed, -1, "config pair 0 value: needs 2 bytes, 1 left"},
		{"config keys unsorted", batchHeader(70, 0).u32(2).pair("b", "1").pair("a", "2"), ErrMalformed, -1, `config pair 1 key: "a" after "b"`},
		{"config keys duplicate", batchHeader(70, 0).u32(2).pair("a", "1").pair("a", "2"), ErrMalformed, -1, "strictly increasing"},
		{"key limit", simpleBatch(2).record("k", "v", 0).record("012345678", "", 0), ErrLimit, 1, "record 1: key: 9 > limit 8"},
		{"value limit", simpleBatch(1).record("", "0123456789abcdefg", 0), ErrLimit, 0, "record 0: value: 17 > limit 16"},
		{"header_count limit", simpleBatch(1).u32(0).u32(0).u32(3).u64(0), ErrLimit, 0, "record 0: header_count: 3 > limit 2"},
		{"header size limit", simpleBatch(1).u32(0).u32(0).u32(2).u64(0).pair("a", "b").pair("hdr", "12345678"), ErrLimit, 0, "record 0: header 1 key + value: 11 > limit 10"},
		{"header truncated", simpleBatch(1).u32(0).u32(0).u32(1).u64(0).pair("a", "bc")[:79], ErrMalformed, 0, "record 0: header 0 value: needs 2 bytes, 0 left"},
		{"header lengths truncated", simpleBatch(1).u32(0).u32(0).u32(2).u64(0).pair("a", "bc").u32(0).u32(0).u32(0)[:86], ErrMalformed, 0, "record 0: header 1 key and value length: needs 4 bytes, 1 left"},
		{"header key length truncated", simpleBatch(1).u32(0).u32(0).u32(2).u64(0).pair("abcdefgh", "").u8(0, 0), ErrMalformed, 0, "record 0: header 1 key length: needs 4 bytes, 2 left"},
		{"header key limit", simpleBatch(1).u32(0).u32(0).u32(1).u64(0).pair("0123456789a", ""), ErrLimit, 0, "record 0: header 0 key: 11 > limit 10"},
		{"framing truncated", simpleBatch(2).record("", "0123456789", 0).u32(0).u32(0).u32(0).u64(0)[:99], ErrMalformed, 1, "record 1: framing: needs 20 bytes, 19 left"},
		{"value truncated", simpleBatch(1).record("k", "value", 0)[:75], ErrMalformed, 0, "record 0: key, value and headers: needs 6 bytes, 5 left"},
		{"headers need room", simpleBatch(1).u32(0).u32(0).u32(2).u64(0).pair("", ""), ErrMalformed, 0, "record 0: key, value and headers: needs 16 bytes, 8 left"},
		{"trailing byte", valid.u8(0), ErrMalformed, -1, "message: 1 trailing bytes after the last record"},
		{"trailing record", simpleBatch(1).record("k", "v", 0).record("", "", 0), ErrMalformed, -1, "20 trailing bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := fullBatch()
			err := testLimits.DecodeBatch(tt.data, dst)
			checkErr(t, tt, err)
			if len(dst.Records) != 0 {
				t.Errorf("after an error len(dst.Records) = %d, want 0", len(dst.Records))
			}
		})
	}
}

func TestDecodeBatchAcceptsHandBuilt(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want *Batch
	}{
		{
			name: "valid",
			data: simpleBatch(2).record("k", "v", 5).record("", "", 0),
			want: &Batch{Job: "j", Plugin: "p", Seq: 1, Base: 2, Records: []plugin.Record{
				{Key: []byte("k"), Value: []byte("v"), Timestamp: time.Unix(0, 5)}, {},
			}},
		},
		{
			name: "unknown header fields before header_len are skipped",
			data: batchHeader(60, 1).u32(1).pair("", "").u8(9, 9).record("", "v", 0),
			want: &Batch{Job: "j", Plugin: "p", Seq: 1, Base: 2, Config: plugin.Config{"": ""}, Records: []plugin.Record{{Value: []byte("v")}}},
		},
		{
			name: "negative timestamp",
			data: simpleBatch(1).record("", "", -1),
			want: &Batch{Job: "j", Plugin: "p", Seq: 1, Base: 2, Records: []plugin.Record{{Timestamp: time.Unix(0, -1)}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Batch
			if err := testLimits.DecodeBatch(tt.data, &got); err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if diff := cmp.Diff(tt.want, &got, cmpOpts...); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendBatchErrors(t *testing.T) {
	rec := func(mod func(*plugin.Record)) *Batch {
		b := &Batch{Records: []plugin.Record{{Value: []byte("ok")}, {Value: []byte("ok")}}}
		mod(&b.Records[1])
		return b
	}
	long := strings.Repeat("x", 13)
	tests := []struct {
		name  string
		in    *Batch
		want  error
		index int
		msg   string
	}{
		{"job", &Batch{Job: long}, ErrLimit, -1, "job: 13 > limit 12"},
		{"plugin", &Batch{Plugin: long}, ErrLimit, -1, "plugin: 13 > limit 12"},
		{"digest", &Batch{Digest: long}, ErrLimit, -1, "digest: 13 > limit 12"},
		{"config pairs", &Batch{Config: plugin.Config{"a": "", "b": "", "c": ""}}, ErrLimit, -1, "config_count: 3 > limit 2"},
		{"config key", &Batch{Config: plugin.Config{long: ""}}, ErrLimit, -1, "config key: 13 > limit 12"},
		{"config value", &Batch{Config: plugin.Config{"k": long}}, ErrLimit, -1, "config value: 13 > limit 12"},
		{"records", &Batch{Records: make([]plugin.Record, 5)}, ErrLimit, -1, "record_count: 5 > limit 4"},
		{"key", rec(func(r *plugin.Record) { r.Key = []byte(long[:9]) }), ErrLimit, 1, "record 1: key: 9 > limit 8"},
		{"value", rec(func(r *plugin.Record) { r.Value = make([]byte, 17) }), ErrLimit, 1, "record 1: value: 17 > limit 16"},
		{"headers", rec(func(r *plugin.Record) { r.Headers = make([]plugin.Header, 3) }), ErrLimit, 1, "record 1: header_count: 3 > limit 2"},
		{"header size", rec(func(r *plugin.Record) {
			r.Headers = []plugin.Header{{}, {Key: []byte("12345"), Value: []byte("123456")}}
		}), ErrLimit, 1, "record 1: header 1 key + value: 11 > limit 10"},
		{"timestamp late", rec(func(r *plugin.Record) { r.Timestamp = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }), ErrMalformed, 1, "record 1: timestamp: 2300-01-01"},
		{"timestamp early", rec(func(r *plugin.Record) { r.Timestamp = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }), ErrMalformed, 1, "outside the range of int64 nanoseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := testLimits.AppendBatch(dst, tt.in)
			checkErr(t, errCase{want: tt.want, index: tt.index, msg: tt.msg}, err)
			if string(got) != "keep" {
				t.Errorf("AppendBatch returned %q after an error, want the unchanged dst", got)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	if got := (Limits{}).orDefault(); got != DefaultLimits {
		t.Errorf("Limits{}.orDefault() = %+v, want DefaultLimits %+v", got, DefaultLimits)
	}
	got := Limits{MaxKeySize: 1, MaxValueSize: -1, MaxRecords: math.MaxInt}.orDefault()
	want := DefaultLimits
	want.MaxKeySize, want.MaxRecords = 1, math.MaxInt32
	if got != want {
		t.Errorf("orDefault() = %+v, want %+v", got, want)
	}
	big := &Batch{Records: []plugin.Record{{Value: make([]byte, 1<<20)}}}
	enc := mustAppendBatch(t, big)
	if err := (Limits{MaxKeySize: 4}).DecodeBatch(enc, &Batch{}); err != nil {
		t.Errorf("a partial Limits refused a value within the default: %v", err)
	}
	if err := (Limits{MaxValueSize: 1 << 10}).DecodeBatch(enc, &Batch{}); !errors.Is(err, ErrLimit) {
		t.Errorf("MaxValueSize 1 KiB accepted a 1 MiB value: err = %v", err)
	}
}

func TestCheckRecord(t *testing.T) {
	tests := []struct {
		name string
		r    plugin.Record
		want error
	}{
		{"ok", plugin.Record{Key: make([]byte, 8), Value: make([]byte, 16)}, nil},
		{"key", plugin.Record{Key: make([]byte, 9)}, ErrLimit},
		{"timestamp", plugin.Record{Timestamp: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := testLimits.CheckRecord(&tt.r)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckRecord = %v, want %v", err, tt.want)
			}
			var e *Error
			if err != nil && (!errors.As(err, &e) || e.Index != -1) {
				t.Errorf("CheckRecord error %v: want an *Error with Index -1", err)
			}
		})
	}
	if err := testLimits.CheckResult(plugin.Value(make([]byte, 17))); !errors.Is(err, ErrLimit) {
		t.Errorf("CheckResult(17-byte value) = %v, want ErrLimit", err)
	}
	if err := testLimits.CheckResult(plugin.Fail(errors.New(strings.Repeat("x", 100)))); err != nil {
		t.Errorf("CheckResult(long error) = %v, want nil (messages are shortened)", err)
	}
}

func TestRecordSize(t *testing.T) {
	r := plugin.Record{Key: []byte("ab"), Value: []byte("cde"), Headers: []plugin.Header{{Key: []byte("f"), Value: []byte("gh")}, {}}}
	if got, want := RecordSize(&r), RecordOverhead+5+HeaderOverhead+3+HeaderOverhead; got != want {
		t.Errorf("RecordSize = %d, want %d", got, want)
	}
	empty := &Batch{Job: "j", Plugin: "p", Config: plugin.Config{"a": "bc"}}
	with := *empty
	with.Records = []plugin.Record{r, r}
	if got, want := BatchSize(&with), BatchSize(empty)+2*RecordSize(&r); got != want {
		t.Errorf("BatchSize = %d, want header %d + 2 records = %d", got, BatchSize(empty), want)
	}
	if got, want := BatchSize(&with), len(mustAppendBatch(t, &with)); got != want {
		t.Errorf("BatchSize = %d, encoded length %d", got, want)
	}
}
