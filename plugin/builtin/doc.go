// Package builtin holds the native plugins every DataFlare worker has:
//
//   - identity: returns every record's value unchanged (zero copy);
//   - upper: ASCII upper-case of the value ('a'–'z' become 'A'–'Z', every
//     other byte is kept, so UTF-8 stays valid and non-ASCII letters are left
//     alone);
//   - delay: config ms=N sleeps N milliseconds per record, value unchanged,
//     and stops early when the context is done;
//   - fail: config match=S gives records whose value contains S a per-record
//     error matching plugin.ErrProcessing; the others pass unchanged.
//
// They are BatchPlugins: one call per batch, no per-record dispatch. A bad
// configuration (delay with ms=abc) fails the whole batch with an error
// wrapping plugin.ErrInvalidInput, since the configuration belongs to the job,
// not to one record.
//
// Registering them all with a manager:
//
//	m, err := manager.New(manager.DefaultConfig())
//	...
//	if err := builtin.Register(m); err != nil { ... }
//	res, err := m.ProcessBatch(ctx, builtin.Upper, nil, records)
//
// Package builtin does not import package manager (the manager may use the
// builtins); Register takes anything with a RegisterBatch method.
package builtin
