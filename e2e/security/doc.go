// Package security tests DataFlare's NATS roles (deploy/nats): a
// nats-server runs in-process from deploy/nats/server.conf with its
// authorization block, a real coordinator and worker run with their roles'
// credentials, client "alice" runs a job — and then every role tries what
// it may not do: publish, subscribe and call the JetStream API on what
// another role owns. Each attempt must end in a permission error that the
// test observes, while a canary subscriber with full rights sees nothing
// leak. TLS tests run the dataflare CLI against a mutual-TLS server with a
// CA made at test time, and with the wrong CA.
//
//	go test -race ./e2e/security/...
package security
