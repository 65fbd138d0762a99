package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dataflare/dataflare/plugin"
	"github.com/google/go-cmp/cmp"
)

func mustAppendResults(t testing.TB, r *ResultSet) []byte {
	t.Helper()
	enc, err := AppendResults(nil, r)
	if err != nil {
		t.Fatalf("AppendResults: %v", err)
	}
	return enc
}

func perr(c plugin.Code, msg string) error { return &plugin.Error{Code: c, Message: msg} }

func TestResultsRoundTrip(t *testing.T) {
	var typedNil *plugin.Error
	tests := []struct {
		name string
		in   *ResultSet
		want *ResultSet // nil: same as in
	}{
		{name: "zero", in: &ResultSet{}},
		{name: "example", in: exampleResults()},
		{name: "full", in: fullResults()},
		{
			name: "errors are classified",
			in: &ResultSet{Job: "j", Results: []plugin.Result{
				plugin.Fail(plugin.Errorf(plugin.CodeInvalidInput, "bad %d: %w", 1, io(t))),
				plugin.Fail(fmt.Errorf("wrapped: %w", plugin.ErrTimeout)),
				plugin.Fail(context.DeadlineExceeded),
				plugin.Fail(errors.New("plain")),
				plugin.Fail(&plugin.Error{Code: plugin.CodeTrap}),
				plugin.Fail(plugin.ContextError(context.Canceled)),
				plugin.Fail(typedNil),
			}},
			want: &ResultSet{Job: "j", Results: []plugin.Result{
				plugin.Fail(perr(plugin.CodeInvalidInput, "bad 1: EOF")),
				plugin.Fail(perr(plugin.CodeTimeout, "wrapped: plugin: deadline exceeded")),
				plugin.Fail(perr(plugin.CodeTimeout, "context deadline exceeded")),
				plugin.Fail(perr(plugin.CodeUnknown, "plain")),
				plugin.Fail(perr(plugin.CodeTrap, "")),
				plugin.Fail(perr(plugin.CodeUnavailable, "plugin: context canceled")),
				plugin.Fail(perr(plugin.CodeUnknown, "")),
			}},
		},
		{
			name: "error wins over dropped and value; dropped discards the value",
			in: &ResultSet{Results: []plugin.Result{
				{Value: []byte("x"), Dropped: true, Err: perr(plugin.CodePanic, "p")},
				{Value: []byte("x"), Dropped: true},
			}},
			want: &ResultSet{Results: []plugin.Result{plugin.Fail(perr(plugin.CodePanic, "p")), plugin.Drop()}},
		},
		{name: "max duration", in: &ResultSet{Duration: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			enc := mustAppendResults(t, tt.in)
			if got, want := len(enc), ResultsSize(tt.in); got != want {
				t.Errorf("len(AppendResults) = %d, ResultsSize = %d", got, want)
			}
			var got ResultSet
			if err := DecodeResults(enc, &got); err != nil {
				t.Fatalf("DecodeResults: %v", err)
			}
			if diff := cmp.Diff(want, &got, cmpOpts...); diff != "" {
				t.Errorf("DecodeResults(AppendResults(r)) mismatch (-want +got):\n%s", diff)
			}
			reused := fullResults()
			if err := DecodeResults(enc, reused); err != nil {
				t.Fatalf("DecodeResults into a used dst: %v", err)
			}
			if diff := cmp.Diff(want, reused, cmpOpts...); diff != "" {
				t.Errorf("DecodeResults into a used dst mismatch (-want +got):\n%s", diff)
			}
			if again := mustAppendResults(t, &got); !bytes.Equal(again, enc) {
				t.Errorf("AppendResults(DecodeResults(m)) != m:\n got %x\nwant %x", again, enc)
			}
		})
	}
}

// io returns an error that is not a plugin error, to be wrapped.
func io(t *testing.T) error { t.Helper(); return errors.New("EOF") }

