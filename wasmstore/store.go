package wasmstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
)

// Latest is the version Resolve reads as "the newest".
const Latest = "latest"

// Defaults.
const (
	// DefaultMaxModuleSize is the largest module Push accepts and Get
	// fetches: 64 MiB, as wasm.DefaultMaxModuleSize.
	DefaultMaxModuleSize = 64 << 20
	// DefaultTimeout bounds an operation whose context has no deadline.
	DefaultTimeout = 30 * time.Second
)

// Validator checks a module, under the limits of the policy it is pushed
// with, before Push accepts it, and returns what the module says about
// itself. A *wasm.Runtime satisfies it: it compiles the module, checks its
// imports against the sandbox and the policy's grants and its exports
// against the ABI, and reads df_info.
type Validator interface {
	ValidateLimited(ctx context.Context, module []byte, lim wasm.Limits) (plugin.Info, error)
}

// Option configures a Store.
type Option func(*options) error

type options struct {
	bucket    string
	replicas  int
	storage   jetstream.StorageType
	validator Validator
	maxSize   int
	trusted   []string
}

// WithBucket names the Object Store bucket (default proto.BucketPlugins,
// "DF_PLUGINS"): letters, digits, '-' and '_'.
func WithBucket(name string) Option {
	return func(o *options) error {
		if !validToken(name, "-_") {
			return fmt.Errorf("%w: bucket name %q", ErrInvalidOption, name)
		}
		o.bucket = name
		return nil
	}
}

// WithReplicas sets the bucket's replica count (default 1; 3 in a
// production cluster). 1 ≤ n ≤ 5.
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("%w: replicas %d outside [1, 5]", ErrInvalidOption, n)
		}
		o.replicas = n
		return nil
	}
}

// WithMemoryStorage keeps the bucket in memory instead of on disk (tests).
func WithMemoryStorage() Option {
	return func(o *options) error {
		o.storage = jetstream.MemoryStorage
		return nil
	}
}

// WithValidator makes Push run v on every module before accepting it and
// record the Info it returns. Without one, Push only checks that the bytes
// start like a WebAssembly module and records an Info of the name and
// version.
func WithValidator(v Validator) Option {
	return func(o *options) error {
		if v == nil {
			return fmt.Errorf("%w: nil validator", ErrInvalidOption)
		}
		o.validator = v
		return nil
	}
}

// WithMaxModuleSize sets the largest module Push accepts and Get fetches
// (default DefaultMaxModuleSize). n ≥ 8.
func WithMaxModuleSize(n int) Option {
	return func(o *options) error {
		if n < 8 {
			return fmt.Errorf("%w: max module size %d < 8", ErrInvalidOption, n)
		}
		o.maxSize = n
		return nil
	}
}

// WithTrustedKeys makes Get, Fetch and FetchLimited return only modules
// signed by one of keys (public nkeys account keys, "A…"; see
// Manifest.VerifySignature): another is refused with an error wrapping
// ErrUntrusted before any of its bytes is fetched. It is what a worker
// started with --trusted-key uses. At least one key; each must be valid
// (ValidTrustedKey).
func WithTrustedKeys(keys ...string) Option {
	return func(o *options) error {
		if len(keys) == 0 {
			return fmt.Errorf("%w: no trusted key", ErrInvalidOption)
		}
		for _, k := range keys {
			if err := ValidTrustedKey(k); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidOption, err)
			}
		}
		o.trusted = slices.Clone(keys)
		return nil
	}
}

// Store keeps plugin modules in a NATS Object Store bucket: one object per
// name and version ("<name>/<version>"), with the manifest in the object's
// metadata. It is safe for concurrent use.
type Store struct {
	os  jetstream.ObjectStore
	opt options
}

// newOptions applies opts to the defaults.
func newOptions(opts []Option) (options, error) {
	o := options{bucket: proto.BucketPlugins, replicas: 1, storage: jetstream.FileStorage, maxSize: DefaultMaxModuleSize}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// New binds to the bucket, creating it (or updating its settings) when
// needed; it is idempotent. The error wraps ErrInvalidOption for a bad
// option, or is the JetStream error of creating the bucket.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      o.bucket,
		Description: "DataFlare WebAssembly plugin modules",
		Storage:     o.storage,
		Replicas:    o.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("wasmstore: bucket %s: %w", o.bucket, err)
	}
	return &Store{os: os, opt: o}, nil
}

