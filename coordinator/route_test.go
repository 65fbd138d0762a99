package coordinator

import (
	"context"
	"errors"
	"testing"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// TestParseJobSubject checks how a job request's subject names its verb
// (the span's name even when the subject is bad) and its target.
func TestParseJobSubject(t *testing.T) {
	tests := []struct {
		subject      string
		verb, target string
		bad          bool
	}{
		{subject: "df.job.create.alice", verb: "create", target: "alice"},
		{subject: "df.job.create.alice.x", verb: "create", target: "x"},
		{subject: "df.job.seal.alice.j1", verb: "seal", target: "alice.j1"},
		{subject: "df.job.frob.alice.j1", verb: "frob", target: "alice.j1"},
		{subject: "df.job.get.alice", verb: "get", bad: true},
		{subject: "df.job.get.alice.j$", verb: "get", bad: true},
		{subject: "df.job.create", verb: "create", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			verb, target, err := parseJobSubject(tt.subject)
			if verb != tt.verb || target != tt.target {
				t.Errorf("got %q, %q, want %q, %q", verb, target, tt.verb, tt.target)
			}
			if tt.bad && codeOf(err) != plugin.CodeInvalidInput {
				t.Errorf("err = %v, want invalid input", err)
			}
			if !tt.bad && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
		})
	}
}

// TestUnknownVerbIsInvalidInput checks that a verb without a method is
// refused as invalid input.
func TestUnknownVerbIsInvalidInput(t *testing.T) {
	var c Coordinator
	if _, err := c.answerJob(context.Background(), "frob", "alice.j1", nil); codeOf(err) != plugin.CodeInvalidInput {
		t.Errorf("err = %v, want invalid input", err)
	}
}

func codeOf(err error) plugin.Code {
	var pe *proto.Error
	if !errors.As(err, &pe) {
		return plugin.CodeUnknown
	}
	return pe.Code
}
