package kvcache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natsrv"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

const wait = 10 * time.Second

// env is a server with a bucket, a cache reading it on one connection and a
// KV handle writing it on another.
type env struct {
	url   string
	cache *Cache
	kv    jetstream.KeyValue // the writer's
}

func newEnv(t testing.TB, opts ...Option) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	return newEnvURL(t, srv.ClientURL(), opts...)
}

func newEnvURL(t testing.TB, url string, opts ...Option) *env {
	t.Helper()
	ctx := context.Background()
	wjs, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := wjs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "CONFIG"})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(natstest.Connect(t, url,
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	c := New(js, opts...)
	t.Cleanup(func() { c.Close() })
	return &env{url: url, cache: c, kv: kv}
}

func (e *env) put(t testing.TB, key, value string) uint64 {
	t.Helper()
	rev, err := e.kv.PutString(context.Background(), key, value)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func get(t testing.TB, c *Cache, bucket, key string) (string, bool) {
	t.Helper()
	v, found, err := c.Get(context.Background(), bucket, key)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", bucket, key, err)
	}
	return string(v), found
}

// waitFor polls Get of key until it answers want (found=false for want ==
// "").
func waitFor(t *testing.T, c *Cache, key, want string) {
	t.Helper()
	err := poll.Until(context.Background(), wait, func() error {
		v, found, err := c.Get(context.Background(), "CONFIG", key)
		switch {
		case err != nil:
			return err
		case want == "" && found:
			return fmt.Errorf("Get(%s) = %q, want not found", key, v)
		case want != "" && (!found || string(v) != want):
			return fmt.Errorf("Get(%s) = %q, %v, want %q", key, v, found, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHitMiss(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a", "1")
	for i := range 3 {
		v, found := get(t, e.cache, "CONFIG", "a")
		if !found || v != "1" {
			t.Fatalf("Get(a) = %q, %v, want 1, true", v, found)
		}
		if s := e.cache.Stats(); s.Misses != 1 || s.Hits != uint64(i) {
			t.Fatalf("after %d Gets: %+v, want 1 miss, %d hits", i+1, s, i)
		}
	}
	// A missing key is a miss once, then a hit.
	for i := range 3 {
		if v, found := get(t, e.cache, "CONFIG", "nope"); found {
			t.Fatalf("Get(nope) = %q, found", v)
		}
		if s := e.cache.Stats(); s.Misses != 2 || s.Hits != uint64(2+i) {
			t.Fatalf("after %d Gets of nope: %+v, want 2 misses, %d hits", i+1, s, 2+i)
		}
	}
	s := e.cache.Stats()
	if s.Entries != 2 || s.Bytes != int64(len("a1nope")) || s.Buckets != 1 {
		t.Errorf("Stats = %+v, want 2 entries, %d bytes, 1 bucket", s, len("a1nope"))
	}
}

func TestFreshness(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a", "1")
	if v, _ := get(t, e.cache, "CONFIG", "a"); v != "1" {
		t.Fatalf("Get(a) = %q, want 1", v)
	}
	e.put(t, "a", "2")
	waitFor(t, e.cache, "a", "2")
	if err := e.kv.Delete(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e.cache, "a", "")
	e.put(t, "a", "3")
	waitFor(t, e.cache, "a", "3")
	if err := e.kv.Purge(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e.cache, "a", "")
	// A key put after it was found missing.
	if _, found := get(t, e.cache, "CONFIG", "b"); found {
		t.Fatal("Get(b) found before any put")
	}
	e.put(t, "b", "1")
	waitFor(t, e.cache, "b", "1")

	s := e.cache.Stats()
	if s.Misses != 2 {
		t.Errorf("%d misses, want 2: the watch should have kept the cache fresh", s.Misses)
	}
	if s.Updates < 5 {
		t.Errorf("%d updates applied, want at least 5", s.Updates)
	}
}

// TestRevisionRace puts many revisions of keys while Gets read them: the
// cache must end with the last revision of each, never an older answer of
// a Get stored after the watch applied a newer one.
func TestRevisionRace(t *testing.T) {
	e := newEnv(t)
	const keys, revisions, readers = 40, 4, 8
	ctx := context.Background()
	get(t, e.cache, "CONFIG", "k") // open the bucket
	var b *bucket
	for _, b = range *e.cache.buckets.Load() {
	}

	// The readers read the key being written, and go to NATS for it after
	// it was evicted.
	var current atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range readers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := "k" + strconv.Itoa(int(current.Load()))
				if _, _, err := e.cache.Get(ctx, "CONFIG", key); err != nil {
					t.Error(err)
					return
				}
				runtime.Gosched() // let the writer and the watch run
			}
		})
	}
	for k := range keys {
		key := "k" + strconv.Itoa(k)
		current.Store(int64(k))
		for rev := range revisions {
			// Evict the key before each put, so that Gets of its previous
			// value are under way when the put lands.
			e.cache.evictKey(b, key)
			e.put(t, key, strconv.Itoa(rev))
		}
	}
	close(stop)
	wg.Wait()
	want := strconv.Itoa(revisions - 1)
	err := poll.Until(ctx, wait, func() error {
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			if v, _ := get(t, e.cache, "CONFIG", key); v != want {
				return fmt.Errorf("Get(%s) = %q, want %q", key, v, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", e.cache.Stats())
}

// evictKey evicts key from b, as evictIfFull does.
func (c *Cache) evictKey(b *bucket, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[key]; ok {
		delete(b.entries, key)
		b.removed++
		c.bytes.Add(-size(key, e))
		c.entries.Add(-1)
		c.evictions.Add(1)
	}
}

// evictAll evicts every entry of b, as evictIfFull does.
func (c *Cache) evictAll(b *bucket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.entries {
		e := b.entries[k]
		delete(b.entries, k)
		b.removed++
		c.bytes.Add(-size(k, e))
		c.entries.Add(-1)
		c.evictions.Add(1)
	}
}

// TestStaleAnswer holds the answer of a Get until the watch applied a newer
// revision: the answer must not replace it.
func TestStaleAnswer(t *testing.T) {
	e := newEnv(t)
	e.put(t, "other", "x")
	get(t, e.cache, "CONFIG", "other") // open the bucket
	e.put(t, "a", "old")
	// The watch's update of that put must be applied before the hook
	// counts updates: else the hook could take it for the next one's.
	poll.Wait(t, wait, "the watch to apply the first put", func() bool {
		return e.cache.Stats().Updates >= 1
	})
	for _, b := range *e.cache.buckets.Load() {
		e.cache.evictAll(b)
	}

	testHookStore = func(key string) {
		if key != "a" {
			return
		}
		updates := e.cache.Stats().Updates
		e.put(t, "a", "new")
		poll.Wait(t, wait, "the watch to apply the put", func() bool {
			return e.cache.Stats().Updates > updates
		})
	}
	defer func() { testHookStore = nil }()
	if v, _ := get(t, e.cache, "CONFIG", "a"); v != "old" {
		t.Fatalf("Get(a) = %q, want the answer read before the put", v)
	}
	testHookStore = nil
	if v, _ := get(t, e.cache, "CONFIG", "a"); v != "new" {
		t.Fatalf("Get(a) = %q after the put, want new", v)
	}
}

func TestByteCap(t *testing.T) {
	const max = 4 << 10
	e := newEnv(t, WithMaxBytes(max))
	const n = 200
	value := func(i int) string { return fmt.Sprintf("%03d%s", i, strings.Repeat("v", 60)) }
	for i := range n {
		e.put(t, "k"+strconv.Itoa(i), value(i))
	}
	for round := range 2 {
		for i := range n {
			if v, _ := get(t, e.cache, "CONFIG", "k"+strconv.Itoa(i)); v != value(i) {
				t.Fatalf("round %d: Get(k%d) = %q, want %q", round, i, v, value(i))
			}
			if b := e.cache.Stats().Bytes; b > max {
				t.Fatalf("%d bytes cached, over the bound %d", b, max)
			}
		}
	}
	s := e.cache.Stats()
	if s.Evictions == 0 {
		t.Errorf("no evictions: %+v", s)
	}
	var bytes, entries int64
	for _, b := range *e.cache.buckets.Load() {
		b.mu.RLock()
		for k, e := range b.entries {
			bytes += size(k, e)
			entries++
		}
		b.mu.RUnlock()
	}
	if bytes != s.Bytes || entries != s.Entries {
		t.Errorf("Stats = %+v, but the cache holds %d entries of %d bytes", s, entries, bytes)
	}
	// Updates of a full cache stay within the bound too.
	for i := range n {
		e.put(t, "k"+strconv.Itoa(i), value(i+1))
	}
	waitFor(t, e.cache, "k"+strconv.Itoa(n-1), value(n))
	if b := e.cache.Stats().Bytes; b > max {
		t.Fatalf("%d bytes cached, over the bound %d", b, max)
	}
}

func TestLargeValue(t *testing.T) {
	const max = 8 << 10
	e := newEnv(t, WithMaxBytes(max))
	big := strings.Repeat("x", max/8)
	e.put(t, "big", big)
	for range 2 {
		if v, _ := get(t, e.cache, "CONFIG", "big"); v != big {
			t.Fatalf("Get(big) = %d bytes, want %d", len(v), len(big))
		}
	}
	if s := e.cache.Stats(); s.Misses != 2 || s.Bytes > int64(len("big")) {
		t.Errorf("Stats = %+v, want 2 misses and the value not cached", s)
	}
	e.put(t, "big", "small")
	waitFor(t, e.cache, "big", "small")
}

func TestInvalid(t *testing.T) {
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c := New(js)
	defer c.Close()
	// No NATS call is made for these: they fail the same on a closed
	// connection.
	nc.Close()
	ctx := context.Background()
	for _, bucket := range []string{"DF_JOBS", "df_jobs", "Df_x"} {
		if _, _, err := c.Get(ctx, bucket, "a"); !errors.Is(err, ErrReserved) {
			t.Errorf("Get(%s) error = %v, want ErrReserved", bucket, err)
		}
	}
	for _, bucket := range []string{"", "a.b", "a b", "a*", "a>"} {
		if _, _, err := c.Get(ctx, bucket, "a"); !errors.Is(err, ErrInvalidBucket) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidBucket", bucket, err)
		}
	}
	for _, key := range []string{"a..b", "", ".a", "a.", "a b", "a*", "a>", "é", "a#b"} {
		if _, _, err := c.Get(ctx, "CONFIG", key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(CONFIG, %q) error = %v, want ErrInvalidKey", key, err)
		}
	}
	if s := c.Stats(); s.Misses != 0 || s.Buckets != 0 {
		t.Errorf("Stats = %+v, want no look-up", s)
	}
}

// TestValidKey checks validKey against what the jetstream package accepts.
func TestValidKey(t *testing.T) {
	srv := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, srv.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "K"})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"a", "a.b", "A-Z_0=9/x", "a..b", "", ".", ".a", "a.", "a b", "a*", "a>",
		"*", ">", "a.*", "é", "a#b", "a\tb", "$a", "a+b", "...", "a.b.c",
	} {
		_, err := kv.Get(context.Background(), key)
		jsValid := !errors.Is(err, jetstream.ErrInvalidKey)
		if got := validKey(key); got != jsValid {
			t.Errorf("validKey(%q) = %v, jetstream says %v (%v)", key, got, jsValid, err)
		}
	}
}

func TestUnknownBucket(t *testing.T) {
	e := newEnv(t)
	for range 2 {
		_, _, err := e.cache.Get(context.Background(), "NOPE", "a")
		if !errors.Is(err, jetstream.ErrBucketNotFound) || !strings.Contains(err.Error(), "NOPE") {
			t.Fatalf("Get(NOPE) error = %v, want one wrapping ErrBucketNotFound naming NOPE", err)
		}
	}
	// Once created, the bucket is opened by a later Get.
	ctx := context.Background()
	js, err := jetstream.New(natstest.Connect(t, e.url))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "NOPE"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	err = poll.Until(ctx, wait, func() error {
		v, _, err := e.cache.Get(ctx, "NOPE", "a")
		if err == nil && string(v) != "1" {
			return fmt.Errorf("Get(NOPE, a) = %q, want 1", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCancelledContext(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a", "1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cold bucket.
	if _, _, err := e.cache.Get(ctx, "CONFIG", "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v, want context.Canceled", err)
	}
	// An open bucket, a cold key.
	get(t, e.cache, "CONFIG", "b")
	if _, _, err := e.cache.Get(ctx, "CONFIG", "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v, want context.Canceled", err)
	}
	// A cached key is answered.
	if _, _, err := e.cache.Get(ctx, "CONFIG", "b"); err != nil {
		t.Fatalf("Get of a cached key with a cancelled context: %v", err)
	}
}

func TestConcurrentOpen(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a", "1")
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			v, found, err := e.cache.Get(context.Background(), "CONFIG", "a")
			if err != nil || !found || string(v) != "1" {
				t.Errorf("Get(a) = %q, %v, %v", v, found, err)
			}
		})
	}
	wg.Wait()
	if s := e.cache.Stats(); s.Buckets != 1 || s.Hits+s.Misses != 32 {
		t.Errorf("Stats = %+v, want 1 bucket and 32 look-ups", s)
	}
}

// TestBucketDeleted checks that a bucket whose watch ends is dropped: its
// values are not served any more.
func TestBucketDeleted(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a", "1")
	get(t, e.cache, "CONFIG", "a")
	js, err := jetstream.New(natstest.Connect(t, e.url))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(context.Background(), "CONFIG"); err != nil {
		t.Fatal(err)
	}
	err = poll.Until(context.Background(), 30*time.Second, func() error {
		_, _, err := e.cache.Get(context.Background(), "CONFIG", "a")
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("Get(a) error = %v, want ErrBucketNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := e.cache.Stats(); s.Entries != 0 || s.Bytes != 0 || s.Buckets != 0 {
		t.Errorf("Stats = %+v, want nothing cached", s)
	}
}

func TestServerRestart(t *testing.T) {
	ports, err := natsrv.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := natsrv.Config{Port: ports[0], StoreDir: t.TempDir()}
	srv, err := natsrv.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	e := newEnvURL(t, srv.ClientURL())
	e.put(t, "a", "before")
	if v, _ := get(t, e.cache, "CONFIG", "a"); v != "before" {
		t.Fatalf("Get(a) = %q, want before", v)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	srv, err = natsrv.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The writer reconnects too; retry its put until it does.
	err = poll.Until(context.Background(), wait, func() error {
		_, err := e.kv.PutString(context.Background(), "a", "after")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e.cache, "a", "after")
	// And the watch works again.
	e.put(t, "a", "later")
	waitFor(t, e.cache, "a", "later")
}

func TestClose(t *testing.T) {
	e := newEnv(t)
	e.put(t, "a", "1")
	get(t, e.cache, "CONFIG", "a")
	if err := e.cache.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.cache.Get(context.Background(), "CONFIG", "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if _, _, err := e.cache.Get(context.Background(), "OTHER", "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if err := e.cache.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func BenchmarkGetHit(b *testing.B) {
	e := newEnv(b)
	const keys = 1024
	for i := range keys {
		e.put(b, "key."+strconv.Itoa(i), "value")
	}
	names := make([]string, keys)
	for i := range names {
		names[i] = "key." + strconv.Itoa(i)
		get(b, e.cache, "CONFIG", names[i])
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			v, found, err := e.cache.Get(ctx, "CONFIG", names[i%keys])
			if err != nil || !found || len(v) != 5 {
				b.Errorf("Get = %q, %v, %v", v, found, err)
				return
			}
			i++
		}
	})
}
