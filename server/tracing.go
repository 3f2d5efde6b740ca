package server

import (
	"fmt"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// WithTracing traces the server's RPCs with OpenTelemetry, through
// connectrpc.com/otelconnect: each Connect, gRPC and gRPC-Web call to a
// class, to the ID service, to health checking and to reflection gets a
// server span named for its procedure ("examples.counter.v1.Counter/Increment"),
// with its code as status. Spans go to tp. Off by default.
//
// The span is in the context the object's method receives, so the method's
// own spans, and the client spans of the calls it makes with an
// otelconnect client interceptor, are its children.
//
// Durable's defaults, which opts (passed to otelconnect.NewInterceptor
// after them) may override: tp; W3C Trace Context and Baggage propagation
// (not the global propagator); no OpenTelemetry metrics (WithMetrics
// exports Prometheus ones; pass otelconnect.WithMeterProvider for
// otelconnect's). As otelconnect does by default, a caller's span context
// is not trusted: the server span starts a new trace linked to the
// caller's span. Pass otelconnect.WithTrustRemote() to make it the
// caller's child, when callers are your own services.
//
// In-process stub calls and the Fetch routes are plain Go calls and HTTP
// requests, not RPCs, and get no span of their own.
func WithTracing(tp trace.TracerProvider, opts ...otelconnect.Option) Option {
	return func(o *options) {
		o.tracer = tp
		o.traceOptions = append(o.traceOptions[:0:0], opts...)
	}
}

// addTracing adds the otelconnect interceptor to the handler options, when
// WithTracing is set.
func (o *options) addTracing() error {
	if o.tracer == nil {
		return nil
	}
	opts := append([]otelconnect.Option{
		otelconnect.WithTracerProvider(o.tracer),
		otelconnect.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelconnect.WithMeterProvider(noop.NewMeterProvider()),
	}, o.traceOptions...)
	interceptor, err := otelconnect.NewInterceptor(opts...)
	if err != nil {
		return fmt.Errorf("server: tracing: %w", err)
	}
	o.handlerOptions = append(o.handlerOptions, connect.WithInterceptors(interceptor))
	return nil
}
