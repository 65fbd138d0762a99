package plugins_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/dataflare/dataflare/examples/plugins"
	"github.com/dataflare/dataflare/plugin"
)

// rustc is the compiler the Rust builds are made with: Debian's, whose
// standard library for wasm32-wasi comes in libstd-rust-dev-wasm32.
const rustc = "/usr/bin/rustc"

// rustToolchain returns rustc's version line ("rustc 1.63.0"), or skips t
// when rustc or its wasm32-wasi standard library is missing.
func rustToolchain(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(rustc); err != nil {
		t.Skipf("no %s (apt-get install rustc libstd-rust-dev-wasm32): not rebuilding the Rust modules", rustc)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to run build.sh: not rebuilding the Rust modules")
	}
	libdir, err := exec.Command(rustc, "--print", "target-libdir", "--target", "wasm32-wasi").Output()
	if err != nil {
		t.Skipf("%s has no wasm32-wasi target (%v): not rebuilding the Rust modules", rustc, err)
	}
	if std, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(libdir)), "libstd-*.rlib")); len(std) == 0 {
		t.Skipf("%s has no standard library for wasm32-wasi (apt-get install libstd-rust-dev-wasm32): not rebuilding the Rust modules", rustc)
	}
	out, err := exec.Command(rustc, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return version
}

// checkRustBuild runs script (a build.sh) into a temporary file and
// compares what it makes with committed, when this machine has the rustc
// the script names.
func checkRustBuild(t *testing.T, script string, committed []byte) {
	version := rustToolchain(t)
	text, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("# built-with: "+version+"\n")) {
		t.Skipf("%s's module was built by another rustc than %q; not comparing", script, version)
	}
	dst := filepath.Join(t.TempDir(), "out.wasm")
	cmd := exec.Command("sh", script, dst)
	cmd.Env = append(os.Environ(), "RUSTC="+rustc)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	built, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, committed) {
		t.Fatalf("%s builds %d bytes, %d committed: the committed module is stale; run sh %s", script, len(built), len(committed), script)
	}
}

// The committed upper-rust/upper.wasm is what upper-rust/build.sh makes of
// upper.rs and the kit.
func TestUpperRustIsCurrent(t *testing.T) {
	checkRustBuild(t, "upper-rust/build.sh", plugins.UpperRustWASM)
}

// kitcheckPath is the module that exercises every shape of the Rust kit.
const kitcheckPath = "../../pdk/rust/testdata/kitcheck.wasm"

func kitcheck(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(kitcheckPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The committed kitcheck.wasm is what its build.sh makes of kitcheck.rs
// and the kit.
func TestRustKitcheckIsCurrent(t *testing.T) {
	checkRustBuild(t, "../../pdk/rust/testdata/build.sh", kitcheck(t))
}

// The kit's own unit tests (pdk/rust/lib.rs, mod tests), built for this
// machine by rustc --test, pass.
func TestRustKitUnitTests(t *testing.T) {
	if _, err := os.Stat(rustc); err != nil {
		t.Skipf("no %s (apt-get install rustc): not running the Rust kit's unit tests", rustc)
	}
	bin := filepath.Join(t.TempDir(), "kit_test")
	out, err := exec.Command(rustc, "--edition", "2021", "--test", "-o", bin, "../../pdk/rust/lib.rs").CombinedOutput()
	if err != nil {
		t.Fatalf("rustc --test pdk/rust/lib.rs: %v\n%s", err, out)
	}
	out, err = exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("the Rust kit's unit tests: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("test result: ok.")) || bytes.Contains(out, []byte(" 0 passed")) {
		t.Fatalf("the Rust kit's unit tests ran none:\n%s", out)
	}
	t.Logf("%s", bytes.TrimSpace(out[bytes.LastIndex(out, []byte("test result")):]))
}

// The Rust build imports only WASI functions on the sandbox's list,
// exports exactly the ABI, and passes the runtime's checks.
func TestUpperRustSandbox(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, plugins.UpperRustWASM)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"fd_write": true, "environ_get": true, "environ_sizes_get": true, "proc_exit": true}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != "wasi_snapshot_preview1" || !allowed[name] {
			t.Errorf("imports %s.%s, want only wasi_snapshot_preview1's fd_write, environ_get, environ_sizes_get, proc_exit", mod, name)
		}
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
		t.Errorf("exports %q, want exactly memory, df_abi_version, df_info, df_alloc, df_process", got)
	}
	for _, name := range got {
		if !want[name] {
			t.Errorf("unexpected export %q", name)
		}
	}

	loadedMu.Lock()
	info, err := runtimeLocked(t).Validate(ctx, plugins.UpperRustWASM)
	loadedMu.Unlock()
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if info.Name != "upper-wasm" || info.Version != "1.0.0" || info.Type != plugin.Transformer ||
		info.APIVersion != plugin.APIVersion || info.Author != "DataFlare" || !strings.Contains(info.Description, "in Rust") {
		t.Errorf("Validate info = %+v", info)
	}
}

