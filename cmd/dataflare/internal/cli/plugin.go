//go:build !client

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
	"github.com/dataflare/dataflare/worker"
)

func init() {
	extraCommands = append(extraCommands, (*env).pluginCmd)
}

// pluginTimeout bounds one plugin command's work with the store.
const pluginTimeout = 30 * time.Second

func (e *env) pluginCmd() *cobra.Command {
	var replicas int
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Manage WebAssembly plugin modules in the NATS Object Store",
		Long: `Manage the WebAssembly plugin modules of the fleet. Modules live in the NATS Object Store bucket
DF_PLUGINS, one object per name and version; workers fetch them on first use, check them against
their SHA-256 digest and run them in a sandbox. A job pins the digest of the version it started
with, so pushing a new version never changes a running job.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for dataflare plugin: use push, ls, info, rm or keygen", args[0])
			}
			return usagef("plugin needs a subcommand: push, ls, info, rm or keygen")
		},
	}
	cmd.PersistentFlags().IntVar(&replicas, "replicas", 1, "replicas of the plugin bucket when this command creates it (3 on a production cluster)")
	store := func(ctx context.Context, name string, opts ...wasmstore.Option) (*wasmstore.Store, func(), error) {
		nc, err := e.connect(name, false)
		if err != nil {
			return nil, nil, err
		}
		s, err := openStore(ctx, nc, replicas, false, opts...)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return s, nc.Close, nil
	}
	cmd.AddCommand(e.pluginPushCmd(store), e.pluginLsCmd(store), e.pluginInfoCmd(store), e.pluginRmCmd(store), e.pluginKeygenCmd())
	return cmd
}

// storeOpener connects and opens the plugin store for a command; the
// function it returns closes the connection.
type storeOpener func(ctx context.Context, name string, opts ...wasmstore.Option) (*wasmstore.Store, func(), error)

// openStore binds to the plugin store on nc, creating its bucket with
// replicas if needed. An existing bucket keeps its replica count unless
// force is set (the coordinator's --replicas rules every stream and
// bucket).
func openStore(ctx context.Context, nc *nats.Conn, replicas int, force bool, opts ...wasmstore.Option) (*wasmstore.Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("plugin store: %v", err)
	}
	if obs, err := js.ObjectStore(ctx, proto.BucketPlugins); err == nil && !force {
		if st, err := obs.Status(ctx); err == nil && st.Replicas() > 0 {
			replicas = st.Replicas()
		}
	}
	s, err := wasmstore.New(ctx, js, append([]wasmstore.Option{wasmstore.WithReplicas(replicas)}, opts...)...)
	if err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("plugin store: JetStream is not enabled on this NATS server")
		}
		return nil, fmt.Errorf("plugin store: %w", err)
	}
	return s, nil
}

// pushPolicy reads push's policy flags: clear usage errors for bad values.
func pushPolicy(timeout, memory string, grants []string) (wasmstore.Policy, error) {
	var d time.Duration
	if timeout != "" {
		var err error
		d, err = time.ParseDuration(timeout)
		if err != nil || d <= 0 || d > wasmstore.MaxPolicyTimeout {
			return wasmstore.Policy{}, usagef("--timeout %q: want a duration above 0 and at most %s, as 500ms or 2s", timeout, wasmstore.MaxPolicyTimeout)
		}
	}
	var mem int64
	if memory != "" {
		var err error
		mem, err = wasmstore.ParseSize(memory)
		switch {
		case err != nil:
			return wasmstore.Policy{}, usagef("--memory %q: want a size such as 1MiB or 512KiB", memory)
		case mem < wasmstore.PageSize || mem > wasmstore.MaxPolicyMemory:
			return wasmstore.Policy{}, usagef("--memory %s: want at least 64KiB and at most %s", memory, wasmstore.FormatSize(wasmstore.MaxPolicyMemory))
		case mem%wasmstore.PageSize != 0:
			return wasmstore.Policy{}, usagef("--memory %s: want a multiple of 64KiB, the WebAssembly page (say %s)", memory, wasmstore.FormatSize(mem/wasmstore.PageSize*wasmstore.PageSize))
		}
	}
	for _, g := range grants {
		if err := wasmstore.ValidGrant(g); err != nil {
			return wasmstore.Policy{}, usagef("--grant %q: the capabilities are log and kv:BUCKET (a KV bucket name: letters, digits, '-' and '_', not DF_…, the fleet's own)", g)
		}
	}
	p, err := wasmstore.NewPolicy(d, mem, grants)
	if err != nil {
		return wasmstore.Policy{}, usagef("%v", err)
	}
	return p, nil
}

func (e *env) pluginPushCmd(open storeOpener) *cobra.Command {
	var version, timeout, memory, signFile string
	var grants []string
	cmd := &cobra.Command{
		Use:   "push NAME FILE.wasm",
		Short: "Validate a WebAssembly module and store it as a version of plugin NAME",
		Long: `Validate FILE.wasm (- for standard input) — it must compile, import nothing outside the sandbox
and implement the plugin ABI (docs/abi.md) — and store it as a version of plugin NAME. Without
--version the version is the one the module reports. Pushing the same bytes again is a no-op;
a version is immutable: pushing other bytes, or another policy, under an existing version fails.

--timeout, --memory and --grant are the module's policy, stored with it: every worker runs a batch
of it under the earliest of --timeout, the job's timeout and its own, and caps its memory at the
smaller of --memory and its own ceiling. --sign signs the module's name, version, digest and policy
with a key from 'dataflare plugin keygen', for workers started with --trusted-key.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			if !wasmstore.ValidName(name) {
				return usagef("plugin name %q: use letters, digits, '-' and '_'", name)
			}
			if version != "" && !wasmstore.ValidVersion(version) {
				return usagef("--version %q: use letters, digits, '.', '-', '_' and '+'", version)
			}
			policy, err := pushPolicy(timeout, memory, grants)
			if err != nil {
				return err
			}
			var po = wasmstore.PushOptions{Policy: policy}
			if signFile != "" {
				kp, err := wasmstore.ReadSigningKey(signFile)
				if err != nil {
					return usagef("--sign: %v", err)
				}
				po.Signer = kp
			}
			module, err := readModule(e.stdin, file)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), pluginTimeout)
			defer cancel()
			// Validate here first, so that a bad module is reported
			// without a server; the store then records what it found.
			info, err := validateModule(ctx, module, policy.Limits())
			if err != nil {
				return fmt.Errorf("%s is not a usable plugin: %v", file, err)
			}
			s, closeConn, err := open(ctx, "plugin push", wasmstore.WithValidator(validated(info)))
			if err != nil {
				return err
			}
			defer closeConn()
			m, err := s.PushWith(ctx, name, version, module, po)
			if err != nil {
				return fmt.Errorf("plugin push: %v", err)
			}
			fmt.Fprintf(e.stdout, "pushed %s@%s %s (%d bytes)", m.Name, m.Version, m.Digest, m.Size)
			if !m.Policy.IsZero() {
				fmt.Fprintf(e.stdout, ", policy: %s", m.Policy)
			}
			if m.Signer != "" {
				fmt.Fprintf(e.stdout, ", signed by %s", m.Signer)
			}
			fmt.Fprintln(e.stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&version, "version", "", "version to store the module as (default: the version the module reports)")
	f.StringVar(&timeout, "timeout", "", "policy: bound each batch of the module to `DURATION` (default: the job's and the worker's)")
	f.StringVar(&memory, "memory", "", "policy: cap the module's guest memory at `SIZE`, a multiple of 64KiB such as 1MiB (default: the worker's)")
	f.StringArrayVar(&grants, "grant", nil, "policy: grant the module a capability `CAP`, log or kv:BUCKET (repeatable; the module may import only what is granted)")
	f.StringVar(&signFile, "sign", "", "sign the module and its policy with the seed in `FILE` (from 'dataflare plugin keygen')")
	return cmd
}

