// Package wasmstore keeps WebAssembly plugin modules in a NATS JetStream
// Object Store bucket (DF_PLUGINS): push once, and every worker can fetch,
// verify and run them.
//
// Each plugin name and version is one object ("<name>/<version>") whose
// metadata holds its Manifest: name, version, digest ("sha256:<hex>"),
// size, the plugin.Info the module reported, and when it was pushed.
// Versions are immutable. Push validates a module before accepting it —
// with a *wasm.Runtime as the Validator it must compile, import nothing
// outside the sandbox, and implement the ABI — and Get verifies the bytes
// against the digest asked for and against the object store's own SHA-256
// before returning them, so a tampered or corrupt object is refused before
// anything compiles it.
//
//	rt, _ := wasm.NewRuntime(ctx)
//	store, err := wasmstore.New(ctx, js, wasmstore.WithValidator(rt))
//	m, err := store.Push(ctx, "upper-wasm", "1.0.0", module) // wasmstore.ErrInvalidModule, ErrVersionExists, …
//	m, err = store.Resolve(ctx, "upper-wasm", "latest")     // a coordinator pins m.Digest in the job
//	b, m, err := store.Get(ctx, "upper-wasm", m.Digest)      // wasmstore.ErrDigestMismatch, ErrNotFound
//
// A *Store is the wasm.ModuleSource of a wasm.Registry (Fetch), and Follow
// keeps the Registry told of each plugin's newest version:
//
//	reg, err := wasm.NewRegistry(rt, store)
//	go store.Follow(ctx, reg) // stops when ctx ends
//
// Only administrators (the CLI's plugin push) and coordinators should have
// permission to put objects in the bucket: whoever can put can replace an
// object and its digest together. Jobs pin digests, so such a replacement
// is refused by Get, never run.
//
// A module may carry a Policy (a batch timeout, a memory cap, grants),
// pushed with PushWith and kept in its manifest; a *Store is also a
// wasm.LimitedSource (FetchLimited), so a Registry over it runs each module
// under its policy, within the runtime's own limits. PushWith can sign the
// manifest with an nkeys account key (SignedPayload: name, version, digest
// and policy); a store opened WithTrustedKeys hands out only modules so
// signed by one of its keys, refusing every other with ErrUntrusted before
// fetching it:
//
//	kp, err := wasmstore.ReadSigningKey("signer.nk")
//	pol, err := wasmstore.NewPolicy(50*time.Millisecond, 1<<20, nil)
//	m, err := store.PushWith(ctx, "upper-wasm", "1.0.0", module, wasmstore.PushOptions{Policy: pol, Signer: kp})
//	trusting, err := wasmstore.Open(ctx, js, wasmstore.WithTrustedKeys(pub))
package wasmstore
