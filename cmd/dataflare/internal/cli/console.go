//go:build !client

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/console"
)

// consoleAdminFlag adds --console-admin to a daemon that serves the web
// console on --http.
func consoleAdminFlag(f *pflag.FlagSet, admin *bool) {
	f.BoolVar(admin, "console-admin", false, "let the web console on --http cancel jobs and replay dead letters (default: read-only)")
}

// startConsole returns the web console over nc, sampling the fleet until
// ctx ends; nil when httpAddr is empty (nothing is served).
func startConsole(ctx context.Context, httpAddr string, nc *nats.Conn, admin bool, log *slog.Logger) (http.Handler, error) {
	if httpAddr == "" {
		return nil, nil
	}
	c, err := client.New(nc)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	con, err := console.New(console.Config{Backend: console.NewClientBackend(c, js), Admin: admin, Logger: log})
	if err != nil {
		return nil, err
	}
	// Stops when ctx ends: the daemon stops.
	go con.Run(ctx)
	return con, nil
}

// consoleMode says what the console may do.
func consoleMode(admin bool) string {
	if admin {
		return "admin: may cancel and replay"
	}
	return "read-only"
}