// The Rust build gives byte for byte the native upper's output: empty and
// nil values, any bytes, values around every stride and up to 1 MiB, many
// records, keys and headers skipped.
func TestUpperRustMatchesNative(t *testing.T) {
	p := loadModule(t, "upper-rust", plugins.UpperRustWASM)
	r := rand.New(rand.NewPCG(5, 6))
	many := make([]plugin.Record, 20_000)
	for i := range many {
		many[i].Value = []byte{byte('a' + i%26), byte(i)}
	}
	for _, bt := range []struct {
		name string
		recs []plugin.Record
	}{
		{"empty batch", nil},
		{"empty values", []plugin.Record{{}, {Value: []byte{}}, {Key: []byte("k")}}},
		{"random 1", randomRecords(r, 1)},
		{"random 1000", randomRecords(r, 1000)},
		{"lengths 0-300", lengthRecords(r, 0, 300)},
		{"small after large", lengthRecords(r, 0, 40)},
		{"large values", largeRecords(r)},
		{"20,000 records", many},
		{"random 7", randomRecords(r, 7)},
	} {
		checkSameAsUpper(t, p, bt.name, bt.recs)
	}
}

// rustGuest instantiates module bare (with WASI, as the worker does) for
// calls through the ABI, with a memory limit of pages.
func rustGuest(t *testing.T, module []byte, pages uint32) (call func(name string, args ...uint64) uint64, write func(ptr uint32, b []byte), read func(ptr, n uint32) []byte) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(pages))
	t.Cleanup(func() { r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.Instantiate(ctx, module)
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

// errorEntry is the one result entry of a batch-level error.
func errorEntry(code plugin.Code, msg string) []byte {
	b := append([]byte{2, byte(code), 0, 0}, binary.LittleEndian.AppendUint32(nil, uint32(len(msg)))...)
	return append(b, msg...)
}

// df_alloc answers 0 when memory cannot grow, and stays usable.
func TestRustKitAlloc(t *testing.T) {
	for _, m := range []struct {
		name   string
		module []byte
	}{{"upper", plugins.UpperRustWASM}, {"kitcheck", kitcheck(t)}} {
		t.Run(m.name, func(t *testing.T) {
			call, _, _ := rustGuest(t, m.module, 2048) // 128 MiB
			for _, tt := range []struct {
				size   uint32
				wantOK bool
			}{
				{0, true},
				{1, true},
				{64 << 10, true},
				{100 << 20, true},
				{200 << 20, false}, // over the page limit
				{0x7fff0001, false},
				{0xffffffff, false},
				{64 << 10, true}, // and a failure leaves it usable
			} {
				ptr := uint32(call("df_alloc", uint64(tt.size)))
				if got := ptr != 0; got != tt.wantOK {
					t.Errorf("df_alloc(%d) = %#x, want a region: %t", tt.size, ptr, tt.wantOK)
				}
			}
		})
	}
}

// A message the kit cannot walk is a batch-level error (bit 63) of code 1,
// not a trap, a panic or an output that breaks the framing.
func TestRustKitMalformed(t *testing.T) {
	// header is a batch header with empty job, plugin and digest and no
	// configuration: 48 bytes.
	header := func(count, headerLen uint32) []byte {
		b := make([]byte, 48)
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
	with := func(b []byte, at int, v uint32) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[at:], v)
		return b
	}
	ok := cat(header(1, 48), rec(1, 3, 1, "kabc\x01\x00\x00\x00h\x01\x00\x00\x00v"))
	for _, tt := range []struct {
		name    string
		msg     []byte
		wantErr bool
	}{
		{"well-formed", ok, false},
		{"no records", header(0, 48), false},
		{"empty", nil, true},
		{"short", header(0, 48)[:31], true},
		{"bad magic", with(header(0, 48), 0, 0x01424644+1), true},
		{"flags", with(header(0, 48), 12, 1), true},
		{"header_len past the end", header(0, 49), true},
		{"header_len inside the fixed header", header(0, 31), true},
		{"job past header_len", header(0, 44), true},
		{"job length huge", with(header(0, 48), 32, 0xffffffff), true},
		{"config count huge", with(header(0, 48), 44, 0xffffffff), true},
		{"record missing", header(1, 48), true},
		{"record framing cut", cat(header(1, 48), rec(0, 0, 0, ""))[:60], true},
		{"key past the end", cat(header(1, 48), rec(5, 0, 0, "k")), true},
		{"value past the end", cat(header(1, 48), rec(0, 5, 0, "v")), true},
		{"value length huge", cat(header(1, 48), rec(0, 0xffffffff, 0, "v")), true},
		{"header missing", cat(header(1, 48), rec(0, 1, 1, "v")), true},
		{"header key past the end", cat(header(1, 48), rec(0, 1, 1, "v\x09\x00\x00\x00h")), true},
		{"header value length cut", cat(header(1, 48), rec(0, 1, 1, "v\x01\x00\x00\x00h\x01")), true},
		{"header count huge", cat(header(1, 48), rec(0, 1, 0xffffffff, "v\x01\x00\x00\x00h\x01\x00\x00\x00v")), true},
		{"trailing bytes", cat(ok, []byte{0}), true},
		{"more records than bytes", cat(header(9, 48), rec(0, 0, 0, "")), true},
		{"count huge", cat(header(0xffffffff, 48), rec(0, 0, 0, "")), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			call, write, read := rustGuest(t, plugins.UpperRustWASM, 64)
			ptr := uint32(call("df_alloc", uint64(len(tt.msg))))
			write(ptr, tt.msg)
			res := call("df_process", uint64(ptr), uint64(len(tt.msg)))
			isErr := res>>63 == 1
			out := read(uint32(res>>32)&0x7fffffff, uint32(res))
			if isErr != tt.wantErr {
				t.Fatalf("error flag %t, want %t (output %q)", isErr, tt.wantErr, out)
			}
			if !tt.wantErr {
				var want []byte // no records, no entries
				if bytes.Equal(tt.msg, ok) {
					want = cat([]byte{0, 0, 0, 0, 3, 0, 0, 0}, []byte("ABC"))
				}
				if !bytes.Equal(out, want) {
					t.Errorf("output %q, want %q", out, want)
				}
				return
			}
			if want := errorEntry(plugin.CodeInvalidInput, "dataflare_pdk: malformed batch message"); !bytes.Equal(out, want) {
				t.Errorf("output %q, want %q", out, want)
			}
		})
	}

	t.Run("not the input region", func(t *testing.T) {
		call, write, read := rustGuest(t, plugins.UpperRustWASM, 64)
		ptr := uint32(call("df_alloc", uint64(len(ok))))
		write(ptr+16, ok)
		for _, args := range [][2]uint64{{uint64(ptr + 16), uint64(len(ok))}, {uint64(ptr), 1 << 20}, {0, 0}, {0xffffffff, 0xffffffff}} {
			res := call("df_process", args[0], args[1])
			out := read(uint32(res>>32)&0x7fffffff, uint32(res))
			if res>>63 != 1 || len(out) < 8 || out[0] != 2 || out[1] != byte(plugin.CodeInvalidInput) ||
				!bytes.Contains(out, []byte("outside the region df_alloc returned")) {
				t.Errorf("df_process(%#x, %d) = %#x, output %q; want a batch error of code 1", args[0], args[1], res, out)
			}
		}
		// And the instance still works.
		write(ptr, ok)
		if res := call("df_process", uint64(ptr), uint64(len(ok))); res>>63 != 0 {
			t.Errorf("df_process after refusals = %#x, want a result", res)
		}
	})

	t.Run("info", func(t *testing.T) {
		call, _, read := rustGuest(t, kitcheck(t), 64)
		if v := call("df_abi_version"); v != 1 {
			t.Errorf("df_abi_version() = %d, want 1", v)
		}
		res := call("df_info")
		got := string(read(uint32(res>>32)&0x7fffffff, uint32(res)))
		want := `{"name":"kitcheck","version":"0.1.0","type":"transformer","description":"checks the Rust kit","author":"DataFlare \"tests\"","api_version":"1.0"}`
		if res>>63 != 0 || got != want {
			t.Errorf("df_info() = %#x, %s; want %s", res, got, want)
		}
	})
}

