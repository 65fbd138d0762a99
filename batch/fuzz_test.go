package batch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dataflare/dataflare/plugin"
	"github.com/google/go-cmp/cmp"
)

// addGoldens seeds f with the testdata vectors whose names start with prefix,
// and with each of them cut short and with a byte appended.
func addGoldens(f *testing.F, prefix string) {
	files, err := filepath.Glob(filepath.Join("testdata", prefix+"*.bin"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no testdata/%s*.bin vectors (%v)", prefix, err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(append(data[:len(data):len(data)], 0))
	}
}

// checkDecodeErr fails unless err is an *Error wrapping one of the
// package's sentinels.
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrLimit) || errors.Is(err, ErrVersion)) {
		t.Fatalf("decode error %v (%T) is not an *Error wrapping a sentinel", err, err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	addGoldens(f, "batch-")
	f.Add([]byte{})
	f.Add([]byte("DFB\x02"))
	f.Add([]byte(simpleBatch(1).u32(0).u32(0).u32(2).u64(0).pair("a", "b").pair("c", "d")))
	f.Add([]byte(batchHeader(70, 0).u32(2).pair("b", "1").pair("a", "2")))
	f.Add([]byte(batchHeader(60, 1).u32(1).pair("", "").u8(9, 9).record("", "v", 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got Batch
		if err := DecodeBatch(data, &got); err != nil {
			checkDecodeErr(t, err)
			return
		}
		reused := fullBatch()
		if err := DecodeBatch(data, reused); err != nil {
			t.Fatalf("decodes into a fresh Batch but not into a used one: %v", err)
		}
		if diff := cmp.Diff(&got, reused, cmpOpts...); diff != "" {
			t.Fatalf("fresh and used dst decode differently (-fresh +used):\n%s", diff)
		}
		enc, err := AppendBatch(nil, &got)
		if err != nil {
			t.Fatalf("AppendBatch of a decoded batch: %v", err)
		}
		if len(enc) != BatchSize(&got) {
			t.Fatalf("len(AppendBatch) = %d, BatchSize = %d", len(enc), BatchSize(&got))
		}
		// The encoding is canonical: only skipped header bytes can make
		// the input longer.
		if len(enc) == len(data) && !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs from the input:\n got %x\nwant %x", enc, data)
		}
		var again Batch
		if err := DecodeBatch(enc, &again); err != nil {
			t.Fatalf("DecodeBatch(AppendBatch(DecodeBatch(data))): %v", err)
		}
		if diff := cmp.Diff(&got, &again, cmpOpts...); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeResults(f *testing.F) {
	addGoldens(f, "results-")
	f.Add([]byte{})
	f.Add([]byte(resultHeader(2).entry(0, 0, "").entry(3, 0, "")))
	f.Add([]byte(resultHeader(1).entry(2, 200, "future code")))
	f.Add([]byte(resultHeader(1).u8(0, 0).u16(1).u32(0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got ResultSet
		if err := DecodeResults(data, &got); err != nil {
			checkDecodeErr(t, err)
			return
		}
		reused := fullResults()
		if err := DecodeResults(data, reused); err != nil {
			t.Fatalf("decodes into a fresh ResultSet but not into a used one: %v", err)
		}
		if diff := cmp.Diff(&got, reused, cmpOpts...); diff != "" {
			t.Fatalf("fresh and used dst decode differently (-fresh +used):\n%s", diff)
		}
		enc, err := AppendResults(nil, &got)
		if err != nil {
			t.Fatalf("AppendResults of decoded results: %v", err)
		}
		if len(enc) != ResultsSize(&got) {
			t.Fatalf("len(AppendResults) = %d, ResultsSize = %d", len(enc), ResultsSize(&got))
		}
		if len(enc) == len(data) && !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs from the input:\n got %x\nwant %x", enc, data)
		}
		var again ResultSet
		if err := DecodeResults(enc, &again); err != nil {
			t.Fatalf("DecodeResults(AppendResults(DecodeResults(data))): %v", err)
		}
		if diff := cmp.Diff(&got, &again, cmpOpts...); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(exampleEntries(), uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Add(AppendUnchanged(nil), uint8(1))
	f.Add([]byte(msg(nil).entry(1, 0, "").entry(2, 9, "x")), uint8(2))
	f.Add([]byte(msg(nil).entry(0, 0, "abc")), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		in := make([]plugin.Record, n)
		for i := range in {
			in[i].Value = fmt.Appendf(nil, "in-%d", i)
		}
		got := make([]plugin.Result, n)
		if err := DecodeEntries(data, in, got); err != nil {
			checkDecodeErr(t, err)
			return
		}
		var enc []byte
		for _, r := range got {
			enc = AppendEntry(enc, r)
		}
		again := make([]plugin.Result, n)
		if err := DecodeEntries(enc, in, again); err != nil {
			t.Fatalf("DecodeEntries(AppendEntry(DecodeEntries(data))): %v", err)
		}
		if diff := cmp.Diff(got, again, cmpOpts...); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}