// Open binds to an existing bucket without creating it or changing its
// settings, as New would: what a reader that may not administer JetStream
// (a worker) uses; it needs only read permissions on the bucket. Of opts,
// WithBucket, WithValidator, WithMaxModuleSize and WithTrustedKeys apply. The error wraps
// ErrNotFound when the bucket does not exist, ErrInvalidOption for a bad
// option, or is the JetStream error.
func Open(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	os, err := js.ObjectStore(ctx, o.bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("%w: bucket %s does not exist", ErrNotFound, o.bucket)
	case err != nil:
		return nil, fmt.Errorf("wasmstore: bucket %s: %w", o.bucket, err)
	}
	return &Store{os: os, opt: o}, nil
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// objectName is the object holding name's version.
func objectName(name, version string) string { return name + "/" + version }

// Metadata keys of a module object.
const (
	metaName    = "df-name"
	metaVersion = "df-version"
	metaDigest  = "df-digest"
	metaInfo    = "df-info"
	metaCreated = "df-created"
	metaPolicy  = "df-policy"
	metaSigner  = "df-signer"
	metaSig     = "df-signature"
)

var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// PushOptions are what Store.PushWith stores with a module besides its
// bytes.
type PushOptions struct {
	// Policy is the module's sandbox policy (the zero value: none).
	Policy Policy
	// Signer, when not nil, signs the manifest (see SignedPayload): an
	// nkeys account key pair, as ReadSigningKey returns.
	Signer nkeys.KeyPair
}

// Push stores module as name's version, after validating it (see
// WithValidator), and returns its manifest. An empty version takes the
// version the module reports in its info. Pushing the same bytes again
// under the same name and version is a no-op that returns the existing
// manifest.
//
// The error wraps ErrInvalidName, ErrTooLarge, ErrInvalidModule (with the
// Validator's error), ErrVersionExists, or is a JetStream error.
func (s *Store) Push(ctx context.Context, name, version string, module []byte) (Manifest, error) {
	return s.PushWith(ctx, name, version, module, PushOptions{})
}

// PushWith is Push with a policy and, optionally, a signature over the
// module's name, version, digest and policy. Pushing the same bytes with
// the same policy and signer again is a no-op; anything else under an
// existing name and version is refused with ErrVersionExists — a policy
// cannot be changed in place, nor a signature added or replaced. Since
// jobs pin a module by name and digest, another version of name holding
// the same bytes must have the same policy: one with another is refused
// with ErrBadPolicy. The error also wraps ErrBadPolicy for a bad policy, or
// ErrBadKey.
func (s *Store) PushWith(ctx context.Context, name, version string, module []byte, po PushOptions) (Manifest, error) {
	if err := po.Policy.Validate(); err != nil {
		return Manifest{}, err
	}
	if !ValidName(name) {
		return Manifest{}, fmt.Errorf("%w: plugin name %q: use 1-%d letters, digits, '-' and '_'", ErrInvalidName, name, maxNameLen)
	}
	if version != "" && !ValidVersion(version) {
		return Manifest{}, fmt.Errorf("%w: version %q: use 1-%d letters, digits, '.', '-', '_' and '+'", ErrInvalidName, version, maxNameLen)
	}
	if len(module) > s.opt.maxSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(module), s.opt.maxSize)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	info := plugin.Info{Name: name, Version: version, APIVersion: plugin.APIVersion}
	if s.opt.validator != nil {
		vi, err := s.opt.validator.ValidateLimited(ctx, module, po.Policy.Limits())
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: %s: %w", ErrInvalidModule, name, err)
		}
		info = vi
	} else if !bytes.HasPrefix(module, wasmMagic) {
		return Manifest{}, fmt.Errorf("%w: %s: not a WebAssembly 1.0 binary", ErrInvalidModule, name)
	}
	if version == "" {
		version = info.Version
		if !ValidVersion(version) {
			return Manifest{}, fmt.Errorf("%w: no version given and the module reports %q", ErrInvalidName, version)
		}
	}
	sum := sha256.Sum256(module)
	m := Manifest{
		Name:    name,
		Version: version,
		Digest:  "sha256:" + hex.EncodeToString(sum[:]),
		Size:    int64(len(module)),
		Info:    info,
		Created: time.Now().UTC(),
		Policy:  po.Policy,
	}
	if po.Signer != nil {
		if err := m.sign(po.Signer); err != nil {
			return Manifest{}, err
		}
	}
	if old, err := s.os.GetInfo(ctx, objectName(name, version)); err == nil {
		prev, perr := manifestOf(old)
		if perr == nil && prev.Digest == m.Digest && samePolicy(prev.Policy, m.Policy) && prev.Signer == m.Signer && prev.Signature == m.Signature {
			return prev, nil
		}
		if perr == nil && prev.Digest == m.Digest {
			return Manifest{}, fmt.Errorf("%w: %s@%s holds this module with another policy or signature (%s, signer %q); versions are immutable: push another version", ErrVersionExists, name, version, prev.Policy, prev.Signer)
		}
		return Manifest{}, fmt.Errorf("%w: %s@%s", ErrVersionExists, name, version)
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return Manifest{}, fmt.Errorf("wasmstore: push %s@%s: %w", name, version, err)
	}
	// Jobs pin a module by name and digest, and workers keep it loaded
	// under that key: one name holds one policy per module.
	_, ms, err := s.objects(ctx)
	if err != nil {
		return Manifest{}, err
	}
	for _, o := range ms {
		if o.Name == name && o.Digest == m.Digest && !samePolicy(o.Policy, m.Policy) {
			return Manifest{}, fmt.Errorf("%w: %s@%s holds the same module with the policy %q: jobs pin a module by its digest, so the versions of a name holding the same bytes share one policy; change the bytes or the name, or remove %s@%s", ErrBadPolicy, name, o.Version, o.Policy, name, o.Version)
		}
	}
	md := map[string]string{
		metaName:    m.Name,
		metaVersion: m.Version,
		metaDigest:  m.Digest,
		metaInfo:    string(m.Info.JSON()),
		metaCreated: m.Created.Format(time.RFC3339Nano),
	}
	if !m.Policy.IsZero() {
		pol, _ := json.Marshal(m.Policy) // strings and numbers
		md[metaPolicy] = string(pol)
	}
	if m.Signature != "" {
		md[metaSigner], md[metaSig] = m.Signer, m.Signature
	}
	obj, err := s.os.Put(ctx, jetstream.ObjectMeta{
		Name:        objectName(name, version),
		Description: m.Info.Description,
		Metadata:    md,
	}, bytes.NewReader(module))
	if err != nil {
		return Manifest{}, fmt.Errorf("wasmstore: push %s@%s: %w", name, version, err)
	}
	if obj.Digest != natsDigest(sum) {
		return Manifest{}, fmt.Errorf("%w: %s@%s: the server recorded %s for %s", ErrDigestMismatch, name, version, obj.Digest, natsDigest(sum))
	}
	return m, nil
}

