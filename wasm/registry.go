package wasm

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/dataflare/dataflare/plugin"
	"github.com/prometheus/client_golang/prometheus"
)

// ModuleSource fetches module bytes by plugin name and digest. A
// *wasmstore.Store satisfies it (and LimitedSource, which gives each
// module's policy too). An error matching plugin.ErrUnknownPlugin
// means the module is not there (or not as pinned), one matching
// plugin.ErrTooLarge that it is over the source's size limit: asking again
// will not help; any other error is taken as transient.
type ModuleSource interface {
	Fetch(ctx context.Context, name, digest string) ([]byte, error)
}

// LimitedSource is a ModuleSource that also knows each module's own limits,
// its policy (see Limits). A Registry over one loads every module under
// them, with Runtime.LoadLimited. A *wasmstore.Store and a *wasmstore.Lazy
// satisfy it. FetchLimited's errors are read as Fetch's.
type LimitedSource interface {
	ModuleSource
	FetchLimited(ctx context.Context, name, digest string) ([]byte, Limits, error)
}

// RegistryOption configures a Registry.
type RegistryOption func(*registryConfig) error

type registryConfig struct {
	maxModules  int
	loadTimeout time.Duration
	failTTL     time.Duration
}

// Registry defaults.
const (
	// DefaultMaxModules is how many idle loaded modules a Registry keeps.
	DefaultMaxModules = 16
	// DefaultLoadTimeout bounds fetching and compiling one module.
	DefaultLoadTimeout = 2 * time.Minute
	// DefaultFailureTTL is how long a module that cannot be used (not
	// found, tampered, refused by the sandbox) is remembered as such.
	DefaultFailureTTL = 30 * time.Second
	// SourceFailureTTL is how long, at most, a refusal of the source is
	// remembered — no such module, or none signed by a trusted key — since
	// a push can mend it at any time; a refusal of the module's bytes
	// (tampered, refused by the sandbox) is remembered for the failure TTL.
	SourceFailureTTL = 2 * time.Second
)

// WithMaxModules sets how many loaded modules the Registry keeps while
// they run no batch (default DefaultMaxModules); beyond it, the least
// recently used idle ones are closed. Modules running batches are never
// closed (there are at most as many as batches run at once). n ≥ 1.
func WithMaxModules(n int) RegistryOption {
	return func(c *registryConfig) error {
		if n < 1 {
			return invalidOption("max modules %d < 1", n)
		}
		c.maxModules = n
		return nil
	}
}

// WithLoadTimeout bounds fetching and compiling one module (default
// DefaultLoadTimeout). d > 0.
func WithLoadTimeout(d time.Duration) RegistryOption {
	return func(c *registryConfig) error {
		if d <= 0 {
			return invalidOption("load timeout %s is not positive", d)
		}
		c.loadTimeout = d
		return nil
	}
}

// WithFailureTTL sets how long a module that failed to load for a reason
// of its own is not tried again (default DefaultFailureTTL); 0 disables
// the memory.
func WithFailureTTL(d time.Duration) RegistryOption {
	return func(c *registryConfig) error {
		if d < 0 {
			return invalidOption("failure TTL %s is negative", d)
		}
		c.failTTL = d
		return nil
	}
}

// Registry keeps loaded plugin modules by name and digest, fetching and
// compiling each from a ModuleSource on first use. It is how a worker runs
// WebAssembly plugins: a job pins the digest of the newest module of its
// plugin when it is created, and Plugin(ctx, name, digest) runs exactly
// that module, loading it if needed. A new version is so picked up without
// a restart by the jobs created after it was pushed, while batches already
// running finish on the module they pinned, which is closed once its last
// batch ends and it is no longer among the most recently used.
//
// A Registry is a prometheus.Collector of its modules and the runtime's
// compilations (register it to export them). It is safe for concurrent use.
type Registry struct {
	rt  *Runtime
	src ModuleSource
	cfg registryConfig

	group  singleflight.Group
	stop   context.Context // cancelled by Close: stops loads
	cancel context.CancelFunc

	mu      sync.Mutex
	entries map[string]*entry // by key(name, digest)
	lru     *list.List        // of *entry, most recently used first
	failed  map[string]failure
	closed  bool
	loads   int64
	evicted int64
}

type entry struct {
	name, digest string
	p            *Plugin
	refs         int
	elem         *list.Element // nil once evicted or dropped
	// closed: evicted with no reference, p is closed; or dropped by
	// Pinned.Reset, p is closed once its last reference is released.
	closed bool
}

type failure struct {
	err   error
	until time.Time
}

func key(name, digest string) string { return name + "@" + digest }

