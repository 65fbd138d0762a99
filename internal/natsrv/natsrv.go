// Package natsrv starts an embedded nats-server with JetStream: the one code
// path behind `dataflare demo`, `dataflare dev`, the bench and the test
// helpers in internal/natstest.
package natsrv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned when the server does not accept connections in time.
var ErrNotReady = errors.New("natsrv: server not ready for connections")

// Config describes an embedded server. The zero value is a single node on a
// random loopback port with JetStream in a directory the caller must set.
type Config struct {
	// Name is the server name (default: a name derived from the port).
	Name string
	// Host to listen on (default 127.0.0.1).
	Host string
	// Port to listen on; 0 or -1 picks a free one.
	Port int
	// StoreDir is where JetStream keeps its files (required).
	StoreDir string
	// MaxPayload is the largest message the server accepts (default 8 MiB).
	MaxPayload int32
	// Cluster, when set, makes the server one node of a cluster.
	Cluster *ClusterConfig
	// SyncAlways fsyncs every JetStream write (production durability; slower).
	SyncAlways bool
	// Logs turns the server's own logging on (to stderr).
	Logs bool
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10 s).
	ReadyTimeout time.Duration
}

// ClusterConfig makes a server one node of a cluster.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Port is this node's route port.
	Port int
	// Routes are the route URLs of every node (nats-route://host:port).
	Routes []string
}

// DefaultMaxPayload is the message size limit of embedded servers: large
// enough for a 4 MiB record plus framing.
const DefaultMaxPayload = 8 << 20

// Options turns cfg into nats-server options.
func (cfg Config) Options() (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsrv: StoreDir is required")
	}
	o := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		NoLog:      !cfg.Logs,
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if cfg.SyncAlways {
		o.SyncAlways = true
	}
	if c := cfg.Cluster; c != nil {
		o.Cluster.Name = c.Name
		o.Cluster.Host = o.Host
		o.Cluster.Port = c.Port
		for _, r := range c.Routes {
			u := server.RoutesFromStr(r)
			if len(u) == 0 {
				return nil, fmt.Errorf("natsrv: bad route %q", r)
			}
			o.Routes = append(o.Routes, u...)
		}
		if o.ServerName == "" {
			o.ServerName = "n" + strconv.Itoa(c.Port)
		}
	}
	return o, nil
}

// Start starts a server and waits until it accepts connections. Stop it with
// Shutdown and WaitForShutdown.
func Start(cfg Config) (*server.Server, error) {
	o, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("natsrv: %w", err)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	s.Start()
	wait := cfg.ReadyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("%w within %v", ErrNotReady, wait)
	}
	return s, nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago (for route ports, which must be known before any node starts).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natsrv: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
