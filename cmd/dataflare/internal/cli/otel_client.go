//go:build client

package cli

import (
	"context"
	"errors"
	"os"
)

// setupTracing of the client build, which links no exporter: it refuses a
// command the environment asks to trace (see tracingWanted) rather than
// drop the traces unsaid.
func setupTracing(context.Context, string) (shutdown func(), err error) {
	want, err := tracingWanted(os.Getenv)
	if err != nil || !want {
		return func() {}, err
	}
	return nil, errors.New("the OTEL_* environment asks for traces, which this client build (-tags client) cannot export: " +
		"use the full dataflare build, or set OTEL_TRACES_EXPORTER=none")
}