// NewRegistry returns a Registry that loads modules with rt from src. The
// error wraps ErrInvalidOption for a bad option.
func NewRegistry(rt *Runtime, src ModuleSource, opts ...RegistryOption) (*Registry, error) {
	cfg := registryConfig{maxModules: DefaultMaxModules, loadTimeout: DefaultLoadTimeout, failTTL: DefaultFailureTTL}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	stop, cancel := context.WithCancel(context.Background())
	return &Registry{
		rt:      rt,
		src:     src,
		cfg:     cfg,
		stop:    stop,
		cancel:  cancel,
		entries: make(map[string]*entry),
		lru:     list.New(),
		failed:  make(map[string]failure),
	}, nil
}

// Loaded returns the digests of the modules loaded now, by plugin name,
// most recently used first.
func (r *Registry) Loaded() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string)
	for el := r.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		out[e.name] = append(out[e.name], e.digest)
	}
	return out
}

// ReleaseResult gives the pooled buffer of a result one of the registry's
// plugins returned back to the runtime's pool (see WithBufferPool and the
// function ReleaseResult). A worker calls it once the result is published.
func (r *Registry) ReleaseResult(res *plugin.BatchResult) { ReleaseResult(res) }

// RegistryStats are a Registry's counters.
type RegistryStats struct {
	// Modules is the number of loaded modules, busy and idle.
	Modules int
	// Loads counts modules fetched and compiled; Evicted counts idle
	// modules closed to stay within WithMaxModules.
	Loads, Evicted int64
}

// Stats returns the registry's counters.
func (r *Registry) Stats() RegistryStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RegistryStats{Modules: len(r.entries), Loads: r.loads, Evicted: r.evicted}
}

// Plugin returns the plugin that runs exactly the module name@digest,
// loading it now if it is not loaded. The returned plugin stays valid: if
// the module is closed to make room, its next batch loads it again.
//
// The error is a *plugin.Error: plugin.CodeUnavailable (matching
// plugin.ErrUnavailable) when loading failed for a reason that may pass (the
// source did not answer, ctx ended, the registry is closed);
// plugin.CodeUnknownPlugin when the module cannot be used — the source has
// no such module or its bytes do not match digest (wrapping ErrDigestMismatch
// or the source's error), or the runtime refused it (wrapping
// ErrInvalidModule, ErrForbiddenImport, ErrABI or ErrInstantiate).
func (r *Registry) Plugin(ctx context.Context, name, digest string) (plugin.BatchPlugin, error) {
	e, err := r.acquire(ctx, name, digest)
	if err != nil {
		return nil, err
	}
	pp := &Pinned{r: r, name: name, digest: digest, info: e.p.Info()}
	r.release(e)
	return pp, nil
}

// acquire returns the entry of name@digest with a reference taken, loading
// it if needed.
func (r *Registry) acquire(ctx context.Context, name, digest string) (*entry, error) {
	k := key(name, digest)
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, unavailable("registry")
		}
		if e, ok := r.entries[k]; ok {
			e.refs++
			if e.elem != nil {
				r.lru.MoveToFront(e.elem)
			}
			r.mu.Unlock()
			return e, nil
		}
		if f, ok := r.failed[k]; ok {
			if time.Now().Before(f.until) {
				r.mu.Unlock()
				return nil, f.err
			}
			delete(r.failed, k)
		}
		r.mu.Unlock()
		ch := r.group.DoChan(k, func() (any, error) { return r.load(name, digest) })
		select {
		case res := <-ch:
			if res.Err != nil {
				return nil, res.Err
			}
			e := res.Val.(*entry)
			r.mu.Lock()
			if !e.closed {
				e.refs++
				if e.elem != nil {
					r.lru.MoveToFront(e.elem)
				}
				r.mu.Unlock()
				return e, nil
			}
			// Evicted and closed between its load and now (other
			// batches ended while the registry was over its limit):
			// load it again.
			r.mu.Unlock()
		case <-ctx.Done():
			return nil, plugin.ContextError(ctx.Err())
		}
	}
}

