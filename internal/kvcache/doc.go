// Package kvcache is a worker-side, read-only cache of NATS KV buckets. It
// answers the kv_get host function of WebAssembly plugins granted the
// kv:BUCKET capability, which is called once per record: the common case, a
// key already cached, is a lock-free look-up of the bucket followed by a
// read-locked map look-up, with no allocation.
//
// Buckets are opened lazily. The first Get on a bucket opens it and starts a
// watch of the bucket's updates (only updates: no initial values) before it
// serves any look-up, so no update made after a look-up can be missed.
// Concurrent first Gets share one open; a failed open is retried by a later
// Get, at most once a second per bucket, and the Gets in between get the
// last error.
//
// A key not in the cache is read from NATS (a miss) and stored, also when it
// has no value, so that repeated look-ups of a missing key are hits. The
// watch applies every put, delete and purge to the cache, including those
// of keys never read: an update must leave its revision behind, or the
// older answer of a concurrent miss could be stored after it. Every entry
// carries the revision it was read at, and an answer replaces an entry only
// when it is newer; an answer without a revision (the key has no value) is
// stored only when there is no entry and none was evicted from the bucket
// while the answer was on its way.
//
// The cache is bounded by the bytes of its keys and values (64 MiB by
// default). When it grows past the bound it evicts entries in random order
// until it is under 90% of it. A value larger than an eighth of the bound is
// answered but not cached.
//
// Cached entries are only as fresh as the watch. When a bucket's watch ends
// (its subscription was closed: the connection was closed, or the bucket
// was deleted, which the watch notices after two missed heartbeats, about
// ten seconds) the bucket's entries are dropped and the bucket is opened
// again by the next Get. The connection is also checked a few times a second: when it
// is disconnected, or has reconnected since the bucket was opened, every
// bucket is dropped, since updates may have been missed meanwhile. So after
// an outage or a server restart nothing cached before it is served again.
// In a bucket with a maximum age, cached values expire with the age of the
// value; keys removed with a per-key TTL are seen only when the bucket has
// limit markers enabled.
package kvcache
