package batchz

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

// logLines returns n records whose values are log lines: compressible.
func logLines(n int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		recs[i] = plugin.Record{Key: fmt.Appendf(nil, "k%d", i),
			Value: fmt.Appendf(nil, "2026-12-03T10:%02d:%02d.%03dZ INFO api request method=GET path=/v1/orders/%d status=200 bytes=%d", i/60%60, i%60, i%1000, i, 100+i%900)}
	}
	return recs
}

// randomValues returns n records of size random bytes: incompressible.
func randomValues(n, size int) []plugin.Record {
	r := rand.New(rand.NewPCG(1, 2))
	recs := make([]plugin.Record, n)
	for i := range recs {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		recs[i].Value = v
	}
	return recs
}

// A compressible batch and result message come back as they were; the
// header stays readable (Count) and the flag is set.
func TestCompressRoundTrip(t *testing.T) {
	b := &batch.Batch{Job: "j1", Plugin: "upper", Seq: 3, Base: 300, Config: plugin.Config{"a": "b"}, Records: logLines(500)}
	msg, err := batch.AppendBatch(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	prefix := []byte("prefix")
	z, ok := Compress(prefix, msg)
	if !ok || !bytes.HasPrefix(z, prefix) {
		t.Fatalf("Compress of log lines: ok %v", ok)
	}
	z = z[len(prefix):]
	if !Compressed(z) || Compressed(msg) || batch.Count(z) != 500 {
		t.Fatalf("Compressed = %v (plain %v), Count %d", Compressed(z), Compressed(msg), batch.Count(z))
	}
	t.Logf("batch of 500 log lines: %d bytes, compressed %d (%.2f)", len(msg), len(z), float64(len(z))/float64(len(msg)))
	if 3*len(z) > len(msg) {
		t.Errorf("compressed to %d of %d bytes: want a third or less for log lines", len(z), len(msg))
	}
	var got batch.Batch
	if err := batch.DecodeBatch(z, &got); !errors.Is(err, batch.ErrMalformed) || !bytes.Contains([]byte(err.Error()), []byte("compressed (S2)")) {
		t.Fatalf("batch.DecodeBatch of a compressed message: %v, want batch.ErrMalformed saying it is compressed", err)
	}
	if n, err := PlainSize(z); err != nil || n != len(msg) {
		t.Errorf("PlainSize = %d, %v, want %d", n, err, len(msg))
	}
	plain, err := Plain(nil, z)
	if err != nil || !bytes.Equal(plain, msg) {
		t.Fatalf("Plain: %v; equal to the original: %v", err, bytes.Equal(plain, msg))
	}
	if err := batch.DecodeBatch(plain, &got); err != nil {
		t.Fatal(err)
	}
	if again, err := batch.AppendBatch(nil, &got); err != nil || !bytes.Equal(again, msg) {
		t.Errorf("round trip: the decoded batch encodes differently (%v)", err)
	}
	if p, err := Plain(nil, msg); err != nil || &p[0] != &msg[0] {
		t.Errorf("Plain of a plain message copied it or failed: %v", err)
	}

	rs := &batch.ResultSet{Job: "j1", Seq: 3, Base: 300, Worker: "w1", Results: make([]plugin.Result, 500)}
	for i, r := range logLines(500) {
		rs.Results[i] = plugin.Value(r.Value)
	}
	rmsg, err := batch.AppendResults(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	rz, ok := Compress(nil, rmsg)
	if !ok {
		t.Fatal("results of log lines not compressed")
	}
	var grs batch.ResultSet
	if err := batch.DecodeResults(rz, &grs); !errors.Is(err, batch.ErrMalformed) {
		t.Fatalf("batch.DecodeResults of a compressed message: %v", err)
	}
	rplain, err := Plain(nil, rz)
	if err != nil || batch.DecodeResults(rplain, &grs) != nil || !bytes.Equal(grs.Results[499].Value, rs.Results[499].Value) {
		t.Fatalf("results round trip: %v", err)
	}
}

// Compress leaves alone what does not pay: short bodies, incompressible
// ones, and anything that is not a plain message of this package.
func TestCompressOnlyWhenItPays(t *testing.T) {
	for name, recs := range map[string][]plugin.Record{
		"short":  logLines(3),
		"random": randomValues(200, 100),
	} {
		msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "p", Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		if out, ok := Compress([]byte("x"), msg); ok || string(out) != "x" {
			t.Errorf("%s: compressed (%v) or dst changed (%q)", name, ok, out)
		}
	}
	for _, msg := range [][]byte{nil, []byte("DFB"), bytes.Repeat([]byte("a"), 4096)} {
		if _, ok := Compress(nil, msg); ok {
			t.Errorf("Compress(%.10q) compressed", msg)
		}
	}
	msg, _ := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "p", Records: logLines(200)})
	z, _ := Compress(nil, msg)
	if _, ok := Compress(nil, z); ok {
		t.Error("a compressed message compressed again")
	}
}

