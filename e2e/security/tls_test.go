package security

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/internal/proto"
)

// pki is what a mutual-TLS test needs: the server's CA, client
// certificates it signed, and another CA with a client certificate of its
// own.
type pki struct {
	ca          *authority
	coordinator keyPair
	alice       keyPair
	otherCA     *authority
	otherAlice  keyPair
}

// startTLSServer makes the certificates and runs a server from
// deploy/nats/server-tls.conf with them. It returns the server's address
// (host:port).
func startTLSServer(t *testing.T) (string, pki) {
	t.Helper()
	dir := t.TempDir()
	var p pki
	p.ca = newAuthority(t, dir, "ca")
	srv := p.ca.issue(t, dir, "server", true)
	p.coordinator = p.ca.issue(t, dir, "coordinator", false)
	p.alice = p.ca.issue(t, dir, "alice", false)
	p.otherCA = newAuthority(t, dir, "other-ca")
	p.otherAlice = p.otherCA.issue(t, dir, "other-alice", false)
	t.Setenv("DF_TLS_CERT", srv.Cert)
	t.Setenv("DF_TLS_KEY", srv.Key)
	t.Setenv("DF_TLS_CA", p.ca.File)
	s := startServer(t, tlsConf)
	return s.Addr().String(), p
}

// TestTLS runs a coordinator and the dataflare CLI against a server that
// requires mutual TLS: with the right CA and a certificate it signed, alice
// gets the fleet's status; with the wrong CA, a certificate from another CA,
// no certificate, or no TLS at all, the command fails with an error that
// says why.
func TestTLS(t *testing.T) {
	addr, p := startTLSServer(t)
	natsURL := "nats://" + addr

	// The coordinator connects with TLS too.
	cnc := dial(t, natsURL, coordinatorRole, nats.RootCAs(p.ca.File), nats.ClientCert(p.coordinator.Cert, p.coordinator.Key))
	co, err := coordinator.New(cnc.Conn, coordinator.Config{ID: "c-tls", Topology: proto.Topology{Memory: true}})
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, "coordinator", co.Run)
	anc := dial(t, natsURL, aliceRole, nats.RootCAs(p.ca.File), nats.ClientCert(p.alice.Cert, p.alice.Key))
	err = poll.Until(context.Background(), 10*time.Second, func() error {
		_, err := anc.Request(proto.SubjectStatus, nil, time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("coordinator not answering: %v", err)
	}

	aliceURL := (&url.URL{Scheme: "nats", User: url.UserPassword("alice", aliceRole.password), Host: addr}).String()
	base := []string{"status", "--json", "--nats", aliceURL, "--inbox-prefix", aliceRole.inbox}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"right CA and certificate", []string{"--tlsca", p.ca.File, "--tlscert", p.alice.Cert, "--tlskey", p.alice.Key}, exitOK, ""},
		{"wrong CA", []string{"--tlsca", p.otherCA.File, "--tlscert", p.alice.Cert, "--tlskey", p.alice.Key}, exitRuntime, "certificate signed by unknown authority"},
		{"certificate from another CA", []string{"--tlsca", p.ca.File, "--tlscert", p.otherAlice.Cert, "--tlskey", p.otherAlice.Key}, exitRuntime, "tls"},
		{"no certificate", []string{"--tlsca", p.ca.File}, exitRuntime, "tls"},
		{"no TLS flags", nil, exitRuntime, "certificate signed by unknown authority"},
		{"key without certificate", []string{"--tlsca", p.ca.File, "--tlskey", p.alice.Key}, exitUsage, "--tlscert and --tlskey go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append(append([]string(nil), base...), tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit code: got %d, want %d; stderr: %s", code, tc.wantCode, stderr)
			}
			if tc.wantErr != "" {
				if !strings.Contains(stderr, tc.wantErr) {
					t.Errorf("stderr: got %q, want it to say %q", stderr, tc.wantErr)
				}
				if strings.Contains(stderr, aliceRole.password) {
					t.Errorf("stderr shows the password: %q", stderr)
				}
				return
			}
			var st struct {
				Coordinator string `json:"coordinator"`
			}
			if err := json.Unmarshal([]byte(stdout), &st); err != nil {
				t.Fatalf("status output: %v\n%s", err, stdout)
			}
			if st.Coordinator != "c-tls" {
				t.Errorf("status from coordinator %q, want c-tls", st.Coordinator)
			}
		})
	}
}

// TestNoEntryWithoutCredentials: without credentials, with a wrong
// password, as an unknown user, or over TLS with the wrong CA, nobody
// connects at all.
func TestNoEntryWithoutCredentials(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		s := startServer(t, serverConf)
		for _, tc := range []struct {
			name string
			r    role
		}{
			{"no credentials", role{}},
			{"wrong password", role{user: "alice", password: "dev-bob-secret"}},
			{"unknown user", role{user: "mallory", password: "dev-alice-secret"}},
			{"empty password", role{user: "admin"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				nc, err := tryDial(s.ClientURL(), tc.r, nats.Timeout(2*time.Second))
				if err == nil {
					nc.Close()
					t.Fatal("connected")
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Errorf("got %v, want %v", err, nats.ErrAuthorization)
				}
			})
		}
	})
	t.Run("tls", func(t *testing.T) {
		addr, p := startTLSServer(t)
		for _, tc := range []struct {
			name string
			opts []nats.Option
			want string
		}{
			{"wrong CA", []nats.Option{nats.RootCAs(p.otherCA.File), nats.ClientCert(p.alice.Cert, p.alice.Key)}, "certificate signed by unknown authority"},
			{"certificate from another CA", []nats.Option{nats.RootCAs(p.ca.File), nats.ClientCert(p.otherAlice.Cert, p.otherAlice.Key)}, "tls"},
			{"no certificate", []nats.Option{nats.RootCAs(p.ca.File)}, "tls"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				nc, err := tryDial("nats://"+addr, aliceRole, append(tc.opts, nats.Timeout(2*time.Second))...)
				if err == nil {
					nc.Close()
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got %v, want an error saying %q", err, tc.want)
				}
			})
		}
		// And with everything right, alice is in.
		nc, err := tryDial("nats://"+addr, aliceRole, nats.RootCAs(p.ca.File), nats.ClientCert(p.alice.Cert, p.alice.Key))
		if err != nil {
			t.Fatalf("right CA and certificate: %v", err)
		}
		nc.Close()
	})
}

// TestGenCerts: the certificates deploy/nats/gencerts.sh writes work with
// server-tls.conf.
func TestGenCerts(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	dir := t.TempDir()
	out, err := exec.Command("sh", "../../deploy/nats/gencerts.sh", dir, "alice").CombinedOutput()
	if err != nil {
		t.Fatalf("gencerts.sh: %v\n%s", err, out)
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	t.Setenv("DF_TLS_CERT", file("server.pem"))
	t.Setenv("DF_TLS_KEY", file("server-key.pem"))
	t.Setenv("DF_TLS_CA", file("ca.pem"))
	s := startServer(t, tlsConf)
	nc, err := tryDial("nats://"+s.Addr().String(), aliceRole, nats.RootCAs(file("ca.pem")), nats.ClientCert(file("alice.pem"), file("alice-key.pem")))
	if err != nil {
		t.Fatalf("alice with the script's certificates: %v", err)
	}
	nc.Close()
	info, err := os.Stat(file("alice-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("alice's key is readable by others: %v", perm)
	}
}