// manifestOf reads the manifest in an object's metadata.
func manifestOf(obj *jetstream.ObjectInfo) (Manifest, error) {
	md := obj.Metadata
	m := Manifest{
		Name:    md[metaName],
		Version: md[metaVersion],
		Digest:  md[metaDigest],
		Size:    int64(obj.Size),
	}
	if m.Size > 1<<62 {
		return Manifest{}, fmt.Errorf("%w: object %s: size %d", ErrBadManifest, obj.Name, obj.Size)
	}
	if err := json.Unmarshal([]byte(md[metaInfo]), &m.Info); err != nil {
		return Manifest{}, fmt.Errorf("%w: object %s: info: %v", ErrBadManifest, obj.Name, err)
	}
	created, err := time.Parse(time.RFC3339Nano, md[metaCreated])
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: object %s: created: %v", ErrBadManifest, obj.Name, err)
	}
	m.Created = created
	if pol := md[metaPolicy]; pol != "" {
		if err := json.Unmarshal([]byte(pol), &m.Policy); err != nil {
			return Manifest{}, fmt.Errorf("%w: object %s: policy: %v", ErrBadManifest, obj.Name, err)
		}
	}
	m.Signer, m.Signature = md[metaSigner], md[metaSig]
	if err := m.Validate(); err != nil {
		return Manifest{}, fmt.Errorf("object %s: %w", obj.Name, err)
	}
	if obj.Name != objectName(m.Name, m.Version) {
		return Manifest{}, fmt.Errorf("%w: object %s holds %s@%s", ErrBadManifest, obj.Name, m.Name, m.Version)
	}
	return m, nil
}

// objects returns the stored objects with valid manifests; objects whose
// metadata is not a manifest are skipped (they are not ours, or tampered).
func (s *Store) objects(ctx context.Context) ([]*jetstream.ObjectInfo, []Manifest, error) {
	infos, err := s.os.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("wasmstore: list: %w", err)
	}
	var objs []*jetstream.ObjectInfo
	var ms []Manifest
	for _, obj := range infos {
		m, err := manifestOf(obj)
		if err != nil {
			continue
		}
		objs = append(objs, obj)
		ms = append(ms, m)
	}
	return objs, ms, nil
}

