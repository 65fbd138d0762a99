//go:build wasip1

package pdk

import (
	"unsafe"

	"github.com/dataflare/dataflare/batch"
)

// The plugin ABI's exports (docs/abi.md). Go's c-shared build mode makes
// the module a WASI reactor: the host calls _initialize, which runs the
// init functions that register the plugin, then these.

//go:wasmexport df_abi_version
func dfABIVersion() int32 { return batch.ABIVersion }

//go:wasmexport df_info
func dfInfo() int64 { return pack(theKit.info, false) }

//go:wasmexport df_alloc
func dfAlloc(size int32) int32 {
	b := theKit.alloc(int(size))
	if b == nil {
		return 0
	}
	return int32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

//go:wasmexport df_process
func dfProcess(ptr, size int32) int64 {
	// The host writes batches into the region df_alloc returned, so the
	// message is a prefix of it; anything else is refused.
	in := theKit.in
	if len(in) == 0 || ptr != int32(uintptr(unsafe.Pointer(unsafe.SliceData(in)))) || size < 0 || int(size) > len(in) {
		out, failed := theKit.refuse(ptr, size)
		return pack(out, failed)
	}
	out, failed := theKit.process(in[:size])
	return pack(out, failed)
}

// pack returns the packed pointer and length of b, with bit 63 set for a
// batch-level error.
func pack(b []byte, failed bool) int64 {
	var p uintptr
	if len(b) > 0 {
		p = uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	}
	v := uint64(p)<<32 | uint64(uint32(len(b)))
	if failed {
		v |= 1 << 63
	}
	return int64(v)
}
