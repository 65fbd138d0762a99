package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/dataflare/dataflare/plugin"
)

// Runtime compiles and sandboxes plugin modules. It owns one wazero runtime
// (the compiler engine where the platform has one, with guests interrupted
// when their context is done), the WASI functions the sandbox allows, and
// the optional compiled-module cache on disk. It is safe for concurrent use.
type Runtime struct {
	cfg    config
	rt     wazero.Runtime
	cache  wazero.CompilationCache
	modCfg wazero.ModuleConfig

	compiles   atomic.Int64
	compileDur atomic.Int64
	caps       capStats

	mu      sync.Mutex
	closed  bool
	plugins map[*Plugin]struct{}
	// loads counts compilations in progress: Close waits for them, since
	// wazero must not be closed under a compilation.
	loads sync.WaitGroup
}

// NewRuntime returns a Runtime configured by opts. The error wraps
// ErrInvalidOption for a bad option, ErrUnsafeCacheDir for a cache
// directory others may write to, or is the error of creating the cache
// directory or of instantiating the WASI host functions.
func NewRuntime(ctx context.Context, opts ...Option) (*Runtime, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(cfg.memoryLimitPages)
	r := &Runtime{cfg: cfg, plugins: make(map[*Plugin]struct{})}
	if cfg.cacheDir != "" {
		if err := privateDir(cfg.cacheDir); err != nil {
			return nil, err
		}
		cache, err := wazero.NewCompilationCacheWithDir(cfg.cacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: cache directory: %w", err)
		}
		r.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		_ = r.rt.Close(ctx)
		return nil, fmt.Errorf("wasm: instantiate WASI: %w", err)
	}
	if err := r.instantiateHost(ctx); err != nil {
		_ = r.rt.Close(ctx)
		return nil, fmt.Errorf("wasm: instantiate host module %s: %w", HostModule, err)
	}
	// Anonymous instances (many per module), _initialize as the only start
	// function, and nothing from the host unless granted: wazero's module
	// config has no filesystem, environment, arguments or network by
	// default, and discards stdout and stderr.
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize")
	if cfg.grants&GrantClock != 0 {
		mc = mc.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	if cfg.grants&GrantRandom != 0 {
		mc = mc.WithRandSource(rand.Reader)
	}
	r.modCfg = mc
	return r, nil
}

// Digest returns the digest of a module as the fleet writes it:
// "sha256:" and the lower-case hex SHA-256 of the bytes.
func Digest(module []byte) string {
	sum := sha256.Sum256(module)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Load checks module against the sandbox's limits and imports (the
// preflight: before wazero reads it), compiles it, checks it against the
// ABI, instantiates it once (running its start function and _initialize),
// reads its info, and returns it as a Plugin ready to run batches. ctx
// bounds the compilation; the first instantiation is bounded by ctx and by
// the runtime's timeout, whichever ends first.
//
// The preflight gives every table a declared maximum within the table
// bound (WithMaxTableEntries): what wazero compiles is the module with its
// table section so rewritten, the rest of its bytes unchanged. The Plugin's
// digest and size are the module's as given.
//
// The error wraps ErrInvalidModule (not a valid module), ErrLimit (over a
// sandbox limit: size, memory, tables, locals, counts; it also matches
// ErrInvalidModule), ErrForbiddenImport (an import outside the sandbox),
// ErrABI (a missing or mistyped export, another ABI version, bad info),
// ErrInstantiate (the start function or _initialize trapped or timed out,
// or a data segment does not fit) or ErrClosed.
func (r *Runtime) Load(ctx context.Context, module []byte) (*Plugin, error) {
	return r.load(ctx, module, Digest(module), Limits{})
}

// LoadVerified is Load for a module that must hash to digest
// ("sha256:<hex>"). A module that does not is refused before anything else
// is done with it, with an error wrapping ErrDigestMismatch: the digest is
// checked on the bytes as given, the preflight's rewrite comes after.
func (r *Runtime) LoadVerified(ctx context.Context, module []byte, digest string) (*Plugin, error) {
	if got := Digest(module); got != digest {
		return nil, fmt.Errorf("%w: module is %s, want %s", ErrDigestMismatch, got, digest)
	}
	return r.load(ctx, module, digest, Limits{})
}

// LoadLimited is LoadVerified for a module with limits of its own (see
// Limits): they apply under the runtime's, never above them. A module
// whose memory's declared minimum is above lim.MemoryLimitPages is refused
// with an error wrapping ErrLimit; a declared maximum above it is capped,
// so that memory.grow past it fails. The errors are LoadVerified's.
func (r *Runtime) LoadLimited(ctx context.Context, module []byte, digest string, lim Limits) (*Plugin, error) {
	if got := Digest(module); got != digest {
		return nil, fmt.Errorf("%w: module is %s, want %s", ErrDigestMismatch, got, digest)
	}
	if lim.Timeout < 0 {
		return nil, invalidOption("module timeout %s is negative", lim.Timeout)
	}
	return r.load(ctx, module, digest, lim)
}

// Validate reports whether module would Load, and returns its info. It is
// what a module store calls before accepting a module; the errors are
// Load's.
func (r *Runtime) Validate(ctx context.Context, module []byte) (plugin.Info, error) {
	return r.ValidateLimited(ctx, module, Limits{})
}

// ValidateLimited is Validate for a module with limits of its own: what a
// module store calls before accepting a module with a policy, so that a
// module importing a capability its policy does not grant is refused then.
func (r *Runtime) ValidateLimited(ctx context.Context, module []byte, lim Limits) (plugin.Info, error) {
	if lim.Timeout < 0 {
		return plugin.Info{}, invalidOption("module timeout %s is negative", lim.Timeout)
	}
	p, err := r.load(ctx, module, Digest(module), lim)
	if err != nil {
		return plugin.Info{}, err
	}
	info := p.Info()
	p.Close()
	return info, nil
}

func (r *Runtime) load(ctx context.Context, module []byte, digest string, lim Limits) (*Plugin, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("wasm: load: %w", ErrClosed)
	}
	r.loads.Add(1)
	r.mu.Unlock()
	defer r.loads.Done()
	g, err := parseGrants(lim.Grants)
	if err != nil {
		return nil, err
	}
	bounded, err := preflight(module, digest, limits{
		grants:           g,
		maxSize:          r.cfg.maxModuleSize,
		memoryLimitPages: r.cfg.memoryLimitPages,
		maxTableEntries:  r.cfg.maxTableEntries,
		policyPages:      min(lim.MemoryLimitPages, r.cfg.memoryLimitPages),
	})
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	// The compiled-module cache keys on the bytes compiled, and wazero
	// decodes the tables from them on every compilation (the cache holds
	// machine code only): a module is never instantiated with the tables of
	// its original bytes, even from a cache an older runtime filled.
	compiled, err := r.rt.CompileModule(ctx, bounded)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wasm: compile %s: %w", short(digest), ctx.Err())
		}
		return nil, loadError(ErrInvalidModule, digest, "%v", err)
	}
	r.compiles.Add(1)
	r.compileDur.Add(int64(time.Since(t0)))
	if err := checkImports(compiled, digest, g); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	if err := checkExports(compiled, digest); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	p := newPlugin(r, compiled, digest, len(module), lim, g)
	if !r.track(p) {
		p.Close()
		return nil, fmt.Errorf("wasm: load: %w", ErrClosed)
	}
	if err := p.init(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// loadError is the error of loading the module of digest: "wasm: <what is
// wrong>: module sha256:<12 digits>: <details>".
func loadError(sentinel error, digest, format string, args ...any) error {
	return fmt.Errorf("%w: module %s: "+format, append([]any{sentinel, short(digest)}, args...)...)
}

// track registers a new plugin, so that Close can wait for it; false when
// the runtime is closed.
func (r *Runtime) track(p *Plugin) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.plugins[p] = struct{}{}
	return true
}

