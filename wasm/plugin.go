package wasm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/time/rate"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
)

// Plugin is a loaded module: its compiled code and a pool of instances, as
// many as the runtime's WithInstances. It is a plugin.BatchPlugin — a
// plugin.Manager registers it like a native plugin — and runs each batch as
// one guest call. It is safe for concurrent use.
//
// An instance that trapped, exited or ran past its deadline is discarded and
// a fresh one is made for a later batch; the other instances and plugins are
// not affected.
type Plugin struct {
	rt       *Runtime
	compiled wazero.CompiledModule
	digest   string
	size     int
	info     plugin.Info
	// lim is the module's policy as asked; memPages the page limit that
	// applies, the smaller of the policy's and the runtime's.
	lim      Limits
	memPages uint32

	// slots holds one token per instance in use: its capacity is the
	// number of instances that may run at once.
	slots chan struct{}

	mu     sync.Mutex
	idle   []*instance
	active int
	closed bool
	// done is closed once the plugin is closed and no batch runs.
	done chan struct{}

	stats struct {
		batches, records, failed, traps, timeouts atomic.Int64
		created, discarded                        atomic.Int64
		failStreak                                atomic.Int32
		capStats
	}

	// grants are the capabilities of the module's policy; logRate bounds
	// its log lines, warnRate the worker's lines about its failed calls;
	// logDroppedSeen is stats.logDropped when a line last said so.
	grants         grants
	logRate        *rate.Limiter
	warnRate       *rate.Limiter
	logDroppedSeen atomic.Int64
}

func newPlugin(r *Runtime, compiled wazero.CompiledModule, digest string, size int, lim Limits, g grants) *Plugin {
	pages := r.cfg.memoryLimitPages
	if lim.MemoryLimitPages != 0 {
		pages = min(pages, lim.MemoryLimitPages)
	}
	p := &Plugin{
		grants:   g,
		rt:       r,
		compiled: compiled,
		digest:   digest,
		size:     size,
		lim:      lim,
		memPages: pages,
		slots:    make(chan struct{}, r.cfg.instances),
		done:     make(chan struct{}),
	}
	p.newLimiters()
	return p
}

// init makes the first instance, checks the ABI version and reads the info.
func (p *Plugin) init(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.rt.cfg.timeout)
	defer cancel()
	in, err := p.instantiate(ctx)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			in.close(ctx)
		}
	}()
	ver, err := in.mod.ExportedFunction(exportVersion).Call(ctx)
	if err != nil {
		return loadError(ErrABI, p.digest, "%s: %s", exportVersion, firstLine(err))
	}
	if v := uint32(ver[0]); v != batch.ABIVersion {
		return loadError(ErrABI, p.digest, "%s returned %d, this runtime speaks %d", exportVersion, v, batch.ABIVersion)
	}
	info, err := p.readInfo(ctx, in)
	if err != nil {
		return loadError(ErrABI, p.digest, "%v", err)
	}
	p.info = info
	p.idle = append(p.idle, in)
	keep = true
	return nil
}

// maxInfoSize bounds the JSON df_info may return.
const maxInfoSize = 64 << 10

func (p *Plugin) readInfo(ctx context.Context, in *instance) (plugin.Info, error) {
	res, err := in.mod.ExportedFunction(exportInfo).Call(ctx)
	if err != nil {
		return plugin.Info{}, fmt.Errorf("%s: %s", exportInfo, firstLine(err))
	}
	r := res[0]
	ptr, n := uint32(r>>32)&0x7fffffff, uint32(r)
	if r>>63 != 0 || n > maxInfoSize {
		return plugin.Info{}, fmt.Errorf("%s returned %#x: want a packed pointer and a length ≤ %d", exportInfo, r, maxInfoSize)
	}
	b, ok := in.mem.Read(ptr, n)
	if !ok {
		return plugin.Info{}, fmt.Errorf("%s returned region %#x+%d, past the end of memory", exportInfo, ptr, n)
	}
	var info plugin.Info
	if err := json.Unmarshal(b, &info); err != nil {
		return plugin.Info{}, fmt.Errorf("%s: %v", exportInfo, err)
	}
	switch {
	case info.Name == "":
		return plugin.Info{}, fmt.Errorf("%s: no name", exportInfo)
	case info.Version == "":
		return plugin.Info{}, fmt.Errorf("%s: no version", exportInfo)
	case info.APIVersion == "":
		info.APIVersion = plugin.APIVersion
	case !strings.HasPrefix(info.APIVersion, "1."):
		return plugin.Info{}, fmt.Errorf("%s: api_version %q, this runtime speaks %s", exportInfo, info.APIVersion, plugin.APIVersion)
	}
	return info, nil
}

