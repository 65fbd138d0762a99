package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/worker"
)

// opsBench is a fleet whose worker has picky, a client of owner anon, and
// the CLI's --nats flag for it.
type opsBench struct {
	c    *client.Client
	nats string
}

func newOpsBench(t *testing.T) *opsBench {
	t.Helper()
	plugins := builtin.All()
	plugins["picky"] = localtest.Picky{}
	f := localtest.Start(t, local.Config{Workers: 1, Worker: worker.Config{Plugins: plugins}})
	return &opsBench{c: f.Client(), nats: "--nats=" + f.URL}
}

func (b *opsBench) run(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, "", append([]string{b.nats}, args...)...)
}

// ok runs the CLI and fails the test unless it exits 0 with nothing on
// standard error.
func (b *opsBench) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := b.run(t, args...)
	if r.code != ExitOK || r.stderr != "" {
		t.Fatalf("%v: exit %d, stderr %q, stdout %q; want 0 and no error", args, r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// submit starts a job of plugin name over the values and, when read, reads it
// to the end.
func (b *opsBench) submit(t *testing.T, read bool, name string, vals ...string) *client.Job {
	t.Helper()
	recs := make([]plugin.Record, len(vals))
	for i, v := range vals {
		recs[i] = plugin.Record{Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	j, err := b.c.Submit(ctx, name, client.Records(recs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	if read {
		if _, err := j.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

// jobOut is 'job info --json' as a script reads it.
type jobOut struct {
	ID             string            `json:"id"`
	Owner          string            `json:"owner"`
	Plugin         string            `json:"plugin"`
	Version        string            `json:"version"`
	Digest         string            `json:"digest"`
	Config         map[string]string `json:"config"`
	Steps          []stepJSON        `json:"steps"`
	State          string            `json:"state"`
	Abandoned      bool              `json:"abandoned"`
	Priority       string            `json:"priority"`
	Created        time.Time         `json:"created"`
	Updated        time.Time         `json:"updated"`
	AgeSeconds     float64           `json:"age_s"`
	Records        uint64            `json:"records"`
	Batches        uint64            `json:"batches"`
	Counted        bool              `json:"counted"`
	Results        uint64            `json:"results"`
	Succeeded      uint64            `json:"succeeded"`
	Failed         uint64            `json:"failed"`
	Dropped        uint64            `json:"dropped"`
	QueuedBatches  uint64            `json:"queued_batches"`
	ResultMessages uint64            `json:"result_messages"`
	DeadLetters    uint64            `json:"dead_letters"`
	TraceID        string            `json:"trace_id"`
}

func (b *opsBench) info(t *testing.T, id string) jobOut {
	t.Helper()
	var j jobOut
	decodeStrict(t, b.ok(t, "job", "info", id, "--json"), &j)
	return j
}

// A job's life by the CLI: ls, info, attach from another process, cancel.
func TestJobCommands(t *testing.T) {
	b := newOpsBench(t)
	done := b.submit(t, true, "upper", "a", "b")
	waiting := b.submit(t, false, "picky", "x", "bad-1", "y")
	poll.Wait(t, 10*time.Second, "the job's results stored", func() bool {
		j := b.info(t, waiting.ID())
		return j.State == "sealed" && j.Results == 3
	})

	t.Run("ls", func(t *testing.T) {
		out := b.ok(t, "job", "ls")
		want := regexp.MustCompile(`^ID +OWNER +PLUGIN +STATE +RECORDS +RESULTS +ERRORS +AGE\n` +
			regexp.QuoteMeta(waiting.ID()) + ` +anon +picky +sealed +3 +- +- +[\d.]+m?s\n` +
			regexp.QuoteMeta(done.ID()) + ` +anon +upper +done +2 +2 +0 +[\d.]+m?s\n$`)
		if !want.MatchString(out) {
			t.Errorf("ls printed:\n%s\nwant the sealed job, then the done one", out)
		}
		var list []jobOut
		decodeStrict(t, b.ok(t, "job", "ls", "--json"), &list)
		if len(list) != 2 || list[0].ID != waiting.ID() || list[1].Succeeded != 2 || !list[1].Counted {
			t.Errorf("ls --json = %+v", list)
		}
		if out := b.ok(t, "job", "ls", "--owner", "acme"); out != "no jobs of owner acme\n" {
			t.Errorf("ls of an owner without jobs printed %q", out)
		}
	})

	t.Run("info", func(t *testing.T) {
		j := b.info(t, waiting.ID())
		if j.Owner != "anon" || j.Plugin != "picky" || j.Records != 3 || j.Batches != 1 || !j.Counted || j.Succeeded != 2 ||
			j.Failed != 1 || j.DeadLetters != 1 || j.ResultMessages != 1 || j.QueuedBatches != 0 || j.Priority != "normal" || j.AgeSeconds <= 0 {
			t.Errorf("info --json = %+v", j)
		}
		out := b.ok(t, "job", "info", waiting.ID())
		for _, want := range []string{"id:", waiting.ID(), "plugin:", "picky", "state:", "sealed", "records:", "3, in 1 batches",
			"results:", "3: 2 succeeded, 1 failed, 0 dropped", "batches queued:", "dead letters:", "1", "created:", "ago"} {
			if !strings.Contains(out, want) {
				t.Errorf("info lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("attach", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "out.jsonl")
		r := b.run(t, "job", "attach", waiting.ID(), "--out", file)
		if r.code != ExitRecordErrors || r.stderr != "dataflare: 1 of 3 records got errors\n" {
			t.Errorf("attach: exit %d, stderr %q; want 3 and one record with an error", r.code, r.stderr)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := parseOutput(t, string(data))
		if len(lines) != 3 || *lines[0].Value != "X" || lines[1].Error == nil || *lines[2].Value != "Y" {
			t.Errorf("attach wrote %s", data)
		}
		// Read to the end, the job is done: its results are gone.
		if j := b.info(t, waiting.ID()); j.State != "done" || j.Results != 3 || j.Failed != 1 {
			t.Errorf("after attach: %+v, want done with the reader's counts", j)
		}
		r = b.run(t, "job", "attach", waiting.ID())
		if r.code != ExitRuntime || !strings.Contains(r.stderr, "is done: its results are gone") {
			t.Errorf("attach of a done job: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		recs := []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}}
		slow, err := b.c.Submit(context.Background(), "delay", client.Records(recs), client.WithConfig(plugin.Config{"ms": "60000"}))
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		if out := b.ok(t, "job", "cancel", slow.ID()); out != "cancelled job "+slow.ID()+"\n" {
			t.Errorf("cancel printed %q", out)
		}
		if j := b.info(t, slow.ID()); j.State != "cancelled" {
			t.Errorf("after cancel: state %s", j.State)
		}
		r := b.run(t, "job", "cancel", done.ID())
		if r.code != ExitRuntime || r.stderr != "dataflare: job "+done.ID()+": job "+done.ID()+" is done\n" {
			t.Errorf("cancel of a done job: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestDeadCommands(t *testing.T) {
	b := newOpsBench(t)
	j := b.submit(t, true, "picky", "a", "bad-1", "b", "bad-2")
	other := b.submit(t, true, "picky", "bad-3")

	var list []deadJSON
	decodeStrict(t, b.ok(t, "dead", "ls", "--json"), &list)
	if len(list) != 3 || list[0].Job != other.ID() || list[1].Value != "bad-2" || list[2].Index != 1 || list[2].Plugin != "picky" {
		t.Fatalf("dead ls --json = %+v; want 3 entries, the newest first", list)
	}
	out := b.ok(t, "dead", "ls", "--job", j.ID())
	want := regexp.MustCompile(`^ID +JOB +INDEX +PLUGIN +ATTEMPTS +AGE +ERROR\n` +
		regexp.QuoteMeta(list[1].ID) + " +" + regexp.QuoteMeta(j.ID()) + ` +3 +picky +1 +[\d.]+m?s +picky: bad-2\n` +
		regexp.QuoteMeta(list[2].ID) + " +" + regexp.QuoteMeta(j.ID()) + ` +1 +picky +1 +[\d.]+m?s +picky: bad-1\n$`)
	if !want.MatchString(out) {
		t.Errorf("dead ls --job printed:\n%s", out)
	}
	out = b.ok(t, "dead", "show", list[2].ID)
	for _, want := range []string{"id:", list[2].ID, "job:", j.ID(), "index:", "1", "plugin:", "picky", "attempts:", "error:", "picky: bad-1",
		"value bytes:", "5", "value sha256:", "value:\nbad-1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("dead show lacks %q:\n%s", want, out)
		}
	}

	// As they ran, the records fail again (exit 3); with upper they pass.
	r := b.run(t, "dead", "replay", "--job", j.ID())
	if r.code != ExitRecordErrors || !strings.Contains(r.stdout, "replayed 2 records as job anon.") || !strings.Contains(r.stdout, "0 now succeed, 2 failed") {
		t.Errorf("replay: exit %d, stdout %q, stderr %q; want 3 and both failed", r.code, r.stdout, r.stderr)
	}
	file := filepath.Join(t.TempDir(), "replay.jsonl")
	out = b.ok(t, "dead", "replay", "--job", j.ID(), "--plugin", "upper", "--out", file)
	if !strings.Contains(out, "2 now succeed, 0 failed") {
		t.Errorf("replay --plugin upper printed %q", out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l replayLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if l.Job != j.ID() || !strings.HasPrefix(l.Replay, "anon.") {
			t.Errorf("replay line %+v", l)
		}
		got = append(got, fmt.Sprintf("%s %d %v %s", l.DeadLetter, l.Index, l.OK, l.Value))
	}
	if want := []string{list[2].ID + " 1 true BAD-1", list[1].ID + " 3 true BAD-2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replay --out wrote %q, want %q", got, want)
	}
	if out := b.ok(t, "dead", "ls", "--owner", "acme"); out != "no dead letters\n" {
		t.Errorf("dead ls of an owner without any printed %q", out)
	}
	if out := b.ok(t, "dead", "replay", "--all", "--owner", "acme"); out != "no dead letters to replay\n" {
		t.Errorf("replay of nothing printed %q", out)
	}
}

// Bad command lines exit 2, what does not exist exits 1, each with one
// line naming the problem.
func TestOpsErrors(t *testing.T) {
	b := newOpsBench(t)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"job info of nothing", []string{"job", "info", "anon.nosuchjob"}, ExitRuntime, "no job anon.nosuchjob (or not yours, or expired)"},
		{"job cancel of nothing", []string{"job", "cancel", "anon.nosuchjob"}, ExitRuntime, "no job anon.nosuchjob"},
		{"job attach of nothing", []string{"job", "attach", "anon.nosuchjob"}, ExitRuntime, "no job anon.nosuchjob"},
		{"job info, a bad id", []string{"job", "info", "nodot"}, ExitUsage, `job id "nodot": want OWNER.ID`},
		{"job info, no id", []string{"job", "info"}, ExitUsage, "takes 1 argument(s), got 0"},
		{"job ls, bad owner", []string{"job", "ls", "--owner", "a b"}, ExitUsage, `--owner "a b"`},
		{"job ls, an argument", []string{"job", "ls", "x"}, ExitUsage, "takes no arguments"},
		{"job, no subcommand", []string{"job"}, ExitUsage, "job needs a subcommand"},
		{"job, unknown subcommand", []string{"job", "frob"}, ExitUsage, `unknown command "frob"`},
		{"dead show of nothing", []string{"dead", "show", "anon.999999"}, ExitRuntime, "no dead letter anon.999999"},
		{"dead show, a bad id", []string{"dead", "show", "anon"}, ExitUsage, `dead letter id "anon": want OWNER.SEQUENCE`},
		{"dead ls, a bad job", []string{"dead", "ls", "--job", "x"}, ExitUsage, `job id "x"`},
		{"dead replay of nothing named", []string{"dead", "replay"}, ExitUsage, "needs --job ID or --all"},
		{"dead replay, both", []string{"dead", "replay", "--all", "--job", "anon.x"}, ExitUsage, "not both"},
		{"dead replay, a bad plugin", []string{"dead", "replay", "--all", "--plugin", "a b"}, ExitUsage, `--plugin "a b"`},
		{"dead, unknown subcommand", []string{"dead", "frob"}, ExitUsage, `unknown command "frob"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.run(t, tt.args...)
			wantFailure(t, r, tt.code, tt.want)
		})
	}
}

func TestOpsHelp(t *testing.T) {
	for _, args := range [][]string{{"job", "ls"}, {"job", "info"}, {"job", "cancel"}, {"job", "attach"},
		{"dead", "ls"}, {"dead", "show"}, {"dead", "replay"}} {
		r := run(t, "", append(args, "--help")...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Examples:\n  dataflare "+strings.Join(args, " ")) {
			t.Errorf("%v --help: exit %d, stdout %q; want usage and an example", args, r.code, r.stdout)
		}
	}
	r := run(t, "", "--help")
	for _, cmd := range []string{"\n  job ", "\n  dead "} {
		if !strings.Contains(r.stdout, cmd) {
			t.Errorf("--help does not list %q:\n%s", cmd, r.stdout)
		}
	}
}

// The records per second and time left beside submit's progress bar.
func TestProgressRate(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1000, 0)
	if got, want := m.text(0, 1000), "0 results, 0 records/s"; got != want {
		t.Errorf("before any sample: %q, want %q", got, want)
	}
	m.add(t0, 0, 0)
	m.add(t0.Add(time.Second), 100, 100)
	m.add(t0.Add(2*time.Second), 300, 200)
	if got, want := m.text(300, 1000), "300 results, 150 records/s, ETA 8s"; got != want {
		t.Errorf("after 2 s: %q, want %q", got, want)
	}
	if got, want := m.text(300, 0), "300 results, 150 records/s"; got != want {
		t.Errorf("input of unknown size: %q, want %q", got, want)
	}
	// The rate follows the last rateWindow: an early burst is forgotten.
	for i := 3; i <= 10; i++ {
		m.add(t0.Add(time.Duration(i)*time.Second), 300+uint64(i-2)*10, 200+int64(i-2)*10)
	}
	if got, want := m.text(380, 1000), "380 results, 10 records/s, ETA 1m12s"; got != want {
		t.Errorf("after a slowdown: %q, want %q", got, want)
	}
	m.add(t0.Add(11*time.Second), 1000, 1000)
	if got := m.text(1000, 1000); !strings.HasSuffix(got, "ETA: finishing") {
		t.Errorf("input read: %q", got)
	}
	if n := len(m.samples); n > 7 {
		t.Errorf("%d samples kept, want those of the window only", n)
	}
}

// status shows the owner's jobs in flight, not the done ones.
func TestStatusJobsInFlight(t *testing.T) {
	b := newOpsBench(t)
	done := b.submit(t, true, "upper", "a")
	waiting := b.submit(t, false, "upper", "b", "c")
	poll.Wait(t, 10*time.Second, "the job sealed", func() bool { return b.info(t, waiting.ID()).State == "sealed" })
	out := b.ok(t, "status")
	if !regexp.MustCompile(`\nJOB IN FLIGHT +PLUGIN +STATE +RECORDS +AGE\n` + regexp.QuoteMeta(waiting.ID()) + ` +upper +sealed +2 +[\d.]+m?s\n$`).MatchString(out) {
		t.Errorf("status printed:\n%s\nwant the sealed job in flight", out)
	}
	if strings.Contains(out, done.ID()) {
		t.Errorf("status lists the done job %s:\n%s", done.ID(), out)
	}
	var st struct {
		Coordinator string   `json:"coordinator"`
		Jobs        []jobOut `json:"jobs_in_flight"`
	}
	if err := json.Unmarshal([]byte(b.ok(t, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Coordinator == "" || len(st.Jobs) != 1 || st.Jobs[0].ID != waiting.ID() {
		t.Errorf("status --json: coordinator %q, jobs in flight %+v", st.Coordinator, st.Jobs)
	}
	if out := b.ok(t, "status", "--owner", "acme"); !strings.HasSuffix(out, "\nno jobs in flight of owner acme\n") {
		t.Errorf("status --owner acme printed:\n%s", out)
	}
}

// wantFailure checks the outcome of a command that fails: exit code, one
// line on standard error naming the problem (want), and for a usage error
// the hint; nothing on standard output.
func wantFailure(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d; stdout %q, stderr %q", r.code, code, r.stdout, r.stderr)
	}
	first, rest, _ := strings.Cut(r.stderr, "\n")
	if !strings.HasPrefix(first, "dataflare: ") || !strings.Contains(first, want) {
		t.Errorf("stderr %q: want a first line 'dataflare: …%s…'", r.stderr, want)
	}
	if wantRest := map[bool]string{true: "Run 'dataflare --help' for usage.\n", false: ""}[code == ExitUsage]; rest != wantRest {
		t.Errorf("stderr %q: want one line (and the usage hint for a usage error)", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
}
