package wasm

import (
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/dataflare/dataflare/pool"
)

// Defaults of a Runtime.
const (
	// DefaultMemoryLimitPages is the page limit of a guest's memory: 2,048
	// pages of 64 KiB, 128 MiB.
	DefaultMemoryLimitPages = 2048
	// MaxMemoryLimitPages is the largest page limit: 32,768 pages, 2 GiB.
	// The ABI packs pointers into 31 bits (docs/abi.md).
	MaxMemoryLimitPages = 32768
	// DefaultTimeout is the deadline of a batch (and of an instantiation)
	// whose context has none.
	DefaultTimeout = 10 * time.Second
)

// Limits are one module's own limits, its policy, set when it was pushed.
// They apply under the runtime's own limits, never above them: a batch of
// the module runs under the earliest of its context's deadline, the
// runtime's timeout when the context has none, and Timeout; its guest
// memory is capped at the smaller of MemoryLimitPages and the runtime's page
// limit. The zero value leaves the runtime's limits as they are.
type Limits struct {
	// Timeout bounds each batch of the module; 0 for no bound of its own.
	Timeout time.Duration
	// MemoryLimitPages caps the guest's memory, in pages of 64 KiB; 0 for
	// the runtime's page limit.
	MemoryLimitPages uint32
	// Grants are the capabilities of HostModule the module may import:
	// "log", and "kv:BUCKET" for each bucket it may read. A module
	// importing a function whose capability is not granted is refused at
	// load with an error wrapping ErrForbiddenImport.
	Grants []string
}

// Grant is a capability a guest does not have by default. Grants combine
// with |.
type Grant uint8

// Grants.
const (
	// GrantClock gives guests the host's wall and monotonic clocks and a
	// real sleep. Without it they see a fake clock that advances 1 ms per
	// reading, and sleeping returns at once.
	GrantClock Grant = 1 << iota
	// GrantRandom gives guests crypto/rand as their random source. Without
	// it random_get returns a fixed, deterministic sequence.
	GrantRandom
)

// Option configures a Runtime. Options validate their argument: a bad one
// makes NewRuntime return an error wrapping ErrInvalidOption.
type Option func(*config) error

type config struct {
	memoryLimitPages uint32
	maxModuleSize    int
	maxTableEntries  uint32
	timeout          time.Duration
	instances        int
	cacheDir         string
	grants           Grant
	guestOutput      io.Writer
	pool             *pool.Pool
	kv               KV
	logger           *slog.Logger
	logRate          float64
	logBurst         int
}

func defaultConfig() config {
	return config{
		memoryLimitPages: DefaultMemoryLimitPages,
		maxModuleSize:    DefaultMaxModuleSize,
		maxTableEntries:  DefaultMaxTableEntries,
		timeout:          DefaultTimeout,
		instances:        runtime.GOMAXPROCS(0),
		logger:           slog.Default(),
		logRate:          DefaultLogRate,
		logBurst:         DefaultLogBurst,
	}
}

// WithMemoryLimitPages caps every guest memory at pages pages of 64 KiB
// (default DefaultMemoryLimitPages). A guest's memory.grow beyond it fails,
// and a module declaring more is refused at load. 1 ≤ pages ≤
// MaxMemoryLimitPages.
func WithMemoryLimitPages(pages uint32) Option {
	return func(c *config) error {
		if pages < 1 || pages > MaxMemoryLimitPages {
			return invalidOption("memory limit %d pages is outside [1, %d]", pages, MaxMemoryLimitPages)
		}
		c.memoryLimitPages = pages
		return nil
	}
}

// WithMaxModuleSize sets the largest module the runtime loads or validates
// (default DefaultMaxModuleSize); a larger one is refused before anything
// is done with it, with an error wrapping ErrLimit. 8 ≤ n ≤ 1 GiB.
func WithMaxModuleSize(n int) Option {
	return func(c *config) error {
		if n < 8 || n > 1<<30 {
			return invalidOption("max module size %d is outside [8, %d]", n, 1<<30)
		}
		c.maxModuleSize = n
		return nil
	}
}

