package security

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/dataflare/dataflare/internal/proto"
)

// operator is a nats-server in operator mode — accounts and users are JWTs
// signed by an operator key, as nsc sets them up (docs/security.md) — with
// one account, "fleet", that has JetStream.
type operator struct {
	url     string
	dir     string
	key     nkeys.KeyPair // the operator's
	account nkeys.KeyPair // the fleet account's: it signs the users
	// perms are the permission blocks of deploy/nats/auth.conf, by user.
	perms map[string]*server.Permissions
}

// startOperator runs the server in-process on a random loopback port and
// stops it when the test ends.
func startOperator(t *testing.T) *operator {
	t.Helper()
	o := &operator{dir: t.TempDir(), key: mustKey(t, nkeys.CreateOperator), account: mustKey(t, nkeys.CreateAccount)}
	opub := publicKey(t, o.key)
	sys := mustKey(t, nkeys.CreateAccount)
	spub := publicKey(t, sys)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "dataflare"
	oc.SystemAccount = spub
	ojwt, err := oc.Encode(o.key)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	sc := jwt.NewAccountClaims(spub)
	sc.Name = "SYS"
	storeAccount(t, resolver, o.key, sc)
	ac := jwt.NewAccountClaims(publicKey(t, o.account))
	ac.Name = "fleet"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	storeAccount(t, resolver, o.key, ac)

	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		SystemAccount:    spub,
		AccountResolver:  resolver,
		NoLog:            true, NoSigs: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("operator-mode server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("operator-mode server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	o.url = s.ClientURL()

	// The users get the permissions of deploy/nats/auth.conf, read from
	// the file itself.
	conf, err := server.ProcessConfigFile(serverConf)
	if err != nil {
		t.Fatal(err)
	}
	o.perms = make(map[string]*server.Permissions)
	for _, u := range conf.Users {
		o.perms[u.Username] = u.Permissions
	}
	return o
}

func mustKey(t *testing.T, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func publicKey(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func storeAccount(t *testing.T, r *server.MemAccResolver, signer nkeys.KeyPair, ac *jwt.AccountClaims) {
	t.Helper()
	token, err := ac.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Store(ac.Subject, token); err != nil {
		t.Fatal(err)
	}
}

// jwtPermissions is the JWT form of an auth.conf permission block.
func jwtPermissions(p *server.Permissions) jwt.Permissions {
	var out jwt.Permissions
	if p == nil {
		return out
	}
	if p.Publish != nil {
		out.Pub = jwt.Permission{Allow: p.Publish.Allow, Deny: p.Publish.Deny}
	}
	if p.Subscribe != nil {
		out.Sub = jwt.Permission{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny}
	}
	if p.Response != nil {
		out.Resp = &jwt.ResponsePermission{MaxMsgs: p.Response.MaxMsgs, Expires: p.Response.Expires}
	}
	return out
}

// userCreds mints a user of auth.conf as a JWT signed by signer with the
// user's permission block, edited by edit if not nil, and writes its creds
// file (the JWT and the user's seed, as `nsc generate creds` does). It
// returns the file's path.
func (o *operator) userCreds(t *testing.T, user string, signer nkeys.KeyPair, edit func(*jwt.UserClaims)) string {
	t.Helper()
	perms, ok := o.perms[user]
	if !ok {
		t.Fatalf("auth.conf has no user %q", user)
	}
	ukp := mustKey(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(publicKey(t, ukp))
	uc.Name = user
	uc.Permissions = jwtPermissions(perms)
	if edit != nil {
		edit(uc)
	}
	token, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := ukp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(o.dir, fmt.Sprintf("%s-%d.creds", user, time.Now().UnixNano()))
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// credsRole is r connecting with a fresh creds file of its user.
func (o *operator) credsRole(t *testing.T, r role) role {
	t.Helper()
	r.password = ""
	r.creds = o.userCreds(t, r.user, o.account, nil)
	return r
}

// TestCreds runs the fleet on an operator-mode server where every
// component connects with a creds file (nats.UserCredentials, which
// `dataflare --creds` passes) of a JWT user carrying its auth.conf
// permissions: the coordinator and worker do their jobs, alice submits a
// job and reads the fleet's status with the CLI, and may not push a
// plugin; creds that are signed by an unknown account, expired, or paired
// with another user's seed, and no creds at all, get nobody in.
func TestCreds(t *testing.T) {
	o := startOperator(t)
	rs := roles{
		admin:       o.credsRole(t, adminRole),
		coordinator: o.credsRole(t, coordinatorRole),
		worker:      o.credsRole(t, workerRole),
		alice:       o.credsRole(t, aliceRole),
	}
	f := startFleetOn(t, o.url, rs, proto.Topology{})
	alice := rs.alice
	global := []string{"--nats", f.url, "--creds", alice.creds, "--inbox-prefix", alice.inbox}

	t.Run("submit", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.txt"), filepath.Join(dir, "out.jsonl")
		var lines []string
		for i := range 40 {
			lines = append(lines, fmt.Sprintf("alice-creds-%d", i))
		}
		if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, plugin := range []string{"upper", wasmPlugin} {
			code, _, stderr := runCLI(append([]string{"submit", "--owner", "alice", "--plugin", plugin, "--batch-size", "7", "--in", in, "--out", out}, global...)...)
			if code != exitOK {
				t.Fatalf("%s: exit code %d; stderr: %s", plugin, code, stderr)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			res := strings.Split(strings.TrimSpace(string(got)), "\n")
			if len(res) != len(lines) {
				t.Fatalf("%s: %d results for %d records", plugin, len(res), len(lines))
			}
			for i, line := range res {
				var r struct {
					Index int    `json:"index"`
					Value string `json:"value"`
				}
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("%s: result line %d: %v", plugin, i+1, err)
				}
				if want := strings.ToUpper(lines[i]); r.Index != i || r.Value != want {
					t.Errorf("%s: result %d: got %d %q, want %d %q", plugin, i, r.Index, r.Value, i, want)
				}
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		code, stdout, stderr := runCLI(append([]string{"status", "--json"}, global...)...)
		if code != exitOK {
			t.Fatalf("exit code %d; stderr: %s", code, stderr)
		}
		var st struct {
			Workers []json.RawMessage `json:"workers"`
		}
		if err := json.Unmarshal([]byte(stdout), &st); err != nil {
			t.Fatalf("status output: %v\n%s", err, stdout)
		}
		if len(st.Workers) != 1 {
			t.Errorf("status shows %d workers, want 1", len(st.Workers))
		}
	})

	t.Run("alice may not push a plugin or submit as bob", func(t *testing.T) {
		// The server drops the denied request: the command stops at
		// its permission error instead of waiting for an answer.
		start := time.Now()
		code, _, stderr := runCLI(append([]string{"plugin", "push", "mallory", wasmModule}, global...)...)
		if code != exitRuntime {
			t.Fatalf("exit code %d, want %d; stderr: %s", code, exitRuntime, stderr)
		}
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.Contains(stderr, "Permissions Violation for Publish to") {
			t.Errorf("want one line naming the permission violation, got %q", stderr)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("the denied push took %v to fail", took)
		}
		// Nor submit as another owner: the job request is denied.
		code, _, stderr = runCLI(append([]string{"submit", "--owner", "bob", "--plugin", "upper", "--in", wasmModule}, global...)...)
		if code != exitRuntime || !strings.Contains(stderr, `Publish to "df.job.create.bob"`) {
			t.Errorf("submit as bob: exit %d, stderr %q; want %d and the denial", code, stderr, exitRuntime)
		}
		code, stdout, stderr := runCLI(append([]string{"plugin", "ls", "--json"}, global[:2]...)...)
		// Without creds the command cannot even connect.
		if code != exitRuntime || !strings.Contains(strings.ToLower(stderr), "authorization violation") {
			t.Errorf("plugin ls without creds: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})

	t.Run("refused", func(t *testing.T) {
		other := mustKey(t, nkeys.CreateAccount)
		for _, tc := range []struct {
			name  string
			creds func(t *testing.T) string
		}{
			{"signed by an unknown account", func(t *testing.T) string { return o.userCreds(t, "alice", other, nil) }},
			{"expired", func(t *testing.T) string {
				return o.userCreds(t, "alice", o.account, func(uc *jwt.UserClaims) { uc.Expires = time.Now().Add(-time.Minute).Unix() })
			}},
			{"another user's seed", func(t *testing.T) string {
				a, b := mustRead(t, o.userCreds(t, "alice", o.account, nil)), mustRead(t, o.userCreds(t, "bob", o.account, nil))
				seed := func(creds []byte) string {
					kp, err := jwt.ParseDecoratedNKey(creds)
					if err != nil {
						t.Fatal(err)
					}
					s, err := kp.Seed()
					if err != nil {
						t.Fatal(err)
					}
					return string(s)
				}
				mixed := strings.Replace(string(a), seed(a), seed(b), 1)
				file := filepath.Join(t.TempDir(), "mixed.creds")
				if err := os.WriteFile(file, []byte(mixed), 0o600); err != nil {
					t.Fatal(err)
				}
				return file
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				file := tc.creds(t)
				nc, err := tryDial(f.url, role{user: "alice", creds: file, inbox: alice.inbox}, nats.Timeout(2*time.Second))
				if err == nil {
					nc.Close()
					t.Fatal("connected")
				}
				if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthExpired) && !strings.Contains(err.Error(), "does not match") {
					t.Errorf("got %v, want an authorization error", err)
				}
				code, _, stderr := runCLI("status", "--nats", f.url, "--creds", file, "--inbox-prefix", alice.inbox)
				if code != exitRuntime || !strings.Contains(stderr, "cannot reach NATS") {
					t.Errorf("dataflare status: exit %d, stderr %q; want %d and a connection error", code, stderr, exitRuntime)
				}
			})
		}
		t.Run("no creds", func(t *testing.T) {
			nc, err := tryDial(f.url, role{}, nats.Timeout(2*time.Second))
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("got %v, want %v", err, nats.ErrAuthorization)
			}
		})
		t.Run("missing creds file", func(t *testing.T) {
			code, _, stderr := runCLI("status", "--nats", f.url, "--creds", filepath.Join(t.TempDir(), "none.creds"))
			if code != exitRuntime || !strings.Contains(stderr, "--creds") {
				t.Errorf("exit %d, stderr %q; want %d and an error naming --creds", code, stderr, exitRuntime)
			}
		})
	})
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
