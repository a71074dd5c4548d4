//! Each preset against a real HTTP receiver on loopback: what the service's documentation
//! requires of a request (headers, auth form, framing, query, limits), how answers are
//! classified, probes, the connect-time SSRF guard and TLS verification.

use std::{collections::HashSet, sync::Arc, time::Duration};

use auditstream_proto::v1::{self as pb, http_credentials::Auth};
use auditstream_sink_core::{
    classify::Class,
    deliver::{Answer, Destination, deliver},
    event::Event,
    sink::Sink,
};
use auditstream_sink_http::{HttpDestination, HttpSink, HttpSinkConfig};
use auditstream_testkit::{Behavior, HttpReceiver, Recorded};

fn loopback_config() -> HttpSinkConfig {
    HttpSinkConfig {
        allow_insecure_http: true,
        allowed_networks: vec!["127.0.0.0/8".into()],
        ..HttpSinkConfig::default()
    }
}

fn sink() -> HttpSink {
    HttpSink::new(loopback_config()).unwrap()
}

struct Dest<'a> {
    url: String,
    preset: pb::HttpPreset,
    headers: &'a [(&'a str, &'a str)],
    gzip: bool,
    auth: Option<Auth>,
}

impl<'a> Dest<'a> {
    fn new(url: String, preset: pb::HttpPreset) -> Self {
        Dest {
            url,
            preset,
            headers: &[],
            gzip: false,
            auth: None,
        }
    }
    fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }
    fn gzip(mut self) -> Self {
        self.gzip = true;
        self
    }
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }
    fn protos(&self) -> (pb::Destination, pb::Connection) {
        let destination = pb::Destination {
            connection_id: "c-1".into(),
            target: Some(pb::destination::Target::Http(pb::HttpTarget {
                url: self.url.clone(),
                preset: self.preset as i32,
                headers: self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                compression: if self.gzip {
                    pb::Compression::Gzip as i32
                } else {
                    pb::Compression::Unspecified as i32
                },
            })),
        };
        let connection = pb::Connection {
            id: "c-1".into(),
            credentials: Some(pb::connection::Credentials::Http(pb::HttpCredentials {
                auth: self.auth.clone(),
                // Bound to the receiver the test sends to.
                origin: auditstream_model::destination::parse_http_url("u", &self.url, true)
                    .map(|u| auditstream_model::binding::origin(&u))
                    .unwrap_or_default(),
                headers: Default::default(),
            })),
            ..Default::default()
        };
        (destination, connection)
    }
    fn build_with(&self, sink: &HttpSink) -> HttpDestination {
        let (destination, connection) = self.protos();
        sink.build(&destination, &connection)
            .unwrap_or_else(|a| panic!("build: {a:?}"))
    }
    fn build(&self) -> HttpDestination {
        self.build_with(&sink())
    }
}

fn bearer(token: &str) -> Auth {
    Auth::Bearer(pb::HttpBearerAuth {
        token: token.into(),
    })
}

fn header_auth(name: &str, value: &str) -> Auth {
    Auth::Header(pb::HttpHeaderAuth {
        name: name.into(),
        value: value.into(),
    })
}

fn event(id: &str) -> Event {
    let mut e = Event::new(
        id,
        format!(
            r#"{{"id":"{id}","event_type":"user_activity","occurred_at":"2026-03-01T12:00:00.250Z","data":{{"action":"login"}}}}"#
        ),
    );
    e.event_type = "user_activity".into();
    e.occurred_at = "2026-03-01T12:00:00.250Z".into();
    e
}

fn events(prefix: &str, n: usize) -> Vec<Event> {
    (0..n).map(|i| event(&format!("{prefix}-{i}"))).collect()
}

fn body_of(e: &Event) -> String {
    String::from_utf8(e.body.to_vec()).unwrap()
}

fn only(receiver: &HttpReceiver) -> Recorded {
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    requests.into_iter().next().unwrap()
}

fn delivered(answer: &Answer) {
    assert_eq!(answer.class, Class::Delivered, "{answer:?}");
}