// WithMaxTableEntries bounds the entries of all the tables of one instance
// together (default DefaultMaxTableEntries; 8 bytes of host memory each). A
// module whose tables' declared minimums add up to more is refused with an
// error wrapping ErrLimit, and each table is given a declared maximum
// within the bound, so that the guest's table.grow past it returns -1.
// 1 ≤ n ≤ MaxTableEntriesLimit.
func WithMaxTableEntries(n uint32) Option {
	return func(c *config) error {
		if n < 1 || n > MaxTableEntriesLimit {
			return invalidOption("max table entries %d is outside [1, %d]", n, MaxTableEntriesLimit)
		}
		c.maxTableEntries = n
		return nil
	}
}

// WithTimeout sets the deadline of a batch whose context has none, and of
// instantiating a module (default DefaultTimeout). d > 0.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalidOption("timeout %s is not positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithInstances sets how many instances of each module may run at once:
// the worker's parallelism (default runtime.GOMAXPROCS(0)). A batch arriving
// when all are busy waits for one. n ≥ 1.
func WithInstances(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalidOption("instances %d < 1", n)
		}
		c.instances = n
		return nil
	}
}

// WithCacheDir keeps compiled modules in dir, keyed by the sha256 of the
// bytes compiled (after the preflight bounds the tables) and the wazero
// version, so a restarted worker does not compile a module again. The
// cache holds machine code the worker runs, so the directory must be the
// worker's alone: NewRuntime creates it with mode 0700 if missing, and
// refuses one that exists but belongs to another user or is writable by
// group or others. dir must not be empty.
func WithCacheDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return invalidOption("empty cache directory")
		}
		c.cacheDir = dir
		return nil
	}
}

// WithGrants gives every guest of the runtime the capabilities g (default:
// none).
func WithGrants(g Grant) Option {
	return func(c *config) error {
		if g&^(GrantClock|GrantRandom) != 0 {
			return invalidOption("unknown grant bits %#x", uint8(g))
		}
		c.grants = g
		return nil
	}
}

// WithGuestOutput sends what guests write to their stdout and stderr to w
// (default: discarded). w must be safe for concurrent use. Whatever w is, the
// last bytes a guest wrote during a failed batch are quoted in the batch's
// error.
func WithGuestOutput(w io.Writer) Option {
	return func(c *config) error {
		if w == nil {
			return invalidOption("nil guest output writer")
		}
		c.guestOutput = w
		return nil
	}
}

// WithBufferPool makes plugins copy guest output into buffers from p (one
// per batch) instead of allocating: the worker's guest I/O stays on its
// pool. Give each result's buffer back with ReleaseResult once its values
// are no longer needed; a result never released is not lost, the pool
// declares its buffer abandoned after its MaxHold. p must not be nil.
func WithBufferPool(p *pool.Pool) Option {
	return func(c *config) error {
		if p == nil {
			return invalidOption("nil buffer pool")
		}
		c.pool = p
		return nil
	}
}

// WithKV makes kv what modules granted "kv:BUCKET" read through kv_get
// (default: none, and kv_get answers KVUnavailable). kv must be safe for
// concurrent use.
func WithKV(kv KV) Option {
	return func(c *config) error {
		if kv == nil {
			return invalidOption("nil KV")
		}
		c.kv = kv
		return nil
	}
}

// WithLogger makes l the log that modules granted "log" write into, and
// where failed capability calls are reported (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return invalidOption("nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithLogRate bounds each module's log lines to perSecond a second, with
// bursts of burst (default DefaultLogRate and DefaultLogBurst); lines over
// it are dropped and counted, and the next line written says how many.
// 0 < perSecond ≤ 1e6, 1 ≤ burst ≤ 1e6.
func WithLogRate(perSecond float64, burst int) Option {
	return func(c *config) error {
		if !(perSecond > 0 && perSecond <= 1e6) || burst < 1 || burst > 1e6 {
			return invalidOption("log rate %g/s with bursts of %d: want a rate in (0, 1e6] and bursts in [1, 1e6]", perSecond, burst)
		}
		c.logRate, c.logBurst = perSecond, burst
		return nil
	}
}
