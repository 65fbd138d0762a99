//go:build unix

package wasm

import (
	"fmt"
	"os"
	"syscall"
)

// checkPrivate refuses dir unless it is a directory owned by this process's
// effective user and not writable by group or others.
func checkPrivate(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("wasm: cache directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeCacheDir, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %#o): remove their write permission (chmod go-w) or use another directory", ErrUnsafeCacheDir, dir, perm)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s: no owner to check", ErrUnsafeCacheDir, dir)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%w: %s belongs to uid %d, not to this process's uid %d", ErrUnsafeCacheDir, dir, st.Uid, uid)
	}
	return nil
}
