package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("ok\n"))
		case "/down":
			http.Error(w, "not connected to NATS", http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			<-release
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)
	// A port nothing listens on: a server closed at once.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name     string
		args     []string
		want     int
		inStderr string
	}{
		{"healthy", []string{srv.URL + "/ok"}, 0, ""},
		{"503", []string{srv.URL + "/down"}, 1, "503 Service Unavailable"},
		{"404", []string{srv.URL + "/nothing"}, 1, "404"},
		{"redirect not followed", []string{srv.URL + "/moved"}, 1, "302"},
		{"no answer in time", []string{"-timeout", "50ms", srv.URL + "/slow"}, 1, "deadline exceeded"},
		{"nothing listening", []string{closed.URL}, 1, "connection refused"},
		{"no url", nil, 1, "usage"},
		{"two urls", []string{srv.URL, srv.URL}, 1, "usage"},
		{"zero timeout", []string{"-timeout", "0s", srv.URL + "/ok"}, 1, "usage"},
		{"unknown flag", []string{"-x", srv.URL + "/ok"}, 1, "not defined"},
		{"bad url", []string{"::"}, 1, "missing protocol scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tt.args, &stderr); got != tt.want {
				t.Errorf("run(%q) = %d, want %d (stderr %q)", tt.args, got, tt.want, stderr.String())
			}
			if tt.inStderr == "" && stderr.Len() > 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.inStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.inStderr)
			}
		})
	}
}

func TestCheckWrapsUnhealthy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := check(ctx, srv.URL); !errors.Is(err, errUnhealthy) {
		t.Errorf("check = %v, want an error wrapping errUnhealthy", err)
	}
}