// instantiate makes a new instance, running the start function and
// _initialize under ctx.
func (p *Plugin) instantiate(ctx context.Context) (*instance, error) {
	out := &tail{w: p.rt.cfg.guestOutput}
	refused := new(atomic.Uint64)
	mod, err := p.rt.rt.InstantiateModule(withCaller(p.memoryContext(ctx, refused), p), p.compiled, p.rt.modCfg.WithStdout(out).WithStderr(out))
	if err != nil {
		if mod != nil {
			_ = mod.Close(ctx)
		}
		return nil, p.instantiateError(ctx, err, out)
	}
	p.stats.created.Add(1)
	return &instance{
		mod:     mod,
		mem:     mod.ExportedMemory(exportMemory),
		alloc:   mod.ExportedFunction(exportAlloc),
		process: mod.ExportedFunction(exportProcess),
		output:  out,
		refused: refused,
	}, nil
}

func (p *Plugin) instantiateError(ctx context.Context, err error, out *tail) error {
	code, _ := exitCode(err)
	switch {
	case code == sys.ExitCodeDeadlineExceeded || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w: module %s: start function or _initialize ran past the deadline: %w", ErrInstantiate, short(p.digest), context.DeadlineExceeded)
	case code == sys.ExitCodeContextCanceled || ctx.Err() != nil:
		return fmt.Errorf("%w: module %s: %w", ErrInstantiate, short(p.digest), context.Canceled)
	}
	msg := firstLine(err)
	if s := out.String(); s != "" {
		msg += "; guest output: " + s
	}
	return loadError(ErrInstantiate, p.digest, "%s", msg)
}

// name names the plugin in messages: "name@version (sha256:…)" once the
// info is known, the short digest before.
func (p *Plugin) name() string {
	if p.info.Name == "" {
		return short(p.digest)
	}
	return p.info.String() + " (" + short(p.digest) + ")"
}

// memoryNote says where the instance's memory stands against its limit,
// and whose limit that is, for a failed batch's message.
func (p *Plugin) memoryNote(in *instance) string {
	pages, limit := in.mem.Size()/65536, p.memPages
	var whose string
	switch pol := p.lim.MemoryLimitPages; {
	case pol != 0 && pol <= p.rt.cfg.memoryLimitPages:
		whose = " (the module policy's)"
	case pol != 0:
		whose = fmt.Sprintf(" (the worker's: the module policy's %d pages are above it)", pol)
	}
	if asked := in.refused.Load(); asked > 0 {
		return fmt.Sprintf(" (memory: a memory.grow to %d pages was refused, above the %d-page limit%s)", (asked+65535)/65536, limit, whose)
	}
	if limit-pages <= max(limit/8, 64) {
		return fmt.Sprintf(" (memory is %d of its %d-page limit%s: a memory.grow likely failed)", pages, limit, whose)
	}
	return fmt.Sprintf(" (memory: %d of its %d-page limit%s)", pages, limit, whose)
}

// memoryContext returns ctx with the guest memory allocator that caps the
// memory at the module's page limit when its policy sets one below the
// runtime's, recording refused growths in refused.
func (p *Plugin) memoryContext(ctx context.Context, refused *atomic.Uint64) context.Context {
	if p.memPages >= p.rt.cfg.memoryLimitPages {
		return withGuestMemory(ctx)
	}
	return withCappedMemory(ctx, uint64(p.memPages)*65536, refused)
}

// Limits returns the module's own limits, its policy, as given at load.
func (p *Plugin) Limits() Limits { return p.lim }

// MemoryLimitPages returns the page limit of the module's guest memory:
// its policy's, or the runtime's when that is smaller or the policy sets
// none.
func (p *Plugin) MemoryLimitPages() uint32 { return p.memPages }

// Info returns what the module's df_info reported.
func (p *Plugin) Info() plugin.Info { return p.info }

// Digest returns the module's digest, "sha256:<hex>".
func (p *Plugin) Digest() string { return p.digest }

// Size returns the module's size in bytes.
func (p *Plugin) Size() int { return p.size }

// failStreakDegraded is how many batches in a row must fail with a trap or a
// deadline before State reports plugin.Degraded.
const failStreakDegraded = 3

// State implements plugin.Stater: it reports plugin.Stopped after Close,
// plugin.Degraded while its last batches all trapped or timed out,
// plugin.Ready otherwise.
func (p *Plugin) State() plugin.State {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	switch {
	case closed:
		return plugin.Stopped
	case p.stats.failStreak.Load() >= failStreakDegraded:
		return plugin.Degraded
	}
	return plugin.Ready
}

