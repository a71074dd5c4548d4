//! sink-azure-monitor passes sink-core's conformance suite against the test kit's
//! contract-checking Logs Ingestion stand-in (token endpoint + ingestion endpoint).

use auditstream_proto::v1::{self as pb, destination::Target};
use auditstream_sink_azure_monitor::{AzureMonitorSink, AzureMonitorSinkConfig};
use auditstream_testkit::{AzureMonitorStandIn, MonitorContract, MonitorFault, conformance};

const POISON: &str = "poison-pill";

/// Refuses (400) the requests carrying the poison, answers 503 while "unavailable", and
/// accepts only its client secret.
struct Monitor(AzureMonitorStandIn);

fn loopback_monitor() -> AzureMonitorSinkConfig {
    AzureMonitorSinkConfig {
        allow_insecure_http: true,
        allowed_networks: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

impl conformance::StandIn for Monitor {
    type Sink = AzureMonitorSink;
    type Config = AzureMonitorSinkConfig;

    fn config(&self) -> AzureMonitorSinkConfig {
        loopback_monitor()
    }

    fn build(&self, config: &AzureMonitorSinkConfig) -> AzureMonitorSink {
        AzureMonitorSink::new(config.clone()).unwrap()
    }

    fn credentials(&self, valid: bool) -> pb::connection::Credentials {
        let contract = self.0.contract();
        pb::connection::Credentials::AzureMonitor(pb::AzureMonitorCredentials {
            ingestion_endpoint: self.0.ingestion_endpoint(),
            method: Some(pb::azure_monitor_credentials::Method::ClientCredentials(
                pb::AzureClientCredentials {
                    tenant_id: contract.tenant_id,
                    client_id: contract.client_id,
                    client_secret: if valid {
                        contract.client_secret
                    } else {
                        "an-expired-secret".into()
                    },
                    authority_host: self.0.authority_host(),
                },
            )),
        })
    }

    async fn target(&self, _stream_id: &str) -> Target {
        let contract = self.0.contract();
        Target::AzureMonitor(pb::AzureMonitorTarget {
            ingestion_endpoint: self.0.ingestion_endpoint(),
            dcr_immutable_id: contract.dcr_immutable_id,
            stream_name: contract.stream_name,
            log_type: "AuditLogs".into(),
            ..Default::default()
        })
    }

    async fn delivered(&self, _target: &Target) -> Vec<String> {
        self.0.accepted_ids()
    }

    async fn set_unavailable(&self, unavailable: bool) {
        self.0.set_fault(if unavailable {
            MonitorFault::Status(503)
        } else {
            MonitorFault::None
        });
    }

    fn poison(&self) -> Option<&'static str> {
        Some(POISON)
    }
}

async fn monitor() -> Monitor {
    let standin = AzureMonitorStandIn::start(MonitorContract::default()).await;
    standin.reject_containing(Some(POISON));
    Monitor(standin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_and_ack_after_confirm() {
    conformance::batching_and_ack_after_confirm(&monitor().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_backlog_recovery() {
    conformance::broken_backlog_recovery(&monitor().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_event_to_dlq() {
    conformance::refused_event_to_dlq(&monitor().await).await;
}
