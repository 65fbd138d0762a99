package poll_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/poll"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	err := poll.Until(context.Background(), 5*time.Second, func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n.Load() != 3 {
		t.Errorf("Until = %v after %d calls, want nil after 3", err, n.Load())
	}
	errNever := errors.New("never")
	err = poll.Until(context.Background(), 30*time.Millisecond, func() error { return errNever })
	if !errors.Is(err, errNever) || !strings.HasPrefix(err.Error(), "after ") {
		t.Errorf("Until past its timeout = %v, want the condition's error with the time waited", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := poll.Until(ctx, time.Hour, func() error { return errNever }); !errors.Is(err, errNever) {
		t.Errorf("Until on a cancelled context = %v", err)
	}
}
