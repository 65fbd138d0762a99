package kvcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors returned by Get.
var (
	// ErrClosed is returned by Get after Close.
	ErrClosed = errors.New("kvcache: closed")
	// ErrReserved is returned for the buckets of the fleet itself, whose
	// names start with "DF_" (in any case).
	ErrReserved = errors.New("kvcache: reserved bucket")
	// ErrInvalidBucket is returned for a bucket name NATS does not allow.
	ErrInvalidBucket = errors.New("kvcache: invalid bucket name")
	// ErrInvalidKey is returned for a key NATS KV does not allow: keys are
	// made of the characters -/_=.a-zA-Z0-9, and do not start or end with
	// '.' nor hold an empty token.
	ErrInvalidKey = errors.New("kvcache: invalid key")
)

// testHookStore, when set by a test, is called between a look-up in NATS
// and the storing of its answer.
var testHookStore func(key string)

// DefaultMaxBytes is the default bound of the cache: the bytes of its keys
// and values over every bucket.
const DefaultMaxBytes = 64 << 20

// ReservedPrefix starts the names of the fleet's own buckets, which plugins
// may not read. It is compared without regard to case.
const ReservedPrefix = "DF_"

const (
	// openTimeout bounds opening a bucket and starting its watch.
	openTimeout = 10 * time.Second
	// retryInterval is the least time between two attempts to open a bucket.
	retryInterval = time.Second
	// checkInterval is how often the connection is checked.
	checkInterval = 100 * time.Millisecond
)

// An Option configures a Cache.
type Option func(*Cache)

// WithMaxBytes bounds the bytes of the keys and values the cache holds over
// every bucket (default DefaultMaxBytes). A value of n/8 bytes or more is
// answered but not cached.
func WithMaxBytes(n int64) Option {
	return func(c *Cache) {
		if n > 0 {
			c.maxBytes = n
		}
	}
}

// WithLogger sets the logger of the cache's events: buckets opened and
// dropped (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *Cache) {
		if l != nil {
			c.log = l
		}
	}
}

// Stats are the counters of a Cache.
type Stats struct {
	Hits      uint64 // look-ups answered from the cache
	Misses    uint64 // look-ups that went to NATS
	Entries   int64  // keys cached, with or without a value
	Bytes     int64  // bytes of the keys and values cached
	Buckets   int    // buckets open
	Evictions uint64 // entries evicted to stay under the bound
	Updates   uint64 // updates applied from the buckets' watches
}

// Cache is a read-only cache of NATS KV buckets, kept fresh by watching
// them. It is safe for concurrent use.
type Cache struct {
	js       jetstream.JetStream
	nc       *nats.Conn
	maxBytes int64
	log      *slog.Logger

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines of the cache

	// buckets maps the names of the open buckets to them. It is replaced,
	// never changed, under mu, so that Get reads it without a lock.
	buckets atomic.Pointer[map[string]*bucket]
	closed  atomic.Bool

	mu      sync.Mutex
	opening map[string]*opening // opens under way or failed, by bucket

	evictMu sync.Mutex // held by the one evicting goroutine

	bytes     atomic.Int64
	entries   atomic.Int64
	hits      atomic.Uint64
	misses    atomic.Uint64
	evictions atomic.Uint64
	updates   atomic.Uint64
}

// opening is an attempt to open a bucket.
type opening struct {
	done chan struct{} // closed when the attempt ended
	err  error         // why it failed, set before done is closed
	at   time.Time     // when it ended
}

// bucket is an open bucket: its KV handle, its watch and its entries.
type bucket struct {
	name    string
	kv      jetstream.KeyValue
	watcher jetstream.KeyWatcher
	cancel  context.CancelFunc // ends the watch
	ttl     int64              // the bucket's maximum age in nanoseconds, 0 for none

	mu      sync.RWMutex
	entries map[string]entry
	removed uint64 // entries evicted so far
	dead    bool   // dropped: store nothing more
}

// entry is what the cache knows of a key.
type entry struct {
	value   []byte
	rev     uint64 // revision of the value or deletion; 0 when unknown
	expires int64  // unix nanoseconds after which it is stale; 0 for never
	absent  bool   // the key has no value
	big     bool   // the value is too large to cache: read it from NATS
}

// size is what e accounts for in the cache's bytes.
func size(key string, e entry) int64 { return int64(len(key) + len(e.value)) }

