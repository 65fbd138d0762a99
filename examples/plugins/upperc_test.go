package plugins_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
)

// The C build imports nothing, exports exactly the ABI, and passes the
// runtime's checks (what a module store runs before it accepts a module).
func TestUpperWASMSandbox(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, twins.Upper)
	if err != nil {
		t.Fatal(err)
	}
	if imp := cm.ImportedFunctions(); len(imp) != 0 {
		t.Errorf("%d imported functions, want none", len(imp))
	}
	if mem := cm.ImportedMemories(); len(mem) != 0 {
		t.Errorf("%d imported memories, want none", len(mem))
	}
	var got []string
	for name := range cm.ExportedFunctions() {
		got = append(got, name)
	}
	for name := range cm.ExportedMemories() {
		got = append(got, name)
	}
	want := map[string]bool{"memory": true, "df_abi_version": true, "df_info": true, "df_alloc": true, "df_process": true}
	if len(got) != len(want) {
		t.Errorf("exports %q, want exactly %d: memory, df_abi_version, df_info, df_alloc, df_process", got, len(want))
	}
	for _, name := range got {
		if !want[name] {
			t.Errorf("unexpected export %q", name)
		}
	}

	loadedMu.Lock()
	info, err := runtimeLocked(t).Validate(ctx, twins.Upper)
	loadedMu.Unlock()
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if info.Name != twins.UpperName || info.Type != plugin.Transformer || info.APIVersion != plugin.APIVersion {
		t.Errorf("Validate info = %+v", info)
	}
}

// newGuest instantiates the C build with a memory limit of pages.
func newGuest(t *testing.T, pages uint32) (call func(name string, args ...uint64) uint64, write func(ptr uint32, b []byte), read func(ptr, n uint32) []byte) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(pages))
	t.Cleanup(func() { r.Close(ctx) })
	mod, err := r.Instantiate(ctx, twins.Upper)
	if err != nil {
		t.Fatal(err)
	}
	call = func(name string, args ...uint64) uint64 {
		t.Helper()
		res, err := mod.ExportedFunction(name).Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s%v: %v", name, args, err)
		}
		return res[0]
	}
	write = func(ptr uint32, b []byte) {
		t.Helper()
		if !mod.Memory().Write(ptr, b) {
			t.Fatalf("write %d bytes at %#x: out of range", len(b), ptr)
		}
	}
	read = func(ptr, n uint32) []byte {
		t.Helper()
		b, ok := mod.Memory().Read(ptr, n)
		if !ok {
			t.Fatalf("read %d bytes at %#x: out of range", n, ptr)
		}
		return bytes.Clone(b)
	}
	return call, write, read
}

// df_alloc grows memory for the input and output regions, and answers 0
// when it cannot.
func TestUpperWASMAlloc(t *testing.T) {
	call, _, _ := newGuest(t, 2048) // 128 MiB
	for _, tt := range []struct {
		size   uint32
		wantOK bool
	}{
		{0, true},
		{1, true},
		{64 << 10, true},
		{60 << 20, true},  // 2 × 60 MiB fit 128 MiB
		{70 << 20, false}, // 2 × 70 MiB do not
		{0x3ff00001, false},
		{0xffffffff, false},
		{64 << 10, true}, // and a failure leaves it usable
	} {
		ptr := uint32(call("df_alloc", uint64(tt.size)))
		if got := ptr != 0; got != tt.wantOK {
			t.Errorf("df_alloc(%d) = %#x, want a region: %t", tt.size, ptr, tt.wantOK)
		}
	}
}

// A message the guest cannot walk is a batch-level error (bit 63) of
// code 1, not a trap or an output that breaks the framing.
func TestUpperWASMMalformed(t *testing.T) {
	header := func(count, headerLen uint32) []byte {
		b := make([]byte, 32)
		copy(b, "DFB\x01")
		binary.LittleEndian.PutUint32(b[4:], headerLen)
		binary.LittleEndian.PutUint32(b[8:], count)
		return b
	}
	rec := func(klen, vlen, hcount uint32, rest string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, klen)
		b = binary.LittleEndian.AppendUint32(b, vlen)
		b = binary.LittleEndian.AppendUint32(b, hcount)
		b = append(b, make([]byte, 8)...)
		return append(b, rest...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	ok := cat(header(1, 32), rec(1, 3, 1, "kabc\x01\x00\x00\x00h\x01\x00\x00\x00v"))
	for _, tt := range []struct {
		name    string
		msg     []byte
		wantErr bool
	}{
		{"well-formed", ok, false},
		{"no records", header(0, 32), false},
		{"short", header(0, 32)[:31], true},
		{"header_len past the end", header(0, 33), true},
		{"header_len inside the header", header(0, 31), true},
		{"record missing", header(1, 32), true},
		{"record framing cut", cat(header(1, 32), rec(0, 0, 0, ""))[:50], true},
		{"key past the end", cat(header(1, 32), rec(5, 0, 0, "k")), true},
		{"value past the end", cat(header(1, 32), rec(0, 5, 0, "v")), true},
		{"value length huge", cat(header(1, 32), rec(0, 0xffffffff, 0, "v")), true},
		{"header missing", cat(header(1, 32), rec(0, 1, 1, "v")), true},
		{"header key past the end", cat(header(1, 32), rec(0, 1, 1, "v\x09\x00\x00\x00h")), true},
		{"header value length cut", cat(header(1, 32), rec(0, 1, 1, "v\x01\x00\x00\x00h\x01")), true},
		{"trailing bytes", cat(ok, []byte{0}), true},
		{"more records than bytes", cat(header(9, 32), rec(0, 0, 0, "")), true},
		{"count huge", cat(header(0xffffffff, 32), rec(0, 0, 0, "")), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			call, write, read := newGuest(t, 16)
			ptr := uint32(call("df_alloc", uint64(len(tt.msg))))
			write(ptr, tt.msg)
			res := call("df_process", uint64(ptr), uint64(len(tt.msg)))
			isErr := res>>63 == 1
			out := read(uint32(res>>32)&0x7fffffff, uint32(res))
			if isErr != tt.wantErr {
				t.Fatalf("error flag %t, want %t (output %q)", isErr, tt.wantErr, out)
			}
			if !tt.wantErr {
				return
			}
			const msg = "upper-wasm: malformed batch message"
			want := append([]byte{2, 1, 0, 0}, binary.LittleEndian.AppendUint32(nil, uint32(len(msg)))...)
			if want = append(want, msg...); !bytes.Equal(out, want) {
				t.Errorf("output %q, want %q", out, want)
			}
		})
	}

	t.Run("not the input region", func(t *testing.T) {
		call, write, _ := newGuest(t, 16)
		ptr := uint32(call("df_alloc", uint64(len(ok))))
		write(ptr+16, ok)
		if res := call("df_process", uint64(ptr+16), uint64(len(ok))); res>>63 != 1 {
			t.Errorf("df_process at region+16 = %#x, want the error flag", res)
		}
		if res := call("df_process", uint64(ptr), 1<<20); res>>63 != 1 {
			t.Errorf("df_process of more bytes than the region = %#x, want the error flag", res)
		}
	})
}
