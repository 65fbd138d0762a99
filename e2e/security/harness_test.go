package security

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

// The configuration files under test.
const (
	serverConf = "../../deploy/nats/server.conf"
	tlsConf    = "../../deploy/nats/server-tls.conf"
	// wasmModule is a WebAssembly plugin that upper-cases values.
	wasmModule = "../../wasm/testdata/abi_upper.wasm"
	wasmPlugin = "upper-wasm"
)

// role is a user of deploy/nats/auth.conf: its credentials and the inbox
// prefix it must connect with. A role with a creds file connects with it
// (an operator-mode server's JWT user) instead of the password.
type role struct {
	user, password, inbox string
	creds                 string
}

// roles are the users a fleet runs as.
type roles struct {
	admin, coordinator, worker, alice role
}

// passwordRoles are the password users of deploy/nats/auth.conf.
var passwordRoles = roles{admin: adminRole, coordinator: coordinatorRole, worker: workerRole, alice: aliceRole}

var (
	adminRole       = role{user: "admin", password: "dev-admin-secret", inbox: ""}
	coordinatorRole = role{user: "coordinator", password: "dev-coordinator-secret", inbox: ""}
	workerRole      = role{user: "worker", password: "dev-worker-secret", inbox: "_INBOX_worker"}
	aliceRole       = role{user: "alice", password: "dev-alice-secret", inbox: "_INBOX_alice"}
	bobRole         = role{user: "bob", password: "dev-bob-secret", inbox: "_INBOX_bob"}
)

func (r role) options() []nats.Option {
	opts := []nats.Option{nats.Name("security test: " + r.user)}
	switch {
	case r.creds != "":
		opts = append(opts, nats.UserCredentials(r.creds))
	case r.user != "":
		opts = append(opts, nats.UserInfo(r.user, r.password))
	}
	if r.inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(r.inbox))
	}
	return opts
}

