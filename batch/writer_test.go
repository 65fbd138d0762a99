package batch

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

func TestWriterMatchesAppendBatch(t *testing.T) {
	many := &Batch{Job: "j", Plugin: "p", Seq: 3, Base: 300}
	for i := range 300 {
		r := plugin.Record{Value: []byte{byte(i)}, Timestamp: time.Unix(int64(i), 0)}
		if i%7 == 0 {
			r.Key = []byte("k")
			r.Headers = []plugin.Header{{Key: []byte("a"), Value: []byte{byte(i)}}, {Key: []byte("b")}}
		}
		many.Records = append(many.Records, r)
	}
	for _, tc := range []struct {
		name   string
		b      *Batch
		prefix string
	}{
		{"header only", &Batch{Job: "j", Seq: 1, Base: 2, Plugin: "p", Digest: "sha256:00", Config: plugin.Config{"k": "v"}}, ""},
		{"example", exampleBatch(), ""},
		{"full", fullBatch(), ""},
		{"many records with headers", many, ""},
		{"after bytes already in dst", exampleBatch(), "leading bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := AppendBatch([]byte(tc.prefix), tc.b)
			if err != nil {
				t.Fatal(err)
			}
			var w Writer
			if err := w.Reset([]byte(tc.prefix), tc.b); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			for i := range tc.b.Records {
				if err := w.Add(&tc.b.Records[i]); err != nil {
					t.Fatalf("Add(record %d): %v", i, err)
				}
			}
			if got := w.Bytes(); !bytes.Equal(got, want) {
				t.Errorf("Writer wrote %d bytes %x…, AppendBatch %d bytes %x…", len(got), got[:min(len(got), 48)], len(want), want[:min(len(want), 48)])
			}
			if got, want := w.Records(), len(tc.b.Records); got != want {
				t.Errorf("Records() = %d, want %d", got, want)
			}
			if got, want := w.Len(), BatchSize(tc.b); got != want {
				t.Errorf("Len() = %d, want BatchSize %d", got, want)
			}
			var dec Batch
			if err := DecodeBatch(w.Bytes()[len(tc.prefix):], &dec); err != nil {
				t.Errorf("the message does not decode: %v", err)
			}
		})
	}
}

func TestWriterRefusesWithoutWriting(t *testing.T) {
	l := Limits{MaxRecords: 2, MaxValueSize: 8}
	for _, tc := range []struct {
		name    string
		records []plugin.Record // the last one is refused
		want    error
	}{
		{"value over the limit", []plugin.Record{{Value: []byte("ok")}, {Value: []byte("123456789")}}, ErrLimit},
		{"too many records", []plugin.Record{{}, {}, {Value: []byte("x")}}, ErrLimit},
		{"timestamp out of range", []plugin.Record{{Timestamp: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w Writer
			if err := w.ResetLimits(nil, &Batch{Job: "j"}, l); err != nil {
				t.Fatal(err)
			}
			last := len(tc.records) - 1
			for i := range last {
				if err := w.Add(&tc.records[i]); err != nil {
					t.Fatalf("Add(record %d): %v", i, err)
				}
			}
			before := bytes.Clone(w.Bytes())
			err := w.Add(&tc.records[last])
			if !errors.Is(err, tc.want) {
				t.Errorf("Add: got %v, want %v", err, tc.want)
			}
			if !bytes.Equal(w.Bytes(), before) || w.Records() != last {
				t.Errorf("a refused record changed the message: %d records, %d bytes (was %d)", w.Records(), len(w.Bytes()), len(before))
			}
			var dec Batch
			if err := l.DecodeBatch(w.Bytes(), &dec); err != nil || len(dec.Records) != last {
				t.Errorf("after the refusal: decode %v, %d records, want %d", err, len(dec.Records), last)
			}
		})
	}
}

func TestWriterResetErrors(t *testing.T) {
	var w Writer
	err := w.Reset([]byte("x"), &Batch{Job: strings.Repeat("j", DefaultLimits.MaxStringSize+1)})
	if !errors.Is(err, ErrLimit) {
		t.Errorf("Reset with an oversize job id: got %v, want ErrLimit", err)
	}
	if got := string(w.Bytes()); got != "x" {
		t.Errorf("after a refused Reset, Bytes() = %q, want dst unchanged", got)
	}
	// The Writer is reusable after an error, and across messages.
	for seq := range uint64(3) {
		if err := w.Reset(nil, &Batch{Job: "j", Seq: seq}); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(&plugin.Record{Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		var dec Batch
		if err := DecodeBatch(w.Bytes(), &dec); err != nil || dec.Seq != seq || len(dec.Records) != 1 {
			t.Errorf("message %d: decode %v, seq %d, %d records", seq, err, dec.Seq, len(dec.Records))
		}
	}
}

func BenchmarkWriter(b *testing.B) {
	bt := benchBatch(1000, 0)
	recs := bt.Records
	hdr := *bt
	hdr.Records = nil
	buf := make([]byte, 0, BatchSize(bt))
	var w Writer
	b.ReportAllocs()
	b.SetBytes(int64(cap(buf)))
	for b.Loop() {
		if err := w.Reset(buf[:0], &hdr); err != nil {
			b.Fatal(err)
		}
		for i := range recs {
			if err := w.Add(&recs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	perRecord(b, len(recs))
}
