package proto_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"", false},
		{"a", true},
		{"Z", true},
		{"0", true},
		{"_", true},
		{"-", true},
		{"job-2024_01-ABC", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"a.b", false},  // two subject tokens
		{"a*", false},   // wildcard
		{">", false},    // wildcard
		{"a b", false},  // space
		{"a\tb", false}, // tab
		{"a\x00", false},
		{"é", false}, // not ASCII
		{"a/b", false},
		{"a:b", false},
		{"$JS", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			if got := proto.ValidName(tt.name); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{proto.JobID("acme", "j1"), "acme.j1"},
		{proto.BatchSubject("acme.j1", fleet.Normal, "upper"), "df.batch.acme.normal.upper.j1"},
		{proto.BatchSubject("acme.j1", fleet.High, "upper"), "df.batch.acme.high.upper.j1"},
		{proto.BatchSubject("acme.j1", fleet.Low, "geo-ip"), "df.batch.acme.low.geo-ip.j1"},
		{proto.WorkSubject("acme", fleet.High), "df.work.acme.high"},
		{proto.WorkSubject("acme", fleet.Normal), "df.work.acme.normal"},
		{proto.BatchStream("acme"), "DF_BATCHES_acme"},
		{proto.BatchStream("a-b_9"), "DF_BATCHES_a-b_9"},
		{proto.ResultStream("acme"), "DF_RESULTS_acme"},
		{proto.WorkerConsumer(fleet.High), "df-workers-high"},
		{proto.WorkerConsumer(fleet.Normal), "df-workers-normal"},
		{proto.WorkerConsumer(fleet.Low), "df-workers-low"},
		{proto.JobCreateSubject("acme"), "df.job.create.acme"},
		{proto.ResultSubject("acme.j1"), "df.result.acme.j1"},
		{proto.DeadSubject("acme.j1"), "df.dead.acme.j1"},
		{proto.HeartbeatSubject("w-7"), "df.hb.w-7"},
		{proto.JobSubject("seal", "acme.j1"), "df.job.seal.acme.j1"},
		{proto.ResultMsgID("acme.j1", 0), "acme.j1.0"},
		{proto.ResultMsgID("acme.j1", 18446744073709551615), "acme.j1.18446744073709551615"},
		{proto.BatchMsgID("acme.j1", "k3y", 7), "acme.j1.k3y.7"},
		{proto.PartMsgID("acme.j1.3", 0, 10), "acme.j1.3.s0-10"},
		{proto.PartMsgID("acme.j1.k3y.3", 5, 5), "acme.j1.k3y.3.s5-5"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestBatchSubjectTokens: a batch subject is one literal subject of six
// tokens — df.batch.<owner>.<priority>.<plugin>.<id> — so that a client's
// permission on df.batch.<owner>.> and the per-priority consumers select it
// by token; work hints name the same owner and priority.
func TestBatchSubjectTokens(t *testing.T) {
	for _, owner := range []string{"acme", proto.DefaultOwner, "a-b_9"} {
		for _, p := range fleet.Priorities {
			for _, plugin := range []string{"upper", "geo-ip", "x"} {
				job := proto.JobID(owner, "job-1")
				subject := proto.BatchSubject(job, p, plugin)
				if !server.IsValidLiteralSubject(subject) {
					t.Errorf("%q is not a literal subject", subject)
				}
				want := []string{"df", "batch", owner, p.String(), plugin, "job-1"}
				if diff := cmp.Diff(want, strings.Split(subject, ".")); diff != "" {
					t.Errorf("BatchSubject(%q, %v, %q) tokens (-want +got):\n%s", job, p, plugin, diff)
				}
				if got, err := fleet.ParsePriority(strings.Split(subject, ".")[3]); err != nil || got != p {
					t.Errorf("%s: priority token parses as %v, %v; want %v", subject, got, err, p)
				}
				if !server.SubjectMatchesFilter(subject, proto.SubjectBatchPrefix+owner+".>") {
					t.Errorf("%s is outside its owner's df.batch.%s.>", subject, owner)
				}
				if server.SubjectMatchesFilter(subject, proto.SubjectBatchPrefix+"other.>") {
					t.Errorf("%s is inside another owner's df.batch.other.>", subject)
				}
			}
			hint := proto.WorkSubject(owner, p)
			if !server.IsValidLiteralSubject(hint) || !server.SubjectMatchesFilter(hint, proto.SubjectWorkPrefix+owner+".>") {
				t.Errorf("work hint %q is not a literal subject under df.work.%s.>", hint, owner)
			}
		}
	}
}

func TestLastToken(t *testing.T) {
	tests := []struct {
		subject, want string
	}{
		{"df.hb.w1", "w1"},
		{"df.job.seal.j-9", "j-9"},
		{"single", "single"},
		{"", ""},
		{"trailing.", ""},
		{".lead", "lead"},
		{proto.HeartbeatSubject("worker_1"), "worker_1"},
		{proto.BatchSubject(proto.JobID("acme", "job-0"), fleet.Low, "geo-ip"), "job-0"},
		// A job's subjects end in its id, without its owner.
		{proto.ResultSubject(proto.JobID("acme", "job-1")), "job-1"},
		{proto.BatchSubject(proto.JobID("acme", "job-2"), fleet.High, "upper"), "job-2"},
		{proto.JobSubject("cancel", proto.JobID("acme", "job-3")), "job-3"},
	}
	for _, tt := range tests {
		if got := proto.LastToken(tt.subject); got != tt.want {
			t.Errorf("LastToken(%q) = %q, want %q", tt.subject, got, tt.want)
		}
	}
}

func TestJobID(t *testing.T) {
	tests := []struct {
		id        string
		valid     bool
		wantOwner string
	}{
		{proto.JobID(proto.DefaultOwner, "j1"), true, "anon"},
		{proto.JobID("acme", "2024-05-01_a"), true, "acme"},
		{"acme.j1", true, "acme"},
		{proto.JobID("acme", strings.Repeat("x", 64)), true, "acme"},
		{"j1", false, ""},      // no owner
		{"acme.", false, ""},   // no id
		{".j1", false, ""},     // no owner
		{"a.b.c", false, ""},   // three tokens
		{"acme.j*", false, ""}, // wildcard
		{"ac me.j1", false, ""},
		{proto.JobID("acme", strings.Repeat("x", 65)), false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.id), func(t *testing.T) {
			if got := proto.ValidJobID(tt.id); got != tt.valid {
				t.Errorf("ValidJobID(%q) = %v, want %v", tt.id, got, tt.valid)
			}
			if !tt.valid {
				return
			}
			if got := proto.JobOwner(tt.id); got != tt.wantOwner {
				t.Errorf("JobOwner(%q) = %q, want %q", tt.id, got, tt.wantOwner)
			}
		})
	}
	if !proto.ValidName(proto.DefaultOwner) {
		t.Errorf("DefaultOwner %q is not a valid name", proto.DefaultOwner)
	}
}

// TestMsgIDsUnique checks that the ids of batches and of the parts of split
// batches never collide, within a job and across jobs.
func TestMsgIDsUnique(t *testing.T) {
	jobs := []string{
		proto.JobID("a", "1"), proto.JobID("a", "10"), proto.JobID("a1", "0"), proto.JobID("a", "1-0"),
		proto.JobID("anon", "job_1"), proto.JobID("b", "job_1"),
	}
	seen := map[string]string{}
	add := func(id, what string) {
		t.Helper()
		if prev, ok := seen[id]; ok {
			t.Fatalf("id %q of %s is also the id of %s", id, what, prev)
		}
		seen[id] = what
	}
	for _, job := range jobs {
		for seq := range uint64(30) {
			add(proto.ResultMsgID(job, seq), fmt.Sprintf("batch %s/%d", job, seq))
			// Every range of a batch of 12 records, as repeated
			// halving could cut them.
			for base := range uint64(12) {
				for count := 1; int(base)+count <= 12; count++ {
					add(proto.PartMsgID(proto.ResultMsgID(job, seq), base, count), fmt.Sprintf("part %s/%d[%d:+%d]", job, seq, base, count))
				}
			}
		}
	}
	if got, want := len(seen), len(jobs)*30*(1+12*13/2); got != want {
		t.Errorf("%d ids, want %d", got, want)
	}
	// A part's id starts with its batch's id.
	if id, parent := proto.PartMsgID(proto.ResultMsgID("j", 4), 2, 3), proto.ResultMsgID("j", 4); !strings.HasPrefix(id, parent+".") {
		t.Errorf("PartMsgID = %q, want it to start with %q", id, parent+".")
	}
}

// TestNewToken: tokens are one subject token, 128 bits of randomness, and
// do not repeat.
func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		tok := proto.NewToken()
		if len(tok) != 22 || !proto.ValidName(tok) {
			t.Fatalf("token %q: want 22 characters of [A-Za-z0-9_-]", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
	}
}