// newestFirst orders manifests by creation time, newest first, then by
// version.
func newestFirst(a, b Manifest) int {
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return cmp.Compare(b.Version, a.Version)
}

// List returns the manifests of every stored module version, by name, each
// name's versions newest first. An empty store gives an empty list. The
// error is a JetStream error.
func (s *Store) List(ctx context.Context) ([]Manifest, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, ms, err := s.objects(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ms, func(a, b Manifest) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return newestFirst(a, b)
	})
	return ms, nil
}

// Info returns the manifests of name's versions, newest first. The error
// wraps ErrNotFound when there is none, or is a JetStream error.
func (s *Store) Info(ctx context.Context, name string) ([]Manifest, error) {
	all, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var ms []Manifest
	for _, m := range all {
		if m.Name == name {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: plugin %s", ErrNotFound, name)
	}
	return ms, nil
}

// Resolve returns the manifest of name's version; "" or Latest mean the
// newest pushed. The error wraps ErrNotFound, or is a JetStream error.
func (s *Store) Resolve(ctx context.Context, name, version string) (Manifest, error) {
	if version != "" && version != Latest {
		ctx, cancel := withTimeout(ctx)
		defer cancel()
		obj, err := s.os.GetInfo(ctx, objectName(name, version))
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return Manifest{}, fmt.Errorf("%w: %s@%s", ErrNotFound, name, version)
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("wasmstore: resolve %s@%s: %w", name, version, err)
		}
		m, err := manifestOf(obj)
		if err != nil {
			return Manifest{}, err
		}
		return m, nil
	}
	ms, err := s.Info(ctx, name)
	if err != nil {
		return Manifest{}, err
	}
	return ms[0], nil
}

// Resolver returns s.Resolve in the shape a coordinator takes: the digest
// and version of name's version ("" for the newest), or an empty digest and
// no error when there is no such module.
func Resolver(s *Store) func(ctx context.Context, name, version string) (digest, resolved string, err error) {
	return func(ctx context.Context, name, version string) (string, string, error) {
		m, err := s.Resolve(ctx, name, version)
		if errors.Is(err, ErrNotFound) {
			return "", "", nil
		}
		if err != nil {
			return "", "", err
		}
		return m.Digest, m.Version, nil
	}
}

// Get returns the module of name whose digest is digest, with its
// manifest, after checking that the bytes hash to digest and to what the
// object store recorded. A mismatch is refused — nothing is returned to
// compile — with an error wrapping ErrDigestMismatch. A module larger than
// the store's size limit (WithMaxModuleSize) is refused with an error
// wrapping ErrTooLarge: by the size the object store recorded, before any
// byte is fetched, and while fetching, should the object hold more than
// it says. The error wraps ErrNotFound when no version of name has that
// digest, or is a JetStream error.
func (s *Store) Get(ctx context.Context, name, digest string) ([]byte, Manifest, error) {
	if !ValidDigest(digest) {
		return nil, Manifest{}, fmt.Errorf("%w: digest %q", ErrInvalidName, digest)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	objs, ms, err := s.objects(ctx)
	if err != nil {
		return nil, Manifest{}, err
	}
	i := slices.IndexFunc(ms, func(m Manifest) bool { return m.Name == name && m.Digest == digest })
	if i < 0 {
		return nil, Manifest{}, fmt.Errorf("%w: %s %s", ErrNotFound, name, digest)
	}
	if len(s.opt.trusted) > 0 {
		// Of the versions of name holding this module, the first signed
		// by a trusted key; none is fetched otherwise.
		var first error
		for j := i; j < len(ms); j++ {
			if ms[j].Name != name || ms[j].Digest != digest {
				continue
			}
			err := ms[j].VerifySignature(s.opt.trusted)
			if err == nil {
				i, first = j, nil
				break
			}
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return nil, Manifest{}, first
		}
	}
	obj, m := objs[i], ms[i]
	if obj.Size > uint64(s.opt.maxSize) {
		return nil, Manifest{}, fmt.Errorf("%w: %s: %d bytes, limit %d; not fetched", ErrTooLarge, m, obj.Size, s.opt.maxSize)
	}
	data, err := s.fetch(ctx, obj.Name)
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil, Manifest{}, fmt.Errorf("%w: %s: holds more than the %d bytes recorded; abandoned at the limit of %d", ErrTooLarge, m, obj.Size, s.opt.maxSize)
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return nil, Manifest{}, fmt.Errorf("%w: %s: the object's chunks do not match its recorded digest", ErrDigestMismatch, m)
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, m)
	case err != nil:
		return nil, Manifest{}, fmt.Errorf("wasmstore: get %s: %w", m, err)
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return nil, Manifest{}, fmt.Errorf("%w: %s: the stored bytes hash to %s", ErrDigestMismatch, m, got)
	}
	if obj.Digest != natsDigest(sum) {
		return nil, Manifest{}, fmt.Errorf("%w: %s: the object store recorded %s", ErrDigestMismatch, m, obj.Digest)
	}
	if int64(len(data)) != m.Size {
		return nil, Manifest{}, fmt.Errorf("%w: %s: %d bytes, recorded %d", ErrDigestMismatch, m, len(data), m.Size)
	}
	return data, m, nil
}

