package security

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/kvcache"
	"github.com/dataflare/dataflare/internal/poll"
)

// TestWorkerReadsGrantedBucketsOnly runs the worker's KV cache (what
// modules granted kv:BUCKET read through) as the worker of
// deploy/nats/auth.conf: it reads and watches the bucket listed there
// without a single permission error, and cannot read a bucket that is not
// listed, nor the fleet's pipelines; the cache refuses DF_ buckets itself.
func TestWorkerReadsGrantedBucketsOnly(t *testing.T) {
	s := startServer(t, serverConf)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := dial(t, s.ClientURL(), adminRole).js(t)
	buckets := map[string]jetstream.KeyValue{}
	for _, b := range []string{"users", "orders", "DF_PIPELINES"} {
		kv, err := admin.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "alice", []byte(b+" of alice")); err != nil {
			t.Fatal(err)
		}
		buckets[b] = kv
	}

	w := dial(t, s.ClientURL(), workerRole)
	cache := kvcache.New(w.js(t))
	defer cache.Close()
	v, found, err := cache.Get(ctx, "users", "alice")
	if err != nil || !found || string(v) != "users of alice" {
		t.Fatalf("users/alice as the worker: %q, %v, %v", v, found, err)
	}
	if _, err := buckets["users"].Put(ctx, "alice", []byte("alice, renamed")); err != nil {
		t.Fatal(err)
	}
	poll.Wait(t, 10*time.Second, "the watch to bring the new value", func() bool {
		v, _, err := cache.Get(ctx, "users", "alice")
		return err == nil && string(v) == "alice, renamed"
	})
	if st := cache.Stats(); st.Misses != 1 || st.Updates == 0 {
		t.Errorf("cache stats %+v: want 1 miss and the update applied from the watch", st)
	}
	if errs := w.permissionViolations(); len(errs) > 0 {
		t.Fatalf("the worker hit permission errors reading a granted bucket: %v", errs)
	}

	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if _, _, err := cache.Get(short, "orders", "alice"); err == nil || !strings.Contains(err.Error(), "orders") {
		t.Errorf("orders/alice, a bucket not in the worker's rights: %v, want an error naming it", err)
	}
	if _, _, err := cache.Get(ctx, "DF_PIPELINES", "alice"); !errors.Is(err, kvcache.ErrReserved) {
		t.Errorf("DF_PIPELINES through the cache: %v, want ErrReserved", err)
	}
	// Around the cache too: the worker's rights do not reach the bucket.
	direct, cancelDirect := context.WithTimeout(ctx, 3*time.Second)
	defer cancelDirect()
	if kv, err := w.js(t).KeyValue(direct, "DF_PIPELINES"); err == nil {
		if e, err := kv.Get(direct, "alice"); err == nil {
			t.Errorf("the worker read DF_PIPELINES: %q", e.Value())
		}
	}
	if len(w.permissionViolations()) == 0 {
		t.Error("no permission error for the buckets the worker may not read")
	}
}