// Stats are a Plugin's counters since it was loaded.
type Stats struct {
	// Batches and Records count the batches run and their records.
	Batches, Records int64
	// Failed counts batches that returned an error (Traps and Timeouts
	// included).
	Failed int64
	// Traps counts batches whose guest trapped, exited or broke the ABI;
	// Timeouts those that ran past their deadline.
	Traps, Timeouts int64
	// Instances is the number of live instances; Created and Discarded
	// count instantiations and instances thrown away after a failure.
	Instances          int
	Created, Discarded int64
	// KVCalls counts the guest's kv_get calls; LogLines its log lines
	// written and LogDropped those dropped over its rate.
	KVCalls, LogLines, LogDropped int64
}

// Stats returns the plugin's counters.
func (p *Plugin) Stats() Stats {
	p.mu.Lock()
	live := len(p.idle) + p.active
	p.mu.Unlock()
	return Stats{
		Batches:   p.stats.batches.Load(),
		Records:   p.stats.records.Load(),
		Failed:    p.stats.failed.Load(),
		Traps:     p.stats.traps.Load(),
		Timeouts:  p.stats.timeouts.Load(),
		Instances: live,
		Created:   p.stats.created.Load(),
		Discarded: p.stats.discarded.Load(),

		KVCalls:    p.stats.kvCalls.Load(),
		LogLines:   p.stats.logLines.Load(),
		LogDropped: p.stats.logDropped.Load(),
	}
}

// acquire takes an instance for one batch: an idle one, or a new one while
// fewer than the limit are in use; it waits for one otherwise.
func (p *Plugin) acquire(ctx context.Context) (*instance, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, plugin.ContextError(ctx.Err())
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, unavailable("plugin " + p.name())
	}
	p.active++
	var in *instance
	if n := len(p.idle); n > 0 {
		in = p.idle[n-1]
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if in != nil {
		return in, nil
	}
	in, err := p.instantiate(ctx)
	if err != nil {
		p.release(ctx, nil, false)
		p.stats.failStreak.Add(1)
		code := plugin.CodeOf(err) // a deadline or a cancellation
		if code == plugin.CodeUnknown {
			code = plugin.CodeTrap // the start function or _initialize failed
		}
		return nil, &plugin.Error{Code: code, Message: err.Error(), Err: err}
	}
	return in, nil
}

// release gives an instance back, or discards it (keep false).
func (p *Plugin) release(ctx context.Context, in *instance, keep bool) {
	p.mu.Lock()
	p.active--
	if keep && !p.closed {
		p.idle = append(p.idle, in)
		in = nil
	}
	last := p.closed && p.active == 0
	p.mu.Unlock()
	<-p.slots
	if in != nil {
		in.close(context.WithoutCancel(ctx))
		if !keep {
			p.stats.discarded.Add(1)
		}
	}
	if last {
		p.finish(context.WithoutCancel(ctx))
	}
}

// finish closes the compiled module once the plugin is closed and idle.
func (p *Plugin) finish(ctx context.Context) {
	_ = p.compiled.Close(ctx)
	p.rt.untrack(p)
	close(p.done)
}

// Close stops the plugin: batches already running finish, later ones fail
// with an error matching plugin.ErrUnavailable and ErrClosed. Idle instances
// are closed at once, busy ones when their batch ends, the compiled module
// after the last. Close is idempotent.
func (p *Plugin) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	last := p.active == 0
	p.mu.Unlock()
	ctx := context.Background()
	for _, in := range idle {
		in.close(ctx)
	}
	if last {
		p.finish(ctx)
	}
}

// ProcessBatch encodes recs as a batch message (cfg as its configuration)
// straight into guest memory and runs it: one guest call. The results'
// values are copied out of guest memory, as by ProcessEncoded (or alias
// recs, for records the guest left unchanged), so they stay valid after the
// call. The errors are those
// of ProcessEncoded, plus an error wrapping batch.ErrLimit (matching
// plugin.ErrTooLarge) when recs do not fit the wire format's limits.
func (p *Plugin) ProcessBatch(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	b := batch.Batch{Plugin: p.info.Name, Digest: p.digest, Config: cfg, Records: recs}
	size := batch.BatchSize(&b)
	write := func(dst []byte) error {
		_, err := batch.AppendBatch(dst[:0], &b)
		return err
	}
	var res *plugin.BatchResult
	err := p.run(ctx, size, write, recs, func(r *plugin.BatchResult) error {
		res = p.copyResults(r, recs)
		return nil
	})
	return res, err
}