// New returns a cache of the KV buckets of js. Close it to stop its
// watches.
func New(js jetstream.JetStream, opts ...Option) *Cache {
	c := &Cache{
		js:       js,
		nc:       js.Conn(),
		maxBytes: DefaultMaxBytes,
		log:      slog.Default(),
		opening:  make(map[string]*opening),
	}
	for _, o := range opts {
		o(c)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.buckets.Store(&map[string]*bucket{})
	c.wg.Add(1)
	go c.checkConn()
	return c
}

// Get returns the value of key in bucket, and found=false when the key has
// no value: it was never put, or was deleted or purged. The value is shared
// with the cache and other callers: it must not be modified.
//
// Get fails with ErrReserved, ErrInvalidBucket or ErrInvalidKey for names
// it does not look up, with an error wrapping jetstream.ErrBucketNotFound
// for a bucket that does not exist, with an error wrapping ctx's for a
// look-up that ctx ended, and with ErrClosed after Close. Other errors wrap
// NATS's and name the bucket.
func (c *Cache) Get(ctx context.Context, bucket, key string) (value []byte, found bool, err error) {
	if !validKey(key) {
		return nil, false, ErrInvalidKey
	}
	if b := (*c.buckets.Load())[bucket]; b != nil {
		b.mu.RLock()
		e, ok := b.entries[key]
		b.mu.RUnlock()
		if ok && !e.big && (e.expires == 0 || time.Now().UnixNano() < e.expires) && !c.closed.Load() {
			c.hits.Add(1)
			return e.value, !e.absent, nil
		}
	}
	return c.miss(ctx, bucket, key)
}

// miss answers Get for a key not in the cache.
func (c *Cache) miss(ctx context.Context, name, key string) ([]byte, bool, error) {
	if c.closed.Load() {
		return nil, false, ErrClosed
	}
	if len(name) >= len(ReservedPrefix) && strings.EqualFold(name[:len(ReservedPrefix)], ReservedPrefix) {
		return nil, false, fmt.Errorf("%w: %s", ErrReserved, name)
	}
	if !validBucket(name) {
		return nil, false, fmt.Errorf("%w: %q", ErrInvalidBucket, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("kvcache: kv %s: %w", name, err)
	}
	b, err := c.bucket(ctx, name)
	if err != nil {
		return nil, false, err
	}

	// Look again, now that the bucket is open, and note how many entries
	// were evicted before the look-up in NATS.
	b.mu.RLock()
	e, ok := b.entries[key]
	removed := b.removed
	b.mu.RUnlock()
	if ok && !e.big && (e.expires == 0 || time.Now().UnixNano() < e.expires) {
		c.hits.Add(1)
		return e.value, !e.absent, nil
	}

	c.misses.Add(1)
	kve, err := b.kv.Get(ctx, key)
	var ans entry
	switch {
	case err == nil:
		ans = b.entry(kve)
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Also for a deleted or purged key: NATS does not tell the
		// revision of the deletion.
		ans = entry{absent: true}
	default:
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			return nil, false, fmt.Errorf("kvcache: kv %s: %w: %w", name, ctxErr, err)
		}
		return nil, false, fmt.Errorf("kvcache: kv %s: %w", name, err)
	}
	if testHookStore != nil {
		testHookStore(key)
	}
	c.store(b, key, ans, removed)
	return ans.value, !ans.absent, nil
}

// entry returns the entry of a value (or deletion) read from b.
func (b *bucket) entry(kve jetstream.KeyValueEntry) entry {
	e := entry{rev: kve.Revision()}
	switch kve.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		e.absent = true
	default:
		e.value = kve.Value()
		if b.ttl > 0 {
			e.expires = kve.Created().UnixNano() + b.ttl
		}
	}
	return e
}

// store stores the answer of a look-up in NATS of key in b, unless the cache
// knows a newer one. removed is the count of entries evicted from b before
// the look-up.
func (c *Cache) store(b *bucket, key string, ans entry, removed uint64) {
	ans = c.bounded(key, ans)
	b.mu.Lock()
	if b.dead {
		b.mu.Unlock()
		return
	}
	old, had := b.entries[key]
	var newer bool
	switch {
	case !had:
		// An entry evicted meanwhile could have been this key's, newer
		// than the answer.
		newer = b.removed == removed
	case old.expires != 0 && time.Now().UnixNano() >= old.expires:
		// The entry expired: an answer without a revision replaces it.
		newer = ans.rev == 0 || ans.rev >= old.rev
	default:
		newer = ans.rev > old.rev
	}
	if newer {
		c.put(b, key, old, had, ans)
	}
	b.mu.Unlock()
	c.evictIfFull()
}

