//go:build !wasip1

package pdk

// Outside WebAssembly there is no host: the capabilities are unavailable.

func hostKVGet(bucket, key string, out []byte) int32 { return kvUnavailable }

func hostLog(level Level, msg string) int32 { return kvUnavailable }
