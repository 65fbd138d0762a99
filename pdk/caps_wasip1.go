//go:build wasip1

package pdk

import "unsafe"

// The capabilities of host module dataflare (docs/abi.md). The linker keeps
// an import only when it is called, so a module that never calls KVGet or
// Log imports neither and needs no grant.

//go:wasmimport dataflare kv_get
func dfKVGet(bucket unsafe.Pointer, bucketLen uint32, key unsafe.Pointer, keyLen uint32, out unsafe.Pointer, outCap uint32) int32

//go:wasmimport dataflare log
func dfLog(level int32, msg unsafe.Pointer, msgLen uint32) int32

func hostKVGet(bucket, key string, out []byte) int32 {
	return dfKVGet(unsafe.Pointer(unsafe.StringData(bucket)), uint32(len(bucket)),
		unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)),
		unsafe.Pointer(unsafe.SliceData(out)), uint32(len(out)))
}

func hostLog(level Level, msg string) int32 {
	return dfLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}