// bounded returns e, or for a key and value over an eighth of the bound a
// marker that keeps only its revision: answered, not cached.
func (c *Cache) bounded(key string, e entry) entry {
	if int64(len(key)+len(e.value)) > c.maxBytes/8 {
		return entry{rev: e.rev, big: true}
	}
	return e
}

// put sets the entry of key in b to e, replacing old if there was one. b.mu is held.
func (c *Cache) put(b *bucket, key string, old entry, had bool, e entry) {
	d := size(key, e)
	if had {
		d -= size(key, old)
	} else {
		c.entries.Add(1)
	}
	b.entries[key] = e
	c.bytes.Add(d)
}

// apply applies an update from b's watch.
func (c *Cache) apply(b *bucket, kve jetstream.KeyValueEntry) {
	key := kve.Key()
	if !validKey(key) {
		// Not a key Get would look up.
		return
	}
	e := c.bounded(key, b.entry(kve))
	b.mu.Lock()
	if b.dead {
		b.mu.Unlock()
		return
	}
	// Updates of keys not cached are cached too: an update must leave its
	// revision behind, or the older answer of a look-up under way would be
	// stored after it.
	old, ok := b.entries[key]
	if !ok || old.rev < e.rev {
		c.put(b, key, old, ok, e)
		c.updates.Add(1)
	}
	b.mu.Unlock()
	c.evictIfFull()
}

// evictIfFull evicts entries in random order while the cache is over its
// bound, until it is under 90% of it.
func (c *Cache) evictIfFull() {
	if c.bytes.Load() <= c.maxBytes {
		return
	}
	if !c.evictMu.TryLock() {
		return // someone else is evicting
	}
	defer c.evictMu.Unlock()
	target := c.maxBytes / 10 * 9
	for _, b := range *c.buckets.Load() {
		b.mu.Lock()
		for k, e := range b.entries {
			if c.bytes.Load() <= target {
				break
			}
			delete(b.entries, k)
			b.removed++
			c.bytes.Add(-size(k, e))
			c.entries.Add(-1)
			c.evictions.Add(1)
		}
		b.mu.Unlock()
		if c.bytes.Load() <= target {
			return
		}
	}
}

// bucket returns the open bucket name, opening it if need be.
func (c *Cache) bucket(ctx context.Context, name string) (*bucket, error) {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if b := (*c.buckets.Load())[name]; b != nil {
		c.mu.Unlock()
		return b, nil
	}
	op := c.opening[name]
	if op != nil {
		select {
		case <-op.done:
			if time.Since(op.at) >= retryInterval {
				op = nil // try again
			}
		default:
		}
	}
	if op == nil {
		op = &opening{done: make(chan struct{})}
		c.opening[name] = op
		c.wg.Add(1)
		go c.open(name, op)
	}
	c.mu.Unlock()

	select {
	case <-op.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("kvcache: kv %s: %w", name, ctx.Err())
	}
	if op.err != nil {
		return nil, op.err
	}
	if b := (*c.buckets.Load())[name]; b != nil {
		return b, nil
	}
	// Dropped as soon as opened, or the cache was closed.
	if c.closed.Load() {
		return nil, ErrClosed
	}
	return nil, fmt.Errorf("kvcache: kv %s: watch ended", name)
}

