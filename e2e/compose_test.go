//go:build compose

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
)

// The compose tests run deploy/compose/compose.yaml for real: images built
// FROM scratch by deploy/docker/build.sh, a 3-node NATS cluster, 2
// coordinators and scaled workers in containers, driven from the host with
// the dataflare CLI. They need a Docker engine and docker compose (or
// docker-compose); without them they skip.
//
//	go test -tags compose -run TestCompose ./e2e/...

// composeStack is one compose project: its own name, images, network and
// volumes, all removed when the test ends.
type composeStack struct {
	t       *testing.T
	ctx     context.Context
	compose []string // "docker compose" or "docker-compose"
	project string
	dir     string
	env     []string
	natsURL string // the host's URLs of the three nodes, on 127.0.0.1
	owner   string // the client owner the CLI acts as ("": no role)
}

// clientUser is the client of owner alice in deploy/nats/auth.conf
// (development password): the compose test submits and asks for status with
// that role's rights only.
const (
	clientOwner = "alice"
	clientUser  = clientOwner + ":dev-alice-secret"
)

// composeCommand returns how to run compose here, or nil.
func composeCommand() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// newComposeStack builds the images and brings the stack up with workers
// workers, or skips the test when Docker is not there.
func newComposeStack(t *testing.T, ctx context.Context, workers int) *composeStack {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no Docker engine (docker info: %v)", err)
	}
	compose := composeCommand()
	if compose == nil {
		t.Skip("neither docker compose nor docker-compose works")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	rand.Read(b[:])
	project := "dfe2e" + hex.EncodeToString(b[:])
	s := &composeStack{
		t:       t,
		ctx:     ctx,
		compose: compose,
		project: project,
		dir:     filepath.Join(root, "deploy", "compose"),
		env: append(os.Environ(),
			"DATAFLARE_IMAGE=dataflare-e2e:"+project,
			"NATS_IMAGE=dataflare-nats-e2e:"+project,
			// Empty host ports: Docker picks free ones on 127.0.0.1.
			"NATS1_PORT=", "NATS2_PORT=", "NATS3_PORT=",
			"PROMETHEUS_PORT=", "JAEGER_PORT=",
		),
	}
	t.Logf("compose project %s (%s)", project, strings.Join(compose, " "))
	// Registered before anything is made, so whatever happens next is
	// removed: containers, network, volumes, images.
	t.Cleanup(s.down)

	start := time.Now()
	build := exec.CommandContext(ctx, filepath.Join(root, "deploy", "docker", "build.sh"))
	build.Dir = root
	build.Env = s.env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build images: %v\n%s", err, out)
	}
	t.Logf("images built in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	s.run("up", "-d", "--scale", fmt.Sprintf("worker=%d", workers))
	var urls []string
	for _, node := range []string{"nats1", "nats2", "nats3"} {
		hostPort := strings.TrimSpace(s.run("port", node, "4222"))
		if !strings.HasPrefix(hostPort, "127.0.0.1:") {
			t.Fatalf("%s's client port is published on %q, want 127.0.0.1 only", node, hostPort)
		}
		urls = append(urls, hostPort)
	}
	// The nodes take the users of deploy/nats/auth.conf only: without
	// credentials nothing answers.
	anon := exec.CommandContext(ctx, dataflareBin, "status")
	anon.Env = append(os.Environ(), "NATS_URL=nats://"+urls[0])
	if out, err := anon.CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "authorization") {
		t.Fatalf("status without credentials: %v, %s; want an authorization error", err, out)
	}
	for i, u := range urls {
		urls[i] = "nats://" + clientUser + "@" + u
	}
	s.natsURL = strings.Join(urls, ",")
	s.owner = clientOwner
	s.waitFleet(func(st *fleet.Status) error {
		if h := healthy(st); h != workers {
			return fmt.Errorf("%d healthy workers, want %d", h, workers)
		}
		return nil
	})
	t.Logf("stack up in %v: NATS at %s", time.Since(start).Round(time.Millisecond), s.natsURL)
	return s
}

