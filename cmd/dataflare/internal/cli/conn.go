package cli

import (
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// defaultURL is where the CLI looks for NATS when neither --nats nor
// $NATS_URL says.
const defaultURL = "nats://127.0.0.1:4222"

func (e *env) url() string {
	switch {
	case e.natsURL != "":
		return e.natsURL
	case os.Getenv("NATS_URL") != "":
		return os.Getenv("NATS_URL")
	}
	return defaultURL
}

// connect connects to NATS with the global flags. An unreachable server is a
// quick, clear error for every command; once connected, a daemon reconnects
// for ever after an outage, a command only briefly.
func (e *env) connect(name string, daemon bool) (*nats.Conn, error) {
	for _, f := range []struct{ flag, file string }{{"--creds", e.creds}, {"--tlscert", e.tlsCert}, {"--tlskey", e.tlsKey}, {"--tlsca", e.tlsCA}} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			return nil, fmt.Errorf("%s: %v", f.flag, err)
		}
	}
	opts := []nats.Option{nats.Name("dataflare " + name), nats.Timeout(3 * time.Second), nats.ErrorHandler(e.natsError(daemon))}
	if e.creds != "" {
		opts = append(opts, nats.UserCredentials(e.creds))
	}
	if e.tlsCert != "" || e.tlsKey != "" {
		if e.tlsCert == "" || e.tlsKey == "" {
			return nil, usagef("--tlscert and --tlskey go together")
		}
		opts = append(opts, nats.ClientCert(e.tlsCert, e.tlsKey))
	}
	if e.tlsCA != "" {
		opts = append(opts, nats.RootCAs(e.tlsCA))
	}
	if e.inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(e.inboxPrefix))
	}
	if daemon {
		// A daemon outlives network faults: it reconnects for ever, and it
		// notices a connection that went dead without an error (a host that
		// came back with another address) by pings and by a write that
		// stalls, instead of blocking on it for minutes.
		opts = append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
			nats.PingInterval(5*time.Second), nats.MaxPingsOutstanding(3),
			nats.FlusherTimeout(5*time.Second), nats.ReconnectOnFlusherError())
	} else {
		opts = append(opts, nats.MaxReconnects(2))
	}
	url := e.url()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot reach NATS at %s: %v", redact(url), err)
	}
	return nc, nil
}

// natsError returns the handler of the errors NATS reports outside any
// call. A one-shot command stops at the first permission violation, with it
// as its error: the server drops a denied message, so the request behind it
// would only end in a timeout. A daemon logs every such error: a denial
// there means a role is misconfigured, which its operator must see.
func (e *env) natsError(daemon bool) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if !daemon && errors.Is(err, nats.ErrPermissionViolation) {
			if e.denied.CompareAndSwap(nil, &err) && e.abort != nil {
				e.abort(err)
			}
			return
		}
		log, lerr := e.logger(slog.LevelWarn)
		if lerr != nil {
			log = slog.New(slog.NewTextHandler(e.stderr, nil))
		}
		if sub != nil {
			log = log.With("subscription", sub.Subject)
		}
		log.Warn("NATS reported an error", "err", err)
	}
}

// redact hides the passwords of a comma-separated list of URLs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