// untrack forgets a plugin whose compiled module is closed.
func (r *Runtime) untrack(p *Plugin) {
	r.mu.Lock()
	delete(r.plugins, p)
	r.mu.Unlock()
}

// CompileStats reports how many modules this runtime compiled and the time
// it spent compiling (with a warm cache, compiling is mostly reading it).
func (r *Runtime) CompileStats() (n int64, total time.Duration) {
	return r.compiles.Load(), time.Duration(r.compileDur.Load())
}

// Close closes every plugin loaded by the runtime (see Plugin.Close), waits
// until their running batches have finished — at most their deadline, since
// guests are stopped then — and closes the runtime and the cache. If ctx ends
// first, Close returns its error and leaves the runtime's resources to the
// process: guest memories cannot be released under a running guest. Close is
// idempotent; it otherwise returns the error of closing wazero or the cache.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		plugins = append(plugins, p)
	}
	r.mu.Unlock()
	for _, p := range plugins {
		p.Close()
	}
	// A load that started before Close finds the runtime closed when it
	// registers its plugin, and closes the plugin itself.
	loaded := make(chan struct{})
	// Stops when the loads in progress end.
	go func() { r.loads.Wait(); close(loaded) }()
	select {
	case <-loaded:
	case <-ctx.Done():
		return fmt.Errorf("wasm: close: modules still compiling: %w", ctx.Err())
	}
	for _, p := range plugins {
		select {
		case <-p.done:
		case <-ctx.Done():
			return fmt.Errorf("wasm: close: batches still running: %w", ctx.Err())
		}
	}
	err := r.rt.Close(ctx)
	if r.cache != nil {
		err = errors.Join(err, r.cache.Close(ctx))
	}
	return err
}

