package wasmstore

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// Signing keys are nkeys account keys: a seed "SA…" kept by whoever may
// sign, a public key "A…" given to the workers that trust it
// (docs/security.md, "Signed modules").

// NewSigningKey returns a new signing key: an nkeys account key pair.
func NewSigningKey() (nkeys.KeyPair, error) {
	return nkeys.CreateAccount()
}

// ReadSigningKey reads the nkeys account seed ("SA…") in file, as
// `dataflare plugin keygen` writes it, and returns its key pair. The error
// wraps ErrBadKey when the file does not hold an account seed, or is the
// error of reading it.
func ReadSigningKey(file string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, file, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("%w: %s: not an account seed (SA…): `dataflare plugin keygen` writes one", ErrBadKey, file)
	}
	return kp, nil
}

// ValidTrustedKey reports whether pub is a public signing key: an nkeys
// account public key ("A…", 56 characters). The error wraps ErrBadKey.
func ValidTrustedKey(pub string) error {
	if !nkeys.IsValidPublicAccountKey(pub) {
		return fmt.Errorf("%w: %q is not a public signing key (an nkeys account key, A… as `dataflare plugin keygen` prints)", ErrBadKey, pub)
	}
	return nil
}

// signatureDomain starts every signed payload, so that a signature over a
// module cannot be taken for one over anything else.
const signatureDomain = "dataflare module signature v1\n"

// SignedPayload returns the bytes a manifest's signature covers: a fixed
// header, then the name, version and digest of the module and its policy as
// JSON, a line each. Changing any of them — the module's bytes, through
// the digest, or its policy — invalidates the signature.
func SignedPayload(m Manifest) []byte {
	pol, _ := json.Marshal(m.Policy) // a struct of strings and numbers
	var b strings.Builder
	b.WriteString(signatureDomain)
	for _, s := range []string{m.Name, m.Version, m.Digest} {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	b.Write(pol)
	b.WriteByte('\n')
	return []byte(b.String())
}

// sign sets m's Signer and Signature with kp.
func (m *Manifest) sign(kp nkeys.KeyPair) error {
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if err := ValidTrustedKey(pub); err != nil {
		return err
	}
	sig, err := kp.Sign(SignedPayload(*m))
	if err != nil {
		return fmt.Errorf("%w: sign: %v", ErrBadKey, err)
	}
	m.Signer = pub
	m.Signature = base64.RawURLEncoding.EncodeToString(sig)
	return nil
}

// VerifySignature reports whether m is signed by one of trusted (public
// keys, see ValidTrustedKey): its signature was made by the key it names,
// that key is trusted, and it covers m's name, version, digest and policy
// as they are now. The error wraps ErrUntrusted and says "module X@V is not
// signed by a trusted key" and why.
func (m Manifest) VerifySignature(trusted []string) error {
	fail := func(why string, args ...any) error {
		return fmt.Errorf("%w: module %s@%s is not signed by a trusted key: "+why, append([]any{ErrUntrusted, m.Name, m.Version}, args...)...)
	}
	if m.Signature == "" {
		return fail("it is unsigned")
	}
	if !containsKey(trusted, m.Signer) {
		return fail("it is signed by %s, which this worker does not trust", m.Signer)
	}
	sig, err := base64.RawURLEncoding.DecodeString(m.Signature)
	if err != nil {
		return fail("its signature is not base64")
	}
	kp, err := nkeys.FromPublicKey(m.Signer)
	if err != nil {
		return fail("signer %q: %v", m.Signer, err)
	}
	if err := kp.Verify(SignedPayload(m), sig); err != nil {
		return fail("the signature by %s does not match its name, version, digest and policy (tampered, or changed after signing)", m.Signer)
	}
	return nil
}

func containsKey(keys []string, k string) bool {
	for _, t := range keys {
		if t == k {
			return true
		}
	}
	return false
}