// open opens a bucket and starts its watch, for op. It runs on its own
// goroutine, so that a Get waiting for it can give up when its context ends
// while other Gets keep waiting.
func (c *Cache) open(name string, op *opening) {
	defer c.wg.Done()
	b, err := c.openBucket(name)

	c.mu.Lock()
	if err == nil && c.closed.Load() {
		err = ErrClosed
	}
	if err == nil {
		old := *c.buckets.Load()
		m := make(map[string]*bucket, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		m[name] = b
		c.buckets.Store(&m)
		delete(c.opening, name)
		c.wg.Add(1)
		go c.watch(b)
	} else if b != nil {
		b.dead = true
		b.cancel()
		b.watcher.Stop()
		c.wg.Add(1)
		go c.watch(b) // drain until the watch ends
	}
	op.err = err
	op.at = time.Now()
	close(op.done)
	c.mu.Unlock()
	if err != nil {
		c.log.Debug("kvcache: open failed", "bucket", name, "err", err)
	}
}

// openBucket opens bucket name and starts its watch of updates.
func (c *Cache) openBucket(name string) (*bucket, error) {
	ctx, cancel := context.WithTimeout(c.ctx, openTimeout)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("kvcache: kv %s: %w", name, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("kvcache: kv %s: %w", name, err)
	}
	// The watch lives as long as its context: the open is bounded by a
	// timer that ends it instead.
	wctx, wcancel := context.WithCancel(c.ctx)
	timer := time.AfterFunc(openTimeout, wcancel)
	w, err := kv.WatchAll(wctx, jetstream.UpdatesOnly())
	if err != nil {
		wcancel()
		return nil, fmt.Errorf("kvcache: kv %s: watch: %w", name, err)
	}
	b := &bucket{
		name:    name,
		kv:      kv,
		watcher: w,
		cancel:  wcancel,
		ttl:     int64(st.TTL()),
		entries: make(map[string]entry),
	}
	if !timer.Stop() {
		return b, fmt.Errorf("kvcache: kv %s: watch: %w", name, context.DeadlineExceeded)
	}
	return b, nil
}

// watch applies the updates of b's watch until it ends, then drops b.
func (c *Cache) watch(b *bucket) {
	defer c.wg.Done()
	// Read until the channel is closed, even after b was dropped: the
	// watcher blocks on a full channel, and closes it only once it stopped.
	for kve := range b.watcher.Updates() {
		if kve != nil {
			c.apply(b, kve)
		}
	}
	if c.drop(b) {
		c.log.Info("kvcache: watch ended; bucket dropped", "bucket", b.name)
	}
}

// drop forgets b and its entries and stops its watch. It reports whether b
// was still open.
func (c *Cache) drop(b *bucket) bool {
	c.mu.Lock()
	old := *c.buckets.Load()
	if old[b.name] == b {
		m := make(map[string]*bucket, len(old))
		for k, v := range old {
			if v != b {
				m[k] = v
			}
		}
		c.buckets.Store(&m)
	}
	c.mu.Unlock()

	b.mu.Lock()
	wasOpen := !b.dead
	if wasOpen {
		b.dead = true
		for k, e := range b.entries {
			c.bytes.Add(-size(k, e))
		}
		c.entries.Add(-int64(len(b.entries)))
		b.entries = nil
	}
	b.mu.Unlock()
	if wasOpen {
		b.cancel()
		b.watcher.Stop()
	}
	return wasOpen
}

// checkConn drops every bucket when the connection is down or has
// reconnected, since their watches may have missed updates meanwhile.
func (c *Cache) checkConn() {
	defer c.wg.Done()
	t := time.NewTicker(checkInterval)
	defer t.Stop()
	reconnects := c.nc.Stats().Reconnects
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		n := c.nc.Stats().Reconnects
		if n == reconnects && c.nc.Status() == nats.CONNECTED {
			continue
		}
		reconnects = n
		for _, b := range *c.buckets.Load() {
			if c.drop(b) {
				c.log.Info("kvcache: connection lost; bucket dropped", "bucket", b.name)
			}
		}
	}
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		Entries:   c.entries.Load(),
		Bytes:     c.bytes.Load(),
		Buckets:   len(*c.buckets.Load()),
		Evictions: c.evictions.Load(),
		Updates:   c.updates.Load(),
	}
}

// Close stops every watch and waits for the cache's goroutines to end.
// Get fails with ErrClosed afterwards.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed.Swap(true) {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	c.cancel()
	for _, b := range *c.buckets.Load() {
		c.drop(b)
	}
	c.wg.Wait()
	return nil
}

// validBucket reports whether NATS allows name as a bucket name.
func validBucket(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

// validKey reports whether NATS KV allows key, as the jetstream package
// checks it: made of -/_=.a-zA-Z0-9, not starting or ending with '.', with
// no empty token.
func validKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' {
		return false
	}
	for i := 0; i < len(key); i++ {
		ch := key[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9',
			ch == '-', ch == '/', ch == '_', ch == '=':
		case ch == '.':
			if key[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}
