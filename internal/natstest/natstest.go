// Package natstest runs real nats-servers with JetStream inside a test: one
// node, or a 3-node cluster on loopback, stopped and removed when the test
// ends. Nothing here is a fake: the servers are the same nats-server the
// fleet runs in production, embedded.
//
//	s := natstest.RunServer(t)
//	nc := natstest.Connect(t, s.ClientURL())
//
//	c := natstest.RunCluster(t, 3)
//	nc := natstest.Connect(t, c.URLs())
package natstest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natsrv"
	"github.com/dataflare/dataflare/internal/poll"
)

// RunServer starts a single JetStream server with its store in a temporary
// directory and stops it when the test ends.
func RunServer(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := natsrv.Start(natsrv.Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(func() { shutdown(s) })
	return s
}

// Connect connects to url and closes the connection when the test ends.
func Connect(tb testing.TB, url string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("natstest: connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Cluster is a cluster of JetStream servers on loopback.
type Cluster struct {
	tb      testing.TB
	name    string
	configs []natsrv.Config
	// Servers are the nodes; an entry is nil while that node is stopped.
	Servers []*server.Server
}

// RunCluster starts an n-node JetStream cluster and waits until it has a
// meta leader. Every node is stopped when the test ends.
func RunCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	ports, err := natsrv.FreePorts(2 * n)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i])
	}
	c := &Cluster{tb: tb, name: "df-test", Servers: make([]*server.Server, n)}
	for i := range n {
		c.configs = append(c.configs, natsrv.Config{
			Name:     fmt.Sprintf("n%d", i+1),
			Port:     ports[i],
			StoreDir: tb.TempDir(),
			Cluster:  &natsrv.ClusterConfig{Name: c.name, Port: ports[n+i], Routes: routes},
		})
	}
	tb.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				shutdown(s)
			}
		}
	})
	for i := range n {
		c.Start(i)
	}
	c.WaitForLeader(30 * time.Second)
	return c
}

// URLs returns the client URLs of every node, comma-separated, as nats.Connect
// takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.configs))
	for i, cfg := range c.configs {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", cfg.Port)
	}
	return strings.Join(urls, ",")
}

// Start starts node i (again, on the same ports and store directory).
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	if c.Servers[i] != nil {
		return
	}
	s, err := natsrv.Start(c.configs[i])
	if err != nil {
		c.tb.Fatalf("natstest: start node %d: %v", i, err)
	}
	c.Servers[i] = s
}

// Stop stops node i, keeping its store for a later Start.
func (c *Cluster) Stop(i int) {
	if s := c.Servers[i]; s != nil {
		shutdown(s)
		c.Servers[i] = nil
	}
}

// WaitForLeader waits until a running node is the JetStream meta leader
// and knows every running node as a peer, and every running node is
// current: then a replicated stream can be placed.
func (c *Cluster) WaitForLeader(timeout time.Duration) {
	c.tb.Helper()
	err := poll.Until(context.Background(), timeout, func() error {
		running := 0
		for _, s := range c.Servers {
			if s != nil {
				running++
				if !s.JetStreamIsCurrent() {
					return fmt.Errorf("node %s is not current", s.Name())
				}
			}
		}
		for _, s := range c.Servers {
			if s != nil && s.JetStreamIsLeader() {
				if peers := len(s.JetStreamClusterPeers()); peers < running {
					return fmt.Errorf("the meta leader knows %d of %d nodes", peers, running)
				}
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader among %d nodes", len(c.Servers))
	})
	if err != nil {
		c.tb.Fatalf("natstest: %v", err)
	}
}

// Drained returns nil when cons has nothing pending and nothing
// unacknowledged — every message it holds was taken and settled — and an
// error saying what is left otherwise. Use it with poll.Until.
func Drained(ctx context.Context, cons jetstream.Consumer) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return fmt.Errorf("%d messages pending, %d unacknowledged", info.NumPending, info.NumAckPending)
	}
	return nil
}

// BatchesDrained is Drained for every consumer of every batch stream
// (the streams capturing df.batch.>): nil when the workers have taken and
// settled every batch.
func BatchesDrained(ctx context.Context, js jetstream.JetStream) error {
	return eachBatchConsumer(ctx, js, func(info *jetstream.ConsumerInfo) error {
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%s/%s: %d messages pending, %d unacknowledged", info.Stream, info.Name, info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// Redelivered returns how many batches the consumers of every batch
// stream redelivered.
func Redelivered(ctx context.Context, js jetstream.JetStream) (int, error) {
	n := 0
	err := eachBatchConsumer(ctx, js, func(info *jetstream.ConsumerInfo) error {
		n += info.NumRedelivered
		return nil
	})
	return n, err
}

// eachBatchConsumer calls f with the info of every consumer of every batch
// stream, until f returns an error.
func eachBatchConsumer(ctx context.Context, js jetstream.JetStream, f func(*jetstream.ConsumerInfo) error) error {
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject("df.batch.>"))
	var streams []string
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if err := names.Err(); err != nil {
		return err
	}
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		// Read each list to its end: one left unread keeps its goroutine.
		infos := s.ListConsumers(ctx)
		var list []*jetstream.ConsumerInfo
		for info := range infos.Info() {
			list = append(list, info)
		}
		if err := infos.Err(); err != nil {
			return err
		}
		for _, info := range list {
			if err := f(info); err != nil {
				return err
			}
		}
	}
	return nil
}

func shutdown(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// LeakOptions are the goleak options of packages whose tests talk to
// JetStream. They ignore one goroutine of nats.go's own: an Object Store Put
// publishes through a temporary JetStream context whose status watcher can
// start after the context was cleaned up, and then waits on a nil channel
// for ever (nats.go v1.55.0, jetstream/publish.go resetPendingAcksOnReconnect
// against jetstream.go cleanupReplySub). It is not ours to stop. And one of
// nats-server's: a mirror stream's consumer setup, started just before the
// server shut down, waits for its reply on a timer that Shutdown does not
// stop (nats-server v2.15.2, stream.go setupMirrorConsumer); it ends on
// its own.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*stream).setupMirrorConsumer.func3"),
	}
}
