package wasmstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dataflare/dataflare/wasm"
)

// Policy is a module's own sandbox policy, set when it is pushed and stored
// in its manifest, so that every worker sees it. Workers enforce it under
// their own ceilings, never above them: a batch runs under the earliest of
// the policy's timeout, the job's and the worker's; the guest's memory is
// capped at the smaller of the policy's and the worker's. The zero value
// leaves the worker's limits as they are.
//
// In JSON: {"timeout": "50ms", "memory": 1048576, "grants": ["log"]}, each
// field omitted when unset.
type Policy struct {
	// Timeout bounds each batch of the module; 0 for none of its own.
	Timeout time.Duration
	// Memory caps the guest's memory, in bytes: a multiple of 64 KiB (one
	// WebAssembly page), at most MaxPolicyMemory; 0 for none of its own.
	Memory int64
	// Grants are the capabilities granted to the module: "log" and
	// "kv:BUCKET", sorted and without duplicates: the functions of host
	// module dataflare it may import (docs/abi.md, "Capabilities").
	Grants []string
}

// Policy bounds.
const (
	// PageSize is the size of a WebAssembly memory page: Policy.Memory is a
	// multiple of it.
	PageSize = 64 << 10
	// MaxPolicyMemory is the largest Policy.Memory: 2 GiB, the largest
	// guest memory (wasm.MaxMemoryLimitPages).
	MaxPolicyMemory = wasm.MaxMemoryLimitPages * PageSize
	// MaxPolicyTimeout is the largest Policy.Timeout: 24 hours.
	MaxPolicyTimeout = 24 * time.Hour
	// maxGrants bounds the capabilities of a policy.
	maxGrants = 64
)

// IsZero reports whether the policy sets nothing.
func (p Policy) IsZero() bool {
	return p.Timeout == 0 && p.Memory == 0 && len(p.Grants) == 0
}

// Validate reports whether p is acceptable: a timeout in [0,
// MaxPolicyTimeout], a memory cap that is 0 or a multiple of PageSize up to
// MaxPolicyMemory, and grants each valid (see ValidGrant), sorted and
// without duplicates (NewPolicy sorts them). The error wraps ErrBadPolicy.
func (p Policy) Validate() error {
	switch {
	case p.Timeout < 0 || p.Timeout > MaxPolicyTimeout:
		return fmt.Errorf("%w: timeout %s: want a duration above 0 and at most %s", ErrBadPolicy, p.Timeout, MaxPolicyTimeout)
	case p.Memory < 0 || p.Memory > MaxPolicyMemory:
		return fmt.Errorf("%w: memory %d bytes: want at most %s", ErrBadPolicy, p.Memory, FormatSize(MaxPolicyMemory))
	case p.Memory%PageSize != 0:
		return fmt.Errorf("%w: memory %d bytes: want a multiple of 64KiB, the WebAssembly page", ErrBadPolicy, p.Memory)
	case len(p.Grants) > maxGrants:
		return fmt.Errorf("%w: %d grants, at most %d", ErrBadPolicy, len(p.Grants), maxGrants)
	}
	for i, g := range p.Grants {
		if err := ValidGrant(g); err != nil {
			return err
		}
		if i > 0 && p.Grants[i-1] >= g {
			return fmt.Errorf("%w: grants not sorted or repeated at %q", ErrBadPolicy, g)
		}
	}
	return nil
}

// NewPolicy returns the policy of timeout, memory and grants (sorted, and
// repeated ones dropped), validated. The error wraps ErrBadPolicy.
func NewPolicy(timeout time.Duration, memory int64, grants []string) (Policy, error) {
	var gs []string
	if len(grants) > 0 {
		gs = slices.Clone(grants)
		slices.Sort(gs)
		gs = slices.Compact(gs)
	}
	p := Policy{Timeout: timeout, Memory: memory, Grants: gs}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// ValidGrant reports whether g names a capability: "log", or "kv:" and a
// KV bucket name (letters, digits, '-' and '_'). The error wraps
// ErrBadPolicy.
func ValidGrant(g string) error {
	if g == "log" {
		return nil
	}
	if bucket, ok := strings.CutPrefix(g, "kv:"); ok {
		if !validToken(bucket, "-_") {
			return fmt.Errorf("%w: grant %q: a KV bucket name is 1-%d letters, digits, '-' and '_'", ErrBadPolicy, g, maxNameLen)
		}
		if len(bucket) >= 3 && strings.EqualFold(bucket[:3], "DF_") {
			return fmt.Errorf("%w: grant %q: buckets named DF_… are the fleet's own", ErrBadPolicy, g)
		}
		return nil
	}
	return fmt.Errorf("%w: grant %q: the capabilities are \"log\" and \"kv:BUCKET\"", ErrBadPolicy, g)
}

// Limits returns the policy as the runtime's per-module limits.
func (p Policy) Limits() wasm.Limits {
	return wasm.Limits{Timeout: p.Timeout, MemoryLimitPages: uint32(p.Memory / PageSize), Grants: p.Grants}
}

// String returns the policy as "timeout 50ms, memory 1MiB, grants log",
// or "none".
func (p Policy) String() string {
	var parts []string
	if p.Timeout > 0 {
		parts = append(parts, "timeout "+p.Timeout.String())
	}
	if p.Memory > 0 {
		parts = append(parts, "memory "+FormatSize(p.Memory))
	}
	if len(p.Grants) > 0 {
		parts = append(parts, "grants "+strings.Join(p.Grants, " "))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

type policyJSON struct {
	Timeout string   `json:"timeout,omitempty"`
	Memory  int64    `json:"memory,omitempty"`
	Grants  []string `json:"grants,omitempty"`
}

// MarshalJSON writes the policy with its timeout as a Go duration string.
func (p Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{Memory: p.Memory, Grants: p.Grants}
	if p.Timeout != 0 {
		j.Timeout = p.Timeout.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes. It does not validate.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var j policyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = Policy{Memory: j.Memory}
	if len(j.Grants) > 0 {
		p.Grants = j.Grants
	}
	if j.Timeout != "" {
		d, err := time.ParseDuration(j.Timeout)
		if err != nil {
			return fmt.Errorf("timeout: %w", err)
		}
		p.Timeout = d
	}
	return nil
}

// ParseSize reads a size in bytes: a whole number with an optional unit,
// B, KiB, MiB or GiB (powers of 1024; KB, MB and GB, and K, M and G, are
// read as the same). The error wraps ErrBadPolicy.
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGiBkmgb ")
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: size %q: want a whole number of bytes with an optional unit (KiB, MiB, GiB), as 1MiB", ErrBadPolicy, s)
	}
	var shift uint
	switch unit {
	case "", "B":
	case "K", "KB", "KIB":
		shift = 10
	case "M", "MB", "MIB":
		shift = 20
	case "G", "GB", "GIB":
		shift = 30
	default:
		return 0, fmt.Errorf("%w: size %q: unknown unit %q (KiB, MiB, GiB)", ErrBadPolicy, s, unit)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("%w: size %q is too large", ErrBadPolicy, s)
	}
	return n << shift, nil
}

// FormatSize writes n bytes in the largest unit that divides it: "1MiB",
// "192KiB", "1000B".
func FormatSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
