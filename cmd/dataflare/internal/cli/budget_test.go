//go:build !client

package cli

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// --memory-budget auto takes half the Go memory limit, and says so.
func TestAutoBudget(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	debug.SetMemoryLimit(256 << 20)
	var logs bytes.Buffer
	if got := autoBudget(slog.New(slog.NewTextHandler(&logs, nil))); got != 128<<20 {
		t.Errorf("budget %d, want 128 MiB", got)
	}
	if !strings.Contains(logs.String(), "source=GOMEMLIMIT pool_budget_bytes=134217728") {
		t.Errorf("log %q: want the limit's source and the budget", logs.String())
	}
	if debug.SetMemoryLimit(-1) != 256<<20 {
		t.Error("a GOMEMLIMIT that was set was changed")
	}
	var b int64
	for flag, want := range map[string]int64{"512MiB": 512 << 20, "none": 0, "2GiB": 2 << 30} {
		if auto, err := parseBudget(flag, &b); err != nil || auto || b != want {
			t.Errorf("parseBudget(%q) = %d, %v, %v; want %d", flag, b, auto, err, want)
		}
	}
	if auto, err := parseBudget("auto", &b); err != nil || !auto {
		t.Errorf("parseBudget(auto) = %v, %v", auto, err)
	}
}