func TestDecodedErrorsMatchSentinels(t *testing.T) {
	enc := mustAppendResults(t, &ResultSet{Results: []plugin.Result{
		plugin.Fail(fmt.Errorf("slow: %w", context.DeadlineExceeded)),
		plugin.Fail(fmt.Errorf("big: %w", ErrLimit)),
	}})
	var rs ResultSet
	if err := DecodeResults(enc, &rs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		i      int
		target error
	}{{0, plugin.ErrTimeout}, {0, context.DeadlineExceeded}, {1, plugin.ErrTooLarge}} {
		if err := rs.Results[c.i].Err; !errors.Is(err, c.target) {
			t.Errorf("result %d error %v does not match %v", c.i, err, c.target)
		}
	}
	if got, want := rs.Results[1].Err.Error(), "big: batch: limit exceeded"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestErrorMessageShortened(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{"short", "abc", "abc"},
		{"exact", strings.Repeat("a", 20), strings.Repeat("a", 20)},
		{"ascii", strings.Repeat("a", 25), strings.Repeat("a", 20)},
		{"cut inside a rune", strings.Repeat("a", 19) + "€€", strings.Repeat("a", 19)},
		{"cut after a rune", strings.Repeat("a", 17) + "€€", strings.Repeat("a", 17) + "€"},
		{"not utf-8", strings.Repeat("\x80", 25), strings.Repeat("\x80", 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := testLimits.AppendResults(nil, &ResultSet{Results: []plugin.Result{plugin.Fail(errors.New(tt.msg))}})
			if err != nil {
				t.Fatal(err)
			}
			var rs ResultSet
			if err := testLimits.DecodeResults(enc, &rs); err != nil {
				t.Fatalf("DecodeResults: %v", err)
			}
			if got := rs.Results[0].Err.Error(); got != tt.want {
				t.Errorf("message = %q, want %q", got, tt.want)
			}
			if utf8.ValidString(tt.msg) && !utf8.ValidString(rs.Results[0].Err.Error()) {
				t.Error("shortening broke UTF-8")
			}
		})
	}
	long := plugin.Fail(errors.New(strings.Repeat("x", DefaultLimits.MaxErrorSize+10)))
	if got, want := len(AppendEntry(nil, long)), EntryOverhead+DefaultLimits.MaxErrorSize; got != want {
		t.Errorf("len(AppendEntry(long error)) = %d, want %d", got, want)
	}
	if got, want := EntrySize(long), EntryOverhead+DefaultLimits.MaxErrorSize; got != want {
		t.Errorf("EntrySize(long error) = %d, want %d", got, want)
	}
}

func TestAppendResultsErrors(t *testing.T) {
	long := strings.Repeat("x", 13)
	tests := []struct {
		name  string
		in    *ResultSet
		want  error
		index int
		msg   string
	}{
		{"job", &ResultSet{Job: long}, ErrLimit, -1, "job: 13 > limit 12"},
		{"worker", &ResultSet{Worker: long}, ErrLimit, -1, "worker: 13 > limit 12"},
		{"negative duration", &ResultSet{Duration: -time.Second}, ErrMalformed, -1, "duration_ns: -1s is negative"},
		{"results", &ResultSet{Results: make([]plugin.Result, 5)}, ErrLimit, -1, "result_count: 5 > limit 4"},
		{"value", &ResultSet{Results: []plugin.Result{{}, plugin.Value(make([]byte, 17))}}, ErrLimit, 1, "record 1: value: 17 > limit 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testLimits.AppendResults([]byte("keep"), tt.in)
			checkErr(t, errCase{want: tt.want, index: tt.index, msg: tt.msg}, err)
			if string(got) != "keep" {
				t.Errorf("AppendResults returned %q after an error, want the unchanged dst", got)
			}
		})
	}
	// Oversize values that are not sent do not count.
	for _, r := range []plugin.Result{{Value: make([]byte, 17), Dropped: true}, {Value: make([]byte, 17), Err: ErrMalformed}} {
		if _, err := testLimits.AppendResults(nil, &ResultSet{Results: []plugin.Result{r}}); err != nil {
			t.Errorf("AppendResults(%+v) = %v, want nil", r, err)
		}
	}
}

