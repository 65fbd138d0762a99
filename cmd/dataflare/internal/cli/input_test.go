package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/plugin"
)

// readAll drains an input and returns its records' values (as strings), the
// errors of its bad lines by record index, and the Source's error.
func readAll(t *testing.T, in *inputReader) (values []string, bad map[uint64]string, err error) {
	t.Helper()
	bad = map[uint64]string{}
	for rec, e := range in.source() {
		if e != nil {
			err = e
			break
		}
		i := uint64(len(values))
		values = append(values, string(rec.Value))
		if msg, ok := in.bad.take(i); ok {
			bad[i] = msg
		}
	}
	return values, bad, err
}

func TestInputLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty input", "", nil},
		{"one line without newline", "a", []string{"a"}},
		{"trailing newline", "a\nb\n", []string{"a", "b"}},
		{"empty lines are records", "\n\nx\n", []string{"", "", "x"}},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}},
		{"lone cr kept inside", "a\rb\n", []string{"a\rb"}},
		{"binary", "\xff\x00\xfe\n", []string{"\xff\x00\xfe"}},
		{"longer than the read buffer", strings.Repeat("z", 3*inputReadSize+5) + "\nq", []string{strings.Repeat("z", 3*inputReadSize+5), "q"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInputReader(strings.NewReader(tt.in), formatLines)
			got, bad, err := readAll(t, in)
			if err != nil {
				t.Fatalf("source error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			if len(bad) != 0 {
				t.Errorf("bad lines = %v, want none", bad)
			}
			if !in.eof.Load() {
				t.Error("eof not recorded")
			}
			if got, want := in.bytesRead.Load(), int64(len(tt.in)); got != want {
				t.Errorf("bytes read = %d, want %d", got, want)
			}
		})
	}
}

func TestInputLineTooLong(t *testing.T) {
	in := newInputReader(strings.NewReader("a\n"+strings.Repeat("x", 100)+"\nb\n"+strings.Repeat("y", 11)), formatLines)
	in.maxLine = 10
	got, bad, err := readAll(t, in)
	if err != nil {
		t.Fatalf("source error: %v", err)
	}
	if diff := cmp.Diff([]string{"a", "", "b", ""}, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	want := map[uint64]string{
		1: "line 2: longer than the limit of 10 bytes",
		3: "line 4: longer than the limit of 10 bytes",
	}
	if diff := cmp.Diff(want, bad); diff != "" {
		t.Errorf("bad lines (-want +got):\n%s", diff)
	}
	if cap(in.buf) > 4*in.maxLine {
		t.Errorf("line buffer grew to %d bytes for a limit of %d: the long line was kept", cap(in.buf), in.maxLine)
	}
}

// failingReader returns its data, then an error.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestInputReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	in := newInputReader(&failingReader{data: []byte("a\nb\npart"), err: boom}, formatLines)
	got, _, err := readAll(t, in)
	if !errors.Is(err, boom) {
		t.Fatalf("source error = %v, want %v", err, boom)
	}
	if !strings.Contains(err.Error(), "line 3") {
		t.Errorf("source error %q does not name line 3", err)
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("values before the error (-want +got):\n%s", diff)
	}
	if in.eof.Load() {
		t.Error("eof recorded after a read error")
	}
}