// startServer runs nats-server in-process from the configuration file conf,
// on a random loopback port, without its monitoring port, with JetStream's
// store in a temporary directory. It is stopped when the test ends.
func startServer(t *testing.T, conf string) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("config %s: %v", conf, err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server from %s: %v", conf, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("server from %s not ready", conf)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// errLog collects a connection's asynchronous errors: the server reports a
// denied publish or subscription that way, not to the call that made it.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// mark returns the number of errors so far: waitFor(s, mark()) looks only
// at errors that come later.
func (l *errLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

// find returns the first error from the from'th on whose text contains s.
func (l *errLog) find(s string, from int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs[from:] {
		if strings.Contains(err.Error(), s) {
			return err
		}
	}
	return nil
}

// all returns the errors so far.
func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// waitFor waits until an error containing s arrives, counting from the
// from'th, and returns it.
func (l *errLog) waitFor(s string, from int, timeout time.Duration) (error, bool) {
	var found error
	err := poll.Until(context.Background(), timeout, func() error {
		if found = l.find(s, from); found == nil {
			return errors.New("not yet")
		}
		return nil
	})
	return found, err == nil
}

// conn is a connection and the asynchronous errors it got.
type conn struct {
	*nats.Conn
	errs *errLog
	role role
}

// dial connects to url as r, and closes the connection when the test ends.
func dial(t *testing.T, url string, r role, extra ...nats.Option) *conn {
	t.Helper()
	c, err := tryDial(url, r, extra...)
	if err != nil {
		t.Fatalf("connect as %q: %v", r.user, err)
	}
	t.Cleanup(c.Close)
	return c
}

func tryDial(url string, r role, extra ...nats.Option) (*conn, error) {
	l := &errLog{}
	opts := append(r.options(), nats.ErrorHandler(l.handler), nats.MaxReconnects(0))
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: nc, errs: l, role: r}, nil
}

// permissionViolations returns the connection's permission errors.
func (c *conn) permissionViolations() []error {
	var out []error
	for _, err := range c.errs.all() {
		if errors.Is(err, nats.ErrPermissionViolation) {
			out = append(out, err)
		}
	}
	return out
}

func (c *conn) js(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// canary subscribes to every subject with full rights and keeps the
// messages whose subject or data hold the marker.
type canary struct {
	marker []byte
	mu     sync.Mutex
	seen   []string
	sub    *nats.Subscription
}

func newCanary(t *testing.T, c *conn, marker string) *canary {
	t.Helper()
	k := &canary{marker: []byte(marker)}
	sub, err := c.Subscribe(">", func(m *nats.Msg) {
		if bytes.Contains(m.Data, k.marker) || strings.Contains(m.Subject, marker) || strings.Contains(m.Reply, marker) {
			k.mu.Lock()
			k.seen = append(k.seen, fmt.Sprintf("%s (reply %q): %.120q", m.Subject, m.Reply, m.Data))
			k.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	k.sub = sub
	return k
}

// leaks returns what the canary saw.
func (k *canary) leaks() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.seen...)
}

// testFleet is a server from deploy/nats/server.conf, the plugin store
// with one WebAssembly module pushed by the admin, a coordinator and a
// worker each on its role's connection.
type testFleet struct {
	url    string
	admin  *conn
	coord  *conn // the coordinator's connection
	digest string
}

// startFleet starts a fleet with a batch stream per owner (fair sharing).
func startFleet(t *testing.T) *testFleet {
	t.Helper()
	return startFleetWith(t, proto.Topology{})
}

// startFleetWith starts a fleet whose coordinator makes the streams of
// topo (its AckWait 2 s unless set; in memory).
func startFleetWith(t *testing.T, topo proto.Topology) *testFleet {
	t.Helper()
	return startFleetOn(t, startServer(t, serverConf).ClientURL(), passwordRoles, topo)
}

// topologies are the two shapes a fleet's batch queues take: a stream per
// owner, and the shared FIFO stream. Both must work with the same roles.
var topologies = []struct {
	name string
	topo proto.Topology
}{
	{"per owner", proto.Topology{}},
	{"fifo", proto.Topology{FIFO: true}},
}

// startFleetOn is startFleetWith on the server at url, each component
// connecting as its role in rs.
func startFleetOn(t *testing.T, url string, rs roles, topo proto.Topology) *testFleet {
	t.Helper()
	if topo.AckWait == 0 {
		topo.AckWait = 2 * time.Second
	}
	topo.Memory = true
	f := &testFleet{url: url}
	f.admin = dial(t, f.url, rs.admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The admin pushes a plugin: it alone may write the store.
	module, err := os.ReadFile(wasmModule)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := wasm.NewRuntime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	adminStore, err := wasmstore.New(ctx, f.admin.js(t), wasmstore.WithValidator(rt))
	if err != nil {
		t.Fatal(err)
	}
	m, err := adminStore.Push(ctx, wasmPlugin, "1.0.0", module)
	if err != nil {
		t.Fatal(err)
	}
	f.digest = m.Digest

	// The coordinator, as `dataflare coordinator` runs it: it binds to the
	// plugin store with wasmstore.New (creating or updating the bucket).
	cnc := dial(t, f.url, rs.coordinator)
	f.coord = cnc
	cstore, err := wasmstore.New(ctx, cnc.js(t))
	if err != nil {
		t.Fatalf("coordinator: plugin store: %v", err)
	}
	co, err := coordinator.New(cnc.Conn, coordinator.Config{
		ID:        "c1",
		Heartbeat: 100 * time.Millisecond,
		Modules:   wasmstore.Resolver(cstore),
		Topology:  topo,
		// As deploy/nats/auth.conf lets coordinators publish sinks.
		PipelineGrants: []coordinator.PipelineGrant{{Owner: "alice", Source: "alice_orders", Sink: "out.alice.>"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, "coordinator", co.Run)
	if topo.FIFO {
		// The worker reads DF_QUEUES once, then watches it for updates
		// only, a moment later (worker/queues.go): an entry written in
		// between is never seen. The shared queue's entry is written as
		// the coordinator starts, so the worker starts after it.
		err := poll.Until(ctx, 10*time.Second, func() error {
			kv, err := f.admin.js(t).KeyValue(ctx, proto.BucketQueues)
			if err != nil {
				return err
			}
			_, err = kv.Get(ctx, proto.StreamBatches)
			return err
		})
		if err != nil {
			t.Fatalf("the coordinator did not record the shared queue: %v", err)
		}
	}

	// The worker, as `dataflare worker` runs it: it opens the plugin store
	// read-only (wasmstore.Open).
	wnc := dial(t, f.url, rs.worker)
	wstore, err := wasmstore.Open(ctx, wnc.js(t))
	if err != nil {
		t.Fatalf("worker: plugin store: %v", err)
	}
	wrt, err := wasm.NewRuntime(ctx, wasm.WithInstances(2))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := wasm.NewRegistry(wrt, wstore)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		reg.Close()
		wrt.Close(context.Background())
	})
	w, err := worker.New(wnc.Conn, worker.Config{
		ID:           "w1",
		Parallel:     2,
		Heartbeat:    100 * time.Millisecond,
		FetchWait:    200 * time.Millisecond,
		DrainTimeout: 5 * time.Second,
		Modules:      reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, "worker", w.Run)

	// Ready when the coordinator sees the worker healthy.
	c := f.client(t, rs.alice)
	err = poll.Until(context.Background(), 15*time.Second, func() error {
		st, err := c.SystemStatus(context.Background())
		if err != nil {
			return err
		}
		for _, w := range st.Workers {
			if w.Health.String() == "healthy" {
				return nil
			}
		}
		return fmt.Errorf("no healthy worker among %d", len(st.Workers))
	})
	if err != nil {
		t.Fatalf("fleet not ready: %v", err)
	}
	// The legitimate setup must not have hit a single permission error.
	t.Cleanup(func() {
		for _, c := range []*conn{cnc, wnc} {
			for _, err := range c.permissionViolations() {
				t.Errorf("%s, doing its job: %v", c.role.user, err)
			}
		}
	})
	return f
}

// runDaemon runs run until the test ends; cleanups run last in, first out,
// so daemons stop before their connections close.
func runDaemon(t *testing.T, name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Stops when the cleanup cancels ctx.
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
}

// client returns a client of owner r.user on its own connection, and checks
// at the end that it hit no permission error.
func (f *testFleet) client(t *testing.T, r role, opts ...client.Option) *client.Client {
	t.Helper()
	c, _ := f.clientConn(t, r, opts...)
	return c
}

func (f *testFleet) clientConn(t *testing.T, r role, opts ...client.Option) (*client.Client, *conn) {
	t.Helper()
	nc := dial(t, f.url, r)
	c, err := client.New(nc.Conn, append([]client.Option{client.WithOwner(r.user), client.WithTimeout(3 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c, nc
}

// bobsJob submits 30 records for bob, 10 per batch, through the upper
// plugin: a job whose results the other tests try to reach. It returns the
// job, closed when the test ends, and its records.
func (f *testFleet) bobsJob(ctx context.Context, t *testing.T) (*client.Job, []plugin.Record) {
	t.Helper()
	recs := records("bob-secret", 30)
	job, err := f.client(t, bobRole).Submit(ctx, "upper", client.Records(recs), client.WithBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(job.Close)
	return job, recs
}

// readsAllHisResults checks that bob reads exactly his results: every
// record, upper-cased, once.
func readsAllHisResults(t *testing.T, job *client.Job, recs []plugin.Record) {
	t.Helper()
	n := 0
	for o, err := range job.Results() {
		if err != nil {
			t.Fatalf("bob's job: %v", err)
		}
		if got, want := string(o.Value), strings.ToUpper(string(recs[o.Index].Value)); got != want {
			t.Errorf("bob's record %d: got %q, want %q", o.Index, got, want)
		}
		n++
	}
	if n != len(recs) {
		t.Errorf("bob read %d results, want %d", n, len(recs))
	}
}

// batchesDrained returns nil when the workers have taken and settled every
// batch: every consumer of every batch stream has nothing pending and
// nothing unacknowledged. It is natstest.BatchesDrained reading each
// consumer list to its end: that one returns at the first consumer not
// drained, which leaves nats.go's lister goroutine blocked for ever on its
// next send (goleak reports it).
func batchesDrained(ctx context.Context, js jetstream.JetStream) error {
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject(proto.SubjectBatchPrefix+">"))
	var streams []string
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if err := names.Err(); err != nil {
		return err
	}
	var left []string
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		infos := s.ListConsumers(ctx)
		for info := range infos.Info() {
			if info.NumPending != 0 || info.NumAckPending != 0 {
				left = append(left, fmt.Sprintf("%s/%s: %d pending, %d unacknowledged", name, info.Name, info.NumPending, info.NumAckPending))
			}
		}
		if err := infos.Err(); err != nil {
			return err
		}
	}
	if len(left) > 0 {
		return errors.New(strings.Join(left, "; "))
	}
	return nil
}
