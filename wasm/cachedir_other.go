//go:build !unix

package wasm

import (
	"fmt"
	"os"
)

// checkPrivate refuses dir unless it is a directory. Outside Unix, file
// modes do not say who may write (Windows has ACLs): keeping the directory
// private is the operator's part (docs/security.md).
func checkPrivate(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("wasm: cache directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeCacheDir, dir)
	}
	return nil
}
