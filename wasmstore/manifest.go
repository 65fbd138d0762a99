package wasmstore

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

// Manifest describes one stored module version.
type Manifest struct {
	// Name is the plugin name the module was pushed under.
	Name string `json:"name"`
	// Version is its version; each name and version holds one module.
	Version string `json:"version"`
	// Digest is "sha256:" and the lower-case hex SHA-256 of the module.
	Digest string `json:"digest"`
	// Size is the module's size in bytes.
	Size int64 `json:"size"`
	// Info is what the module reported about itself (df_info) when it was
	// pushed.
	Info plugin.Info `json:"info"`
	// Created is when the version was pushed.
	Created time.Time `json:"created"`
	// Policy is the module's own sandbox policy (push --timeout, --memory,
	// --grant): workers enforce it under their own ceilings.
	Policy Policy `json:"policy"`
	// Signer is the public key (nkeys account, "A…") that signed the
	// module, or "" when it is unsigned.
	Signer string `json:"signer,omitempty"`
	// Signature is the unpadded URL-safe base64 of the ed25519 signature by
	// Signer of SignedPayload: the name, version, digest and policy.
	Signature string `json:"signature,omitempty"`
}

// String returns "name@version (sha256:…)".
func (m Manifest) String() string {
	d := m.Digest
	if len(d) > 19 {
		d = d[:19]
	}
	return m.Name + "@" + m.Version + " (" + d + ")"
}

// Validate reports whether m is well formed: a valid name and version, a
// digest of the right shape and a non-negative size. The error wraps
// ErrBadManifest.
func (m Manifest) Validate() error {
	switch {
	case !ValidName(m.Name):
		return fmt.Errorf("%w: name %q", ErrBadManifest, m.Name)
	case !ValidVersion(m.Version):
		return fmt.Errorf("%w: version %q", ErrBadManifest, m.Version)
	case !ValidDigest(m.Digest):
		return fmt.Errorf("%w: digest %q", ErrBadManifest, m.Digest)
	case m.Size < 0:
		return fmt.Errorf("%w: size %d", ErrBadManifest, m.Size)
	case (m.Signer == "") != (m.Signature == ""):
		return fmt.Errorf("%w: a signer without a signature, or the reverse", ErrBadManifest)
	}
	if err := m.Policy.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	return nil
}

// ParseManifest decodes a manifest from JSON and validates it. The error
// wraps ErrBadManifest.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// maxNameLen bounds names and versions.
const maxNameLen = 64

// ValidName reports whether s can name a plugin: 1 to 64 letters, digits,
// '-' and '_' (a plugin name is a NATS subject token).
func ValidName(s string) bool {
	return validToken(s, "-_")
}

// ValidVersion reports whether s can be a version: 1 to 64 letters, digits,
// '.', '-', '_' and '+', not "latest" (which Resolve reads as the newest).
func ValidVersion(s string) bool {
	return s != Latest && validToken(s, ".-_+")
}

func validToken(s, extra string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune(extra, c)) {
			return false
		}
	}
	return true
}

// ValidDigest reports whether s is "sha256:" and 64 lower-case hex digits.
func ValidDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Digest returns "sha256:" and the lower-case hex SHA-256 of module.
func Digest(module []byte) string {
	sum := sha256.Sum256(module)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// natsDigest returns the digest as the NATS object store writes it in
// ObjectInfo.Digest: "SHA-256=" and the URL-safe base64 of the sum.
func natsDigest(sum [sha256.Size]byte) string {
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
}