// ProcessEncoded runs the batch message msg — exactly as it travels on the
// wire (docs/wire-format.md) — whose decoded records are recs (used to
// resolve "unchanged" results and to count them). msg is copied into guest
// memory as it is: one copy, one guest call. The results' values are copied
// out of guest memory into one buffer per batch (from the runtime's pool,
// with WithBufferPool: then call ReleaseResult when done with them), or
// alias recs for records the guest left unchanged; they stay valid after
// the call.
//
// A returned error means the batch failed as a whole; it is a
// *plugin.Error whose Code says why:
//   - plugin.CodeTimeout (matches plugin.ErrTimeout and
//     context.DeadlineExceeded): the batch ran past ctx's deadline, or the
//     runtime's timeout when ctx has none;
//   - plugin.CodeTrap (plugin.ErrTrap): the guest trapped (also a stack
//     overflow, or a memory.grow bomb hitting the page limit: the message
//     says so), exited, or broke the ABI;
//   - plugin.CodeUnavailable (plugin.ErrUnavailable): ctx was cancelled, or
//     the plugin is closed (then it also matches ErrClosed);
//   - plugin.CodeInvalidInput: len(recs) differs from msg's record count;
//   - whatever code the guest chose for a batch-level error.
func (p *Plugin) ProcessEncoded(ctx context.Context, msg []byte, recs []plugin.Record) (*plugin.BatchResult, error) {
	var res *plugin.BatchResult
	err := p.ProcessEncodedFunc(ctx, msg, recs, func(r *plugin.BatchResult) error {
		res = p.copyResults(r, recs)
		return nil
	})
	return res, err
}

// ProcessEncodedFunc is ProcessEncoded without the copy: fn gets the results
// with values that alias guest memory (or recs), valid only until fn
// returns; the instance stays reserved for the batch until then. It returns
// ProcessEncoded's errors, or fn's error as it is (fn is not called when the
// batch failed).
func (p *Plugin) ProcessEncodedFunc(ctx context.Context, msg []byte, recs []plugin.Record, fn func(*plugin.BatchResult) error) error {
	if len(msg) < 12 || int(binary.LittleEndian.Uint32(msg[8:])) != len(recs) {
		return &plugin.Error{Code: plugin.CodeInvalidInput,
			Message: fmt.Sprintf("wasm: %s: message is not a batch of %d records", p.name(), len(recs))}
	}
	return p.run(ctx, len(msg), func(dst []byte) error { copy(dst, msg); return nil }, recs, fn)
}

// run runs one batch: acquire an instance, write the input, call the guest,
// decode its output against recs, hand it to fn, release the instance.
func (p *Plugin) run(ctx context.Context, size int, write func([]byte) error, recs []plugin.Record, fn func(*plugin.BatchResult) error) error {
	start := time.Now()
	ctx, cancel := p.rt.withDeadline(ctx)
	defer cancel()
	if p.lim.Timeout > 0 {
		var cancelPolicy context.CancelFunc
		ctx, cancelPolicy = context.WithTimeoutCause(ctx, p.lim.Timeout, errPolicyTimeout)
		defer cancelPolicy()
	}
	in, err := p.acquire(ctx)
	if err != nil {
		p.stats.failed.Add(1)
		return err
	}
	p.stats.batches.Add(1)
	p.stats.records.Add(int64(len(recs)))
	in.output.reset()
	in.refused.Store(0)
	out, err := in.call(withCaller(ctx, p), size, write)
	if err != nil {
		err, keep := p.batchError(ctx, in, err)
		p.release(ctx, in, keep)
		return err
	}
	// One spare element: copyResults may keep a pool buffer's reference
	// there.
	res := &plugin.BatchResult{Results: make([]plugin.Result, len(recs), len(recs)+1)}
	if err := batch.DecodeEntries(out, recs, res.Results); err != nil {
		err, keep := p.batchError(ctx, in, &abiError{"output: " + err.Error()})
		p.release(ctx, in, keep)
		return err
	}
	p.stats.failStreak.Store(0)
	res.Duration = time.Since(start)
	err = fn(res)
	p.release(ctx, in, true)
	return err
}

