package local_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

// A fleet runs native and WebAssembly plugins, keeps its jobs and plugins
// across a restart on its store directory, and leaves nothing behind.
func TestStartPushRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := local.Start(ctx, local.Config{Listen: "127.0.0.1:0", StoreDir: dir, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Push(ctx, twins.UpperName, twins.Upper)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	recs := []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}}
	for _, name := range []string{"upper", twins.UpperName} {
		res, err := c.ProcessBatch(ctx, name, nil, recs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := string(res.Results[0].Value) + string(res.Results[1].Value); got != "AB" {
			t.Errorf("%s over a, b = %q, want AB", name, got)
		}
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(dir + "/wasm-cache"); err != nil {
		t.Errorf("no compiled-module cache in the store directory: %v", err)
	}

	// Restarted on the same store, the module is there (pushing it again
	// is a no-op) and runs.
	f, err = local.Start(ctx, local.Config{StoreDir: dir, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	again, err := f.Push(ctx, twins.UpperName, twins.Upper)
	if err != nil || again.Digest != m.Digest || again.Version != m.Version {
		t.Errorf("push after restart = %+v, %v; want the same %s", again, err, m.Digest)
	}
	if c, err = f.Client(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProcessBatch(ctx, twins.UpperName, nil, recs); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

func TestTemporaryStoreRemoved(t *testing.T) {
	before, _ := os.ReadDir(os.TempDir())
	f, err := local.Start(context.Background(), local.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	after, _ := os.ReadDir(os.TempDir())
	for _, e := range after {
		if strings.HasPrefix(e.Name(), "dataflare-") && !containsName(before, e.Name()) {
			t.Errorf("temporary store %s left behind", e.Name())
		}
	}
}

func containsName(es []os.DirEntry, name string) bool {
	for _, e := range es {
		if e.Name() == name {
			return true
		}
	}
	return false
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = local.Start(context.Background(), local.Config{Listen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Start on a taken port: %v, want an error saying the address is in use", err)
	}
}

func TestStopAndKill(t *testing.T) {
	ctx := context.Background()
	f, err := local.Start(ctx, local.Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Kill("worker-1"); err != nil {
		t.Errorf("Kill: %v", err)
	}
	if err := f.Stop("worker-2"); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := f.Stop("worker-2"); !errors.Is(err, local.ErrNoDaemon) {
		t.Errorf("Stop of a stopped worker: %v, want ErrNoDaemon", err)
	}
	id, err := f.StartWorker()
	if err != nil || id != "worker-3" {
		t.Fatalf("StartWorker = %q, %v", id, err)
	}
	c, err := f.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ProcessRecord(ctx, "upper", nil, plugin.Record{Value: []byte("x")}); err != nil {
		t.Errorf("after the kill and a new worker: %v", err)
	}
}