func TestDecodeResultsErrors(t *testing.T) {
	valid := resultHeader(1).entry(0, 0, "v")
	tests := []errCase{
		{"empty", nil, ErrMalformed, -1, "header: needs 40 bytes, 0 left"},
		{"batch magic", simpleBatch(0), ErrMalformed, -1, `is not "DFR"`},
		{"version", msg(nil).raw("DFR\x07").raw(string(valid[4:])), ErrVersion, -1, "magic: version 7"},
		{"flags", msg(nil).raw("DFR\x01").u32(50).u32(1).u32(2).raw(string(valid[16:])), ErrMalformed, -1, "flags: unknown bits 0x2"},
		{"compressed", msg(nil).raw("DFR\x01").u32(50).u32(1).u32(FlagS2).raw(string(valid[16:])), ErrMalformed, -1, "flags: the body is compressed (S2)"},
		{"header_len", msg(nil).raw("DFR\x01").u32(39).raw(string(valid[8:])), ErrMalformed, -1, "header_len: 39 is outside [40, 59]"},
		{"result_count limit", resultHeader(5), ErrLimit, -1, "result_count: 5 > limit 4"},
		{"result_count vs bytes", resultHeader(2).entry(0, 0, "v"), ErrMalformed, -1, "result_count: 2 results need at least 16 bytes, 9 left"},
		{"duration", msg(nil).raw("DFR\x01").u32(48).u32(0).u32(0).u64(0).u64(0).u64(1 << 63).str("").str(""), ErrMalformed, -1, "duration_ns: 9223372036854775808 is over the largest int64"},
		{"worker limit", msg(nil).raw("DFR\x01").u32(61).u32(0).u32(0).u64(0).u64(0).u64(0).str("").str("0123456789abc"), ErrLimit, -1, "worker: 13 > limit 12"},
		{"worker truncated", msg(nil).raw("DFR\x01").u32(46).u32(0).u32(0).u64(0).u64(0).u64(0).str("").str("ab"), ErrMalformed, -1, "worker length: needs 4 bytes, 2 left"},
		{"status unchanged", resultHeader(2).entry(0, 0, "").entry(3, 0, ""), ErrMalformed, 1, "record 1: status: 3 (unchanged) is only allowed in a plugin's output"},
		{"status unknown", resultHeader(1).entry(4, 0, ""), ErrMalformed, 0, "record 0: status: unknown status 4"},
		{"reserved", resultHeader(1).u8(0, 0).u16(1).u32(0), ErrMalformed, 0, "record 0: reserved: 0x1 is not 0"},
		{"code on a value", resultHeader(1).entry(0, 2, "v"), ErrMalformed, 0, "record 0: code: 2 with status 0"},
		{"code on dropped", resultHeader(1).entry(1, 1, ""), ErrMalformed, 0, "code: 1 with status 1"},
		{"bytes on dropped", resultHeader(1).entry(1, 0, "x"), ErrMalformed, 0, "record 0: len: 1 with status 1"},
		{"value limit", resultHeader(1).entry(0, 0, "0123456789abcdefg"), ErrLimit, 0, "record 0: value: 17 > limit 16"},
		{"error limit", resultHeader(1).entry(2, 1, strings.Repeat("e", 21)), ErrLimit, 0, "record 0: error message: 21 > limit 20"},
		{"value truncated", resultHeader(2).entry(1, 0, "").entry(0, 0, "abc")[:68], ErrMalformed, 1, "record 1: value: needs 3 bytes, 2 left"},
		{"error truncated", resultHeader(1).entry(2, 1, "abc")[:59], ErrMalformed, 0, "record 0: error message: needs 3 bytes, 1 left"},
		{"framing truncated", resultHeader(2).entry(0, 0, "abcdefghi").entry(1, 0, "")[:73], ErrMalformed, 1, "record 1: framing: needs 8 bytes, 6 left"},
		{"trailing", valid.u8(0), ErrMalformed, -1, "message: 1 trailing bytes after the last entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := fullResults()
			err := testLimits.DecodeResults(tt.data, dst)
			checkErr(t, tt, err)
			if len(dst.Results) != 0 {
				t.Errorf("after an error len(dst.Results) = %d, want 0", len(dst.Results))
			}
		})
	}
}