func TestInputJSONL(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		line    string
		want    plugin.Record
		wantErr string
	}{
		{"value", `{"value":"hello"}`, plugin.Record{Value: []byte("hello")}, ""},
		{"key and value", `{"key":"k","value":"v"}`, plugin.Record{Key: []byte("k"), Value: []byte("v")}, ""},
		{"base64", `{"key_base64":"AAE=","value_base64":"//4="}`, plugin.Record{Key: []byte{0, 1}, Value: []byte{0xff, 0xfe}}, ""},
		{"empty value", `{"value":""}`, plugin.Record{Value: []byte{}}, ""},
		{"timestamp", `{"value":"v","timestamp":"2026-01-02T03:04:05Z"}`, plugin.Record{Value: []byte("v"), Timestamp: ts}, ""},
		{"unknown fields ignored", `{"index":3,"value":"v"}`, plugin.Record{Value: []byte("v")}, ""},
		{"escapes", `{"value":"a\nb\u00e9"}`, plugin.Record{Value: []byte("a\nbé")}, ""},
		{"no value", `{"key":"k"}`, plugin.Record{}, `no "value" or "value_base64"`},
		{"null value", `{"value":null}`, plugin.Record{}, `no "value" or "value_base64"`},
		{"both", `{"value":"a","value_base64":"YQ=="}`, plugin.Record{}, `both "value" and "value_base64"`},
		{"number", `{"value":1}`, plugin.Record{}, `field "value" must be a string, not a JSON number`},
		{"not an object", `["a"]`, plugin.Record{}, "want a JSON object, not a JSON array"},
		{"syntax", `{"value":`, plugin.Record{}, "malformed JSON"},
		{"bad base64", `{"value_base64":"!!"}`, plugin.Record{}, "value_base64: illegal base64"},
		{"bad timestamp", `{"value":"v","timestamp":"yesterday"}`, plugin.Record{}, "malformed JSON"},
		{"blank", `   `, plugin.Record{}, "empty line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseJSONRecord([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInputJSONLBadLinesKeepTheirPlace(t *testing.T) {
	in := newInputReader(strings.NewReader("{\"value\":\"a\"}\nnope\n\n{\"value\":\"d\"}\n"), formatJSONL)
	got, bad, err := readAll(t, in)
	if err != nil {
		t.Fatalf("source error: %v", err)
	}
	if diff := cmp.Diff([]string{"a", "", "", "d"}, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if len(bad) != 2 || !strings.HasPrefix(bad[1], "line 2: malformed JSON") || !strings.HasPrefix(bad[2], "line 3: empty line") {
		t.Errorf("bad lines = %v, want errors for lines 2 and 3", bad)
	}
}

func TestResultWriter(t *testing.T) {
	tests := []struct {
		name   string
		index  uint64
		result plugin.Result
		errMsg string
		hasErr bool
		want   string
	}{
		{"value", 0, plugin.Value([]byte("HELLO")), "", false, `{"index":0,"value":"HELLO"}`},
		{"escapes", 7, plugin.Value([]byte("a\"b\\c\n\t\x01<&>")), "", false, `{"index":7,"value":"a\"b\\c\n\t\u0001<&>"}`},
		{"not utf-8", 2, plugin.Value([]byte{0xff, 0xfe}), "", false, `{"index":2,"value_base64":"//4="}`},
		{"empty", 3, plugin.Value(nil), "", false, `{"index":3,"value":""}`},
		{"dropped", 4, plugin.Drop(), "", false, `{"index":4,"dropped":true}`},
		{"error", 5, plugin.Fail(errors.New("bad \"thing\"")), "", false, `{"index":5,"error":"bad \"thing\""}`},
		{"input error wins", 6, plugin.Value([]byte("x")), "line 7: malformed", true, `{"index":6,"error":"line 7: malformed"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := newResultWriter(&buf)
			if err := w.write(tt.index, tt.result, tt.errMsg, tt.hasErr); err != nil {
				t.Fatal(err)
			}
			if err := w.flush(); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("got %q, want %q", got, tt.want+"\n")
			}
			if !json.Valid(bytes.TrimSpace(buf.Bytes())) {
				t.Errorf("%q is not valid JSON", buf.String())
			}
		})
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "\u2028\u2029", "é中文🙂", "\x00\x1f\x7f", "bad \xc3 utf8 \xff", "\"\\/"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: not JSON: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("appendJSONString(%q) decodes to %q, want %q", s, back, want)
		}
	}
}

func FuzzParseJSONRecord(f *testing.F) {
	for _, s := range []string{`{"value":"a"}`, `{"key_base64":"AA==","value_base64":"AA=="}`, `{"value":1}`, `[]`, `null`, ``,
		`{"value":"v","timestamp":"2026-01-02T03:04:05Z"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := parseJSONRecord(line)
		if err != nil {
			if rec.Value != nil || rec.Key != nil {
				t.Errorf("error %v with a record %+v", err, rec)
			}
			return
		}
		if rec.Value == nil {
			t.Errorf("no error and no value for %q", line)
		}
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", "\n\"\\", "\xff", "\u2028", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: not JSON: %v", s, out, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); utf8.ValidString(s) && back != want {
			t.Errorf("round trip of %q gave %q", s, back)
		}
	})
}

func BenchmarkResultWriter(b *testing.B) {
	var buf bytes.Buffer
	w := newResultWriter(&buf)
	r := plugin.Value([]byte(`2026-11-26T09:00:00Z LEVEL=INFO USER=ALICE@EXAMPLE.COM ACTION="LOGIN" IP=10.0.0.0`))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := w.write(uint64(i), r, "", false); err != nil {
			b.Fatal(err)
		}
		if buf.Len() > 1<<20 {
			buf.Reset()
		}
	}
}

func BenchmarkInputLines(b *testing.B) {
	line := "2026-11-26T09:00:00Z level=INFO user=alice@example.com action=login ip=10.0.0.0\n"
	data := []byte(strings.Repeat(line, 10000))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		in := newInputReader(bytes.NewReader(data), formatLines)
		n := 0
		for _, err := range in.source() {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 10000 {
			b.Fatalf("%d records, want 10000", n)
		}
	}
}
