package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natsrv"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/plugin"
)

// proc is a child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("DF_E2E_LOGS"); keep != "" {
		// Kept after the test, for a failure to be read at leisure.
		dir = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: exec.Command(bin, args...), log: logPath, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	// Stops when the process exits.
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return p
}

func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(sig)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
		return nil
	}
}

// fleetProcs is a JetStream server in the test process, with coordinator
// and worker processes around it.
type fleetProcs struct {
	t      *testing.T
	srv    *server.Server
	url    string
	mu     sync.Mutex
	n      int
	procs  map[string]*proc
	hb     string
	ackArg string
}

const (
	testHeartbeat = 200 * time.Millisecond
	testAckWait   = time.Second
)

func newFleetProcs(t *testing.T) *fleetProcs {
	s := natstest.RunServer(t)
	return &fleetProcs{t: t, srv: s, url: s.ClientURL(), procs: map[string]*proc{},
		hb: testHeartbeat.String(), ackArg: testAckWait.String()}
}

func (f *fleetProcs) name(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return fmt.Sprintf("%s%d", prefix, f.n)
}

func (f *fleetProcs) add(p *proc) *proc {
	f.mu.Lock()
	f.procs[p.name] = p
	f.mu.Unlock()
	return p
}

// coordinator starts a coordinator process.
func (f *fleetProcs) coordinator(extra ...string) *proc {
	name := f.name("c")
	args := append([]string{"coordinator", "--nats", f.url, "--id", name, "--heartbeat", f.hb, "--ack-wait", f.ackArg}, extra...)
	return f.add(startProc(f.t, name, dataflareBin, args...))
}

// worker starts a dataflare worker process.
func (f *fleetProcs) worker(extra ...string) *proc {
	name := f.name("w")
	args := append([]string{"worker", "--nats", f.url, "--id", name, "--heartbeat", f.hb, "--parallel", "4"}, extra...)
	return f.add(startProc(f.t, name, dataflareBin, args...))
}

// testworker starts a worker with the misbehaving test plugins.
func (f *fleetProcs) testworker(extra ...string) *proc {
	name := f.name("t")
	args := append([]string{"--nats", f.url, "--id", name, "--heartbeat", f.hb, "--parallel", "4"}, extra...)
	return f.add(startProc(f.t, name, testworkerBin, args...))
}

