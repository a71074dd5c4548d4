//! OpenTelemetry traces across the NATS hops (DESIGN §8).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard variable; the base URL of an
//! OTLP/HTTP receiver such as an OpenTelemetry Collector, e.g. `http://otel-collector:4318`):
//! then spans go there as OTLP/HTTP protobuf to `<endpoint>/v1/traces`, batched on a thread of
//! their own, with `service.name` set to the binary's name.
//!
//! Each hop continues the event's trace from the W3C `traceparent` it arrived with (an HTTP or
//! gRPC header at the gateway, a NATS header after that) and passes its own span's
//! `traceparent` on in the NATS headers it publishes, so one trace shows gateway → router →
//! sink → destination call ([`hop`]). While traces are off, no span is made per event and the
//! `traceparent` a producer sent is passed on unchanged: tracing costs nothing unless asked for.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use opentelemetry::{
    propagation::TextMapPropagator as _,
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{Layer, registry::LookupSpan};

/// The standard variable naming the OTLP receiver.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (an endpoint was configured and the exporter started).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The layer that turns `tracing` spans into OpenTelemetry spans sent to `endpoint`.
pub(crate) fn layer<S>(service: &str, endpoint: &str) -> Result<impl Layer<S>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry_otlp::WithExportConfig as _;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let service = service.to_owned();
    // The blocking HTTP client must not be built (or dropped) on an async runtime's thread.
    let provider = std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .build()
            .map_err(|e| format!("{ENDPOINT_VAR}: cannot export traces to {url}: {e}"))?;
        Ok::<_, String>(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service).build())
                .build(),
        )
    })
    .join()
    .map_err(|_| "building the trace exporter panicked".to_owned())??;
    let tracer = provider.tracer("auditstream");
    if PROVIDER.set(provider).is_err() {
        return Err("traces were already set up in this process".into());
    }
    ENABLED.store(true, Ordering::Relaxed);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Sends the spans still buffered; call before the process exits.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let provider = provider.clone();
        // The exporter's client blocks: not on a runtime thread.
        let _ = std::thread::spawn(move || provider.force_flush()).join();
    }
}

/// One hop of an event's journey: the span (entered by nobody, closed when dropped) and the
/// `traceparent` to pass on.
pub struct Hop {
    pub span: tracing::Span,
    pub traceparent: Option<String>,
}

/// A span named `name` continuing the trace of `parent` (a W3C `traceparent`; a new trace when
/// `None` or unreadable). While traces are off: a disabled span and `parent` passed on as it is.
pub fn hop(name: &'static str, parent: Option<&str>) -> Hop {
    if !enabled() {
        return Hop {
            span: tracing::Span::none(),
            traceparent: parent.map(str::to_owned),
        };
    }
    let span = tracing::info_span!(
        "hop",
        otel.name = name,
        event_id = tracing::field::Empty,
        result = tracing::field::Empty
    );
    if let Some(parent) = parent {
        let carrier =
            std::collections::HashMap::from([("traceparent".to_owned(), parent.to_owned())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    let traceparent = traceparent_of(&span);
    Hop { span, traceparent }
}

/// The W3C `traceparent` of `span`, if it is being recorded.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_off_the_producers_traceparent_passes_unchanged() {
        assert!(!enabled());
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let hop = hop("test", Some(tp));
        assert!(hop.span.is_none());
        assert_eq!(hop.traceparent.as_deref(), Some(tp));
        assert_eq!(super::hop("test", None).traceparent, None);
    }
}