// ---------------------------------------------------------------------------------------------
// Framing, headers, auth per preset
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn generic_sends_a_json_array_with_bearer_auth_and_extra_headers() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(receiver.url("/ingest"), pb::HttpPreset::Unspecified)
        .headers(&[
            ("X-Team", "security"),
            ("auditstream-framing", "json_array"),
        ])
        .auth(bearer("s3cret"))
        .build();
    let batch = events("g", 3);
    delivered(&dest.send(&batch).await);

    let r = only(&receiver);
    assert_eq!(
        (r.method.as_str(), r.path_and_query.as_str()),
        ("POST", "/ingest")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(r.header("x-team"), Some("security"));
    assert_eq!(
        r.header("auditstream-framing"),
        None,
        "pseudo-setting not sent"
    );
    assert_eq!(r.header("content-encoding"), None);
    assert!(
        r.header("user-agent")
            .unwrap()
            .starts_with("auditstream-sink-http/")
    );
    let expected = format!(
        "[{},{},{}]",
        body_of(&batch[0]),
        body_of(&batch[1]),
        body_of(&batch[2])
    );
    assert_eq!(r.body_text(), expected, "bodies spliced as they are");
    assert_eq!(r.event_ids, ["g-0", "g-1", "g-2"]);
}

#[tokio::test]
async fn generic_ndjson_with_gzip_and_basic_auth() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(receiver.url("/bulk"), pb::HttpPreset::Generic)
        .headers(&[("AuditStream-Framing", "ndjson")])
        .gzip()
        .auth(Auth::Basic(pb::HttpBasicAuth {
            username: "collector".into(),
            password: "pa55".into(),
        }))
        .build();
    let batch = events("n", 50);
    delivered(&dest.send(&batch).await);

    let r = only(&receiver);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // base64("collector:pa55")
    assert_eq!(
        r.header("authorization"),
        Some("Basic Y29sbGVjdG9yOnBhNTU=")
    );
    let expected: String = batch.iter().map(|e| body_of(e) + "\n").collect();
    assert_eq!(r.body_text(), expected);
    assert!(
        r.raw_len < r.body.len() / 2,
        "compressed on the wire: {}",
        r.raw_len
    );
    assert_eq!(r.event_ids.len(), 50);
}

#[tokio::test]
async fn sumo_logic_gets_lines_and_its_metadata_headers() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(
        receiver.url("/receiver/v1/http/ZaVnC4dhaV1-secret-code"),
        pb::HttpPreset::SumoLogic,
    )
    .headers(&[
        ("X-Sumo-Category", "prod/auditstream"),
        ("X-Sumo-Name", "audit"),
        ("X-Sumo-Host", "eu-1"),
    ])
    .build();
    let batch = events("s", 2);
    delivered(&dest.send(&batch).await);

    let r = only(&receiver);
    assert_eq!(
        r.path_and_query,
        "/receiver/v1/http/ZaVnC4dhaV1-secret-code"
    );
    // Not a metrics content type: Sumo ingests the body as log lines.
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-sumo-category"), Some("prod/auditstream"));
    assert_eq!(r.header("x-sumo-name"), Some("audit"));
    assert_eq!(r.header("x-sumo-host"), Some("eu-1"));
    assert_eq!(
        r.header("authorization"),
        None,
        "the URL carries Sumo's credentials"
    );
    assert_eq!(
        r.body_text(),
        format!("{}\n{}\n", body_of(&batch[0]), body_of(&batch[1]))
    );
    assert_eq!(
        dest.caps().max_bytes + dest.caps().max_events,
        1_000_000,
        "1 MB per request, newlines included"
    );
}

