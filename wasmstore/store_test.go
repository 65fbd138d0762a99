package wasmstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

// module returns a test module of package wasm.
func module(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "wasm", "testdata", name+".wasm"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

type env struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	rt    *wasm.Runtime
	store *wasmstore.Store
}

// newEnv starts a JetStream server and a store validated by a wasm runtime.
func newEnv(t *testing.T, opts ...wasmstore.Option) *env {
	t.Helper()
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := wasm.NewRuntime(context.Background(), wasm.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	st, err := wasmstore.New(context.Background(), js, append([]wasmstore.Option{wasmstore.WithValidator(rt)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, js: js, rt: rt, store: st}
}

func TestPushGetRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mod := module(t, "abi_upper")
	before := time.Now().UTC()
	m, err := e.store.Push(ctx, "upper-wat", "1.0.0", mod)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	want := wasmstore.Manifest{
		Name:    "upper-wat",
		Version: "1.0.0",
		Digest:  wasm.Digest(mod),
		Size:    int64(len(mod)),
		Info: plugin.Info{Name: "abi-upper", Version: "1.0.0", Type: plugin.Transformer,
			Description: "ASCII upper-case, in WAT", APIVersion: "1.0"},
		Created: m.Created,
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("manifest (-want +got):\n%s", diff)
	}
	if m.Created.Before(before) || m.Created.After(time.Now()) {
		t.Errorf("Created = %s, want between %s and now", m.Created, before)
	}
	data, got, err := e.store.Get(ctx, "upper-wat", m.Digest)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !bytes.Equal(data, mod) {
		t.Error("Get returned other bytes")
	}
	if diff := cmp.Diff(m, got, cmpTime); diff != "" {
		t.Errorf("Get manifest (-push +get):\n%s", diff)
	}
	if data, err := e.store.Fetch(ctx, "upper-wat", m.Digest); err != nil || !bytes.Equal(data, mod) {
		t.Errorf("Fetch: %d bytes, %v", len(data), err)
	}
	for _, v := range []string{"", wasmstore.Latest, "1.0.0"} {
		r, err := e.store.Resolve(ctx, "upper-wat", v)
		if err != nil || r.Digest != m.Digest {
			t.Errorf("Resolve(%q) = %v, %v; want %s", v, r, err, m.Digest)
		}
	}
	infos, err := e.store.Info(ctx, "upper-wat")
	if err != nil || len(infos) != 1 || infos[0].Digest != m.Digest {
		t.Errorf("Info = %v, %v; want the one version", infos, err)
	}
	// Pushing the same bytes again is a no-op.
	again, err := e.store.Push(ctx, "upper-wat", "1.0.0", mod)
	if err != nil || again.Digest != m.Digest || !again.Created.Equal(m.Created) {
		t.Errorf("second Push = %v, %v; want the first manifest", again, err)
	}
}

var cmpTime = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func TestPushRefuses(t *testing.T) {
	e := newEnv(t, wasmstore.WithMaxModuleSize(4096))
	ctx := context.Background()
	if _, err := e.store.Push(ctx, "taken", "1", module(t, "abi_upper")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, plugin, version string
		module                []byte
		want, also            error
	}{
		{"path_open", "p", "1", module(t, "path_open"), wasmstore.ErrInvalidModule, wasm.ErrForbiddenImport},
		{"unknown import", "p", "1", module(t, "unknown_import"), wasmstore.ErrInvalidModule, wasm.ErrForbiddenImport},
		{"start loop", "p", "1", module(t, "start_loop"), wasmstore.ErrInvalidModule, wasm.ErrInstantiate},
		{"missing export", "p", "1", module(t, "missing_export"), wasmstore.ErrInvalidModule, wasm.ErrABI},
		{"not wasm", "p", "1", []byte("hello"), wasmstore.ErrInvalidModule, wasm.ErrInvalidModule},
		{"too large", "p", "1", make([]byte, 4097), wasmstore.ErrTooLarge, plugin.ErrTooLarge},
		{"dotted name", "a.b", "1", module(t, "noop"), wasmstore.ErrInvalidName, nil},
		{"empty name", "", "1", module(t, "noop"), wasmstore.ErrInvalidName, nil},
		{"slash version", "p", "1/2", module(t, "noop"), wasmstore.ErrInvalidName, nil},
		{"latest version", "p", "latest", module(t, "noop"), wasmstore.ErrInvalidName, nil},
		{"version exists", "taken", "1", module(t, "noop"), wasmstore.ErrVersionExists, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.store.Push(ctx, tt.plugin, tt.version, tt.module)
			if !errors.Is(err, tt.want) {
				t.Errorf("Push error = %v, want %v", err, tt.want)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("Push error = %v, want it to match %v too", err, tt.also)
			}
		})
	}
	ms, err := e.store.List(ctx)
	if err != nil || len(ms) != 1 {
		t.Errorf("List after refused pushes = %v, %v; want only the first module", ms, err)
	}
}

// Without a validator, Push checks the magic number only.
func TestPushWithoutValidator(t *testing.T) {
	s := natstest.RunServer(t)
	js, _ := jetstream.New(natstest.Connect(t, s.ClientURL()))
	st, err := wasmstore.New(context.Background(), js, wasmstore.WithBucket("PLAIN"), wasmstore.WithMemoryStorage())
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Push(context.Background(), "raw", "0.1", module(t, "loop"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (plugin.Info{Name: "raw", Version: "0.1", APIVersion: plugin.APIVersion}); m.Info != want {
		t.Errorf("Info = %+v, want %+v", m.Info, want)
	}
	if _, err := st.Push(context.Background(), "raw", "0.2", []byte("not wasm")); !errors.Is(err, wasmstore.ErrInvalidModule) {
		t.Errorf("Push(not wasm) error = %v, want ErrInvalidModule", err)
	}
	if _, err := st.Push(context.Background(), "raw", "", module(t, "loop")); !errors.Is(err, wasmstore.ErrInvalidName) {
		t.Errorf("Push without a version or a validator: error = %v, want ErrInvalidName", err)
	}
}

func TestPushTakesVersionFromInfo(t *testing.T) {
	e := newEnv(t)
	m, err := e.store.Push(context.Background(), "mixed", "", module(t, "abi_mixed"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.0.0" {
		t.Errorf("Version = %q, want the module's %q", m.Version, "1.0.0")
	}
}

func TestResolveAndRemove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v1, err := e.store.Push(ctx, "p", "1", module(t, "abi_upper"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.store.Push(ctx, "p", "2", module(t, "noop"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.store.Push(ctx, "q", "1", module(t, "abi_mixed"))
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(version string) string {
		m, err := e.store.Resolve(ctx, "p", version)
		if err != nil {
			return err.Error()
		}
		return m.Version
	}
	if got := resolve(""); got != "2" {
		t.Errorf("newest = %s, want 2", got)
	}
	digest, version, err := wasmstore.Resolver(e.store)(ctx, "p", "1")
	if err != nil || digest != v1.Digest || version != "1" {
		t.Errorf("Resolver(p, 1) = %s, %s, %v; want %s, 1", digest, version, err, v1.Digest)
	}
	if d, v, err := wasmstore.Resolver(e.store)(ctx, "nope", ""); d != "" || v != "" || err != nil {
		t.Errorf("Resolver(nope) = %q, %q, %v; want empty and no error", d, v, err)
	}
	ms, err := e.store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+"@"+m.Version)
	}
	if diff := cmp.Diff([]string{"p@2", "p@1", "q@1"}, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if err := e.store.Remove(ctx, "p", "2"); err != nil {
		t.Fatal(err)
	}
	if got := resolve(""); got != "1" {
		t.Errorf("newest after removing 2 = %s, want 1", got)
	}
	if _, _, err := e.store.Get(ctx, "p", v2.Digest); !errors.Is(err, wasmstore.ErrNotFound) || !errors.Is(err, plugin.ErrUnknownPlugin) {
		t.Errorf("Get(removed) error = %v, want ErrNotFound (and plugin.ErrUnknownPlugin)", err)
	}
	if err := e.store.Remove(ctx, "p", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Info(ctx, "p"); !errors.Is(err, wasmstore.ErrNotFound) {
		t.Errorf("Info after removing all = %v, want ErrNotFound", err)
	}
	if err := e.store.Remove(ctx, "p", ""); !errors.Is(err, wasmstore.ErrNotFound) {
		t.Errorf("Remove(nothing) = %v, want ErrNotFound", err)
	}
	if _, _, err := e.store.Get(ctx, "q", other.Digest); err != nil {
		t.Errorf("the other plugin after removals: %v", err)
	}
	// A removed version can be pushed again.
	if _, err := e.store.Push(ctx, "p", "2", module(t, "abi_upper")); err != nil {
		t.Errorf("Push over a removed version: %v", err)
	}
}

func TestWatch(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v1, err := e.store.Push(ctx, "p", "1", module(t, "abi_upper"))
	if err != nil {
		t.Fatal(err)
	}
	events, err := e.store.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() wasmstore.Event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("events closed")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return wasmstore.Event{}
	}
	if ev := next(); ev.Op != wasmstore.Put || ev.Manifest.Digest != v1.Digest {
		t.Errorf("initial event = %v %v, want put %s", ev.Op, ev.Manifest, v1)
	}
	v2, err := e.store.Push(ctx, "p", "2", module(t, "noop"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Op != wasmstore.Put || ev.Manifest.Digest != v2.Digest {
		t.Errorf("push event = %v %v, want put %s", ev.Op, ev.Manifest, v2)
	}
	if err := e.store.Remove(ctx, "p", "1"); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Op != wasmstore.Removed || ev.Manifest.Version != "1" || ev.Manifest.Digest != v1.Digest {
		t.Errorf("remove event = %v %v, want removed p@1", ev.Op, ev.Manifest)
	}
	cancel()
	for range events { // drains until closed
	}
}

type currentRecorder struct {
	mu      sync.Mutex
	current map[string]string
}

func (c *currentRecorder) SetCurrent(name, digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current[name] = digest
}

func (c *currentRecorder) Forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.current, name)
}

func (c *currentRecorder) get(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current[name]
}

// RELIABILITY row 13: a re-put of different bytes, a corrupt object, or a
// wrong pinned digest is refused; nothing reaches the compiler.
func TestTamperedModulesRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good := module(t, "abi_upper")
	m, err := e.store.Push(ctx, "p", "1", good)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.js.ObjectStore(ctx, "DF_PLUGINS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := raw.GetInfo(ctx, "p/1")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong pinned digest", func(t *testing.T) {
		_, _, err := e.store.Get(ctx, "p", wasm.Digest([]byte("something else")))
		if !errors.Is(err, wasmstore.ErrNotFound) {
			t.Errorf("Get error = %v, want ErrNotFound", err)
		}
	})

	t.Run("corrupt chunks", func(t *testing.T) {
		stream, err := e.js.Stream(ctx, "OBJ_DF_PLUGINS")
		if err != nil {
			t.Fatal(err)
		}
		chunks := fmt.Sprintf("$O.DF_PLUGINS.C.%s", info.NUID)
		if err := stream.Purge(ctx, jetstream.WithPurgeSubject(chunks)); err != nil {
			t.Fatal(err)
		}
		bad := bytes.ToUpper(good) // same length, other bytes
		if _, err := e.js.Publish(ctx, chunks, bad); err != nil {
			t.Fatal(err)
		}
		_, _, err = e.store.Get(ctx, "p", m.Digest)
		if !errors.Is(err, wasmstore.ErrDigestMismatch) || !errors.Is(err, plugin.ErrUnknownPlugin) {
			t.Errorf("Get error = %v, want ErrDigestMismatch (and plugin.ErrUnknownPlugin)", err)
		}
	})

	t.Run("re-put with forged metadata", func(t *testing.T) {
		evil := module(t, "loop")
		if _, err := raw.Put(ctx, jetstream.ObjectMeta{Name: "p/1", Metadata: info.Metadata}, bytes.NewReader(evil)); err != nil {
			t.Fatal(err)
		}
		_, _, err := e.store.Get(ctx, "p", m.Digest)
		if !errors.Is(err, wasmstore.ErrDigestMismatch) {
			t.Errorf("Get error = %v, want ErrDigestMismatch", err)
		}
		if err != nil && !strings.Contains(err.Error(), wasm.Digest(evil)) {
			t.Errorf("error %q does not name the digest of the stored bytes", err)
		}
	})

	t.Run("re-put without metadata", func(t *testing.T) {
		if _, err := raw.PutBytes(ctx, "p/1", module(t, "loop")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.store.Get(ctx, "p", m.Digest); !errors.Is(err, wasmstore.ErrNotFound) {
			t.Errorf("Get error = %v, want ErrNotFound", err)
		}
		if _, err := e.store.Resolve(ctx, "p", ""); !errors.Is(err, wasmstore.ErrNotFound) {
			t.Errorf("Resolve error = %v, want ErrNotFound: the object is no manifest", err)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		opt  wasmstore.Option
	}{
		{"bucket with dot", wasmstore.WithBucket("a.b")},
		{"empty bucket", wasmstore.WithBucket("")},
		{"zero replicas", wasmstore.WithReplicas(0)},
		{"six replicas", wasmstore.WithReplicas(6)},
		{"nil validator", wasmstore.WithValidator(nil)},
		{"tiny max size", wasmstore.WithMaxModuleSize(7)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The option is refused before the server is contacted.
			if _, err := wasmstore.New(context.Background(), nil, tt.opt); !errors.Is(err, wasmstore.ErrInvalidOption) {
				t.Errorf("New error = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func withMeta(name string, md map[string]string) jetstream.ObjectMeta {
	return jetstream.ObjectMeta{Name: name, Metadata: md}
}

// Open binds to an existing bucket only.
func TestOpen(t *testing.T) {
	s := natstest.RunServer(t)
	js, _ := jetstream.New(natstest.Connect(t, s.ClientURL()))
	ctx := context.Background()
	if _, err := wasmstore.Open(ctx, js); !errors.Is(err, wasmstore.ErrNotFound) {
		t.Fatalf("Open before the bucket exists: error = %v, want ErrNotFound", err)
	}
	admin, err := wasmstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	m, err := admin.Push(ctx, "p", "1", module(t, "noop"))
	if err != nil {
		t.Fatal(err)
	}
	reader, err := wasmstore.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := reader.Fetch(ctx, "p", m.Digest); err != nil || !bytes.Equal(b, module(t, "noop")) {
		t.Errorf("Fetch through Open: %d bytes, %v", len(b), err)
	}
	if _, err := wasmstore.Open(ctx, js, wasmstore.WithBucket("a.b")); !errors.Is(err, wasmstore.ErrInvalidOption) {
		t.Errorf("Open with a bad option: error = %v, want ErrInvalidOption", err)
	}
}

// A reader refuses a module over its size limit by the size the object
// store recorded, without fetching it; and one holding more than its
// recorded size (forged metadata) while fetching, at the limit.
func TestGetRefusesOversize(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	admin, err := wasmstore.New(ctx, js) // no validator: bytes with the magic number
	if err != nil {
		t.Fatal(err)
	}
	big := append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, 256<<10)...)
	m, err := admin.Push(ctx, "big", "1", big)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 64 << 10
	reader, err := wasmstore.Open(ctx, js, wasmstore.WithMaxModuleSize(limit))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("by its recorded size", func(t *testing.T) {
		in := nc.Stats().InBytes
		data, _, err := reader.Get(ctx, "big", m.Digest)
		if !errors.Is(err, wasmstore.ErrTooLarge) || !errors.Is(err, plugin.ErrTooLarge) || !strings.Contains(err.Error(), "not fetched") {
			t.Errorf("Get error = %v, want ErrTooLarge before fetching", err)
		}
		if data != nil {
			t.Error("Get returned bytes with its error")
		}
		if got := nc.Stats().InBytes - in; got > 16<<10 {
			t.Errorf("Get received %d bytes for a refused %d-byte module, want only its metadata (≤ 16 KiB)", got, len(big))
		}
		if _, err := admin.Fetch(ctx, "big", m.Digest); err != nil {
			t.Errorf("Fetch within the admin's limit: %v", err)
		}
	})

	t.Run("holding more than recorded", func(t *testing.T) {
		raw, err := js.ObjectStore(ctx, "DF_PLUGINS")
		if err != nil {
			t.Fatal(err)
		}
		info, err := raw.GetInfo(ctx, "big/1")
		if err != nil {
			t.Fatal(err)
		}
		info.Size = 1000 // the chunks still hold 256 KiB
		meta, err := json.Marshal(info)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg("$O.DF_PLUGINS.M." + base64.URLEncoding.EncodeToString([]byte("big/1")))
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		msg.Data = meta
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		_, _, err = reader.Get(ctx, "big", m.Digest)
		if !errors.Is(err, wasmstore.ErrTooLarge) || !strings.Contains(err.Error(), "more than the 1000 bytes recorded") {
			t.Errorf("Get error = %v, want ErrTooLarge while fetching", err)
		}
	})
}
