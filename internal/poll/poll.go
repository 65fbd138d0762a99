// Package poll waits for a condition by polling it, with a deadline: the one
// way the tests (and the local fleet's start-up) wait, instead of sleeping.
//
//	err := poll.Until(ctx, 10*time.Second, func() error {
//		if n := job.Progress().Results; n < want {
//			return fmt.Errorf("%d results, want %d", n, want)
//		}
//		return nil
//	})
//	poll.Wait(t, 5*time.Second, "the worker to stop", func() bool { return !w.Ready() })
package poll

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 10 * time.Millisecond

// Until calls cond every Interval until it returns nil, ctx ends or timeout
// passes. It returns nil, or cond's last error wrapped with how long it
// waited (ctx's error when cond never ran).
func Until(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", time.Since(start).Round(time.Millisecond), err)
		case <-t.C:
		}
	}
}

// Wait is Until for a test: it fails tb, naming what it waited for, when
// cond does not hold within timeout.
func Wait(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	err := Until(context.Background(), timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("timed out waiting for %s", what)
	})
	if err != nil {
		tb.Fatal(err)
	}
}