// fetch reads the object name, at most the store's size limit of it: an
// object holding more is abandoned there, with ErrTooLarge.
func (s *Store) fetch(ctx context.Context, name string) ([]byte, error) {
	res, err := s.os.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	// Reading to the end checks the chunks against the recorded digest.
	data, err := io.ReadAll(io.LimitReader(res, int64(s.opt.maxSize)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > s.opt.maxSize {
		return nil, ErrTooLarge
	}
	return data, nil
}

// Fetch returns the module of name with digest, verified as by Get. It
// makes a *Store a wasm.ModuleSource. The errors are Get's.
func (s *Store) Fetch(ctx context.Context, name, digest string) ([]byte, error) {
	data, _, err := s.Get(ctx, name, digest)
	return data, err
}

// FetchLimited returns the module of name with digest, verified as by Get,
// and its policy as the runtime's limits. It makes a *Store a
// wasm.LimitedSource: a registry over it runs every module under its
// policy. The errors are Get's.
func (s *Store) FetchLimited(ctx context.Context, name, digest string) ([]byte, wasm.Limits, error) {
	data, m, err := s.Get(ctx, name, digest)
	if err != nil {
		return nil, wasm.Limits{}, err
	}
	return data, m.Policy.Limits(), nil
}

// samePolicy reports whether a and b are the same policy.
func samePolicy(a, b Policy) bool {
	return a.Timeout == b.Timeout && a.Memory == b.Memory && slices.Equal(a.Grants, b.Grants)
}

// Remove deletes name's version, or every version of name when version is
// "". The error wraps ErrNotFound when there was nothing to remove, or is a
// JetStream error.
func (s *Store) Remove(ctx context.Context, name, version string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var targets []string
	if version != "" {
		targets = []string{objectName(name, version)}
	} else {
		objs, ms, err := s.objects(ctx)
		if err != nil {
			return err
		}
		for i, m := range ms {
			if m.Name == name {
				targets = append(targets, objs[i].Name)
			}
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("%w: plugin %s", ErrNotFound, name)
	}
	for _, t := range targets {
		err := s.os.Delete(ctx, t)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, t)
		}
		if err != nil {
			return fmt.Errorf("wasmstore: remove %s: %w", t, err)
		}
	}
	return nil
}

// Op says what happened to a module version.
type Op uint8

// Ops.
const (
	// Put: the version was pushed (or existed when the watch started).
	Put Op = iota + 1
	// Removed: the version was removed.
	Removed
)

// String returns "put" or "removed".
func (o Op) String() string {
	switch o {
	case Put:
		return "put"
	case Removed:
		return "removed"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Event is one change to the store.
type Event struct {
	Op       Op
	Manifest Manifest
}

// Watch returns a channel of the store's changes: first a Put for every
// version stored now, then each push and removal as it happens. The channel
// is closed when ctx ends (or the connection closes). Objects whose metadata
// is not a manifest are skipped. The error is a JetStream error.
func (s *Store) Watch(ctx context.Context) (<-chan Event, error) {
	w, err := s.os.Watch(ctx)
	if err != nil {
		return nil, fmt.Errorf("wasmstore: watch: %w", err)
	}
	out := make(chan Event)
	// Stops when ctx ends or the watcher's channel closes.
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			var obj *jetstream.ObjectInfo
			var ok bool
			select {
			case <-ctx.Done():
				return
			case obj, ok = <-w.Updates():
			}
			if !ok {
				return
			}
			if obj == nil { // the end of the initial values
				continue
			}
			m, err := manifestOf(obj)
			if err != nil {
				continue
			}
			ev := Event{Op: Put, Manifest: m}
			if obj.Deleted {
				ev.Op = Removed
				m.Size = 0
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