// batchError turns the error of a call into the batch's *plugin.Error and
// says whether the instance may be kept.
func (p *Plugin) batchError(ctx context.Context, in *instance, err error) (error, bool) {
	p.stats.failed.Add(1)
	var (
		he *hostError
		ge *guestError
		ae *abiError
	)
	switch {
	case errors.As(err, &he):
		return &plugin.Error{Code: plugin.CodeOf(he.err), Message: fmt.Sprintf("wasm: %s: %v", p.name(), he.err), Err: he.err}, true
	case errors.As(err, &ge):
		msg := ge.msg
		if ge.memory || in.refused.Load() > 0 { // the guest refused the batch for want of memory
			msg += p.memoryNote(in)
		}
		return &plugin.Error{Code: ge.code, Message: msg}, true
	}
	p.stats.failStreak.Add(1)
	if code, ok := exitCode(err); ok && (code == sys.ExitCodeDeadlineExceeded || code == sys.ExitCodeContextCanceled) || ctx.Err() != nil {
		cerr := ctx.Err()
		if cerr == nil && code == sys.ExitCodeContextCanceled {
			cerr = context.Canceled
		} else if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		if cerr == context.DeadlineExceeded {
			p.stats.timeouts.Add(1)
			which := "its deadline"
			if errors.Is(context.Cause(ctx), errPolicyTimeout) {
				which = fmt.Sprintf("the module policy's timeout of %s", p.lim.Timeout)
			} else if p.lim.Timeout > 0 {
				which = fmt.Sprintf("its deadline (the job's or the worker's, earlier than the module policy's timeout of %s)", p.lim.Timeout)
			}
			return &plugin.Error{Code: plugin.CodeTimeout,
				Message: fmt.Sprintf("wasm: %s: batch ran past %s; the guest was stopped", p.name(), which), Err: cerr}, false
		}
		return &plugin.Error{Code: plugin.CodeUnavailable,
			Message: fmt.Sprintf("wasm: %s: batch cancelled; the guest was stopped", p.name()), Err: cerr}, false
	}
	p.stats.traps.Add(1)
	var msg string
	switch code, isExit := exitCode(err); {
	case errors.As(err, &ae):
		msg = "broke the ABI: " + ae.msg
	case isExit:
		msg = fmt.Sprintf("exited with code %d", code)
	default:
		msg = "trapped: " + firstLine(err)
	}
	msg += p.memoryNote(in)
	if s := in.output.String(); s != "" {
		msg += "; guest output: " + s
	}
	return &plugin.Error{Code: plugin.CodeTrap, Message: fmt.Sprintf("wasm: %s: %s", p.name(), msg), Err: err}, false
}

// copyResults copies the values of res that live in guest memory into one
// buffer — from the runtime's pool when it has one, then remembered for
// ReleaseResult — and returns res; values that alias recs (unchanged
// records) stay as they are.
func (p *Plugin) copyResults(res *plugin.BatchResult, recs []plugin.Record) *plugin.BatchResult {
	total := 0
	for i := range res.Results {
		if v := res.Results[i].Value; len(v) > 0 && !aliases(v, recs[i].Value) {
			total += len(v)
		}
	}
	if total == 0 {
		return res
	}
	var buf []byte
	if pl := p.rt.cfg.pool; pl != nil {
		pb := pl.Get(total)
		buf = pb.Bytes()[:0]
		setPoolRef(res, &poolRef{pool: pl, buf: pb})
	} else {
		buf = make([]byte, 0, total)
	}
	for i := range res.Results {
		if v := res.Results[i].Value; len(v) > 0 && !aliases(v, recs[i].Value) {
			n := len(buf)
			buf = append(buf, v...)
			res.Results[i].Value = buf[n:len(buf):len(buf)]
		}
	}
	return res
}

// poolRef is the pool buffer a result's values live in. It rides in the
// Err of a hidden element just past the end of the result's Results (run
// allocates one more than it needs), where nothing else looks: the result
// carries its own buffer, and a result that is never released is simply
// garbage.
type poolRef struct {
	pool *pool.Pool
	buf  *pool.Buffer
}

func (*poolRef) Error() string { return "wasm: pooled result buffer" }

func setPoolRef(res *plugin.BatchResult, ref *poolRef) {
	rs := res.Results
	if cap(rs) > len(rs) {
		rs[:len(rs)+1][len(rs)] = plugin.Result{Err: ref}
	}
}

// ReleaseResult gives the buffer holding res's values back to the pool of
// the runtime that made it (see WithBufferPool). res's values must not be
// used afterwards. It does nothing for a result made without a pool, for one
// already released, and for nil.
func ReleaseResult(res *plugin.BatchResult) {
	if res == nil {
		return
	}
	rs := res.Results
	if cap(rs) <= len(rs) {
		return
	}
	slot := &rs[:len(rs)+1][len(rs)]
	ref, ok := slot.Err.(*poolRef)
	if !ok {
		return
	}
	*slot = plugin.Result{}
	_ = ref.pool.Put(ref.buf)
}

// aliases reports whether v is exactly the slice in.
func aliases(v, in []byte) bool {
	return len(v) == len(in) && &v[0] == &in[0]
}
