// Package tracing carries OpenTelemetry trace context in NATS message
// headers (the W3C traceparent header), so one trace follows a batch from
// submit to result across processes.
package tracing

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracer returns the tracer of the named package from the global provider
// (a no-op until a provider is installed).
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }

// propagator is W3C trace context: the traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// Inject writes ctx's span context into h.
func Inject(ctx context.Context, h nats.Header) {
	propagator.Inject(ctx, headerCarrier(h))
}

// Extract returns ctx with the span context found in h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator.Extract(ctx, headerCarrier(h))
}

// headerCarrier adapts nats.Header to propagation.TextMapCarrier. NATS
// headers keep the case they are written with; traceparent is written and
// read lower-case on both sides.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
