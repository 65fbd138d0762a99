package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"golang.org/x/time/rate"
)

// HostModule is the name of the host module of capabilities: a module
// imports its functions, kv_get and log, only when its policy grants them
// (Limits.Grants; docs/abi.md, "Capabilities").
const HostModule = "dataflare"

// KV is what the kv capability reads: values of keys in NATS KV buckets. A
// worker gives its runtime a cache kept fresh by a watch (WithKV).
type KV interface {
	// Get returns the value of key in bucket; found is false when the key
	// has no value. The value is only read.
	Get(ctx context.Context, bucket, key string) (value []byte, found bool, err error)
}

// Results of the host functions below 0 (docs/abi.md).
const (
	// KVNotFound: the key has no value in the bucket.
	KVNotFound = -1
	// CapDenied: the module's policy does not grant the capability, or the
	// bucket.
	CapDenied = -2
	// CapBadArgs: a region outside the guest's memory, a length over its
	// bound, a bad log level or a key NATS does not allow.
	CapBadArgs = -3
	// KVUnavailable: the bucket could not be read (it does not exist, or
	// NATS did not answer in time); the worker's log says why.
	KVUnavailable = -4
	// LogDropped: the line was over the module's rate and was dropped.
	LogDropped = 1
)

// Bounds of the host functions' arguments.
const (
	maxBucketLen = 255
	maxKeyLen    = 4096
	// maxLogArg is the longest log message read; maxLogLine what is kept
	// of it.
	maxLogArg  = 1 << 20
	maxLogLine = 1024
)

// Default rate of a module's log lines on one worker (WithLogRate).
const (
	DefaultLogRate  = 10
	DefaultLogBurst = 50
)

// grants are a module's capabilities, from Limits.Grants.
type grants struct {
	log     bool
	buckets []string
}

// parseGrants reads "log" and "kv:BUCKET" grants; others are refused.
func parseGrants(gs []string) (grants, error) {
	var g grants
	for _, s := range gs {
		switch bucket, ok := strings.CutPrefix(s, "kv:"); {
		case s == "log":
			g.log = true
		case ok && bucket != "" && len(bucket) <= maxBucketLen:
			if !slices.Contains(g.buckets, bucket) {
				g.buckets = append(g.buckets, bucket)
			}
		default:
			return grants{}, invalidOption("grant %q: the capabilities are log and kv:BUCKET", s)
		}
	}
	return g, nil
}

func (g grants) bucket(b []byte) (string, bool) {
	for _, s := range g.buckets {
		if s == string(b) {
			return s, true
		}
	}
	return "", false
}

// hostImports are the functions of HostModule: their types and the grant
// each needs.
var hostImports = map[string]struct {
	params  []api.ValueType
	granted func(grants) bool
	grant   string
}{
	"kv_get": {[]api.ValueType{i32, i32, i32, i32, i32, i32}, func(g grants) bool { return len(g.buckets) > 0 }, "kv:BUCKET"},
	"log":    {[]api.ValueType{i32, i32, i32}, func(g grants) bool { return g.log }, "log"},
}

// hostImportAllowed returns nil when the module's grants allow importing
// HostModule's function name, else why not.
func hostImportAllowed(name string, g grants) error {
	f, ok := hostImports[name]
	if !ok {
		return fmt.Errorf("%s.%s: host module %q has kv_get and log only (docs/abi.md)", HostModule, name, HostModule)
	}
	if !f.granted(g) {
		return fmt.Errorf("%s.%s: the module's policy does not grant %s (push it with --grant %s)", HostModule, name, f.grant, f.grant)
	}
	return nil
}

// instantiateHost adds HostModule to the runtime: its functions find the
// calling module's grants in their context (withCaller).
func (r *Runtime) instantiateHost(ctx context.Context) error {
	b := r.rt.NewHostModuleBuilder(HostModule)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(r.kvGet), hostImports["kv_get"].params, []api.ValueType{i32}).
		WithParameterNames("bucket_ptr", "bucket_len", "key_ptr", "key_len", "out_ptr", "out_cap").
		Export("kv_get")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(r.log), hostImports["log"].params, []api.ValueType{i32}).
		WithParameterNames("level", "msg_ptr", "msg_len").
		Export("log")
	_, err := b.Instantiate(ctx)
	return err
}

type callerKey struct{}

// withCaller returns ctx carrying p, whose guest is about to run: the host
// functions read the caller's grants from it.
func withCaller(ctx context.Context, p *Plugin) context.Context {
	return context.WithValue(ctx, callerKey{}, p)
}

func caller(ctx context.Context) *Plugin {
	p, _ := ctx.Value(callerKey{}).(*Plugin)
	return p
}

// result sets a host function's i32 result.
func result(stack []uint64, v int32) { stack[0] = api.EncodeI32(v) }

