package wasmstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
)

func signingKey(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := wasmstore.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "A") {
		t.Fatalf("public key %s: want an nkeys account key, A…", pub)
	}
	return kp, pub
}

// The policy and the signature are stored with the module: a reader of
// the store sees them, through every way in.
func TestPolicyAndSignatureStored(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kp, pub := signingKey(t)
	pol, err := wasmstore.NewPolicy(50*time.Millisecond, 1<<20, []string{"log", "kv:users", "log"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.store.PushWith(ctx, "p", "1", module(t, "abi_upper"), wasmstore.PushOptions{Policy: pol, Signer: kp})
	if err != nil {
		t.Fatal(err)
	}
	if m.Signer != pub || m.Signature == "" {
		t.Fatalf("pushed manifest: signer %q signature %q", m.Signer, m.Signature)
	}
	other, err := wasmstore.Open(ctx, e.js, wasmstore.WithTrustedKeys(pub))
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.Resolve(ctx, "p", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy.String() != "timeout 50ms, memory 1MiB, grants kv:users log" || got.Signer != pub || got.Signature != m.Signature {
		t.Errorf("stored manifest: policy %s, signer %s, signature %s", got.Policy, got.Signer, got.Signature)
	}
	_, lim, err := other.FetchLimited(ctx, "p", m.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(lim, wasm.Limits{Timeout: 50 * time.Millisecond, MemoryLimitPages: 16, Grants: []string{"kv:users", "log"}}) {
		t.Errorf("limits = %+v, want 50ms, 16 pages, kv:users and log", lim)
	}
	// The same push again is a no-op; another policy for the same version
	// is refused.
	if _, err := e.store.PushWith(ctx, "p", "1", module(t, "abi_upper"), wasmstore.PushOptions{Policy: pol, Signer: kp}); err != nil {
		t.Errorf("the same push again: %v", err)
	}
	loose, _ := wasmstore.NewPolicy(time.Hour, 0, nil)
	if _, err := e.store.PushWith(ctx, "p", "1", module(t, "abi_upper"), wasmstore.PushOptions{Policy: loose, Signer: kp}); !errors.Is(err, wasmstore.ErrVersionExists) {
		t.Errorf("push of another policy under the same version: %v, want ErrVersionExists", err)
	}
	// Another version of the same bytes shares their policy: jobs pin the
	// module by digest.
	if _, err := e.store.PushWith(ctx, "p", "2", module(t, "abi_upper"), wasmstore.PushOptions{Policy: loose}); !errors.Is(err, wasmstore.ErrBadPolicy) || !strings.Contains(err.Error(), "p@1 holds the same module") {
		t.Errorf("push of the same bytes with another policy as another version: %v, want ErrBadPolicy naming p@1", err)
	}
	if _, err := e.store.PushWith(ctx, "p", "2", module(t, "abi_upper"), wasmstore.PushOptions{Policy: pol}); err != nil {
		t.Errorf("push of the same bytes and policy, unsigned, as another version: %v", err)
	}
	// The manifest round-trips through JSON (plugin info --json).
	js, err := got.Policy.MarshalJSON()
	if err != nil || string(js) != `{"timeout":"50ms","memory":1048576,"grants":["kv:users","log"]}` {
		t.Errorf("policy JSON = %s, %v", js, err)
	}
}

// A store with trusted keys hands out only modules signed by one of them,
// over the name, version, digest and policy as stored; every other is
// refused with ErrUntrusted, before its bytes are fetched.
func TestTrustedKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kp, pub := signingKey(t)
	otherKP, otherPub := signingKey(t)
	trusting, err := wasmstore.Open(ctx, e.js, wasmstore.WithTrustedKeys(pub))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.js.ObjectStore(ctx, "DF_PLUGINS")
	if err != nil {
		t.Fatal(err)
	}
	good := module(t, "abi_upper")
	pol, _ := wasmstore.NewPolicy(time.Second, 1<<20, nil)
	signed, err := e.store.PushWith(ctx, "signed", "1", good, wasmstore.PushOptions{Policy: pol, Signer: kp})
	if err != nil {
		t.Fatal(err)
	}
	if data, _, err := trusting.Get(ctx, "signed", signed.Digest); err != nil || !bytes.Equal(data, good) {
		t.Fatalf("signed module: %v", err)
	}

	untrusted := func(t *testing.T, name, digest, want string) {
		t.Helper()
		_, _, err := trusting.Get(ctx, name, digest)
		if !errors.Is(err, wasmstore.ErrUntrusted) || !errors.Is(err, plugin.ErrUnknownPlugin) {
			t.Fatalf("Get error = %v, want ErrUntrusted (and plugin.ErrUnknownPlugin)", err)
		}
		if !strings.Contains(err.Error(), "is not signed by a trusted key") || !strings.Contains(err.Error(), want) {
			t.Errorf("error %q: want \"is not signed by a trusted key\" and %q", err, want)
		}
	}
	// tamper rewrites one metadata key of an object pushed signed.
	tamper := func(t *testing.T, name, key, value string) string {
		t.Helper()
		m, err := e.store.PushWith(ctx, name, "1", good, wasmstore.PushOptions{Policy: pol, Signer: kp})
		if err != nil {
			t.Fatal(err)
		}
		info, err := raw.GetInfo(ctx, name+"/1")
		if err != nil {
			t.Fatal(err)
		}
		md := maps.Clone(info.Metadata)
		md[key] = value
		if err := raw.UpdateMeta(ctx, name+"/1", jetstream.ObjectMeta{Name: name + "/1", Metadata: md}); err != nil {
			t.Fatal(err)
		}
		return m.Digest
	}

	t.Run("unsigned", func(t *testing.T) {
		m, err := e.store.Push(ctx, "unsigned", "1", good)
		if err != nil {
			t.Fatal(err)
		}
		untrusted(t, "unsigned", m.Digest, "module unsigned@1")
	})
	t.Run("wrong key", func(t *testing.T) {
		m, err := e.store.PushWith(ctx, "wrongkey", "1", good, wasmstore.PushOptions{Signer: otherKP})
		if err != nil {
			t.Fatal(err)
		}
		untrusted(t, "wrongkey", m.Digest, otherPub)
	})
	t.Run("tampered signature", func(t *testing.T) {
		sig, err := base64.RawURLEncoding.DecodeString(signed.Signature)
		if err != nil || len(sig) != 64 {
			t.Fatalf("signature %q: %v", signed.Signature, err)
		}
		sig[10] ^= 1
		d := tamper(t, "tampered", "df-signature", base64.RawURLEncoding.EncodeToString(sig))
		untrusted(t, "tampered", d, "does not match")
	})
	t.Run("policy changed after signing", func(t *testing.T) {
		d := tamper(t, "loosened", "df-policy", `{"timeout":"1h","memory":2147483648}`)
		untrusted(t, "loosened", d, "does not match its name, version, digest and policy")
	})
	t.Run("policy removed after signing", func(t *testing.T) {
		d := tamper(t, "unbounded", "df-policy", "")
		untrusted(t, "unbounded", d, "does not match")
	})
	t.Run("signer swapped for a trusted one", func(t *testing.T) {
		m, err := e.store.PushWith(ctx, "swapped", "1", good, wasmstore.PushOptions{Signer: otherKP})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := raw.GetInfo(ctx, "swapped/1")
		md := maps.Clone(info.Metadata)
		md["df-signer"] = pub
		if err := raw.UpdateMeta(ctx, "swapped/1", jetstream.ObjectMeta{Name: "swapped/1", Metadata: md}); err != nil {
			t.Fatal(err)
		}
		untrusted(t, "swapped", m.Digest, "does not match")
	})
	t.Run("re-push by someone without the key", func(t *testing.T) {
		evil := module(t, "loop")
		// Over the signed version: refused, versions are immutable.
		if _, err := e.store.Push(ctx, "signed", "1", evil); !errors.Is(err, wasmstore.ErrVersionExists) {
			t.Fatalf("unsigned re-push: %v, want ErrVersionExists", err)
		}
		if _, err := e.store.Push(ctx, "signed", "1", good); !errors.Is(err, wasmstore.ErrVersionExists) {
			t.Fatalf("unsigned re-push of the same bytes: %v, want ErrVersionExists", err)
		}
		// Whoever may write the bucket may remove the version and push
		// theirs: the signed manifest's signature copied over does not
		// cover it.
		if err := e.store.Remove(ctx, "signed", "1"); err != nil {
			t.Fatal(err)
		}
		m, err := e.store.PushWith(ctx, "signed", "1", evil, wasmstore.PushOptions{Signer: otherKP})
		if err != nil {
			t.Fatal(err)
		}
		untrusted(t, "signed", m.Digest, otherPub)
		info, _ := raw.GetInfo(ctx, "signed/1")
		md := maps.Clone(info.Metadata)
		md["df-signer"], md["df-signature"] = signed.Signer, signed.Signature
		if err := raw.UpdateMeta(ctx, "signed/1", jetstream.ObjectMeta{Name: "signed/1", Metadata: md}); err != nil {
			t.Fatal(err)
		}
		untrusted(t, "signed", m.Digest, "does not match")
	})
}

func TestSigningKeyFiles(t *testing.T) {
	dir := t.TempDir()
	kp, pub := signingKey(t)
	seed, _ := kp.Seed()
	file := filepath.Join(dir, "key.nk")
	if err := os.WriteFile(file, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := wasmstore.ReadSigningKey(file)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := got.PublicKey(); p != pub {
		t.Errorf("read key %s, want %s", p, pub)
	}
	user, _ := nkeys.CreateUser()
	useed, _ := user.Seed()
	ufile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(ufile, useed, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ufile, filepath.Join(dir, "missing")} {
		if _, err := wasmstore.ReadSigningKey(f); err == nil {
			t.Errorf("ReadSigningKey(%s) accepted it", f)
		}
	}
	upub, _ := user.PublicKey()
	for _, k := range []string{upub, "", "A123", string(seed)} {
		if err := wasmstore.ValidTrustedKey(k); !errors.Is(err, wasmstore.ErrBadKey) {
			t.Errorf("ValidTrustedKey(%q) = %v, want ErrBadKey", k, err)
		}
		if _, err := wasmstore.New(context.Background(), nil, wasmstore.WithTrustedKeys(k)); !errors.Is(err, wasmstore.ErrInvalidOption) {
			t.Errorf("WithTrustedKeys(%q): %v, want ErrInvalidOption", k, err)
		}
	}
}

// A module importing a capability is pushed only with the grant it needs:
// Push validates it under the policy it comes with.
func TestPushChecksGrants(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, grants := range [][]string{nil, {"log"}, {"kv:users"}} {
		pol, err := wasmstore.NewPolicy(0, 0, grants)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.store.PushWith(ctx, "caps", "1", module(t, "caps"), wasmstore.PushOptions{Policy: pol})
		if !errors.Is(err, wasmstore.ErrInvalidModule) || !strings.Contains(err.Error(), "the module's policy does not grant") {
			t.Errorf("push with grants %q: %v, want ErrInvalidModule naming the grant", grants, err)
		}
	}
	pol, _ := wasmstore.NewPolicy(0, 0, []string{"kv:users", "log"})
	if _, err := e.store.PushWith(ctx, "caps", "1", module(t, "caps"), wasmstore.PushOptions{Policy: pol}); err != nil {
		t.Errorf("push with its grants: %v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tt := range []struct {
		timeout time.Duration
		memory  int64
		grants  []string
		want    string
	}{
		{-time.Second, 0, nil, "timeout"},
		{25 * time.Hour, 0, nil, "timeout"},
		{0, 1000, nil, "multiple of 64KiB"},
		{0, 4 << 30, nil, "at most 2GiB"},
		{0, 0, []string{"net"}, `"net"`},
		{0, 0, []string{"kv:"}, "bucket"},
		{0, 0, []string{"kv:a.b"}, "bucket"},
		{0, 0, []string{"kv:DF_JOBS"}, "the fleet's own"},
		{0, 0, []string{"kv:df_pipelines"}, "the fleet's own"},
	} {
		_, err := wasmstore.NewPolicy(tt.timeout, tt.memory, tt.grants)
		if !errors.Is(err, wasmstore.ErrBadPolicy) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewPolicy(%s, %d, %q) = %v, want ErrBadPolicy mentioning %q", tt.timeout, tt.memory, tt.grants, err, tt.want)
		}
	}
	for s, want := range map[string]int64{"1MiB": 1 << 20, "64KiB": 64 << 10, "2g": 2 << 30, "65536": 65536, "512 KB": 512 << 10} {
		if n, err := wasmstore.ParseSize(s); err != nil || n != want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", s, n, err, want)
		}
	}
	for _, s := range []string{"", "MiB", "1.5MiB", "-1MiB", "1TiB", "1 MiB MiB", "9999999999999G"} {
		if _, err := wasmstore.ParseSize(s); !errors.Is(err, wasmstore.ErrBadPolicy) {
			t.Errorf("ParseSize(%q): %v, want ErrBadPolicy", s, err)
		}
	}
}