func TestDecodeResultsReusesDst(t *testing.T) {
	rs := &ResultSet{Job: "job", Worker: "w", Results: make([]plugin.Result, 100)}
	for i := range rs.Results {
		rs.Results[i] = plugin.Value([]byte(fmt.Sprint(i)))
	}
	enc := mustAppendResults(t, rs)
	var dst ResultSet
	if err := DecodeResults(enc, &dst); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := DecodeResults(enc, &dst); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("DecodeResults into a warm dst: %v allocs, want 0", allocs)
	}
	buf := make([]byte, 0, len(enc))
	allocs = testing.AllocsPerRun(20, func() {
		if _, err := AppendResults(buf, rs); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendResults into a big enough buffer: %v allocs, want 0", allocs)
	}
	if err := DecodeResults(mustAppendResults(t, &ResultSet{Results: make([]plugin.Result, 1)}), &dst); err != nil {
		t.Fatal(err)
	}
	for i, r := range dst.Results[1:cap(dst.Results)] {
		if r.Value != nil {
			t.Fatalf("result %d past the end still references an old message", i+1)
		}
	}
}

func TestDecodeEntries(t *testing.T) {
	in := []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}
	want := []plugin.Result{
		plugin.Value([]byte("X")),
		plugin.Value([]byte("b")),
		plugin.Fail(perr(plugin.CodeInvalidInput, "no")),
	}
	got := make([]plugin.Result, len(in))
	if err := DecodeEntries(exampleEntries(), in, got); err != nil {
		t.Fatalf("DecodeEntries: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("DecodeEntries mismatch (-want +got):\n%s", diff)
	}
	if &got[1].Value[0] != &in[1].Value[0] {
		t.Error("an unchanged entry does not alias the input value")
	}
	if err := DecodeEntries(nil, nil, nil); err != nil {
		t.Errorf("DecodeEntries of no records = %v, want nil", err)
	}

	two := in[:2]
	tests := []errCase{
		{"too short for the count", msg(nil).entry(1, 0, ""), ErrMalformed, -1, "entries: 2 entries need at least 16 bytes, 8 given"},
		{"truncated", msg(nil).entry(0, 0, "abcdefgh").entry(1, 0, "")[:23], ErrMalformed, 1, "record 1: framing: needs 8 bytes, 7 left"},
		{"trailing", msg(nil).entry(1, 0, "").entry(3, 0, "").u8(0), ErrMalformed, -1, "1 trailing bytes after the last entry"},
		{"unchanged with bytes", msg(nil).entry(1, 0, "").entry(3, 0, "x"), ErrMalformed, 1, "record 1: len: 1 with status 3"},
		{"unknown status", msg(nil).entry(1, 0, "").entry(9, 0, ""), ErrMalformed, 1, "record 1: status: unknown status 9"},
		{"value limit", msg(nil).entry(0, 0, strings.Repeat("v", 17)).entry(1, 0, ""), ErrLimit, 0, "record 0: value: 17 > limit 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt, testLimits.DecodeEntries(tt.data, two, make([]plugin.Result, 2)))
		})
	}
	t.Run("length mismatch", func(t *testing.T) {
		err := DecodeEntries(exampleEntries(), in, make([]plugin.Result, 2))
		if err == nil || !strings.Contains(err.Error(), "2 results for 3 records") {
			t.Errorf("DecodeEntries with len(dst) != len(in) = %v, want an error naming both", err)
		}
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrLimit) {
			t.Errorf("a caller's mistake was reported as a message error: %v", err)
		}
	})
}

func TestEntrySize(t *testing.T) {
	for _, r := range []plugin.Result{{}, plugin.Value([]byte("abc")), plugin.Drop(), plugin.Fail(errors.New("boom"))} {
		if got, want := EntrySize(r), len(AppendEntry(nil, r)); got != want {
			t.Errorf("EntrySize(%+v) = %d, want %d", r, got, want)
		}
	}
	if got := len(AppendUnchanged(nil)); got != EntryOverhead {
		t.Errorf("len(AppendUnchanged) = %d, want %d", got, EntryOverhead)
	}
}
