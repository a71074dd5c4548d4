//! HTTP ingest against a real nats-server: every example lands with its headers and
//! unchanged bytes; each bad-input class gets its own error while valid siblings are stored;
//! whole-request errors; de-duplication by producer id; metrics.

mod common;

use auditstream_bus::{headers as h, topology::INGEST};
use auditstream_testkit::read_stream;
use common::*;

#[tokio::test]
async fn every_example_lands_on_its_subject_with_headers_and_unchanged_bytes() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let lines = example_lines();
    assert_eq!(lines.len(), 6, "one example per event type");

    let r = post(
        &s.gateway,
        EXAMPLES,
        &[
            ndjson(),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["accepted"], 6);
    assert_eq!(r.body["rejected"], 0);

    let stored = read_stream(&js, INGEST).await;
    assert_eq!(stored.len(), 6);
    for (line, msg) in lines.iter().zip(&stored) {
        let env: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| env[k].as_str().unwrap().to_owned();
        assert_eq!(
            msg.subject.as_str(),
            format!(
                "audit.ingest.{}.{}.{}",
                s("org_id"),
                s("workspace_id"),
                s("event_type")
            )
        );
        assert_eq!(
            msg.payload.as_ref(),
            line.as_bytes(),
            "body bytes unchanged"
        );
        assert_eq!(
            header(msg, h::MSG_ID),
            Some(h::ingest_msg_id(&s("org_id"), &s("id")).as_str())
        );
        assert_eq!(header(msg, h::EVENT_ID), Some(s("id").as_str()));
        assert_eq!(header(msg, h::ORG_ID), Some(s("org_id").as_str()));
        assert_eq!(
            header(msg, h::WORKSPACE_ID),
            Some(s("workspace_id").as_str())
        );
        assert_eq!(header(msg, h::EVENT_TYPE), Some(s("event_type").as_str()));
        assert_eq!(header(msg, h::OCCURRED_AT), Some(s("occurred_at").as_str()));
        assert_eq!(
            header(msg, h::TRACEPARENT),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        let received = header(msg, h::RECEIVED_AT).expect("received_at");
        time::OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    }
}

#[tokio::test]
async fn json_array_and_gzip_framings_and_duplicate_ids_are_stored_once() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let array = format!("[{}]", example_lines().join(","));

    let first = post(
        &s.gateway,
        array.clone(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(
        (
            first.status,
            first.body["accepted"].as_u64(),
            first.body["duplicates"].as_u64()
        ),
        (200, Some(6), Some(0))
    );

    // The same ids again, gzip-compressed: acknowledged, recognised as duplicates.
    let again = post(
        &s.gateway,
        gzip(array.as_bytes()),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["duplicates"], 6);
    assert!(
        again.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "duplicate")
    );

    let stored = read_stream(&js, INGEST).await;
    assert_eq!(stored.len(), 6, "same producer id twice → one message");
    for (line, msg) in example_lines().iter().zip(&stored) {
        assert_eq!(msg.payload.as_ref(), line.as_bytes());
    }
}

#[tokio::test]
async fn an_event_without_id_gets_a_uuid_v7_and_keeps_its_bytes() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let body = r#"{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00+02:00","org_id":"o1","workspace_id":"w1","data":{"status":200}}"#;
    let r = post(&s.gateway, body, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let stored = read_stream(&js, INGEST).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload.as_ref(), body.as_bytes());
    assert_eq!(header(&stored[0], h::EVENT_ID), Some(id.as_str()));
    assert_eq!(
        header(&stored[0], h::MSG_ID),
        Some(format!("o1.{id}").as_str())
    );
}

