package stack

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/plugin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRunClose(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Config{Listen: "127.0.0.1:0", Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	s.AfterClose(func() { closed = true })
	dir := s.tmp
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("temporary store %s: %v", dir, err)
	}
	nc, err := s.Conn("test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var res *plugin.BatchResult
	err = natstest.Eventually(10*time.Second, func() error {
		res, err = c.ProcessBatch(ctx, "upper", nil, []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Results[0].Value) + string(res.Results[1].Value); got != "AB" {
		t.Errorf("upper over a, b = %q, want AB", got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if !closed {
		t.Error("AfterClose function not called")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary store %s left behind (stat: %v)", dir, err)
	}
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(context.Background(), Config{Listen: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Start on a taken port: %v, want an error saying the address is in use", err)
	}
}
