package security

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
)

// TestOwnersSeeTheirOwnJobs: with the roles of deploy/nats/auth.conf, a
// client lists and inspects its owner's jobs and dead letters and no
// other's — another owner's job, dead letter or list is refused by NATS
// and reads as not found, from the Go client and the CLI — and cancels
// none of another owner's jobs; the admin sees every owner's.
func TestOwnersSeeTheirOwnJobs(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bobJob, recs := f.bobsJob(ctx, t)
	readsAllHisResults(t, bobJob, recs)
	alice, aliceConn := f.clientConn(t, aliceRole, client.WithTimeout(time.Second))
	runJob(t, alice, "upper", records("alice", 5), func(i int) string { return "ALICE-" + string(rune('0'+i)) })

	t.Run("alice, her own", func(t *testing.T) {
		jobs, err := alice.Jobs(ctx, false)
		if err != nil || len(jobs) != 1 || jobs[0].Owner != "alice" {
			t.Fatalf("alice's jobs: %+v, %v; want her one job", jobs, err)
		}
		if info, err := alice.JobInfo(ctx, jobs[0].ID); err != nil || info.State != client.JobDone || info.Results != 5 {
			t.Errorf("alice's job: %+v, %v", info, err)
		}
		if dead, err := alice.DeadLetters(ctx, client.DeadFilter{}); err != nil || len(dead) != 0 {
			t.Errorf("alice's dead letters: %+v, %v; want none", dead, err)
		}
		if dead, err := alice.DeadLetters(ctx, client.DeadFilter{Job: jobs[0].ID}); err != nil || len(dead) != 0 {
			t.Errorf("her job's dead letters: %+v, %v; want none", dead, err)
		}
		if _, err := alice.DeadLetter(ctx, "alice.999999"); !errors.Is(err, client.ErrJobNotFound) {
			t.Errorf("a dead letter of hers that is not there: %v, want ErrJobNotFound", err)
		}
		for _, err := range aliceConn.permissionViolations() {
			t.Errorf("alice, on her own jobs: %v", err)
		}
	})

	t.Run("alice, bob's", func(t *testing.T) {
		notFound := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, client.ErrJobNotFound) {
				t.Errorf("%s: %v, want ErrJobNotFound", what, err)
			}
		}
		_, err := alice.JobInfo(ctx, bobJob.ID())
		notFound("bob's job", err)
		notFound("cancel bob's job", alice.CancelJob(ctx, bobJob.ID()))
		_, err = alice.DeadLetters(ctx, client.DeadFilter{Job: bobJob.ID()})
		notFound("bob's job's dead letters", err)
		_, err = alice.DeadLetter(ctx, "bob.1")
		notFound("bob's dead letter", err)
		_, err = alice.Attach(ctx, bobJob.ID())
		notFound("attach bob's job", err)
		if _, err := alice.Jobs(ctx, true); err == nil {
			t.Error("alice listed every owner's jobs")
		}
		if _, err := alice.DeadLetters(ctx, client.DeadFilter{All: true}); err == nil {
			t.Error("alice listed every owner's dead letters")
		}
		if _, err := alice.AllPipelines(ctx); !errors.Is(err, client.ErrJobNotFound) {
			t.Errorf("alice listed every owner's pipelines: %v", err)
		}
		for _, subject := range []string{proto.JobSubject("info", bobJob.ID()), proto.JobSubject("cancel", bobJob.ID()),
			proto.DeadListSubject("bob"), proto.DeadGetSubject("bob.1"), proto.SubjectAdminJobList, proto.SubjectAdminDeadList,
			proto.SubjectAdminPipelineList} {
			if aliceConn.errs.find(`Publish to "`+subject+`"`, 0) == nil {
				t.Errorf("no permission violation for %s", subject)
			}
		}
	})

	t.Run("admin, everyone's", func(t *testing.T) {
		admin, err := client.New(f.admin.Conn, client.WithTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		jobs, err := admin.Jobs(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		owners := map[string]int{}
		for _, j := range jobs {
			owners[j.Owner]++
		}
		if owners["alice"] != 1 || owners["bob"] != 1 {
			t.Errorf("every owner's jobs, by owner: %v; want alice's and bob's", owners)
		}
		info, err := admin.JobInfo(ctx, bobJob.ID())
		if err != nil || info.State != client.JobDone {
			t.Errorf("bob's job, to the admin: %+v, %v; want done (alice's cancel changed nothing)", info, err)
		}
		if _, err := admin.DeadLetters(ctx, client.DeadFilter{All: true}); err != nil {
			t.Errorf("every owner's dead letters: %v", err)
		}
		if _, err := admin.AllPipelines(ctx); err != nil {
			t.Errorf("every owner's pipelines: %v", err)
		}
	})

	t.Run("the CLI, as alice", func(t *testing.T) {
		url := strings.Replace(f.url, "nats://", "nats://"+aliceRole.user+":"+aliceRole.password+"@", 1)
		global := []string{"--nats", url, "--inbox-prefix", aliceRole.inbox}
		start := time.Now()
		code, _, stderr := runCLI(append([]string{"job", "info", bobJob.ID(), "--owner", "alice"}, global...)...)
		if code != exitRuntime || stderr != "dataflare: no job "+bobJob.ID()+" (or not yours)\n" {
			t.Errorf("job info of bob's job: exit %d, stderr %q; want 1 and not found", code, stderr)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the denied request took %v to fail", took)
		}
		code, _, stderr = runCLI(append([]string{"dead", "show", "bob.1", "--owner", "alice"}, global...)...)
		if code != exitRuntime || stderr != "dataflare: no dead letter bob.1 (or not yours)\n" {
			t.Errorf("dead show of bob's: exit %d, stderr %q; want 1 and not found", code, stderr)
		}
		code, _, stderr = runCLI(append([]string{"job", "ls", "--all", "--owner", "alice"}, global...)...)
		if code != exitRuntime || !strings.Contains(stderr, `Publish to "df.admin.job.list"`) || !strings.Contains(stderr, "may not do that") {
			t.Errorf("job ls --all: exit %d, stderr %q; want 1 and the denial", code, stderr)
		}
		code, stdout, stderr := runCLI(append([]string{"job", "ls", "--owner", "alice"}, global...)...)
		if code != 0 || !strings.Contains(stdout, "\nalice.") || strings.Contains(stdout, "bob.") {
			t.Errorf("job ls: exit %d, stdout %q, stderr %q; want alice's job only", code, stdout, stderr)
		}
	})

	for _, err := range f.coord.permissionViolations() {
		t.Errorf("the coordinator: %v", err)
	}
}
