//! One event's trace across the hops. The gateway runs in this test process, the router and
//! sink-http as their real binaries; all three export spans to a local OTLP/HTTP receiver
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`). The W3C trace context travels in the NATS headers, so the
//! event's spans in the three services share the producer's trace id and form one chain:
//! gateway.ingest → router.route → sink.deliver (around the destination call).

mod common;

use std::{
    process::{Child, Command},
    time::Duration,
};

use auditstream_telemetry::logging::{LogFormat, init_with_traces};
use auditstream_testkit::OtlpReceiver;
use common::{ndjson, post, sink::*};

fn spawn(bin: &str, stack: &SinkStack, ops: u16, otlp: &str, log: &std::path::Path) -> Child {
    common::data_plane(bin, &stack.nats.url(), &stack.config.url(), ops)
        .env("AUDITSTREAM_BATCHING__MAX_AGE", "100ms")
        .env("AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP", "true")
        .env("AUDITSTREAM_SINK__ALLOWED_NETWORKS", "127.0.0.0/8")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn terminate(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_across_gateway_router_and_sink() {
    let otlp = OtlpReceiver::start().await;
    // This process plays the gateway.
    init_with_traces(
        LogFormat::Text,
        "info,async_nats=warn,sqlx=warn",
        "auditstream-gateway",
        Some(&otlp.endpoint()),
    )
    .unwrap();
    assert!(auditstream_telemetry::traces::enabled());
    let mut stack = stack_without_sink(&[GOOD_TOKEN]).await;
    // The router runs as its own process, with its own service name.
    stack.router.take().unwrap().stop().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router_ops, sink_ops) = (common::free_port(), common::free_port());
    let router = spawn(
        "auditstream-router",
        &stack,
        router_ops,
        &otlp.endpoint(),
        &dir.path().join("router.log"),
    );
    let sink = spawn(
        "auditstream-sink-http",
        &stack,
        sink_ops,
        &otlp.endpoint(),
        &dir.path().join("sink.log"),
    );
    wait_sink_ready(router_ops).await;
    wait_sink_ready(sink_ops).await;

    // A producer that traces sends its own trace context.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (body, ids) = events(0, "traced", 1, None);
    let reply = post(
        &stack.gateway,
        body,
        &[ndjson(), ("traceparent", traceparent.as_str())],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    stack.wait_delivered(0, &ids, Duration::from_secs(60)).await;
    // SIGTERM: both exit 0 and flush their spans.
    terminate(router);
    terminate(sink);
    auditstream_telemetry::traces::flush();

    let event_id = ids[0].as_str();
    let spans = otlp
        .wait_for(
            "the event's three spans",
            Duration::from_secs(30),
            |spans| {
                ["gateway.ingest", "router.route", "sink.deliver"]
                    .iter()
                    .all(|name| {
                        spans
                            .iter()
                            .any(|s| s.name == *name && s.trace_id == trace_id)
                    })
            },
        )
        .await;
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.trace_id == trace_id)
            .unwrap()
            .clone()
    };
    let (gateway, router, sink) = (
        find("gateway.ingest"),
        find("router.route"),
        find("sink.deliver"),
    );
    assert_eq!(gateway.service, "auditstream-gateway");
    assert_eq!(router.service, "auditstream-router");
    assert_eq!(sink.service, "auditstream-sink-http");
    // One chain: the producer's span → gateway → router → sink.
    assert_eq!(gateway.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(router.parent_span_id, gateway.span_id, "{spans:#?}");
    assert_eq!(sink.parent_span_id, router.span_id, "{spans:#?}");
    assert_eq!(router.attribute("event_id"), Some(event_id));
    assert_eq!(sink.attribute("event_id"), Some(event_id));
    assert_eq!(sink.attribute("result"), Some("delivered"));
}