// A few bytes declaring a huge body are refused before anything is
// allocated; a corrupt block is malformed.
func TestPlainRefusesBombs(t *testing.T) {
	msg, _ := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "p", Records: logLines(200)})
	z, _ := Compress(nil, msg)
	hlen := int(le.Uint32(z[4:]))

	// An S2 block of 64 MiB and one byte of zeros is a few KB; its
	// declared length alone decides.
	big := s2.Encode(nil, make([]byte, 64<<20+1))
	bomb := append(append([]byte(nil), z[:hlen]...), big...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Plain(nil, bomb); !errors.Is(err, batch.ErrLimit) {
		t.Fatalf("bomb of %d bytes: %v, want batch.ErrLimit", len(bomb), err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("refusing the bomb allocated %d bytes", n)
	}
	if p, err := PlainMax(nil, bomb, 128<<20); err != nil || len(p) != hlen+64<<20+1 {
		t.Errorf("the same under a limit it fits: %d bytes, %v", len(p), err)
	}
	if _, err := PlainSize(bomb); !errors.Is(err, batch.ErrLimit) {
		t.Errorf("PlainSize of the bomb: %v", err)
	}

	corrupt := bytes.Clone(z)
	for i := hlen + 8; i < len(corrupt); i += 7 {
		corrupt[i] ^= 0xff
	}
	if _, err := Plain(nil, corrupt); !errors.Is(err, batch.ErrMalformed) {
		t.Errorf("corrupt block: %v, want batch.ErrMalformed", err)
	}
	short := bytes.Clone(z)
	le.PutUint32(short[4:], uint32(len(z)+1))
	if _, err := Plain(nil, short); !errors.Is(err, batch.ErrMalformed) {
		t.Errorf("header_len past the end: %v, want batch.ErrMalformed", err)
	}
}

// checkDecodeErr fails unless err is a *batch.Error wrapping one of the
// package's sentinels.
func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var e *batch.Error
	if !errors.As(err, &e) || !(errors.Is(err, batch.ErrMalformed) || errors.Is(err, batch.ErrLimit) || errors.Is(err, batch.ErrVersion)) {
		t.Fatalf("error %v (%T) is not a *batch.Error wrapping a sentinel", err, err)
	}
}

func FuzzPlain(f *testing.F) {
	msg, _ := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "p", Records: logLines(100)})
	z, _ := Compress(nil, msg)
	f.Add(z)
	f.Add(z[:len(z)/2])
	rmsg, _ := batch.AppendResults(nil, &batch.ResultSet{Job: "j", Results: []plugin.Result{plugin.Value(bytes.Repeat([]byte("ab"), 600))}})
	rz, _ := Compress(nil, rmsg)
	f.Add(rz)
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := PlainMax(nil, data, 1<<20)
		if err != nil {
			checkDecodeErr(t, err)
			return
		}
		if Compressed(plain) {
			t.Fatal("Plain returned a compressed message")
		}
		// What decodes compresses and comes back the same.
		var b batch.Batch
		if batch.DecodeBatch(plain, &b) == nil {
			if z, ok := Compress(nil, plain); ok {
				again, err := Plain(nil, z)
				if err != nil || !bytes.Equal(again, plain) {
					t.Fatalf("Compress then Plain: %v", err)
				}
			}
		}
	})
}

// The Go kit for WebAssembly plugins links package batch, not the codec:
// a guest never sees a compressed batch, and S2's tables would add about
// 180 KB to every module.
func TestGuestsDoNotLinkTheCodec(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	cmd := exec.Command(goBin, "list", "-deps", "github.com/dataflare/dataflare/pdk")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if bytes.Contains(out, []byte("klauspost/compress")) || bytes.Contains(out, []byte("batch/batchz")) {
		t.Errorf("package pdk depends on the codec:\n%s", out)
	}
}
