//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

// guestMemory is nil: guest memories use wazero's own allocation.
var guestMemory experimental.MemoryAllocator
