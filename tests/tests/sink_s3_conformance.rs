//! sink-s3 passes sink-core's conformance suite against real S3-compatible servers: moto,
//! and s3s-fs where refused credentials are needed (moto accepts any keys; s3s-fs checks
//! SigV4 signatures). A fault proxy in front of the server makes it "unavailable" without
//! losing what it stored. The suite's DLQ check does not apply: S3 refuses no single event.

use std::sync::atomic::{AtomicUsize, Ordering};

use auditstream_proto::v1::{self as pb, destination::Target, s3_credentials::Method};
use auditstream_sink_s3::{S3Sink, S3SinkConfig};
use auditstream_testkit::{FaultProxy, S3Server, conformance};

struct S3StandIn {
    server: S3Server,
    proxy: FaultProxy,
    buckets: AtomicUsize,
}

impl S3StandIn {
    async fn new(server: S3Server) -> S3StandIn {
        let proxy = FaultProxy::start(server.addr()).await;
        S3StandIn {
            server,
            proxy,
            buckets: AtomicUsize::new(0),
        }
    }
}

impl conformance::StandIn for S3StandIn {
    type Sink = S3Sink;
    type Config = S3SinkConfig;

    fn config(&self) -> S3SinkConfig {
        S3SinkConfig {
            allow_insecure_http: true,
            ..Default::default()
        }
    }

    fn build(&self, config: &S3SinkConfig) -> S3Sink {
        S3Sink::new(config.clone()).unwrap()
    }

    fn credentials(&self, valid: bool) -> pb::connection::Credentials {
        let secret = if valid {
            self.server.secret_key()
        } else {
            "not-the-secret"
        };
        pb::connection::Credentials::S3(pb::S3Credentials {
            method: Some(Method::StaticKeys(pb::S3StaticKeys {
                access_key_id: self.server.access_key().into(),
                secret_access_key: secret.into(),
                session_token: String::new(),
            })),
            region: "us-east-1".into(),
            endpoint: self.proxy.url(),
            force_path_style: true,
        })
    }

    async fn target(&self, stream_id: &str) -> Target {
        let n = self.buckets.fetch_add(1, Ordering::SeqCst);
        let bucket = format!("conformance-{stream_id}-{n}");
        self.server.create_bucket(&bucket).await;
        Target::S3(pb::S3Target {
            bucket,
            prefix: "audit".into(),
            ..Default::default()
        })
    }

    async fn delivered(&self, target: &Target) -> Vec<String> {
        let Target::S3(t) = target else {
            panic!("not an S3 target")
        };
        self.server.event_ids(&t.bucket).await
    }

    async fn set_unavailable(&self, unavailable: bool) {
        self.proxy.set_down(unavailable);
    }

    fn poison(&self) -> Option<&'static str> {
        // S3 stores whatever bytes it is given: no single event is refused.
        None
    }
}

const KEY: &str = "conformance-key";
const SECRET: &str = "conformance-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_batching_and_ack_after_confirm() {
    conformance::batching_and_ack_after_confirm(&S3StandIn::new(S3Server::moto()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_batching_and_ack_after_confirm() {
    let standin = S3StandIn::new(S3Server::s3s_fs(KEY, SECRET)).await;
    conformance::batching_and_ack_after_confirm(&standin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_broken_backlog_recovery() {
    let standin = S3StandIn::new(S3Server::s3s_fs(KEY, SECRET)).await;
    conformance::broken_backlog_recovery(&standin).await;
}
