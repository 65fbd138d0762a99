package wasm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// privateDir makes dir, with mode 0700 (and its missing parents likewise),
// if it does not exist, and checks that dir and the wazero directories in
// it are directories only this process's user may write to: the
// compiled-module cache holds machine code the worker runs as is. The
// error wraps ErrUnsafeCacheDir, or is the error of making or reading dir.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("wasm: cache directory: %w", err)
	}
	if err := checkPrivate(dir); err != nil {
		return err
	}
	// wazero keeps its files in a directory per version
	// ("wazero-<version>-<arch>-<os>") that it makes 0700; one that is
	// already there must be as private.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wasm: cache directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "wazero-") {
			if err := checkPrivate(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