func (e *env) pluginKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make a key to sign plugin modules with, and print its public key",
		Long: `Write a new signing key — an nkeys account seed, SA… — to FILE (mode 0600; an existing file is
not overwritten) and print its public key, A…. Sign modules with 'dataflare plugin push --sign FILE';
start workers with --trusted-key and the public key to make them run only modules so signed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("plugin keygen needs --out FILE, where to write the seed")
			}
			kp, err := wasmstore.NewSigningKey()
			if err != nil {
				return fmt.Errorf("plugin keygen: %v", err)
			}
			seed, err := kp.Seed()
			if err != nil {
				return fmt.Errorf("plugin keygen: %v", err)
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return fmt.Errorf("plugin keygen: %v", err)
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("plugin keygen: %v", err)
			}
			if _, err := f.Write(append(seed, '\n')); err != nil {
				f.Close()
				return fmt.Errorf("plugin keygen: %v", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("plugin keygen: %v", err)
			}
			fmt.Fprintln(e.stdout, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the seed to `FILE` (it must not exist)")
	return cmd
}

// validateModule checks that module compiles, stays in the sandbox (and
// imports only the capabilities lim grants) and implements the plugin ABI,
// and returns the info it reports.
func validateModule(ctx context.Context, module []byte, lim wasm.Limits) (plugin.Info, error) {
	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(1))
	if err != nil {
		return plugin.Info{}, err
	}
	defer rt.Close(context.WithoutCancel(ctx))
	return rt.ValidateLimited(ctx, module, lim)
}

// validated is a wasmstore.Validator for a module already validated: it
// returns the info found then.
type validated plugin.Info

func (v validated) ValidateLimited(context.Context, []byte, wasm.Limits) (plugin.Info, error) {
	return plugin.Info(v), nil
}

func readModule(stdin io.Reader, file string) ([]byte, error) {
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("module: %v", err)
		}
		defer f.Close()
		r = f
	}
	// One byte over the limit tells a module that is too large.
	data, err := io.ReadAll(io.LimitReader(r, wasmstore.DefaultMaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("module: %v", err)
	}
	if len(data) > wasmstore.DefaultMaxModuleSize {
		return nil, fmt.Errorf("module %s is over the limit of %d bytes", file, wasmstore.DefaultMaxModuleSize)
	}
	return data, nil
}

func (e *env) pluginLsCmd(open storeOpener) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the stored plugin modules, every version, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), pluginTimeout)
			defer cancel()
			s, closeConn, err := open(ctx, "plugin ls")
			if err != nil {
				return err
			}
			defer closeConn()
			ms, err := s.List(ctx)
			if err != nil {
				return fmt.Errorf("plugin ls: %v", err)
			}
			if asJSON {
				if ms == nil {
					ms = []wasmstore.Manifest{}
				}
				return writeJSON(e.stdout, ms)
			}
			printManifests(e.stdout, ms)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func printManifests(w io.Writer, ms []wasmstore.Manifest) {
	if len(ms) == 0 {
		fmt.Fprintln(w, "no plugin modules stored; push one with 'dataflare plugin push NAME FILE.wasm'")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tDIGEST\tSIZE\tPUSHED")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", m.Name, m.Version, shortDigest(m.Digest), m.Size, m.Created.Local().Format(time.DateTime))
	}
	tw.Flush()
}

// shortDigest returns "sha256:" and the first 12 hex digits.
func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func (e *env) pluginInfoCmd(open storeOpener) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show every stored version of plugin NAME, newest first",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), pluginTimeout)
			defer cancel()
			s, closeConn, err := open(ctx, "plugin info")
			if err != nil {
				return err
			}
			defer closeConn()
			ms, err := s.Info(ctx, args[0])
			if errors.Is(err, wasmstore.ErrNotFound) {
				return fmt.Errorf("no plugin module named %s (see 'dataflare plugin ls')", args[0])
			}
			if err != nil {
				return fmt.Errorf("plugin info: %v", err)
			}
			if asJSON {
				return writeJSON(e.stdout, ms)
			}
			for i, m := range ms {
				if i > 0 {
					fmt.Fprintln(e.stdout)
				}
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				latest := ""
				if i == 0 {
					latest = " (latest)"
				}
				fmt.Fprintf(tw, "name:\t%s\nversion:\t%s%s\ndigest:\t%s\nsize:\t%d bytes\npushed:\t%s\n", m.Name, m.Version, latest,
					m.Digest, m.Size, m.Created.Local().Format(time.RFC3339))
				fmt.Fprintf(tw, "type:\t%s\nreports:\t%s (API %s)\n", m.Info.Type, m.Info, m.Info.APIVersion)
				if m.Info.Description != "" {
					fmt.Fprintf(tw, "description:\t%s\n", m.Info.Description)
				}
				if m.Info.Author != "" {
					fmt.Fprintf(tw, "author:\t%s\n", m.Info.Author)
				}
				fmt.Fprintf(tw, "policy:\t%s\n", policyLine(m.Policy))
				if m.Signer != "" {
					fmt.Fprintf(tw, "signed by:\t%s\n", m.Signer)
				} else {
					fmt.Fprintf(tw, "signed by:\tnobody (workers with --trusted-key refuse it)\n")
				}
				tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the versions as JSON")
	return cmd
}

// policyLine shows a policy, saying where it is above a worker's default
// ceilings: workers apply their own there.
func policyLine(p wasmstore.Policy) string {
	if p.IsZero() {
		return "none (the worker's limits)"
	}
	s := p.String()
	var over []string
	if p.Memory > wasm.DefaultMemoryLimitPages*wasmstore.PageSize {
		over = append(over, fmt.Sprintf("memory above the default worker ceiling of %s", wasmstore.FormatSize(wasm.DefaultMemoryLimitPages*wasmstore.PageSize)))
	}
	if p.Timeout > worker.DefaultBatchTimeout {
		over = append(over, fmt.Sprintf("timeout above the default worker batch timeout of %s", worker.DefaultBatchTimeout))
	}
	if len(over) > 0 {
		s += " (" + strings.Join(over, "; ") + ": a worker's own ceiling applies)"
	}
	return s
}

func (e *env) pluginRmCmd(open storeOpener) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a version of plugin NAME, or all its versions",
		Long: `Remove plugin NAME's --version, or every version of NAME. Jobs already running keep the module
they pinned as long as workers have it loaded; new jobs can no longer use it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), pluginTimeout)
			defer cancel()
			s, closeConn, err := open(ctx, "plugin rm")
			if err != nil {
				return err
			}
			defer closeConn()
			// Resolve first: removing what is not there is an error.
			_, err = s.Resolve(ctx, args[0], version)
			if err == nil {
				err = s.Remove(ctx, args[0], version)
			}
			if errors.Is(err, wasmstore.ErrNotFound) {
				if version != "" {
					return fmt.Errorf("no plugin module %s@%s (see 'dataflare plugin info %s')", args[0], version, args[0])
				}
				return fmt.Errorf("no plugin module named %s (see 'dataflare plugin ls')", args[0])
			}
			if err != nil {
				return fmt.Errorf("plugin rm: %v", err)
			}
			if version != "" {
				fmt.Fprintf(e.stdout, "removed %s@%s\n", args[0], version)
			} else {
				fmt.Fprintf(e.stdout, "removed every version of %s\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the version to remove (default: every version)")
	return cmd
}