#[tokio::test]
async fn each_bad_input_class_gets_its_own_error_and_valid_siblings_are_stored() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let ok = |n: usize| {
        event(
            &format!("ok-{n}"),
            "job_status",
            r#"{"status":"succeeded"}"#,
        )
    };
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1024 * 1024));

    // (line, field, code) — every bad line sits between valid ones.
    let bad: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            br#"{"id":"m-1","event_type":"job_status","#.to_vec(),
            "",
            "malformed_json",
        ),
        (
            event("t-1", "job_status", "{}")
                .replace(r#""org_id":"org-acme""#, r#""org_id":42"#)
                .into(),
            "org_id",
            "wrong_type",
        ),
        (
            event("t-2", "job_status", "{}")
                .replace(r#","workspace_id":"ws-1""#, "")
                .into(),
            "workspace_id",
            "missing_field",
        ),
        (
            event("t-3", "job_statuses", "{}").into(),
            "event_type",
            "unknown_event_type",
        ),
        (
            event(
                "t-4",
                "user_activity",
                r#"{"category":"gardening","action":"stopped"}"#,
            )
            .into(),
            "data.category",
            "unknown_activity_category",
        ),
        (
            event(
                "t-5",
                "user_activity",
                r#"{"category":"recipe","action":"watered"}"#,
            )
            .into(),
            "data.action",
            "unknown_activity_action",
        ),
        (
            event("t-6", "job_status", "{}")
                .replace("ws-1", "ws.1")
                .into(),
            "workspace_id",
            "invalid_id",
        ),
        (
            event("t-7", "job_status", "{}")
                .replace("ws-1", "ws*")
                .into(),
            "workspace_id",
            "invalid_id",
        ),
        (
            event("t-8", "job_status", "{}")
                .replace("org-acme", "org>")
                .into(),
            "org_id",
            "invalid_id",
        ),
        (event("t 9", "job_status", "{}").into(), "id", "invalid_id"),
        (
            event(&"x".repeat(65), "job_status", "{}").into(),
            "id",
            "invalid_id",
        ),
        (
            event("t-10", "job_status", "{}")
                .replace("2026-11-21T10:15:02.120Z", "21/11/2026 10:15")
                .into(),
            "occurred_at",
            "invalid_timestamp",
        ),
        (
            event("t-11", "job_status", &format!(r#"{{"d":{deep}}}"#)).into(),
            "",
            "too_deep",
        ),
        (
            [
                event("t-12", "job_status", r#"{"s":"caf"#).as_bytes(),
                b"\xe9\"}}",
            ]
            .concat(),
            "",
            "invalid_utf8",
        ),
        (
            event("t-13", "job_status", &big).into(),
            "",
            "event_too_large",
        ),
    ];
    let mut body = Vec::new();
    let mut expected = Vec::new(); // index → Some((field, code)) for bad, None for ok
    for (i, (line, field, code)) in bad.iter().enumerate() {
        body.extend_from_slice(ok(i).as_bytes());
        body.push(b'\n');
        expected.push(None);
        body.extend_from_slice(line);
        body.push(b'\n');
        expected.push(Some((*field, *code)));
    }
    body.extend_from_slice(ok(99).as_bytes());
    expected.push(None);

    let r = post(&s.gateway, body, &[ndjson()]).await;
    assert_eq!(
        r.status, 207,
        "partial success is a 2xx with per-item results: {}",
        r.body
    );
    assert_eq!(r.body["accepted"], bad.len() + 1);
    assert_eq!(r.body["rejected"], bad.len());
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), expected.len());
    for (i, (result, want)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(result["index"], i);
        match want {
            None => assert_eq!(result["status"], "accepted", "{result}"),
            Some((field, code)) => {
                assert_eq!(result["status"], "rejected", "{result}");
                assert_eq!(result["error"]["code"], *code, "{result}");
                assert_eq!(result["error"]["field"], *field, "{result}");
                assert!(!result["error"]["message"].as_str().unwrap().is_empty());
            }
        }
    }
    // Spot-check that messages explain themselves.
    let msg = |i: usize| results[i]["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg(13).contains("contains '.'"), "{}", msg(13));
    assert!(msg(21).contains("65 characters"), "{}", msg(21));
    assert!(msg(29).contains("limits.max_event_bytes"), "{}", msg(29));

    let stored = ids(&read_stream(&js, INGEST).await);
    let mut want: Vec<String> = (0..bad.len()).map(|n| format!("ok-{n}")).collect();
    want.push("ok-99".into());
    let mut got = stored.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exactly the valid events are stored");
}

#[tokio::test]
async fn whole_request_errors_store_nothing() {
    let nats = auditstream_testkit::NatsServer::start();
    let mut config = auditstream_testkit::test_gateway_config(&nats.url());
    config.limits.max_request_bytes = 64 * 1024;
    config.limits.max_event_bytes = 32 * 1024;
    let gw = auditstream_testkit::GatewayHarness::start(config).await;
    let js = nats.jetstream().await;
    let one = event("w-1", "job_status", "{}");

    // Over the request limit, plain and as a gzip bomb.
    let huge = format!("{one}\n").repeat(1000);
    let r = post(&gw, huge.clone(), &[ndjson()]).await;
    assert_eq!(
        request_error(&r),
        (413, Some("request_too_large")),
        "{}",
        r.body
    );
    let r = post(
        &gw,
        gzip(huge.as_bytes()),
        &[ndjson(), ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(
        request_error(&r),
        (413, Some("request_too_large")),
        "{}",
        r.body
    );

    let r = post(
        &gw,
        b"\x1f\x8b\x08\x00garbage".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(request_error(&r), (400, Some("invalid_gzip")), "{}", r.body);

    let r = post(&gw, format!("[{one},"), &[]).await;
    assert_eq!(
        request_error(&r),
        (400, Some("malformed_request")),
        "{}",
        r.body
    );

    let r = post(&gw, one.clone(), &[("content-type", "text/csv")]).await;
    assert_eq!(request_error(&r), (415, Some("unsupported_content_type")));

    // Missing and wrong tokens.
    let r = post_as(&gw, None, one.clone(), &[]).await;
    assert_eq!(request_error(&r), (401, Some("unauthorized")));
    let r = post_as(&gw, Some("wrong-token-0123456789"), one.clone(), &[]).await;
    assert_eq!(request_error(&r), (401, Some("unauthorized")));
    assert_eq!(r.body["error"]["message"], "invalid bearer token");

    assert!(
        read_stream(&js, INGEST).await.is_empty(),
        "nothing from refused requests is stored"
    );

    // A request with only invalid events is a 400 with per-item results.
    let r = post(&gw, event("x.y", "job_status", "{}"), &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["results"][0]["error"]["code"], "invalid_id");
}

#[tokio::test]
async fn metrics_count_accepted_rejected_and_publish_latency() {
    let s = stack().await;
    post(
        &s.gateway,
        format!(
            "{}\n{}",
            event("a-1", "job_status", "{}"),
            event("a.2", "job_status", "{}")
        ),
        &[ndjson()],
    )
    .await;
    let r = post_as(&s.gateway, None, "{}", &[]).await;
    assert_eq!(r.status, 401);
    let text = http()
        .get(s.gateway.ops_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"auditstream_gateway_events_accepted_total{transport="http"} 1"#,
        r#"auditstream_gateway_events_rejected_total{transport="http",reason="invalid_id"} 1"#,
        r#"auditstream_gateway_requests_rejected_total{transport="http",reason="unauthorized"} 1"#,
        "auditstream_gateway_publish_duration_seconds_count 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(s.gateway.readyz().await, 200);
    let health = http()
        .get(s.gateway.ops_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// An envelope without an id (the gateway assigns one) for `org`/`workspace`.
fn unnamed(org: &str, workspace: &str, n: usize) -> String {
    format!(
        r#"{{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"{org}","workspace_id":"{workspace}","data":{{"n":{n}}}}}"#
    )
}

fn result_ids(r: &Reply) -> Vec<String> {
    r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_without_ids_travel_packed_per_organization_and_producer_ids_alone() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let lines = [
        unnamed("o1", "w1", 0),
        unnamed("o2", "w9", 1),
        unnamed("o1", "w2", 2),
        event("own-1", "api_platform", "{}"),
        unnamed("o1", "w1", 4),
        unnamed("o2", "w9", 5),
    ];
    let r = post(&s.gateway, lines.join("\n"), &[ndjson()]).await;
    assert_eq!((r.status, r.body["accepted"].as_u64()), (200, Some(6)));
    let ids = result_ids(&r);

    let stored = read_stream(&js, INGEST).await;
    let subjects: Vec<&str> = stored.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects.len(),
        3,
        "one pack per organization, the producer's id alone: {subjects:?}"
    );
    for (subject, at) in [
        ("audit.ingest.o1.pack", [0, 2, 4].as_slice()),
        ("audit.ingest.o2.pack", &[1, 5]),
    ] {
        let pack = stored
            .iter()
            .find(|m| m.subject.as_str() == subject)
            .expect(subject);
        assert_eq!(header(pack, auditstream_bus::pack::PACK), Some("1"));
        let entries = auditstream_bus::pack::unpack(&pack.payload).unwrap();
        assert_eq!(entries.len(), at.len(), "{subject}");
        for ((headers, body), &i) in entries.iter().zip(at) {
            let get = |name: &str| headers.get(name).map(|v| v.as_str());
            // Every event keeps its own id, headers and bytes inside the pack.
            assert_eq!(get(h::EVENT_ID), Some(ids[i].as_str()));
            let org = subject.split('.').nth(2).unwrap();
            assert_eq!(
                get(h::MSG_ID),
                Some(h::ingest_msg_id(org, &ids[i]).as_str())
            );
            assert_eq!(get(h::EVENT_TYPE), Some("api_platform"));
            assert!(get(h::RECEIVED_AT).is_some());
            assert_eq!(body.as_ref(), lines[i].as_bytes());
        }
    }
    let own = stored
        .iter()
        .find(|m| m.subject.as_str() == "audit.ingest.org-acme.ws-1.api_platform")
        .expect("the event with the producer's id, on its own subject");
    assert_eq!(header(own, h::MSG_ID), Some("org-acme.own-1"));
    assert_eq!(own.payload.as_ref(), lines[3].as_bytes());

    // Again: the producer's id is recognised; the others get new ids and are new events.
    let again = post(&s.gateway, lines.join("\n"), &[ndjson()]).await;
    assert_eq!(
        (again.status, again.body["duplicates"].as_u64()),
        (200, Some(1))
    );
    assert_eq!(again.body["results"][3]["status"], "duplicate");
    assert_eq!(read_stream(&js, INGEST).await.len(), 5);
}

#[tokio::test]
async fn packs_keep_to_their_limits_and_one_event_per_message_is_a_setting() {
    let nats = auditstream_testkit::NatsServer::start();
    let js = nats.jetstream().await;
    let body: Vec<String> = (0..5).map(|n| unnamed("o1", "w1", n)).collect();
    let body = body.join("\n");
    let mut sizes = Vec::new();
    for max_events in [2, 1] {
        let mut config = auditstream_testkit::test_gateway_config(&nats.url());
        config.pack.max_events = max_events;
        let gw = auditstream_testkit::GatewayHarness::start(config).await;
        let before = read_stream(&js, INGEST).await.len();
        let r = post(&gw, body.clone(), &[ndjson()]).await;
        assert_eq!((r.status, r.body["accepted"].as_u64()), (200, Some(5)));
        let stored = read_stream(&js, INGEST).await;
        sizes.push(
            stored[before..]
                .iter()
                .map(|m| match auditstream_bus::pack::is_pack(Some(&m.headers)) {
                    Ok(true) => auditstream_bus::pack::unpack(&m.payload).unwrap().len(),
                    _ => 1,
                })
                .collect::<Vec<_>>(),
        );
    }
    // 2 per pack: two packs and the last event alone; 1: every event alone.
    assert_eq!(sizes, [vec![2, 2, 1], vec![1, 1, 1, 1, 1]]);

    // A byte limit below one event's size sends every event alone too.
    let mut config = auditstream_testkit::test_gateway_config(&nats.url());
    config.pack.max_bytes = 100;
    let gw = auditstream_testkit::GatewayHarness::start(config).await;
    let before = read_stream(&js, INGEST).await.len();
    let r = post(&gw, body, &[ndjson()]).await;
    assert_eq!(r.status, 200);
    assert_eq!(read_stream(&js, INGEST).await.len() - before, 5);
}