// load fetches, verifies, compiles and inserts name@digest, and returns
// its entry. Loads are shared by every batch waiting for the module, so they
// run under the registry's own context, not a batch's. A new entry is not
// evicted before its waiters take it: eviction happens when a reference is
// dropped.
func (r *Registry) load(name, digest string) (*entry, error) {
	k := key(name, digest)
	// A batch that missed the map just before another's load inserted the
	// entry starts its own load: it finds the entry here.
	r.mu.Lock()
	if e, ok := r.entries[k]; ok {
		r.mu.Unlock()
		return e, nil
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.stop, r.cfg.loadTimeout)
	defer cancel()
	what := fmt.Sprintf("module %s of plugin %s", short(digest), name)
	var (
		data []byte
		lim  Limits
		err  error
	)
	if ls, ok := r.src.(LimitedSource); ok {
		data, lim, err = ls.FetchLimited(ctx, name, digest)
	} else {
		data, err = r.src.Fetch(ctx, name, digest)
	}
	if err != nil {
		return nil, r.loadFailed(name, digest, fmt.Errorf("wasm: fetch %s: %w", what, err), min(r.cfg.failTTL, SourceFailureTTL))
	}
	p, err := r.rt.LoadLimited(ctx, data, digest, lim)
	if err != nil {
		return nil, r.loadFailed(name, digest, fmt.Errorf("wasm: load %s: %w", what, err), r.cfg.failTTL)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		p.Close()
		return nil, unavailable("registry")
	}
	if e, ok := r.entries[k]; ok { // cannot happen while loads of k are serialised; be safe
		p.Close()
		return e, nil
	}
	e := &entry{name: name, digest: digest, p: p}
	e.elem = r.lru.PushFront(e)
	r.entries[k] = e
	r.loads++
	return e, nil
}

// loadFailed classifies a failed load and remembers for ttl the failures
// that are the module's own.
func (r *Registry) loadFailed(name, digest string, err error, ttl time.Duration) error {
	// A module over the source's size limit stays over it.
	permanent := errors.Is(err, plugin.ErrUnknownPlugin) || errors.Is(err, plugin.ErrTooLarge)
	for _, s := range []error{ErrDigestMismatch, ErrInvalidModule, ErrForbiddenImport, ErrABI, ErrInstantiate} {
		permanent = permanent || errors.Is(err, s)
	}
	if !permanent || errors.Is(err, ErrClosed) {
		return &plugin.Error{Code: plugin.CodeUnavailable, Message: err.Error(), Err: err}
	}
	pe := &plugin.Error{Code: plugin.CodeUnknownPlugin, Message: err.Error(), Err: err}
	if ttl > 0 {
		r.mu.Lock()
		if len(r.failed) >= 256 {
			clear(r.failed)
		}
		r.failed[key(name, digest)] = failure{err: pe, until: time.Now().Add(ttl)}
		r.mu.Unlock()
	}
	return pe
}

// evictLocked closes the least recently used idle entries while more than
// the limit are idle, and returns their plugins to close.
func (r *Registry) evictLocked() []*Plugin {
	idle := 0
	for el := r.lru.Front(); el != nil; el = el.Next() {
		if el.Value.(*entry).refs == 0 {
			idle++
		}
	}
	var victims []*Plugin
	for el := r.lru.Back(); el != nil && idle > r.cfg.maxModules; {
		e := el.Value.(*entry)
		prev := el.Prev()
		if e.refs == 0 {
			r.lru.Remove(el)
			e.elem = nil
			e.closed = true
			delete(r.entries, key(e.name, e.digest))
			r.evicted++
			idle--
			victims = append(victims, e.p)
		}
		el = prev
	}
	return victims
}

func closeAll(ps []*Plugin) {
	for _, p := range ps {
		p.Close()
	}
}

// release drops a reference taken by acquire, and closes the plugin of an
// entry Pinned.Reset dropped once its last batch is done.
func (r *Registry) release(e *entry) {
	r.mu.Lock()
	e.refs--
	victims := r.evictLocked()
	if e.closed && e.refs == 0 {
		victims = append(victims, e.p)
	}
	r.mu.Unlock()
	closeAll(victims)
}

// Close closes every loaded module (batches running finish first, see
// Plugin.Close) and stops loads in progress; later batches fail with an
// error matching plugin.ErrUnavailable and ErrClosed. It does not close the
// Runtime. Close is idempotent.
func (r *Registry) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	var all []*Plugin
	for _, e := range r.entries {
		e.closed = true
		all = append(all, e.p)
	}
	clear(r.entries)
	r.lru.Init()
	r.mu.Unlock()
	r.cancel()
	closeAll(all)
}

// run runs fn on name@digest's plugin, holding a reference meanwhile.
func (r *Registry) run(ctx context.Context, name, digest string, fn func(*Plugin) error) error {
	e, err := r.acquire(ctx, name, digest)
	if err != nil {
		return err
	}
	defer r.release(e)
	return fn(e.p)
}

// Pinned runs batches on one module, name@digest, through its Registry. It
// is a plugin.BatchPlugin and has ProcessEncoded and ProcessEncodedFunc like
// a Plugin. Get one from Registry.Plugin.
type Pinned struct {
	r            *Registry
	name, digest string
	info         plugin.Info
}

// Digest returns the module's digest.
func (p *Pinned) Digest() string { return p.digest }

// Info returns the module's info.
func (p *Pinned) Info() plugin.Info { return p.info }

