package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
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
				return usagef("unknown command %q for dataflare plugin: use push, ls, info or rm", args[0])
			}
			return usagef("plugin needs a subcommand: push, ls, info or rm")
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
	cmd.AddCommand(e.pluginPushCmd(store), e.pluginLsCmd(store), e.pluginInfoCmd(store), e.pluginRmCmd(store))
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

func (e *env) pluginPushCmd(open storeOpener) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "push NAME FILE.wasm",
		Short: "Validate a WebAssembly module and store it as a version of plugin NAME",
		Long: `Validate FILE.wasm (- for standard input) — it must compile, import nothing outside the sandbox
and implement the plugin ABI (docs/abi.md) — and store it as a version of plugin NAME. Without
--version the version is the one the module reports. Pushing the same bytes again is a no-op;
a version is immutable: pushing other bytes under an existing version fails.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			if !wasmstore.ValidName(name) {
				return usagef("plugin name %q: use letters, digits, '-' and '_'", name)
			}
			if version != "" && !wasmstore.ValidVersion(version) {
				return usagef("--version %q: use letters, digits, '.', '-', '_' and '+'", version)
			}
			module, err := readModule(e.stdin, file)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), pluginTimeout)
			defer cancel()
			// Validate here first, so that a bad module is reported
			// without a server; the store then records what it found.
			info, err := validateModule(ctx, module)
			if err != nil {
				return fmt.Errorf("%s is not a usable plugin: %v", file, err)
			}
			s, closeConn, err := open(ctx, "plugin push", wasmstore.WithValidator(validated(info)))
			if err != nil {
				return err
			}
			defer closeConn()
			m, err := s.Push(ctx, name, version, module)
			if err != nil {
				return fmt.Errorf("plugin push: %v", err)
			}
			fmt.Fprintf(e.stdout, "pushed %s@%s %s (%d bytes)\n", m.Name, m.Version, m.Digest, m.Size)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "version to store the module as (default: the version the module reports)")
	return cmd
}

// validateModule checks that module compiles, stays in the sandbox and
// implements the plugin ABI, and returns the info it reports.
func validateModule(ctx context.Context, module []byte) (plugin.Info, error) {
	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(1))
	if err != nil {
		return plugin.Info{}, err
	}
	defer rt.Close(context.WithoutCancel(ctx))
	return rt.Validate(ctx, module)
}

// validated is a wasmstore.Validator for a module already validated: it
// returns the info found then.
type validated plugin.Info

func (v validated) Validate(context.Context, []byte) (plugin.Info, error) { return plugin.Info(v), nil }

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
				tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the versions as JSON")
	return cmd
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

// exactArgs requires n positional arguments, as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d: %s", cmd.CommandPath(), n, len(args), cmd.Use)
		}
		return nil
	}
}