// withDeadline returns ctx bounded by the runtime's timeout when ctx has no
// deadline of its own.
func (r *Runtime) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.cfg.timeout)
}

// short returns a digest shortened for messages: "sha256:" and 12 hex digits.
func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// allowedImports are the WASI functions a guest may import: what the
// standard toolchains' runtimes need to start, with no filesystem or
// network among them (docs/abi.md, "Sandbox").
var allowedImports = map[string]bool{
	"args_get": true, "args_sizes_get": true,
	"environ_get": true, "environ_sizes_get": true,
	"clock_res_get": true, "clock_time_get": true,
	"random_get": true,
	"fd_write":   true, "fd_read": true, "fd_close": true, "fd_seek": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true,
	"fd_prestat_get": true, "fd_prestat_dir_name": true,
	"poll_oneoff": true, "sched_yield": true, "proc_exit": true,
}

const wasiModule = wasi_snapshot_preview1.ModuleName

// importAllowed returns nil when the sandbox provides the function mod.name
// to a module with grants g, else why not.
func importAllowed(mod, name string, g grants) error {
	if mod == HostModule {
		return hostImportAllowed(name, g)
	}
	if mod != wasiModule {
		return fmt.Errorf("%s.%s: the sandbox provides no host module %q", mod, name, mod)
	}
	if !allowedImports[name] {
		return fmt.Errorf("%s.%s: the sandbox has no filesystem or network (see docs/abi.md)", mod, name)
	}
	return nil
}

// checkImports checks the compiled module's imports as the preflight did the
// bytes': a second look, through wazero's decoding.
func checkImports(m wazero.CompiledModule, digest string, g grants) error {
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		if err := importAllowed(mod, name, g); err != nil {
			return loadError(ErrForbiddenImport, digest, "%v", err)
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, name, _ := mem.Import()
		return loadError(ErrForbiddenImport, digest, "memory %s.%s: a plugin must define and export its own memory", mod, name)
	}
	return checkHostTypes(m, digest)
}

// ABI export names (docs/abi.md).
const (
	exportMemory  = "memory"
	exportVersion = "df_abi_version"
	exportInfo    = "df_info"
	exportAlloc   = "df_alloc"
	exportProcess = "df_process"
)

var i32, i64 = api.ValueTypeI32, api.ValueTypeI64

var abiExports = []struct {
	name            string
	params, results []api.ValueType
}{
	{exportVersion, nil, []api.ValueType{i32}},
	{exportInfo, nil, []api.ValueType{i64}},
	{exportAlloc, []api.ValueType{i32}, []api.ValueType{i32}},
	{exportProcess, []api.ValueType{i32, i32}, []api.ValueType{i64}},
}

func checkExports(m wazero.CompiledModule, digest string) error {
	if _, ok := m.ExportedMemories()[exportMemory]; !ok {
		return loadError(ErrABI, digest, "no exported memory %q", exportMemory)
	}
	fns := m.ExportedFunctions()
	for _, want := range abiExports {
		f, ok := fns[want.name]
		if !ok {
			return loadError(ErrABI, digest, "no exported function %s", want.name)
		}
		if !sameTypes(f.ParamTypes(), want.params) || !sameTypes(f.ResultTypes(), want.results) {
			return loadError(ErrABI, digest, "%s has type %s, want %s", want.name,
				signature(f.ParamTypes(), f.ResultTypes()), signature(want.params, want.results))
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func signature(params, results []api.ValueType) string {
	s := "("
	for i, t := range params {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(t)
	}
	s += ") -> ("
	for i, t := range results {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(t)
	}
	return s + ")"
}
