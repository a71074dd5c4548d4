//! Every metric the README documents is on its service's `/metrics` after traffic: the whole
//! stack (gateway, config service, router, sink-http) runs in-process and gets accepted,
//! duplicate and invalid events, an unauthorized request, an event no stream selects, one for
//! an unknown workspace, a refused event (DLQ) and a destination that breaks and recovers
//! (backlog, probes, replay). The README's metric tables are the list checked, so a metric
//! added to the docs but not exported (or renamed) fails here.

mod common;

use std::{net::SocketAddr, time::Duration};

use auditstream_proto::v1::HealthState;
use auditstream_testkit::Behavior;
use common::{ndjson, post, post_as, sink::*};

const README: &str = include_str!("../../README.md");

/// The metric names (labels dropped) in the README table under the line `heading`.
fn documented(heading: &str) -> Vec<String> {
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let table: Vec<&str> = README[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let mut names = Vec::new();
    for row in table {
        let first = row.split('|').nth(1).unwrap_or_default();
        for part in first.split(',') {
            let name = part.trim().trim_matches('`');
            let name = name.split('{').next().unwrap().trim_matches('`').trim();
            if name.starts_with("auditstream_") {
                names.push(name.to_owned());
            }
        }
    }
    assert!(names.len() >= 5, "{heading}: {names:?}");
    names
}

/// The value of `name` for `stream="<stream>"`, whatever the label order.
fn per_stream(text: &str, name: &str, stream: &str) -> Option<f64> {
    let label = format!("stream=\"{stream}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(ops: SocketAddr) -> String {
    reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every name has a sample line (`name`, `name{…}`, `name_bucket…` for histograms).
fn assert_exported(service: &str, text: &str, names: &[String]) {
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !samples.iter().any(|l| l.starts_with(n.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "{service}: documented but without samples: {missing:?}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_exported_after_traffic() {
    let mut stack = sink_stack(&[GOOD_TOKEN, BAD_TOKEN], |_| {}).await;
    for receiver in &stack.receivers {
        receiver.set_behavior(Behavior::All(vec![
            Behavior::RequireHeader {
                name: "authorization".into(),
                value: format!("Bearer {GOOD_TOKEN}"),
                otherwise: 403,
            },
            Behavior::RejectContaining {
                needle: "poison-pill".into(),
                status: 400,
            },
        ]));
    }
    // Accepted (one refused by the destination), broken (stream 1's token is wrong).
    let good = stack.send(0, "m", 20, Some(3)).await;
    let broken = stack.send(1, "b", 20, None).await;
    // A duplicate, an invalid event, an unauthorized request.
    let (again, _) = events(0, "m", 1, None);
    assert_eq!(post(&stack.gateway, again, &[ndjson()]).await.status, 200);
    let invalid = post(&stack.gateway, r#"{"event_type":"nope"}"#, &[]).await;
    assert_ne!(invalid.status, 200);
    let unauthorized = post_as(&stack.gateway, None, "{}", &[]).await;
    assert_eq!(unauthorized.status, 401);
    // No stream selects job_status; nobody knows workspace ws-unknown.
    let mut lines = Vec::new();
    for (id, event_type, workspace) in [
        ("m-filtered", "job_status", "ws-0"),
        ("m-unknown", "user_activity", "ws-unknown"),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&events(0, "x", 1, None).0).unwrap();
        v["id"] = id.into();
        v["event_type"] = event_type.into();
        v["workspace_id"] = workspace.into();
        if event_type == "job_status" {
            v["data"] = serde_json::json!({"id": "j-1", "recipe_id": 1, "status": "succeeded"});
        }
        lines.push(v.to_string());
    }
    let reply = post(&stack.gateway, lines.join("\n"), &[ndjson()]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    let delivered: Vec<String> = good
        .iter()
        .filter(|i| !i.ends_with("-3"))
        .cloned()
        .collect();
    stack
        .wait_delivered(0, &delivered, Duration::from_secs(60))
        .await;
    stack
        .wait_status("s-0", "dead letter", |s| s.dead_lettered_events == 1)
        .await;
    stack
        .wait_status("s-1", "broken with a backlog", |s| {
            s.state() == HealthState::Broken && s.backlog_depth >= 20
        })
        .await;
    let sink_ops = stack.sink.as_ref().unwrap().ops;
    // While broken: the state gauge says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while per_stream(
        &scrape(sink_ops).await,
        "auditstream_sink_stream_state",
        "s-1",
    ) != Some(3.0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            scrape(sink_ops).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.smtp.wait_for(1, Duration::from_secs(60)).await;
    // Fixed: probes, replay.
    stack.set_token("c-1", GOOD_TOKEN).await;
    stack
        .wait_delivered(1, &broken, Duration::from_secs(60))
        .await;
    stack
        .wait_status("s-1", "healthy", |s| {
            s.state() == HealthState::Healthy && s.backlog_depth == 0
        })
        .await;

    assert_exported(
        "gateway",
        &scrape(stack.gateway.ops).await,
        &documented("Gateway metrics:"),
    );
    let router = stack.router.as_ref().unwrap().ops;
    assert_exported(
        "router",
        &scrape(router).await,
        &documented("### Router metrics"),
    );
    assert_exported(
        "config service",
        &scrape(stack.config.ops).await,
        &documented("### Config-service metrics"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let sink_text = loop {
        // The backlog gauges come with the next backlog scan.
        let text = scrape(sink_ops).await;
        if per_stream(&text, "auditstream_sink_stream_state", "s-1") == Some(0.0)
            || tokio::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_exported("sink-http", &sink_text, &documented("### Sink metrics"));
    // Per-stream latency for the delivering streams.
    assert_eq!(
        per_stream(&sink_text, "auditstream_sink_stream_state", "s-1"),
        Some(0.0),
        "healthy again"
    );
    assert!(
        per_stream(&sink_text, "auditstream_sink_latency_seconds_count", "s-0")
            .is_some_and(|n| n >= 19.0),
        "{sink_text}"
    );
}
