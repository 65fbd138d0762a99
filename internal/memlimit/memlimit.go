// Package memlimit finds the memory a process may use — the Go memory
// limit (GOMEMLIMIT) when one is set, else its cgroup's limit — so that a
// worker can size its buffer pool's budget from it.
package memlimit

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// Source says where a limit came from.
type Source string

// Sources of a limit.
const (
	// None: no limit was found.
	None Source = "none"
	// GoMemLimit: the Go runtime's memory limit (GOMEMLIMIT, or
	// debug.SetMemoryLimit).
	GoMemLimit Source = "GOMEMLIMIT"
	// CgroupV2: memory.max of the process's cgroup (v2).
	CgroupV2 Source = "cgroup v2 memory.max"
	// CgroupV1: memory.limit_in_bytes of the process's memory cgroup (v1).
	CgroupV1 Source = "cgroup v1 memory.limit_in_bytes"
)

// noLimitV1 is what cgroup v1 reports for no limit, rounded down to a
// page: anything at or above it is no limit.
const noLimitV1 = math.MaxInt64 &^ (1<<12 - 1)

// Find returns the process's memory limit in bytes and its source: the Go
// memory limit when one is set, else the cgroup's (read under the root
// "/"), else 0 and None.
func Find() (int64, Source) {
	if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 {
		return l, GoMemLimit
	}
	return Cgroup("/")
}

// Cgroup returns the memory limit of the process's cgroup, read from the
// file system at root ("/" on a live system; a test gives a directory
// laid out the same way): cgroup v2's memory.max of the cgroup
// /proc/self/cgroup names (or at the root of the cgroup file system, as
// inside a container), else cgroup v1's memory.limit_in_bytes. 0 and None
// when there is none, or "max".
func Cgroup(root string) (int64, Source) {
	v2, v1 := cgroupPaths(root)
	for _, dir := range v2 {
		if n, err := readLimit(filepath.Join(dir, "memory.max")); err == nil {
			if n > 0 {
				return n, CgroupV2
			}
			return 0, None // "max": no limit
		}
	}
	for _, dir := range v1 {
		if n, err := readLimit(filepath.Join(dir, "memory.limit_in_bytes")); err == nil {
			if n > 0 && n < noLimitV1 {
				return n, CgroupV1
			}
			return 0, None
		}
	}
	return 0, None
}

// cgroupPaths returns the directories to look in for cgroup v2 and v1:
// the process's own cgroup first, then the mount's root.
func cgroupPaths(root string) (v2, v1 []string) {
	base := filepath.Join(root, "sys", "fs", "cgroup")
	if b, err := os.ReadFile(filepath.Join(root, "proc", "self", "cgroup")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			// hierarchy-ID:controller-list:cgroup-path
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				v2 = append(v2, filepath.Join(base, parts[2]))
			case hasController(parts[1], "memory"):
				v1 = append(v1, filepath.Join(base, "memory", parts[2]))
			}
		}
	}
	return append(v2, base), append(v1, filepath.Join(base, "memory"))
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// errNoLimit is readLimit's error for a file that holds no number.
var errNoLimit = errors.New("memlimit: not a limit")

// readLimit reads a limit file: a number of bytes, or "max" (returned as
// 0).
func readLimit(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errNoLimit
	}
	return n, nil
}
