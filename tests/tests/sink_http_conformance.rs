//! sink-http passes sink-core's conformance suite against a local HTTP receiver.

mod common;

use std::sync::Mutex;

use auditstream_proto::v1::{self as pb, destination::Target};
use auditstream_sink_http::{HttpSink, HttpSinkConfig};
use auditstream_testkit::{Behavior, HttpReceiver, conformance};
use common::sink::{BAD_TOKEN, GOOD_TOKEN, http_connection, loopback_http};

/// The receiver accepts only [`GOOD_TOKEN`], refuses the event carrying the poison for
/// good (400), and answers 503 while "unavailable".
struct Receiver {
    receiver: HttpReceiver,
    unavailable: Mutex<bool>,
}

const POISON: &str = "poison-pill";

impl Receiver {
    fn apply(&self) {
        let behavior = if *self.unavailable.lock().unwrap() {
            Behavior::Status {
                status: 503,
                retry_after: None,
                body: "maintenance".into(),
            }
        } else {
            Behavior::All(vec![
                Behavior::RequireHeader {
                    name: "authorization".into(),
                    value: format!("Bearer {GOOD_TOKEN}"),
                    otherwise: 403,
                },
                Behavior::RejectContaining {
                    needle: POISON.into(),
                    status: 400,
                },
            ])
        };
        self.receiver.set_behavior(behavior);
    }
}

impl conformance::StandIn for Receiver {
    type Sink = HttpSink;
    type Config = HttpSinkConfig;

    fn config(&self) -> HttpSinkConfig {
        loopback_http()
    }

    fn build(&self, config: &HttpSinkConfig) -> HttpSink {
        HttpSink::new(config.clone()).unwrap()
    }

    fn credentials(&self, valid: bool) -> pb::connection::Credentials {
        let token = if valid { GOOD_TOKEN } else { BAD_TOKEN };
        http_connection("unused", "unused", token, &self.receiver.url("/"))
            .credentials
            .unwrap()
    }

    async fn target(&self, stream_id: &str) -> Target {
        Target::Http(pb::HttpTarget {
            url: self.receiver.url(&format!("/conformance/{stream_id}")),
            ..Default::default()
        })
    }

    async fn delivered(&self, target: &Target) -> Vec<String> {
        let Target::Http(t) = target else {
            panic!("not an HTTP target")
        };
        let path = t.url.split_once("127.0.0.1").unwrap().1;
        let path = &path[path.find('/').unwrap()..];
        self.receiver
            .requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status) && r.path_and_query == path)
            .flat_map(|r| r.event_ids)
            .collect()
    }

    async fn set_unavailable(&self, unavailable: bool) {
        *self.unavailable.lock().unwrap() = unavailable;
        self.apply();
    }

    fn poison(&self) -> Option<&'static str> {
        Some(POISON)
    }
}

async fn receiver() -> Receiver {
    let r = Receiver {
        receiver: HttpReceiver::start().await,
        unavailable: Mutex::new(false),
    };
    r.apply();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_and_ack_after_confirm() {
    conformance::batching_and_ack_after_confirm(&receiver().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_backlog_recovery() {
    conformance::broken_backlog_recovery(&receiver().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_event_to_dlq() {
    conformance::refused_event_to_dlq(&receiver().await).await;
}
