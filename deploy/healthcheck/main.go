// Command healthcheck asks an HTTP health endpoint whether a service is
// healthy, for container images that have no shell and no curl (the
// dataflare and nats-server images are built FROM scratch).
//
//	healthcheck [-timeout 2s] URL
//
// It sends one GET to URL and exits 0 when the answer is 2xx, 1 otherwise
// (no answer within the timeout, another status, a bad command line), with
// one line on standard error saying why. Those are the exit codes Docker's
// HEALTHCHECK expects:
//
//	HEALTHCHECK CMD ["/healthcheck", "http://127.0.0.1:9090/healthz"]
//
// It follows no redirects and keeps no connection open.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// errUnhealthy is wrapped by the error of an answer that is not 2xx.
var errUnhealthy = errors.New("healthcheck: unhealthy")

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses args, checks the URL and returns the exit code.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: healthcheck [-timeout D] URL")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() != 1 || *timeout <= 0 {
		fs.Usage()
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := check(ctx, fs.Arg(0)); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// check GETs url and returns nil for a 2xx answer, an error wrapping
// errUnhealthy for another status (with the start of the body), or the
// error of a request that could not be made or answered before ctx ended.
func check(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	c := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s: %s %q", errUnhealthy, url, resp.Status, body)
	}
	return nil
}