// kvGet is kv_get(bucket_ptr, bucket_len, key_ptr, key_len, out_ptr,
// out_cap) -> i32: the value's length, the value copied to out when it
// fits (else nothing is written: call again with room for it), or one of
// the negative results above.
func (r *Runtime) kvGet(ctx context.Context, mod api.Module, stack []uint64) {
	bptr, blen := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	kptr, klen := api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	optr, ocap := api.DecodeU32(stack[4]), api.DecodeU32(stack[5])
	p := caller(ctx)
	if p == nil {
		result(stack, CapDenied)
		return
	}
	p.stats.kvCalls.Add(1)
	r.caps.kvCalls.Add(1)
	mem := mod.Memory()
	if blen > maxBucketLen || klen > maxKeyLen || mem == nil {
		result(stack, CapBadArgs)
		return
	}
	bucketb, ok1 := mem.Read(bptr, blen)
	keyb, ok2 := mem.Read(kptr, klen)
	out, ok3 := mem.Read(optr, ocap)
	if !ok1 || !ok2 || !ok3 {
		result(stack, CapBadArgs)
		return
	}
	bucket, ok := p.grants.bucket(bucketb)
	if !ok {
		result(stack, CapDenied)
		return
	}
	if !validKey(keyb) {
		result(stack, CapBadArgs)
		return
	}
	if r.cfg.kv == nil {
		p.warn(ctx, "kv_get: this worker reads no KV buckets", "bucket", bucket)
		result(stack, KVUnavailable)
		return
	}
	v, found, err := r.cfg.kv.Get(ctx, bucket, string(keyb))
	switch {
	case err != nil:
		p.warn(ctx, "kv_get failed", "bucket", bucket, "error", err)
		result(stack, KVUnavailable)
	case !found:
		result(stack, KVNotFound)
	case len(v) > maxKVValue:
		p.warn(ctx, "kv_get: value too large for the ABI", "bucket", bucket, "bytes", len(v))
		result(stack, KVUnavailable)
	default:
		if len(v) <= len(out) {
			copy(out, v)
		}
		result(stack, int32(len(v)))
	}
}

// maxKVValue is the largest value kv_get returns: its length is an i32.
const maxKVValue = 1<<31 - 1

// validKey reports whether k is a key NATS KV allows: letters, digits and
// "-/_=.", not starting or ending with '.', with no empty token ("a..b").
func validKey(k []byte) bool {
	if len(k) == 0 || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	for i, c := range k {
		if c == '.' && k[i-1] == '.' {
			return false
		}
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '/' || c == '_' || c == '=' || c == '.':
		default:
			return false
		}
	}
	return true
}

// log is log(level, msg_ptr, msg_len) -> i32: 0 when the line was
// written to the worker's log, LogDropped over the module's rate, or a
// negative result above. Levels: 0 debug, 1 info, 2 warn, 3 error.
func (r *Runtime) log(ctx context.Context, mod api.Module, stack []uint64) {
	level, ptr, n := api.DecodeI32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	p := caller(ctx)
	switch {
	case p == nil || !p.grants.log:
		result(stack, CapDenied)
		return
	case level < 0 || level > 3 || n > maxLogArg || mod.Memory() == nil:
		result(stack, CapBadArgs)
		return
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		result(stack, CapBadArgs)
		return
	}
	if !p.logRate.Allow() {
		p.stats.logDropped.Add(1)
		r.caps.logDropped.Add(1)
		result(stack, LogDropped)
		return
	}
	p.stats.logLines.Add(1)
	r.caps.logLines.Add(1)
	truncated := len(b) > maxLogLine
	if truncated {
		b = b[:maxLogLine]
	}
	msg := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	attrs := []slog.Attr{slog.String("plugin", p.name())}
	if truncated {
		attrs = append(attrs, slog.Int("truncated_from", int(n)))
	}
	if cur := p.stats.logDropped.Load(); cur > 0 {
		if d := cur - p.logDroppedSeen.Swap(cur); d > 0 {
			attrs = append(attrs, slog.Int64("dropped_before", d))
		}
	}
	r.cfg.logger.LogAttrs(context.WithoutCancel(ctx), slog.Level(4*(level-1)), msg, attrs...)
	result(stack, 0)
}

// warn writes a line about the module into the worker's log, at most one
// a second per module.
func (p *Plugin) warn(ctx context.Context, msg string, args ...any) {
	if p.warnRate.Allow() {
		p.rt.cfg.logger.Log(context.WithoutCancel(ctx), slog.LevelWarn, "wasm: "+msg, append([]any{"plugin", p.name()}, args...)...)
	}
}

// newLimiters sets the plugin's log and warning rates.
func (p *Plugin) newLimiters() {
	p.logRate = rate.NewLimiter(rate.Limit(p.rt.cfg.logRate), p.rt.cfg.logBurst)
	p.warnRate = rate.NewLimiter(1, 1)
}

// capStats are a plugin's counters of capability calls.
type capStats struct {
	kvCalls, logLines, logDropped atomic.Int64
}

// checkHostTypes checks the types of the module's imports of HostModule.
func checkHostTypes(m wazero.CompiledModule, digest string) error {
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != HostModule {
			continue
		}
		want := hostImports[name]
		if !sameTypes(f.ParamTypes(), want.params) || !sameTypes(f.ResultTypes(), []api.ValueType{i32}) {
			return loadError(ErrForbiddenImport, digest, "%s.%s has type %s, want %s", mod, name,
				signature(f.ParamTypes(), f.ResultTypes()), signature(want.params, []api.ValueType{i32}))
		}
	}
	return nil
}

// CapabilityStats reports the capability calls of every module the runtime
// ran: kv_get calls, and log lines written and dropped over their rate.
func (r *Runtime) CapabilityStats() (kvCalls, logLines, logDropped int64) {
	return r.caps.kvCalls.Load(), r.caps.logLines.Load(), r.caps.logDropped.Load()
}