// client returns a client on a new connection.
func (f *fleetProcs) client(opts ...client.Option) *client.Client {
	f.t.Helper()
	c, err := client.New(natstest.Connect(f.t, f.url), opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// waitHealthy waits until n workers are healthy.
func (f *fleetProcs) waitHealthy(n int) {
	f.t.Helper()
	c := f.client()
	err := poll.Until(context.Background(), 30*time.Second, func() error {
		st, err := c.SystemStatus(context.Background())
		if err != nil {
			return err
		}
		if h := healthy(st); h != n {
			return fmt.Errorf("%d healthy workers, want %d", h, n)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func healthy(st *fleet.Status) int {
	n := 0
	for _, w := range st.Workers {
		if w.Health == fleet.Healthy {
			n++
		}
	}
	return n
}

// value is the input value of record i in the tests: unique, checkable.
func value(i int) []byte { return fmt.Appendf(nil, "rec-%08d-payload", i) }

// inputs returns a Source of n records built by value, with optional
// headers per record.
func inputs(n int, headers func(i int) []plugin.Header) client.Source {
	return func(yield func(plugin.Record, error) bool) {
		for i := range n {
			r := plugin.Record{Value: value(i)}
			if headers != nil {
				r.Headers = headers(i)
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// tally is the oracle's verdict on a job: every record index must be in
// exactly one of {result, per-record error}, and the results must come in
// input order.
type tally struct {
	n                      int
	ok, failed, dropped    int
	lost, dup, unexpected  int
	wrong                  int
	disorder               int // results whose index is not the one after the last
	failedIdx              []uint64
	firstWrong, firstError string
}

// collect reads every result of job and checks each against want (nil: any
// value). It fails the test on a job-level error.
func collect(t *testing.T, job *client.Job, n int, want func(i int) []byte) tally {
	t.Helper()
	tl, err := tallyJob(job, n, want)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// tallyJob is collect for any goroutine: it returns the job-level error
// instead of failing the test.
func tallyJob(job *client.Job, n int, want func(i int) []byte) (tally, error) {
	seen := make([]uint8, n)
	tl := tally{n: n}
	next := uint64(0)
	for out, err := range job.Results() {
		if err != nil {
			return tl, fmt.Errorf("job %s failed after %d results: %w", job.ID(), tl.ok+tl.failed+tl.dropped, err)
		}
		if out.Index != next {
			tl.disorder++
		}
		next = out.Index + 1
		if out.Index >= uint64(n) {
			tl.unexpected++
			continue
		}
		seen[out.Index]++
		if seen[out.Index] > 1 {
			tl.dup++
			continue
		}
		switch {
		case out.Err != nil:
			tl.failed++
			tl.failedIdx = append(tl.failedIdx, out.Index)
			if tl.firstError == "" {
				tl.firstError = fmt.Sprintf("%d: %v", out.Index, out.Err)
			}
		case out.Dropped:
			tl.dropped++
		default:
			tl.ok++
			if want != nil && !bytes.Equal(out.Value, want(int(out.Index))) {
				tl.wrong++
				if tl.firstWrong == "" {
					tl.firstWrong = fmt.Sprintf("%d: got %q want %q", out.Index, out.Value, want(int(out.Index)))
				}
			}
		}
	}
	for _, s := range seen {
		if s == 0 {
			tl.lost++
		}
	}
	return tl, nil
}

func (tl tally) String() string {
	return fmt.Sprintf("n=%d ok=%d failed=%d dropped=%d lost=%d duplicated=%d unexpected=%d wrong=%d out-of-order=%d",
		tl.n, tl.ok, tl.failed, tl.dropped, tl.lost, tl.dup, tl.unexpected, tl.wrong, tl.disorder)
}

// marked returns a Source of n records where those for which bad says so
// carry marker in their value, and the function giving each record's value.
func marked(n int, bad func(i int) bool, marker string) (client.Source, func(i int) []byte) {
	val := func(i int) []byte {
		if bad(i) {
			return fmt.Appendf(nil, "%s-%d", marker, i)
		}
		return value(i)
	}
	return func(yield func(plugin.Record, error) bool) {
		for i := range n {
			if !yield(plugin.Record{Value: val(i)}, nil) {
				return
			}
		}
	}, val
}

// requireOracle fails the test unless every record got exactly one good
// result, in input order.
func requireOracle(t *testing.T, tl tally, n int) {
	t.Helper()
	t.Logf("oracle: %v", tl)
	if tl.ok != n || tl.lost+tl.dup+tl.unexpected+tl.wrong+tl.failed+tl.disorder != 0 {
		t.Fatalf("oracle: %v (first wrong: %s, first error: %s)", tl, tl.firstWrong, tl.firstError)
	}
}

func upper(i int) []byte { return bytes.ToUpper(value(i)) }

// chaosSeed returns the seed of a randomised fault schedule: fixed, so a
// failure can be replayed, unless $DF_CHAOS_SEED says otherwise; logged.
func chaosSeed(t *testing.T) uint64 {
	seed := uint64(20261126)
	if s := os.Getenv("DF_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DF_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (set DF_CHAOS_SEED to replay another)", seed)
	return seed
}

var (
	natsServerOnce sync.Once
	natsServerPath string
	natsServerErr  error
)

// natsServerBin builds the nats-server binary of the version in go.mod, once.
func natsServerBin(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		natsServerPath = filepath.Join(filepath.Dir(dataflareBin), "nats-server")
		out, err := exec.Command("go", "build", "-o", natsServerPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsServerErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerPath
}

// natsNode is a nats-server process: one node of a cluster, or alone.
type natsNode struct {
	name              string
	port, clusterPort int
	dir               string
	routes            []string
	proc              *proc
}

// natsCluster is nats-server processes on loopback.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
}

// startNATS starts n nats-server processes (a cluster when n > 1) with
// JetStream, each with its own store.
func startNATS(t *testing.T, n int) *natsCluster {
	t.Helper()
	ports, err := natsrv.FreePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &natsCluster{t: t}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("n%d", i+1), port: ports[i], clusterPort: ports[n+i],
			dir: t.TempDir(), routes: routes})
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitReady()
	return c
}

func (c *natsCluster) start(i int) {
	nd := c.nodes[i]
	args := []string{"-js", "-sd", nd.dir, "-a", "127.0.0.1", "-p", strconv.Itoa(nd.port), "-n", nd.name}
	if len(c.nodes) > 1 {
		args = append(args, "--cluster_name", "dfchaos", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", nd.clusterPort),
			"--routes", strings.Join(nd.routes, ","))
	}
	nd.proc = startProc(c.t, nd.name, natsServerBin(c.t), args...)
}

// URL returns every node's client URL, comma-separated.
func (c *natsCluster) URL() string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
	}
	return strings.Join(urls, ",")
}

// waitReady waits until JetStream answers through the cluster.
func (c *natsCluster) waitReady() {
	c.t.Helper()
	err := poll.Until(context.Background(), 60*time.Second, func() error {
		nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	})
	if err != nil {
		c.t.Fatalf("nats not ready: %v", err)
	}
}

// newFleetOn is newFleetProcs against an existing NATS.
func newFleetOn(t *testing.T, url string) *fleetProcs {
	return &fleetProcs{t: t, url: url, procs: map[string]*proc{}, hb: testHeartbeat.String(), ackArg: testAckWait.String()}
}

// waitResults waits, for up to two minutes, until job has at least min
// results; it fails t (safely from any goroutine) and returns false when
// they do not come.
func waitResults(t *testing.T, job *client.Job, min uint64) bool {
	err := poll.Until(context.Background(), 2*time.Minute, func() error {
		return atLeast("results", job.Progress().Results, min)
	})
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// atLeast returns nil when got ≥ want, else an error saying what is short.
func atLeast(what string, got, want uint64) error {
	if got < want {
		return fmt.Errorf("%d %s, want %d", got, what, want)
	}
	return nil
}