// Every shape of the kit, through the real runtime: a record function
// (values, drops, unchanged, per-record errors, keys, headers, timestamps),
// a transform (values, errors, a value over the limit), a whole-batch
// function (the header's fields), batch-level errors (from the batch
// function, from the configuration function, from too few or too many
// results), and the configuration function called once per configuration.
func TestRustKitShapes(t *testing.T) {
	p := loadModule(t, "kitcheck", kitcheck(t))
	ctx := context.Background()
	recs := []plugin.Record{
		{Key: []byte("k1"), Value: []byte("v1"), Timestamp: time.Unix(0, 42), Headers: []plugin.Header{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("a"), Value: []byte("")}}},
		{Value: []byte("drop")},
		{Value: []byte("same")},
		{Value: []byte("error")},
		{Key: []byte("k5"), Value: []byte{}},
	}
	type res struct {
		Value     string
		Dropped   bool
		Code      plugin.Code
		Unchanged bool
	}
	results := func(out *plugin.BatchResult) []res {
		var got []res
		for i, r := range out.Results {
			g := res{Value: string(r.Value), Dropped: r.Dropped, Code: plugin.CodeOf(r.Err)}
			if len(r.Value) > 0 && len(recs[i].Value) > 0 && &r.Value[0] == &recs[i].Value[0] {
				g.Unchanged = true
			}
			got = append(got, g)
		}
		return got
	}
	checkResults := func(t *testing.T, cfg plugin.Config, want []res) {
		t.Helper()
		out, err := p.ProcessBatch(ctx, cfg, recs)
		if err != nil {
			t.Fatal(err)
		}
		got := results(out)
		if len(got) != len(want) {
			t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	}

	t.Run("records", func(t *testing.T) {
		cfg := plugin.Config{"shape": "records", "x": "1"}
		// The configuration function runs once for this configuration:
		// the count the values carry does not move from batch to batch.
		out, err := p.ProcessBatch(ctx, cfg, recs[:1])
		if err != nil {
			t.Fatal(err)
		}
		first := string(out.Results[0].Value)
		n := first[strings.LastIndexByte(first, '|')+1:]
		if want := "k1|v1|42|a=1,a=|"; !strings.HasPrefix(first, want) {
			t.Fatalf("value %q, want %s then the configuration count", first, want)
		}
		checkResults(t, cfg, []res{
			{Value: "k1|v1|42|a=1,a=|" + n},
			{Dropped: true},
			{Value: "same", Unchanged: true},
			{Code: plugin.CodeInvalidInput},
			{Value: "k5||0||" + n},
		})
		// Another configuration: the function runs again.
		out, err = p.ProcessBatch(ctx, plugin.Config{"shape": "records", "x": "2"}, recs[:1])
		if err != nil {
			t.Fatal(err)
		}
		if got := string(out.Results[0].Value); strings.HasSuffix(got, "|"+n) {
			t.Errorf("value %q after a new configuration, want a count other than %s", got, n)
		}
	})

	t.Run("transform", func(t *testing.T) {
		checkResults(t, plugin.Config{"shape": "transform"}, []res{
			{Value: "1v"}, {Value: "pord"}, {Value: "emas"}, {Code: plugin.CodeProcessing}, {Value: ""},
		})
		out, err := p.ProcessBatch(ctx, plugin.Config{"shape": "transform"}, []plugin.Record{{Value: []byte("big")}, {Value: []byte("ab")}})
		if err != nil {
			t.Fatal(err)
		}
		if c := plugin.CodeOf(out.Results[0].Err); c != plugin.CodeTooLarge || !strings.Contains(out.Results[0].Err.Error(), "over the 8388608-byte limit") {
			t.Errorf("a value over 8 MiB: %v (code %v), want code too large", out.Results[0].Err, c)
		}
		if got := string(out.Results[1].Value); got != "ba" || out.Results[1].Err != nil {
			t.Errorf("after it: %q (%v), want ba", got, out.Results[1].Err)
		}
	})

	t.Run("batch", func(t *testing.T) {
		out, err := p.ProcessBatch(ctx, plugin.Config{"shape": "batch"}, recs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range out.Results {
			// ProcessBatch sends no job, the plugin's name, the module's
			// digest, seq 0 and base 0.
			if want := "|kitcheck|" + p.Digest() + "|0|0|5"; string(r.Value) != want {
				t.Errorf("record %d: %q, want %q", i, r.Value, want)
			}
		}
	})

	for _, tt := range []struct {
		cfg  plugin.Config
		code plugin.Code
		msg  string
	}{
		{plugin.Config{"shape": "fail"}, plugin.CodeProcessing, "kitcheck: the batch fails"},
		{plugin.Config{"shape": "records", "bad": ""}, plugin.CodeInvalidInput, "kitcheck: bad configuration"},
		{plugin.Config{"shape": "nothing"}, plugin.CodeInvalidInput, `kitcheck: unknown shape Some("nothing")`},
		{nil, plugin.CodeInvalidInput, "kitcheck: unknown shape None"},
		{plugin.Config{"shape": "short"}, plugin.CodeProcessing, "dataflare_pdk: 4 results for 5 records"},
		{plugin.Config{"shape": "long"}, plugin.CodeProcessing, "dataflare_pdk: 6 results for 5 records"},
	} {
		t.Run("batch error/"+tt.msg, func(t *testing.T) {
			_, err := p.ProcessBatch(ctx, tt.cfg, recs)
			if plugin.CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v (code %v), want code %v with %q", err, plugin.CodeOf(err), tt.code, tt.msg)
			}
		})
	}
}

// A panic in a plugin function traps: the batch fails with code 7 and an
// error quoting the panic's message and where it was, the instance is
// replaced, and the next batch runs.
func TestRustKitPanic(t *testing.T) {
	p := loadModule(t, "kitcheck", kitcheck(t))
	ctx := context.Background()
	cfg := plugin.Config{"shape": "records"}
	for range 3 {
		_, err := p.ProcessBatch(ctx, cfg, []plugin.Record{{Value: []byte("a")}, {Value: []byte("panic")}})
		if plugin.CodeOf(err) != plugin.CodeTrap {
			t.Fatalf("error %v (code %v), want code %v (wasm trap)", err, plugin.CodeOf(err), plugin.CodeTrap)
		}
		t.Logf("error: %v", err)
		for _, want := range []string{"kitcheck: panic asked for", "kitcheck.rs"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want it to quote %q", err, want)
			}
		}
		out, err := p.ProcessBatch(ctx, cfg, []plugin.Record{{Value: []byte("drop")}})
		if err != nil || len(out.Results) != 1 || !out.Results[0].Dropped {
			t.Fatalf("the batch after a panic: %+v, %v; want the record dropped", out, err)
		}
	}
}