#[tokio::test]
async fn datadog_gets_an_api_key_header_query_tags_and_a_json_array() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(receiver.url("/api/v2/logs"), pb::HttpPreset::Datadog)
        .headers(&[
            ("dd-source", "auditstream"),
            ("dd-service", "workato-audit"),
            ("dd-tags", "env:prod,team:sec"),
        ])
        .auth(header_auth("DD-API-KEY", "0123abcd"))
        .gzip()
        .build();
    let batch = events("d", 2);
    delivered(&dest.send(&batch).await);

    let r = only(&receiver);
    assert_eq!(
        r.path_and_query,
        "/api/v2/logs?ddsource=auditstream&service=workato-audit&ddtags=env%3Aprod%2Cteam%3Asec"
    );
    assert_eq!(r.header("dd-api-key"), Some("0123abcd"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    for pseudo in ["dd-source", "dd-service", "dd-tags"] {
        assert_eq!(r.header(pseudo), None, "{pseudo} is not sent as a header");
    }
    assert_eq!(
        r.body_text(),
        format!("[{},{}]", body_of(&batch[0]), body_of(&batch[1]))
    );

    // A bearer token is taken as the API key.
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(receiver.url("/api/v2/logs"), pb::HttpPreset::Datadog)
        .auth(bearer("key-as-bearer"))
        .build();
    delivered(&dest.send(&events("b", 1)).await);
    let r = only(&receiver);
    assert_eq!(r.header("dd-api-key"), Some("key-as-bearer"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.path_and_query,
        "/api/v2/logs?ddsource=auditstream&service=auditstream"
    );
}

#[tokio::test]
async fn datadog_requests_stay_within_1000_entries_and_5_mb() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(receiver.url("/api/v2/logs"), pb::HttpPreset::Datadog)
        .auth(header_auth("DD-API-KEY", "k"))
        .build();
    // Many small events: the entry limit cuts.
    let small = events("small", 2500);
    let outcome = deliver(&dest, &small).await;
    assert_eq!(outcome.delivered.len(), 2500, "{:?}", outcome.stopped_by);
    // Large events (~6 KB): the byte limit cuts.
    let large: Vec<Event> = (0..1200)
        .map(|i| {
            let id = format!("large-{i}");
            let pad = "x".repeat(6000);
            let mut e = Event::new(&id, format!(r#"{{"id":"{id}","pad":"{pad}"}}"#));
            e.event_type = "log_event".into();
            e
        })
        .collect();
    let outcome = deliver(&dest, &large).await;
    assert_eq!(outcome.delivered.len(), 1200, "{:?}", outcome.stopped_by);

    let requests = receiver.requests();
    assert!(requests.len() >= 3 + 2, "{} requests", requests.len());
    for r in &requests {
        assert!(r.event_ids.len() <= 1000, "{} entries", r.event_ids.len());
        assert!(r.body.len() <= 5_000_000, "{} bytes", r.body.len());
        assert_eq!(r.status, 200);
    }
    assert!(
        requests.iter().any(|r| r.body.len() > 4_900_000),
        "large events fill requests close to the limit"
    );
    let want: HashSet<String> = small
        .iter()
        .chain(&large)
        .map(|e| e.event_id.clone())
        .collect();
    receiver.wait_for_ids(&want, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn splunk_hec_wraps_events_and_authenticates_with_splunk_token() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(
        receiver.url("/services/collector/event"),
        pb::HttpPreset::SplunkHec,
    )
    .headers(&[("splunk-index", "security"), ("X-Request-Source", "as")])
    .auth(bearer("11111111-2222-3333-4444-555555555555"))
    .build();
    let mut batch = events("sp", 2);
    batch[1].event_type = "job_status".into();
    delivered(&dest.send(&batch).await);

    let r = only(&receiver);
    assert_eq!(
        r.header("authorization"),
        Some("Splunk 11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("splunk-index"), None);
    assert_eq!(r.header("x-request-source"), Some("as"));
    assert_eq!(
        r.body_text(),
        format!(
            concat!(
                r#"{{"time":1772366400.250,"event":{},"sourcetype":"auditstream:user_activity","index":"security"}}"#,
                r#"{{"time":1772366400.250,"event":{},"sourcetype":"auditstream:job_status","index":"security"}}"#
            ),
            body_of(&batch[0]),
            body_of(&batch[1])
        )
    );
    assert_eq!(r.event_ids, ["sp-0", "sp-1"]);
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn answers_are_classified_with_details_and_hints() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(receiver.url("/in"), pb::HttpPreset::Generic)
        .auth(bearer("tok-should-never-show"))
        .build();
    let batch = events("a", 1);

    receiver.set_behavior(Behavior::Status {
        status: 400,
        retry_after: None,
        body: r#"{"error":"field data.action is not allowed"}"#.into(),
    });
    let a = dest.send(&batch).await;
    assert_eq!(a.class, Class::Rejected);
    assert_eq!(
        a.detail,
        r#"HTTP 400 Bad Request: {"error":"field data.action is not allowed"}"#
    );
    assert!(
        a.hint
            .starts_with("the endpoint rejected this event: HTTP 400"),
        "{a:?}"
    );

    receiver.set_behavior(Behavior::Status {
        status: 403,
        retry_after: None,
        body: "forbidden".into(),
    });
    let a = dest.send(&batch).await;
    assert_eq!(a.class, Class::Configuration);
    assert_eq!(a.detail, "HTTP 403 Forbidden: forbidden");
    assert!(
        a.hint.contains("refused the credentials (HTTP 403)")
            && a.hint.contains("bearer token")
            && a.hint.contains("127.0.0.1"),
        "{a:?}"
    );

    receiver.set_behavior(Behavior::Status {
        status: 503,
        retry_after: Some("5".into()),
        body: String::new(),
    });
    let a = dest.send(&batch).await;
    assert_eq!(
        a.class,
        Class::Transient {
            retry_after: Some(Duration::from_secs(5))
        }
    );
    assert_eq!(a.detail, "HTTP 503 Service Unavailable");

    receiver.set_behavior(Behavior::Status {
        status: 413,
        retry_after: None,
        body: String::new(),
    });
    assert_eq!(dest.send(&batch).await.class, Class::TooLarge);

    receiver.set_behavior(Behavior::Status {
        status: 302,
        retry_after: None,
        body: String::new(),
    });
    let a = dest.send(&batch).await;
    assert_eq!(a.class, Class::Configuration);
    assert!(a.hint.contains("redirects are not followed"), "{a:?}");

    for r in receiver.requests() {
        assert_eq!(r.path_and_query, "/in", "a redirect is never followed");
    }
    let answers = [&a.detail, &a.hint].map(|s| s.to_string());
    assert!(answers.iter().all(|s| !s.contains("tok-should-never-show")));
}

#[tokio::test]
async fn not_found_hints_name_the_documented_paths() {
    let receiver = HttpReceiver::start().await;
    receiver.set_behavior(Behavior::Status {
        status: 404,
        retry_after: None,
        body: String::new(),
    });
    for (preset, path) in [
        (pb::HttpPreset::Datadog, "/api/v2/logs"),
        (pb::HttpPreset::SplunkHec, "/services/collector/event"),
        (pb::HttpPreset::SumoLogic, "copy the source's URL again"),
    ] {
        let dest = Dest::new(receiver.url("/wrong"), preset)
            .auth(bearer("t"))
            .build();
        let a = dest.send(&events("nf", 1)).await;
        assert_eq!(a.class, Class::Configuration);
        assert!(a.hint.contains(path), "{preset:?}: {a:?}");
    }
}

#[tokio::test]
async fn splunk_token_and_index_problems_are_configuration_errors() {
    let receiver = HttpReceiver::start().await;
    let dest = Dest::new(
        receiver.url("/services/collector/event"),
        pb::HttpPreset::SplunkHec,
    )
    .headers(&[("splunk-index", "nope")])
    .auth(bearer("hec-token"))
    .build();

    receiver.set_behavior(Behavior::Status {
        status: 400,
        retry_after: None,
        body: r#"{"text":"Incorrect index","code":7,"invalid-event-number":0}"#.into(),
    });
    let a = dest.send(&events("ix", 2)).await;
    assert_eq!(a.class, Class::Configuration, "not every event to the DLQ");
    assert!(a.hint.contains("index"), "{a:?}");

    receiver.set_behavior(Behavior::Status {
        status: 403,
        retry_after: None,
        body: r#"{"text":"Invalid token","code":4}"#.into(),
    });
    let a = dest.send(&events("tk", 1)).await;
    assert_eq!(a.class, Class::Configuration);
    assert!(a.hint.contains("HEC token"), "{a:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_transient_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dest = Dest::new(
        format!("http://127.0.0.1:{port}/in"),
        pb::HttpPreset::Generic,
    )
    .build();
    let a = dest.send(&events("c", 1)).await;
    assert_eq!(a.class, Class::Transient { retry_after: None }, "{a:?}");
    assert!(a.detail.contains("could not connect to 127.0.0.1"), "{a:?}");
}

#[tokio::test]
async fn a_slow_endpoint_times_out_as_transient() {
    let receiver = HttpReceiver::start().await;
    receiver.set_behavior(Behavior::Hold);
    let sink = HttpSink::new(HttpSinkConfig {
        request_timeout: Duration::from_millis(300),
        ..loopback_config()
    })
    .unwrap();
    let dest = Dest::new(receiver.url("/in"), pb::HttpPreset::Generic).build_with(&sink);
    let a = dest.send(&events("slow", 1)).await;
    assert_eq!(a.class, Class::Transient { retry_after: None }, "{a:?}");
    assert!(a.detail.contains("no answer from 127.0.0.1"), "{a:?}");
    receiver.release();
}

// ---------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn probes_deliver_nothing_and_check_credentials() {
    let receiver = HttpReceiver::start().await;
    type Headers = &'static [(&'static str, &'static str)];
    let cases: [(pb::HttpPreset, Headers, &str); 5] = [
        (pb::HttpPreset::Generic, &[], "[]"),
        (
            pb::HttpPreset::Generic,
            &[("auditstream-framing", "ndjson")],
            "",
        ),
        (pb::HttpPreset::SumoLogic, &[], ""),
        (pb::HttpPreset::Datadog, &[], "[]"),
        (pb::HttpPreset::SplunkHec, &[], ""),
    ];
    for (preset, headers, body) in cases {
        let dest = Dest::new(receiver.url("/probe"), preset)
            .headers(headers)
            .auth(bearer("t"))
            .build();
        let a = dest.probe().await;
        assert_eq!(a.class, Class::Delivered, "{preset:?}: {a:?}");
        let r = receiver.requests().pop().unwrap();
        assert_eq!(r.body_text(), body, "{preset:?}");
        assert!(r.event_ids.is_empty());
    }
    assert!(receiver.accepted_ids().is_empty());

    // Splunk answers an empty body with 400 "No data" (code 5) once the token is accepted.
    let splunk = Dest::new(
        receiver.url("/services/collector/event"),
        pb::HttpPreset::SplunkHec,
    )
    .auth(bearer("hec"))
    .build();
    receiver.set_behavior(Behavior::Status {
        status: 400,
        retry_after: None,
        body: r#"{"text":"No data","code":5}"#.into(),
    });
    let a = splunk.probe().await;
    assert_eq!(a.class, Class::Delivered, "{a:?}");
    assert!(a.detail.contains("token was accepted"), "{a:?}");
    // ...but a 400 "No data" to events is not a delivery.
    assert_eq!(splunk.send(&events("x", 1)).await.class, Class::Rejected);

    receiver.set_behavior(Behavior::Status {
        status: 403,
        retry_after: None,
        body: r#"{"text":"Invalid token","code":4}"#.into(),
    });
    assert_eq!(splunk.probe().await.class, Class::Configuration);

    receiver.set_behavior(Behavior::RequireHeader {
        name: "dd-api-key".into(),
        value: "good".into(),
        otherwise: 403,
    });
    let datadog = |key: &str| {
        Dest::new(receiver.url("/api/v2/logs"), pb::HttpPreset::Datadog)
            .auth(header_auth("DD-API-KEY", key))
            .build()
    };
    let a = datadog("bad").probe().await;
    assert_eq!(a.class, Class::Configuration);
    assert!(a.hint.contains("API key (DD-API-KEY)"), "{a:?}");
    assert_eq!(datadog("good").probe().await.class, Class::Delivered);
}

// ---------------------------------------------------------------------------------------------
// Network safety
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loopback_destinations_are_refused_without_an_allow_list() {
    let receiver = HttpReceiver::start().await;
    let sink = HttpSink::new(HttpSinkConfig {
        allow_insecure_http: true,
        ..HttpSinkConfig::default()
    })
    .unwrap();
    for url in [
        receiver.url("/in"),
        format!("http://localhost:{}/in", receiver.addr().port()),
    ] {
        let dest = Dest::new(url.clone(), pb::HttpPreset::Generic).build_with(&sink);
        let a = dest.send(&events("ssrf", 1)).await;
        assert_eq!(a.class, Class::Configuration, "{url}: {a:?}");
        assert!(a.detail.contains("loopback"), "{url}: {a:?}");
        assert!(a.hint.contains("allow-list"), "{url}: {a:?}");
        assert_eq!(dest.probe().await.class, Class::Configuration);
    }
    assert!(
        receiver.requests().is_empty(),
        "no request reached the receiver"
    );
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let receiver = HttpReceiver::start().await;
    let sink = HttpSink::new(HttpSinkConfig {
        allowed_networks: vec!["127.0.0.0/8".into()],
        ..HttpSinkConfig::default()
    })
    .unwrap();
    let (destination, connection) =
        Dest::new(receiver.url("/in"), pb::HttpPreset::Generic).protos();
    let a = sink.build(&destination, &connection).unwrap_err();
    assert_eq!(a.class, Class::Configuration);
    assert!(a.detail.contains("http"), "{a:?}");
    assert!(!a.hint.is_empty());
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A private CA and a certificate it issued for 127.0.0.1 and localhost (EC P-256, valid
/// 2020-2120), generated with openssl for these tests.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBcDCCARagAwIBAgICEAAwCgYIKoZIzj0EAwIwHjEcMBoGA1UEAwwTQXVkaXRz
dHJlYW0gVGVzdCBDQTAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFow
HjEcMBoGA1UEAwwTQXVkaXRzdHJlYW0gVGVzdCBDQTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABJoQsEYgcO3BOlaXULS5wR2DQte+MGYIAhyOauxEk0pcNdbP2XNA
3z6iJrRwPNvuoE6tlF6dCO8e+TO6AysVoOCjQjBAMA8GA1UdEwEB/wQFMAMBAf8w
DgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBT6mOIofcPlxq5r0+6YiJYUJ5qMTTAK
BggqhkjOPQQDAgNIADBFAiBHNNHmVzlpuyPqFvtydh/Gw1Qw5HZx1OSfbnXuG3vn
/AIhANTsLxYe/JAZCqescTDi8QRHPAmQPiFTYZ/A8pJ+c2S/
-----END CERTIFICATE-----
";
const TEST_LEAF: &str = "-----BEGIN CERTIFICATE-----
MIIBuDCCAV2gAwIBAgICEAEwCgYIKoZIzj0EAwIwHjEcMBoGA1UEAwwTQXVkaXRz
dHJlYW0gVGVzdCBDQTAgFw0yMDAxMDEwMDAwMDBaGA8yMTIwMDEwMTAwMDAwMFow
FDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
D6MtWitpAjf+iVJQr1qy6cq9H6M4Wm/5+zrhpCUl0fkL8UFcuEzHm4mN0lRIhLc5
vkPE+vgtHNKWcg7/Vzu/lqOBkjCBjzAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQE
AwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAaBgNVHREEEzARhwR/AAABgglsb2Nh
bGhvc3QwHwYDVR0jBBgwFoAU+pjiKH3D5caua9PumIiWFCeajE0wHQYDVR0OBBYE
FOiblV1GPYNXBGpSiZoUdV8L6Y7BMAoGCCqGSM49BAMCA0kAMEYCIQDc596FFhc2
zxsKCBsnTJzbVaq2G8VV+8YJIL8ncUqMgwIhAIAE/xTlUX5hIyF6FjJhS21xsDt8
ygpRGYeKUQ7BbU6F
-----END CERTIFICATE-----
";
const TEST_LEAF_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgR7lpZSy/odq2RVU1
grt0aRIuqYOi6ydz7uGdHnx+f6uhRANCAAQPoy1aK2kCN/6JUlCvWrLpyr0fozha
b/n7OuGkJSXR+QvxQVy4TMebiY3SVEiEtzm+Q8T6+C0c0pZyDv9XO7+W
-----END PRIVATE KEY-----
";

/// A minimal HTTPS server: answers every request 200 and counts the bodies it got.
async fn https_server() -> (u16, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cert = CertificateDer::from_pem_slice(TEST_LEAF.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(TEST_LEAF_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            seen.lock().unwrap().push(data[end + 4..].to_vec());
                            let _ = tls
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                                )
                                .await;
                            let _ = tls.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, bodies)
}

#[tokio::test]
async fn tls_certificates_are_verified_and_a_private_ca_can_be_trusted() {
    let (port, bodies) = https_server().await;
    let url = format!("https://127.0.0.1:{port}/in");
    let https_only = HttpSinkConfig {
        allowed_networks: vec!["127.0.0.0/8".into()],
        ..HttpSinkConfig::default()
    };

    // Not trusted: the system roots do not know the test CA.
    let sink = HttpSink::new(https_only.clone()).unwrap();
    let dest = Dest::new(url.clone(), pb::HttpPreset::Generic).build_with(&sink);
    let a = dest.send(&events("tls", 1)).await;
    assert_eq!(a.class, Class::Configuration, "{a:?}");
    assert!(a.detail.contains("certificate"), "{a:?}");
    assert!(a.hint.contains("extra_ca_file"), "{a:?}");
    assert!(bodies.lock().unwrap().is_empty());

    // Trusted through extra_ca_file.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let sink = HttpSink::new(HttpSinkConfig {
        extra_ca_file: Some(ca),
        ..https_only
    })
    .unwrap();
    let dest = Dest::new(url, pb::HttpPreset::Generic).build_with(&sink);
    let batch = events("tls", 2);
    delivered(&dest.send(&batch).await);
    assert_eq!(
        bodies.lock().unwrap().clone(),
        [format!("[{},{}]", body_of(&batch[0]), body_of(&batch[1])).into_bytes()]
    );
}