// run runs a compose command in the project and returns its standard
// output; it fails the test when the command fails.
func (s *composeStack) run(args ...string) string {
	s.t.Helper()
	out, err := s.try(s.ctx, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// try runs a compose command in the project.
func (s *composeStack) try(ctx context.Context, args ...string) (string, error) {
	full := append(append(slices.Clone(s.compose[1:]), "-p", s.project, "-f", filepath.Join(s.dir, "compose.yaml")), args...)
	cmd := exec.CommandContext(ctx, s.compose[0], full...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", strings.Join(s.compose, " "), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// docker runs a docker command and fails the test when it fails.
func (s *composeStack) docker(args ...string) string {
	s.t.Helper()
	out, err := exec.CommandContext(s.ctx, "docker", args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// down removes everything the project made, whatever state it is in; on
// failure it first logs the tail of every container's log.
func (s *composeStack) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.t.Failed() {
		if out, err := s.try(ctx, "logs", "--no-color", "--tail", "60"); err == nil {
			s.t.Logf("--- compose logs (tail) ---\n%s", out)
		}
	}
	start := time.Now()
	if _, err := s.try(ctx, "down", "-v", "--remove-orphans", "-t", "1"); err != nil {
		s.t.Errorf("tear down: %v", err)
	}
	exec.CommandContext(ctx, "docker", "image", "rm", "-f", "dataflare-e2e:"+s.project, "dataflare-nats-e2e:"+s.project).Run()
	s.t.Logf("stack torn down in %v", time.Since(start).Round(time.Millisecond))
}

// containers returns the ids of service's running containers.
func (s *composeStack) containers(service string) []string {
	s.t.Helper()
	return strings.Fields(s.run("ps", "-q", service))
}

// dataflare runs the host's dataflare CLI against the stack, as the client
// owner when there is one (its own inbox prefix: it may subscribe to nothing
// else).
func (s *composeStack) dataflare(ctx context.Context, args ...string) *exec.Cmd {
	if s.owner != "" {
		args = append(args, "--inbox-prefix", "_INBOX_"+s.owner)
	}
	cmd := exec.CommandContext(ctx, dataflareBin, args...)
	cmd.Env = append(os.Environ(), "NATS_URL="+s.natsURL)
	return cmd
}

// status asks the fleet for its status with the CLI.
func (s *composeStack) status() (*fleet.Status, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	out, err := s.dataflare(ctx, "status", "--json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("status: %v: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("status: %v", err)
	}
	var st fleet.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("status: %v", err)
	}
	return &st, nil
}

// waitFleet polls the status until cond holds, for up to 2 minutes, and
// fails the test when it does not.
func (s *composeStack) waitFleet(cond func(*fleet.Status) error) *fleet.Status {
	s.t.Helper()
	st, err := s.pollFleet(cond)
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

// pollFleet polls the status until cond holds, for up to 2 minutes, and
// returns the last status it read.
func (s *composeStack) pollFleet(cond func(*fleet.Status) error) (*fleet.Status, error) {
	var last *fleet.Status
	err := poll.Until(context.Background(), 2*time.Minute, func() error {
		st, err := s.status()
		if err != nil {
			return err
		}
		last = st
		return cond(st)
	})
	return last, err
}

// dumpUnhealthyWorkers logs the goroutines of every worker container that
// st does not show as a healthy worker (a worker's host name is its
// container's short id): SIGQUIT makes the Go runtime print them and exit.
func (s *composeStack) dumpUnhealthyWorkers(st *fleet.Status) {
	s.t.Helper()
	ok := map[string]bool{}
	if st != nil {
		for _, w := range st.Workers {
			if w.Health == fleet.Healthy {
				ok[w.Host] = true
			}
		}
	}
	for _, id := range s.containers("worker") {
		if len(id) < 12 || ok[id[:12]] {
			continue
		}
		exec.CommandContext(s.ctx, "docker", "kill", "-s", "QUIT", id).Run()
		poll.Until(context.Background(), 10*time.Second, func() error {
			out, err := exec.CommandContext(s.ctx, "docker", "inspect", "-f", "{{.State.Running}}", id).Output()
			if err != nil || strings.TrimSpace(string(out)) == "true" {
				return fmt.Errorf("%s still running", id)
			}
			return nil
		})
		out, _ := exec.CommandContext(s.ctx, "docker", "logs", "--tail", "400", id).CombinedOutput()
		s.t.Logf("--- worker container %s, not healthy in the fleet: log and goroutines ---\n%s", id[:12], out)
	}
}

func processed(st *fleet.Status) uint64 {
	var n uint64
	for _, w := range st.Workers {
		n += w.Processed
	}
	return n
}

// submission is a dataflare submit running in the background.
type submission struct {
	cmd    *exec.Cmd
	out    string
	stderr syncBuffer
	done   chan struct{}
	err    error
}

// syncBuffer is a bytes.Buffer that a running command writes to while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dump ends a submission that stopped making progress with SIGQUIT, so
// that its log shows its goroutines (the Go runtime prints them as it
// exits), and logs what it wrote to stderr.
func (sub *submission) dump(t *testing.T) {
	t.Helper()
	if !sub.exited() {
		sub.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-sub.done:
		case <-time.After(10 * time.Second):
		}
	}
	t.Logf("--- submit's stderr ---\n%s", sub.stderr.String())
}

// submit starts dataflare submit over the values of lines records, with
// the delay plugin at ms milliseconds per record.
func (s *composeStack) submit(ctx context.Context, n, ms int) *submission {
	s.t.Helper()
	dir := s.t.TempDir()
	in := filepath.Join(dir, "in.txt")
	var buf bytes.Buffer
	for i := range n {
		buf.Write(value(i))
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		s.t.Fatal(err)
	}
	sub := &submission{out: filepath.Join(dir, "out.jsonl"), done: make(chan struct{})}
	args := []string{"submit", "--plugin", "delay", "--config", "ms=" + strconv.Itoa(ms), "--in", in, "--out", sub.out}
	if s.owner != "" {
		args = append(args, "--owner", s.owner)
	}
	sub.cmd = s.dataflare(ctx, args...)
	sub.cmd.Stderr = &sub.stderr
	if err := sub.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	// Stops when the command exits (ctx kills it at the latest).
	go func() {
		sub.err = sub.cmd.Wait()
		close(sub.done)
	}()
	return sub
}

func (sub *submission) exited() bool {
	select {
	case <-sub.done:
		return true
	default:
		return false
	}
}

// checkOutput reads submit's JSONL output and checks that every record
// 0..n-1 has exactly one line, with its value unchanged and no error.
func checkOutput(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := make([]int, n)
	var lines, bad, wrong int
	var firstBad string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		var r struct {
			Index   *int   `json:"index"`
			Value   string `json:"value"`
			Error   string `json:"error"`
			Dropped bool   `json:"dropped"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Index == nil || *r.Index < 0 || *r.Index >= n {
			bad++
			if firstBad == "" {
				firstBad = sc.Text()
			}
			continue
		}
		seen[*r.Index]++
		if r.Error != "" || r.Dropped || r.Value != string(value(*r.Index)) {
			wrong++
			if firstBad == "" {
				firstBad = sc.Text()
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var lost, dup int
	for _, c := range seen {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	t.Logf("output: %d lines for %d records: lost %d, duplicated %d, unreadable %d, wrong or failed %d", lines, n, lost, dup, bad, wrong)
	if lines != n || lost+dup+bad+wrong != 0 {
		t.Fatalf("not exactly one good result per record (first bad line: %q)", firstBad)
	}
}

// TestComposeFaults runs a job on the compose stack while a worker
// container is killed, a NATS node container is killed (and later started
// again) and another worker is cut off the network past AckWait and
// reconnected; every record must get exactly one result. Then the workers
// are scaled up and the new ones must take work.
func TestComposeFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	s := newComposeStack(t, ctx, 3)
	ackWait := time.Second // compose.yaml's DATAFLARE_ACK_WAIT default

	// 3 workers run 2 batches each at 2 ms a record: about 3,000 records/s
	// without faults, so the job lasts long enough for every fault.
	const n, ms = 120_000, 2
	jobStart := time.Now()
	sub := s.submit(ctx, n, ms)
	waitProgress := func(what string, frac float64) {
		t.Helper()
		want := uint64(frac * n)
		err := poll.Until(context.Background(), 3*time.Minute, func() error {
			if sub.exited() {
				return fmt.Errorf("submit exited before %s: %v: %s", what, sub.err, sub.stderr.String())
			}
			st, err := s.status()
			if err != nil {
				return err
			}
			if p := processed(st); p < want {
				return fmt.Errorf("%d records processed, want %d before %s", p, want, what)
			}
			return nil
		})
		if err != nil {
			if st, serr := s.status(); serr == nil {
				b, _ := json.MarshalIndent(st, "", "  ")
				t.Logf("--- fleet status ---\n%s", b)
			}
			sub.dump(t)
			t.Fatal(err)
		}
		t.Logf("%v: %s", time.Since(jobStart).Round(time.Millisecond), what)
	}

	workers := s.containers("worker")
	if len(workers) != 3 {
		t.Fatalf("%d worker containers, want 3", len(workers))
	}
	waitProgress("kill a worker container", 0.10)
	// The workers' containers have a memory limit (compose.yaml's
	// DATAFLARE_WORKER_MEMORY, 1 GiB): --memory-budget auto found it in
	// their cgroup and gave the buffer pool half of it.
	out, err := s.dataflare(ctx, "report").Output()
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	var rep fleet.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	for _, w := range rep.Workers {
		if w.Pool.BudgetBytes != 512<<20 {
			t.Errorf("worker %s: pool budget %d bytes, want 512 MiB from its container's 1 GiB limit", w.ID, w.Pool.BudgetBytes)
		}
	}
	s.docker("kill", workers[0])

	waitProgress("kill NATS node nats2", 0.25)
	nats2 := s.containers("nats2")
	if len(nats2) != 1 {
		t.Fatalf("nats2 containers: %q", nats2)
	}
	s.docker("kill", nats2[0])

	network := s.project + "_fleet"
	waitProgress("cut a worker off the network", 0.40)
	s.docker("network", "disconnect", network, workers[1])
	// The fault itself: the worker stays cut off past AckWait, so its
	// batches are redelivered to the others while it holds them.
	time.Sleep(ackWait + 2*time.Second)
	s.docker("network", "connect", "--alias", "worker", network, workers[1])
	t.Logf("%v: worker reconnected", time.Since(jobStart).Round(time.Millisecond))

	waitProgress("start nats2 again", 0.55)
	s.docker("start", nats2[0])

	select {
	case <-sub.done:
	case <-ctx.Done():
		sub.dump(t)
		t.Fatal("submit did not end")
	}
	if sub.err != nil {
		t.Fatalf("submit: %v: %s", sub.err, sub.stderr.String())
	}
	t.Logf("job of %d records done in %v despite the faults", n, time.Since(jobStart).Round(time.Millisecond))
	checkOutput(t, sub.out, n)

	// The worker that was cut off is back: reconnected to NATS, healthy.
	cut := workers[1][:12]
	st, err := s.pollFleet(func(st *fleet.Status) error {
		for _, w := range st.Workers {
			if w.Host == cut && w.Health == fleet.Healthy {
				return nil
			}
		}
		return fmt.Errorf("the worker cut off the network (container %s) is not healthy again", cut)
	})
	if err != nil {
		s.dumpUnhealthyWorkers(st)
		t.Fatal(err)
	}

	// Scale up: the new workers take part in the next job.
	old := map[string]bool{}
	for _, w := range s.waitFleet(func(*fleet.Status) error { return nil }).Workers {
		old[w.ID] = true
	}
	const scaled = 5
	s.run("up", "-d", "--no-recreate", "--scale", fmt.Sprintf("worker=%d", scaled))
	st, err = s.pollFleet(func(st *fleet.Status) error {
		if h := healthy(st); h != scaled {
			return fmt.Errorf("%d healthy workers, want %d", h, scaled)
		}
		return nil
	})
	if err != nil {
		s.dumpUnhealthyWorkers(st)
		t.Fatal(err)
	}
	var fresh []string
	for _, w := range st.Workers {
		if w.Health == fleet.Healthy && !old[w.ID] {
			fresh = append(fresh, w.ID)
		}
	}
	if len(fresh) < 2 {
		t.Fatalf("after scaling to %d: new healthy workers %q, want at least 2", scaled, fresh)
	}
	t.Logf("scaled to %d workers; new: %q", scaled, fresh)
	const n2 = 20_000
	sub2 := s.submit(ctx, n2, ms)
	<-sub2.done
	if sub2.err != nil {
		t.Fatalf("submit after scaling: %v: %s", sub2.err, sub2.stderr.String())
	}
	checkOutput(t, sub2.out, n2)
	st = s.waitFleet(func(st *fleet.Status) error {
		for _, w := range st.Workers {
			if slices.Contains(fresh, w.ID) && w.Processed == 0 {
				return fmt.Errorf("new worker %s processed nothing", w.ID)
			}
		}
		return nil
	})
	for _, w := range st.Workers {
		if slices.Contains(fresh, w.ID) {
			t.Logf("new worker %s processed %d records", w.ID, w.Processed)
		}
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// TestLocalScript runs deploy/local/run.sh, the compose topology as
// processes on loopback (no Docker needed): it must come up with 3 NATS
// nodes, 2 coordinators and 2 workers, run a job with exactly one result
// per record, and on SIGTERM stop everything and remove its directory.
func TestLocalScript(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	rand.Read(b[:])
	// Ports base..base+4887, all below Linux's ephemeral range (32768 and
	// up), where any outgoing connection may take a port at any moment.
	base := 10000 + (int(b[0])<<8|int(b[1]))%17000 // 10000..26999
	start := time.Now()
	cmd := exec.Command(filepath.Join(root, "deploy", "local", "run.sh"), "-w", "2", "-p", strconv.Itoa(base))
	cmd.Env = append(os.Environ(), "DATAFLARE_BIN="+dataflareBin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	lines := make(chan string, 16)
	// Stops when the script closes its standard output (it exits).
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
		}
	})

	var url, logs string
	deadline := time.After(3 * time.Minute)
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("run.sh exited before it was ready: %s", stderr.String())
			}
			if _, after, ok := strings.Cut(l, "(logs in "); ok {
				logs = strings.TrimSuffix(after, ")")
			}
			if _, after, ok := strings.Cut(l, "export NATS_URL="); ok {
				url = after
			}
		case <-deadline:
			t.Fatalf("run.sh not ready within 3 minutes: %s", stderr.String())
		}
	}
	t.Logf("local fleet up in %v (base port %d)", time.Since(start).Round(time.Millisecond), base)
	s := &composeStack{t: t, ctx: ctx, natsURL: url}
	st := s.waitFleet(func(st *fleet.Status) error {
		if h := healthy(st); h != 2 {
			return fmt.Errorf("%d healthy workers, want 2", h)
		}
		return nil
	})
	if st.Coordinator == "" {
		t.Error("status names no coordinator")
	}
	const n = 5000
	sub := s.submit(ctx, n, 0)
	<-sub.done
	if sub.err != nil {
		t.Fatalf("submit: %v: %s", sub.err, sub.stderr.String())
	}
	checkOutput(t, sub.out, n)

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		var ee *exec.ExitError
		if waitErr != nil && !(errors.As(waitErr, &ee) && ee.ExitCode() == 143) {
			t.Errorf("run.sh after SIGTERM: %v, want exit 143", waitErr)
		}
	case <-time.After(time.Minute):
		t.Fatal("run.sh did not stop within a minute of SIGTERM")
	}
	if logs == "" {
		t.Fatal("run.sh did not say where its logs are")
	}
	if _, err := os.Stat(filepath.Dir(logs)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run.sh left %s behind (stat: %v)", filepath.Dir(logs), err)
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}
