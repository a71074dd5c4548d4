//! sink-azure-blob passes sink-core's conformance suite against Azurite. Each check gets its
//! own Azurite (its own port and data directory) and container; "unavailable" is a
//! FaultProxy in front of Azurite cutting every connection, so the sink sees connection
//! errors while Azurite keeps its data.

use auditstream_proto::v1::{self as pb, azure_blob_credentials::Method, destination::Target};
use auditstream_sink_azure_blob::{AzureBlobSink, AzureBlobSinkConfig};
use auditstream_testkit::{Azurite, FaultProxy, conformance};

/// A valid base64 key that is not the account's: signatures made with it are refused.
const WRONG_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Blob {
    azurite: Azurite,
    proxy: FaultProxy,
}

impl Blob {
    async fn start() -> Blob {
        let azurite = Azurite::start();
        let proxy = FaultProxy::start(azurite.addr()).await;
        Blob { azurite, proxy }
    }
}

fn container_of(target: &Target) -> &str {
    let Target::AzureBlob(t) = target else {
        panic!("not an Azure Blob target")
    };
    &t.container
}

impl conformance::StandIn for Blob {
    type Sink = AzureBlobSink;
    type Config = AzureBlobSinkConfig;

    fn config(&self) -> AzureBlobSinkConfig {
        AzureBlobSinkConfig {
            allow_insecure_http: true,
            ..Default::default()
        }
    }

    fn build(&self, config: &AzureBlobSinkConfig) -> AzureBlobSink {
        AzureBlobSink::new(config.clone()).unwrap()
    }

    fn credentials(&self, valid: bool) -> pb::connection::Credentials {
        pb::connection::Credentials::AzureBlob(pb::AzureBlobCredentials {
            account: Azurite::ACCOUNT.into(),
            endpoint: Azurite::endpoint_at(&self.proxy.url()),
            method: Some(Method::SharedKey(pb::AzureSharedKey {
                account_key: if valid { Azurite::KEY } else { WRONG_KEY }.into(),
            })),
        })
    }

    async fn target(&self, stream_id: &str) -> Target {
        let container = format!("conformance-{stream_id}");
        self.azurite.create_container(&container).await;
        Target::AzureBlob(pb::AzureBlobTarget {
            container,
            prefix: "audit".into(),
            ..Default::default()
        })
    }

    async fn delivered(&self, target: &Target) -> Vec<String> {
        self.azurite.event_ids(container_of(target)).await
    }

    async fn set_unavailable(&self, unavailable: bool) {
        self.proxy.set_down(unavailable);
    }

    /// Blob storage stores whatever it is given: no event is refused for its content.
    fn poison(&self) -> Option<&'static str> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_and_ack_after_confirm() {
    conformance::batching_and_ack_after_confirm(&Blob::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_backlog_recovery() {
    conformance::broken_backlog_recovery(&Blob::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_event_to_dlq() {
    conformance::refused_event_to_dlq(&Blob::start().await).await;
}
