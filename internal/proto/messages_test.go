package proto_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

func TestReplyRoundTrip(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	job := &proto.Job{
		ID: "acme.j1", Plugin: "upper", Config: map[string]string{"mode": "x"}, State: proto.JobOpen,
		Created: at, Updated: at, Progress: proto.Progress{Results: 3, Succeeded: 2, Failed: 1}, BatchSize: 500,
	}
	got, err := proto.DecodeReply[proto.Job](proto.EncodeReply(job, nil))
	if err != nil {
		t.Fatalf("DecodeReply: %v", err)
	}
	if diff := cmp.Diff(job, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	sr := &proto.JobSeal{Batches: 64, Records: 6400}
	if got := string(proto.EncodeReply(sr, nil)); got != `{"data":{"batches":64,"records":6400}}` {
		t.Errorf("EncodeReply = %s", got)
	}
}

func TestReplyErrors(t *testing.T) {
	busy := proto.Errorf(plugin.CodeBusy, "fleet full: %d batches pending", 1024)
	tests := []struct {
		name     string
		data     *proto.JobSeal
		err      error
		wantJSON string
		want     *proto.Error
	}{
		{
			name: "proto error", err: busy,
			wantJSON: `{"error":{"code":"busy","message":"fleet full: 1024 batches pending"}}`,
			want:     busy,
		},
		{
			name: "wrapped proto error", err: fmt.Errorf("coordinator: %w", busy),
			wantJSON: `{"error":{"code":"busy","message":"fleet full: 1024 batches pending"}}`,
			want:     busy,
		},
		{
			name: "plain error", err: errors.New("disk full"),
			wantJSON: `{"error":{"code":"unknown","message":"disk full"}}`,
			want:     &proto.Error{Code: plugin.CodeUnknown, Message: "disk full"},
		},
		{
			name: "error wins over data", data: &proto.JobSeal{Batches: 9}, err: proto.Errorf(plugin.CodeJobClosed, "sealed"),
			wantJSON: `{"error":{"code":"job_closed","message":"sealed"}}`,
			want:     &proto.Error{Code: plugin.CodeJobClosed, Message: "sealed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := proto.EncodeReply(tt.data, tt.err)
			if string(b) != tt.wantJSON {
				t.Errorf("EncodeReply = %s, want %s", b, tt.wantJSON)
			}
			got, err := proto.DecodeReply[proto.JobSeal](b)
			if got != nil {
				t.Errorf("DecodeReply returned data %+v with an error reply", got)
			}
			var pe *proto.Error
			if !errors.As(err, &pe) {
				t.Fatalf("DecodeReply error = %v (%T), want a *proto.Error", err, err)
			}
			if diff := cmp.Diff(tt.want, pe); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if errors.Is(err, proto.ErrBadReply) {
				t.Errorf("an error reply matches ErrBadReply")
			}
			if pe.Error() != tt.want.Message {
				t.Errorf("Error() = %q, want %q", pe.Error(), tt.want.Message)
			}
		})
	}
}

func TestDecodeReplyMalformed(t *testing.T) {
	tests := []struct {
		name, in, wantMsg string
	}{
		{"empty", ``, "unexpected end"},
		{"not JSON", `<html>`, "invalid character"},
		{"truncated", `{"data":{"batch_size":1`, "unexpected end"},
		{"array", `[1,2]`, "cannot unmarshal"},
		{"wrong type", `{"data":{"batches":"many"}}`, "cannot unmarshal"},
		{"error of wrong type", `{"error":"boom"}`, "cannot unmarshal"},
		{"no data", `{}`, "no data"},
		{"null", `null`, "no data"},
		{"null data", `{"data":null}`, "no data"},
		{"other fields only", `{"result":{"batches":1}}`, "no data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proto.DecodeReply[proto.JobSeal]([]byte(tt.in))
			if got != nil {
				t.Errorf("DecodeReply(%q) data = %+v, want nil", tt.in, got)
			}
			if !errors.Is(err, proto.ErrBadReply) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("DecodeReply(%q) error = %v, want one matching ErrBadReply with %q", tt.in, err, tt.wantMsg)
			}
		})
	}
	// An empty-but-present data object is data.
	got, err := proto.DecodeReply[proto.JobSeal]([]byte(`{"data":{}}`))
	if err != nil || got == nil || *got != (proto.JobSeal{}) {
		t.Errorf("DecodeReply({\"data\":{}}) = (%+v, %v), want a zero JobSeal", got, err)
	}
}

func TestEncodeReplyNoDataNoError(t *testing.T) {
	b := proto.EncodeReply[proto.Job](nil, nil)
	if string(b) != `{}` {
		t.Errorf("EncodeReply(nil, nil) = %s, want {}", b)
	}
	if _, err := proto.DecodeReply[proto.Job](b); !errors.Is(err, proto.ErrBadReply) {
		t.Errorf("DecodeReply(%s) error = %v, want one matching ErrBadReply", b, err)
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add(proto.EncodeReply(&proto.JobSeal{Batches: 10}, nil))
	f.Add(proto.EncodeReply[proto.JobSeal](nil, proto.Errorf(plugin.CodeBusy, "full")))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"data":null,"error":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := proto.DecodeReply[proto.JobSeal](b)
		if (got == nil) == (err == nil) {
			t.Fatalf("DecodeReply(%q) = (%v, %v): want exactly one of data and error", b, got, err)
		}
		if err != nil {
			return
		}
		again, err := proto.DecodeReply[proto.JobSeal](proto.EncodeReply(got, nil))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