// State implements plugin.Stater: it reports plugin.Stopped once the
// registry is closed, else plugin.Ready.
func (p *Pinned) State() plugin.State {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.r.closed {
		return plugin.Stopped
	}
	return plugin.Ready
}

// Reset implements plugin.Resetter: the loaded module is dropped from the
// registry — its instances and compiled code are closed once the batches
// running on it end, which Reset does not wait for — and loaded again, so
// that the next batch runs on fresh instances. It returns Registry.Plugin's
// errors when the module cannot be loaded again.
func (p *Pinned) Reset(ctx context.Context) error {
	k := key(p.name, p.digest)
	r := p.r
	r.mu.Lock()
	e, ok := r.entries[k]
	if ok {
		delete(r.entries, k)
		if e.elem != nil {
			r.lru.Remove(e.elem)
			e.elem = nil
		}
		e.closed = true
	}
	idle := ok && e.refs == 0
	r.mu.Unlock()
	if idle {
		e.p.Close()
	}
	e, err := r.acquire(ctx, p.name, p.digest)
	if err != nil {
		return err
	}
	r.release(e)
	return nil
}

// ProcessBatch is Plugin.ProcessBatch on the pinned module; it also
// returns Registry.Plugin's errors when the module must be loaded again.
func (p *Pinned) ProcessBatch(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (res *plugin.BatchResult, err error) {
	err = p.r.run(ctx, p.name, p.digest, func(pl *Plugin) error {
		res, err = pl.ProcessBatch(ctx, cfg, recs)
		return err
	})
	return res, err
}

// ProcessEncoded is Plugin.ProcessEncoded on the pinned module; it also
// returns Registry.Plugin's errors when the module must be loaded again.
func (p *Pinned) ProcessEncoded(ctx context.Context, msg []byte, recs []plugin.Record) (res *plugin.BatchResult, err error) {
	err = p.r.run(ctx, p.name, p.digest, func(pl *Plugin) error {
		res, err = pl.ProcessEncoded(ctx, msg, recs)
		return err
	})
	return res, err
}

// ProcessEncodedFunc is Plugin.ProcessEncodedFunc on the pinned module; it
// also returns Registry.Plugin's errors when the module must be loaded
// again.
func (p *Pinned) ProcessEncodedFunc(ctx context.Context, msg []byte, recs []plugin.Record, fn func(*plugin.BatchResult) error) error {
	return p.r.run(ctx, p.name, p.digest, func(pl *Plugin) error {
		return pl.ProcessEncodedFunc(ctx, msg, recs, fn)
	})
}

var (
	descModules  = prometheus.NewDesc("dataflare_wasm_modules_loaded", "WebAssembly modules loaded now.", nil, nil)
	descLoads    = prometheus.NewDesc("dataflare_wasm_module_loads_total", "WebAssembly modules fetched and compiled.", nil, nil)
	descEvicted  = prometheus.NewDesc("dataflare_wasm_modules_evicted_total", "Idle WebAssembly modules closed to make room.", nil, nil)
	descCompiles = prometheus.NewDesc("dataflare_wasm_compiles_total", "WebAssembly modules compiled (or read from the compilation cache).", nil, nil)
	descCompile  = prometheus.NewDesc("dataflare_wasm_compile_seconds_total", "Time spent compiling WebAssembly modules.", nil, nil)
	descKVCalls  = prometheus.NewDesc("dataflare_wasm_kv_calls_total", "kv_get calls of WebAssembly modules (capability kv:BUCKET).", nil, nil)
	descLogLines = prometheus.NewDesc("dataflare_wasm_log_lines_total", "Log lines WebAssembly modules wrote (capability log).", nil, nil)
	descLogDrops = prometheus.NewDesc("dataflare_wasm_log_dropped_total", "Log lines of WebAssembly modules dropped over their rate.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descModules, descLoads, descEvicted, descCompiles, descCompile, descKVCalls, descLogLines, descLogDrops} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the registry's Stats and the
// runtime's CompileStats and CapabilityStats.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	st := r.Stats()
	n, took := r.rt.CompileStats()
	ch <- prometheus.MustNewConstMetric(descModules, prometheus.GaugeValue, float64(st.Modules))
	ch <- prometheus.MustNewConstMetric(descLoads, prometheus.CounterValue, float64(st.Loads))
	ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(descCompiles, prometheus.CounterValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descCompile, prometheus.CounterValue, took.Seconds())
	kv, lines, drops := r.rt.CapabilityStats()
	ch <- prometheus.MustNewConstMetric(descKVCalls, prometheus.CounterValue, float64(kv))
	ch <- prometheus.MustNewConstMetric(descLogLines, prometheus.CounterValue, float64(lines))
	ch <- prometheus.MustNewConstMetric(descLogDrops, prometheus.CounterValue, float64(drops))
}
