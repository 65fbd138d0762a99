// Package wasm runs WebAssembly plugins: the wazero host of the plugin ABI
// (docs/abi.md), its sandbox, a pool of instances per module, and a
// Registry that keeps compiled modules by digest and follows new versions
// without a restart.
//
// A Runtime compiles modules (wazero's compiler engine, optionally with a
// compiled-module cache on disk) and a Plugin runs one module's batches, one
// guest call per batch. A Plugin is a plugin.BatchPlugin, so a
// manager.Manager registers it like a native plugin; it is also a
// plugin.Stater, reporting Stopped once closed and Degraded while its
// batches keep trapping or timing out:
//
//	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(4), wasm.WithCacheDir(dir))
//	defer rt.Close(ctx)
//	p, err := rt.Load(ctx, moduleBytes) // wasm.ErrForbiddenImport, wasm.ErrABI, …
//	defer p.Close()
//	res, err := p.ProcessBatch(ctx, cfg, records)
//
// The module must speak version batch.ABIVersion of the ABI.
//
// A worker holding the batch message as it came off the wire skips the
// re-encoding:
//
//	res, err := p.ProcessEncoded(ctx, msg, decoded.Records)
//
// Sandbox: guests get no filesystem, network, environment or arguments, a
// fake clock and a fixed random source unless granted (WithGrants); a module
// importing anything else is refused at load. Before wazero reads a module, a
// preflight checks its bytes against limits on what it may make the host
// allocate — its size, tables, locals, counts — and gives every table a
// maximum, so that table.grow past the table bound fails (ErrLimit,
// docs/security.md). Guest memory is capped
// (WithMemoryLimitPages), every batch has a deadline (the context's, else
// WithTimeout) after which the guest is stopped, and an instance that
// trapped, exited or timed out is discarded and replaced. A batch failure is
// a *plugin.Error matching plugin.ErrTrap, plugin.ErrTimeout (and
// context.DeadlineExceeded) or the code the guest chose; other plugins and
// instances are not affected.
//
// With a Registry, a worker runs whatever digest a batch pins, fetching,
// verifying and compiling modules on first use from a ModuleSource (a
// *wasmstore.Store or *wasmstore.Lazy satisfies it):
//
//	reg, err := wasm.NewRegistry(rt, wasmstore.NewLazy(js))
//	prometheus.MustRegister(reg)                  // modules loaded, compilations
//	p, err := reg.Plugin(ctx, b.Plugin, b.Digest) // exactly the pinned module
//	mgr.RegisterBatch(b.Plugin+"@"+b.Digest, p)   // what package worker does
//	res, err := mgr.ProcessEncoded(ctx, b.Plugin+"@"+b.Digest, b.Config, msg, b.Records)
//
// A job pins the newest module of its plugin when it is created, so a new
// version is picked up by new jobs without a restart; batches running on an
// old version finish on it, and the registry closes a module once it is
// idle and among the least recently used.
package wasm
