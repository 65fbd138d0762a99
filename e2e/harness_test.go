package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
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
	logPath := filepath.Join(t.TempDir(), name+".log")
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
	testAckWait   = 2 * time.Second
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
func (f *fleetProcs) testworker() *proc {
	name := f.name("t")
	return f.add(startProc(f.t, name, testworkerBin, "--nats", f.url, "--id", name, "--heartbeat", f.hb, "--parallel", "4"))
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
	err := natstest.Eventually(30*time.Second, func() error {
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
// exactly one of {result, per-record error}.
type tally struct {
	n                      int
	ok, failed, dropped    int
	lost, dup, unexpected  int
	wrong                  int
	failedIdx              []uint64
	firstWrong, firstError string
}

// collect reads every result of job and checks each against want (nil: any
// value). It fails the test on a job-level error.
func collect(t *testing.T, job *client.Job, n int, want func(i int) []byte) tally {
	t.Helper()
	seen := make([]uint8, n)
	tl := tally{n: n}
	for out, err := range job.Results() {
		if err != nil {
			t.Fatalf("job %s failed after %d results: %v", job.ID(), tl.ok+tl.failed+tl.dropped, err)
		}
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
	return tl
}

func (tl tally) String() string {
	return fmt.Sprintf("n=%d ok=%d failed=%d dropped=%d lost=%d duplicated=%d unexpected=%d wrong=%d",
		tl.n, tl.ok, tl.failed, tl.dropped, tl.lost, tl.dup, tl.unexpected, tl.wrong)
}

func upper(i int) []byte { return bytes.ToUpper(value(i)) }

var _ = strings.Contains
