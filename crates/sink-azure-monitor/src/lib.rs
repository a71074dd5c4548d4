//! Auditstream's Azure Monitor sink (DESIGN §6–§7): delivers a stream's events to a Log
//! Analytics table through the **Logs Ingestion API**, authenticated as an app registration
//! with Microsoft Entra ID client credentials. Batching, retries, health, backlog and DLQ are
//! sink-core's; connections, TLS and the connect-time SSRF check are `auditstream-egress`'s.
//! This crate builds destinations ([`AzureMonitorSink`]), gets tokens ([`token`]) and sends
//! requests ([`AzureMonitorDestination`]).
//!
//! The legacy HTTP Data Collector API (workspace ID + shared key) was retired in September
//! 2026; config-service refuses such connections with migration instructions, and this sink
//! never speaks it.
//!
//! # What a request looks like
//!
//! `POST {ingestion_endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream_name}?api-version=2023-01-01`
//! with `Authorization: Bearer <token>`, `Content-Type: application/json` and, with
//! `COMPRESSION_GZIP`, `Content-Encoding: gzip` (otherwise uncompressed). The body is a JSON
//! array of the stream's rendered messages, written as they are. The service answers 204.
//!
//! Every body is at most `max_request_bytes` before compression (default 1 000 000; the
//! service's limit is 1 MB): sink-core cuts batches to fit, reserving the array's brackets and
//! commas, and a 413 splits a request again. An event too large on its own is refused without
//! being sent and goes to the DLQ with the reason.
//!
//! # Fields
//!
//! | field | where | use |
//! |---|---|---|
//! | ingestion endpoint | destination | the DCE's or the DCR's logs ingestion endpoint |
//! | DCR immutable ID | destination | `dcr-…`, in the path |
//! | stream name | destination | `Custom-<table>_CL`, in the path |
//! | log type | destination | the table the rule writes to; named in hints (the rule decides the table) |
//! | resource ID | destination, optional | the rule's ARM resource ID; named in hints where the role is assigned |
//! | tenant ID, client ID, client secret | connection | the client-credentials grant |
//! | authority host | connection, optional | Entra ID for sovereign clouds (`https://login.microsoftonline.us`); the token scope follows its cloud |
//!
//! # Answers
//!
//! 2xx delivered; 408, 429 (with `Retry-After`) and 5xx but 501 retried; 413 split; other 400s
//! refuse the data (narrowed to the event, which goes to the DLQ); 401 first renews the token
//! and sends once more, then, like 403 and 404, marks the destination broken with a hint naming
//! the role **Monitoring Metrics Publisher**, the rule and the stream. A refused client secret,
//! an unknown app or tenant at the token endpoint mark it broken too, with what to change.

mod config;
mod destination;
pub mod token;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use auditstream_egress::{Egress, EgressSettings};
use auditstream_model::{
    SinkType,
    destination::{Host, parse_http_url},
};
use auditstream_proto::v1::{self as pb, azure_monitor_credentials::Method};
use auditstream_sink_core::{
    Answer, RequestCaps,
    sink::{Sink, wrong_target},
};
use http::Uri;
use percent_encoding::utf8_percent_encode;

pub use config::{AzureMonitorSinkConfig, SERVICE_MAX_REQUEST_BYTES};
pub use destination::{API_VERSION, AzureMonitorDestination};

use crate::token::{DEFAULT_AUTHORITY, Identity, SEGMENT, TokenSource};

const ENDPOINT_FIELD: &str = "destination.azure_monitor.ingestion_endpoint";
const AUTHORITY_FIELD: &str = "connection.azure_monitor.client_credentials.authority_host";

pub struct AzureMonitorSink {
    config: AzureMonitorSinkConfig,
    /// Reaches ingestion endpoints and Entra ID, only where permitted.
    egress: Egress,
    /// One token source per app registration, shared by every stream using it, so a sink with
    /// many streams asks Entra ID for one token, not one per stream.
    tokens: Mutex<HashMap<Identity, Arc<TokenSource>>>,
}

impl std::fmt::Debug for AzureMonitorSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureMonitorSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureMonitorSink {
    pub fn new(config: AzureMonitorSinkConfig) -> anyhow::Result<AzureMonitorSink> {
        anyhow::ensure!(
            (1024..=SERVICE_MAX_REQUEST_BYTES).contains(&config.max_request_bytes),
            "max_request_bytes must be between 1024 and {SERVICE_MAX_REQUEST_BYTES} (the Logs \
             Ingestion API's limit of 1 MB)"
        );
        anyhow::ensure!(
            (1..=config.max_request_bytes / 4).contains(&config.max_request_events),
            "max_request_events must be between 1 and max_request_bytes / 4"
        );
        let egress = Egress::new(EgressSettings {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            allowed_networks: &config.allowed_networks,
            extra_ca_file: config.extra_ca_file.as_deref(),
            user_agent: &config.user_agent,
            sink: "Azure Monitor",
        })?;
        Ok(AzureMonitorSink {
            egress,
            config,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &AzureMonitorSinkConfig {
        &self.config
    }

    fn token_source(&self, identity: Identity) -> Result<Arc<TokenSource>, Answer> {
        let mut tokens = self.tokens.lock().unwrap();
        // Sources no destination uses any more (a rotated secret, a deleted stream) go.
        tokens.retain(|_, source| Arc::strong_count(source) > 1);
        if let Some(source) = tokens.get(&identity) {
            return Ok(source.clone());
        }
        let source = Arc::new(TokenSource::new(
            self.egress.clone(),
            identity.clone(),
            self.config.token_refresh_before,
        )?);
        tokens.insert(identity, source.clone());
        Ok(source)
    }

    /// A checked URL's text without a trailing slash, and its host for messages.
    fn url(&self, field: &str, value: &str, what: &str) -> Result<(String, String), Answer> {
        let url = parse_http_url(field, value.trim(), self.config.allow_insecure_http)
            .map_err(|e| Answer::configuration(e.to_string(), format!("correct the {what}")))?;
        let host = match &url.host {
            Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        };
        Ok((url.url.trim_end_matches('/').to_owned(), host))
    }
}

impl Sink for AzureMonitorSink {
    type Destination = AzureMonitorDestination;

    const TYPE: SinkType = SinkType::AzureMonitor;

    fn build(
        &self,
        destination: &pb::Destination,
        connection: &pb::Connection,
    ) -> Result<AzureMonitorDestination, Answer> {
        use pb::{connection::Credentials, destination::Target as T};
        let target = match &destination.target {
            Some(T::AzureMonitor(t)) => t,
            other => return Err(wrong_target(SinkType::AzureMonitor, other.as_ref())),
        };
        let monitor = match &connection.credentials {
            Some(Credentials::AzureMonitor(m)) => m,
            _ => {
                return Err(Answer::configuration(
                    "the destination's connection is not an Azure Monitor connection",
                    "choose an Azure Monitor connection (client credentials) for this destination",
                ));
            }
        };
        let client = match monitor.method.as_ref() {
            Some(Method::ClientCredentials(c)) => c,
            Some(Method::LegacyDataCollector(_)) => {
                return Err(Answer::configuration(
                    auditstream_model::destination::LEGACY_DATA_COLLECTOR_RETIRED,
                    "create an app registration, a data collection endpoint and rule, and \
                     update the connection to client credentials (see the README)",
                ));
            }
            None => {
                return Err(Answer::configuration(
                    "the Azure Monitor connection has no credentials",
                    "set the connection's client credentials (tenant ID, client ID, secret)",
                ));
            }
        };
        for (value, name) in [
            (&client.tenant_id, "tenant ID"),
            (&client.client_id, "client ID"),
            (&client.client_secret, "client secret"),
        ] {
            if value.trim().is_empty() {
                return Err(Answer::configuration(
                    format!("the Azure Monitor connection has no {name}"),
                    format!("set the connection's {name}"),
                ));
            }
        }
        for (value, name) in [
            (
                &target.dcr_immutable_id,
                "data collection rule immutable ID",
            ),
            (&target.stream_name, "stream name"),
        ] {
            if value.trim().is_empty() {
                return Err(Answer::configuration(
                    format!("the destination has no {name}"),
                    format!("set the destination's {name}"),
                ));
            }
        }
        // The Entra token goes only to the endpoint the connection names (its binding).
        let bound = auditstream_proto::binding::monitor_endpoint(ENDPOINT_FIELD, monitor, target)
            .map_err(|e| {
            Answer::configuration(
                e.to_string(),
                "set the connection's ingestion endpoint (the DCE's logs ingestion URL) and \
                     leave the destination's empty or equal to it",
            )
        })?;
        let (endpoint, endpoint_host) = self.url(
            ENDPOINT_FIELD,
            &bound.url,
            "destination's ingestion endpoint (the DCE's or DCR's logs ingestion URL)",
        )?;
        let authority = if client.authority_host.trim().is_empty() {
            DEFAULT_AUTHORITY.to_owned()
        } else {
            self.url(
                AUTHORITY_FIELD,
                &client.authority_host,
                "connection's authority host",
            )?
            .0
        };
        let path = |s: &str| utf8_percent_encode(s.trim(), SEGMENT).to_string();
        let uri = format!(
            "{endpoint}/dataCollectionRules/{}/streams/{}?api-version={API_VERSION}",
            path(&target.dcr_immutable_id),
            path(&target.stream_name)
        );
        let uri: Uri = uri.parse().map_err(|e| {
            Answer::configuration(
                format!("{ENDPOINT_FIELD}: the ingestion URL {uri} cannot be used: {e}"),
                "correct the destination's ingestion endpoint",
            )
        })?;
        let tokens = self.token_source(Identity {
            authority,
            tenant_id: client.tenant_id.trim().to_owned(),
            client_id: client.client_id.trim().to_owned(),
            client_secret: client.client_secret.clone(),
        })?;
        let gzip = match pb::Compression::try_from(target.compression) {
            Ok(pb::Compression::Gzip) => true,
            Ok(pb::Compression::None | pb::Compression::Unspecified) => false,
            Err(_) => {
                return Err(Answer::configuration(
                    format!("unknown compression {}", target.compression),
                    "choose gzip or none",
                ));
            }
        };
        let max_events = self.config.max_request_events;
        Ok(AzureMonitorDestination {
            egress: self.egress.clone(),
            tokens,
            uri,
            endpoint_host,
            dcr_immutable_id: target.dcr_immutable_id.trim().to_owned(),
            stream_name: target.stream_name.trim().to_owned(),
            log_type: target.log_type.clone(),
            resource_id: target.resource_id.clone(),
            gzip,
            caps: RequestCaps {
                max_events,
                // The array's brackets and a comma per event come on top of the messages.
                max_bytes: self.config.max_request_bytes - max_events - 1,
            },
            max_body: self.config.max_request_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use auditstream_sink_core::classify::Class;

    use super::*;

    const DCR: &str = "dcr-0123456789abcdef0123456789abcdef";

    fn destination(endpoint: &str) -> pb::Destination {
        pb::Destination {
            connection_id: "c".into(),
            target: Some(pb::destination::Target::AzureMonitor(
                pb::AzureMonitorTarget {
                    ingestion_endpoint: endpoint.into(),
                    dcr_immutable_id: DCR.into(),
                    stream_name: "Custom-AuditLogs_CL".into(),
                    log_type: "AuditLogs".into(),
                    ..Default::default()
                },
            )),
        }
    }

    fn connection(method: Option<Method>) -> pb::Connection {
        connection_at(
            "https://dce-x.westeurope-1.ingest.monitor.azure.com",
            method,
        )
    }

    fn connection_at(endpoint: &str, method: Option<Method>) -> pb::Connection {
        pb::Connection {
            credentials: Some(pb::connection::Credentials::AzureMonitor(
                pb::AzureMonitorCredentials {
                    method,
                    ingestion_endpoint: endpoint.into(),
                },
            )),
            ..Default::default()
        }
    }

    fn client_credentials() -> Option<Method> {
        Some(Method::ClientCredentials(pb::AzureClientCredentials {
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            client_secret: "secret".into(),
            authority_host: String::new(),
        }))
    }

    #[test]
    fn config_defaults_and_limits() {
        let c = AzureMonitorSinkConfig::default();
        assert!(c.max_request_bytes <= SERVICE_MAX_REQUEST_BYTES);
        assert!(!c.allow_insecure_http);
        let too_big = AzureMonitorSinkConfig {
            max_request_bytes: SERVICE_MAX_REQUEST_BYTES + 1,
            ..c.clone()
        };
        let err = AzureMonitorSink::new(too_big).unwrap_err().to_string();
        assert!(err.contains("1 MB"), "{err}");
        let parsed: AzureMonitorSinkConfig =
            serde_json::from_str(r#"{"token_refresh_before":"2m","max_request_bytes":500000}"#)
                .unwrap();
        assert_eq!(
            parsed.token_refresh_before,
            std::time::Duration::from_secs(120)
        );
        assert!(serde_json::from_str::<AzureMonitorSinkConfig>(r#"{"max_bytes":1}"#).is_err());
    }

    #[tokio::test]
    async fn build_addresses_the_rule_stream_and_api_version() {
        let sink = AzureMonitorSink::new(AzureMonitorSinkConfig::default()).unwrap();
        let d = sink
            .build(
                &destination("https://dce-x.westeurope-1.ingest.monitor.azure.com/"),
                &connection(client_credentials()),
            )
            .unwrap();
        assert_eq!(
            d.uri.to_string(),
            format!(
                "https://dce-x.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/{DCR}/streams/Custom-AuditLogs_CL?api-version=2023-01-01"
            )
        );
        assert_eq!(d.caps.max_events, 10_000);
        assert!(d.caps.max_bytes + d.caps.max_events < 1_000_000);
        // A destination may leave the endpoint to its connection.
        let same = sink
            .build(&destination(""), &connection(client_credentials()))
            .unwrap();
        assert_eq!(same.uri, d.uri);
        // Two streams of one app share one token source.
        let again = sink
            .build(
                &destination(""),
                &connection_at(
                    "https://other.ingest.monitor.azure.com",
                    client_credentials(),
                ),
            )
            .unwrap();
        assert!(Arc::ptr_eq(&d.tokens, &again.tokens));
    }

    #[tokio::test]
    async fn build_refuses_unusable_destinations_with_a_hint() {
        let sink = AzureMonitorSink::new(AzureMonitorSinkConfig::default()).unwrap();
        let good = connection(client_credentials());
        let err = sink
            .build(&destination("http://dce.example.com"), &good)
            .unwrap_err();
        assert_eq!(err.class, Class::Configuration);
        assert!(err.detail.starts_with(ENDPOINT_FIELD), "{err:?}");
        // The token never goes to an endpoint the connection does not name.
        let err = sink
            .build(&destination("https://attacker.example/"), &good)
            .unwrap_err();
        assert!(
            err.detail
                .contains("not the connection's ingestion endpoint"),
            "{err:?}"
        );
        let unbound = connection_at("", client_credentials());
        let err = sink.build(&destination(""), &unbound).unwrap_err();
        assert!(err.detail.contains("no ingestion endpoint"), "{err:?}");

        let legacy = connection(Some(Method::LegacyDataCollector(
            pb::LegacyDataCollector::default(),
        )));
        let err = sink
            .build(&destination("https://dce.example.com"), &legacy)
            .unwrap_err();
        assert!(err.detail.contains("retired in September 2026"), "{err:?}");

        let err = sink
            .build(
                &destination("https://dce.example.com"),
                &pb::Connection::default(),
            )
            .unwrap_err();
        assert!(err.detail.contains("not an Azure Monitor connection"));

        let s3 = pb::Destination {
            target: Some(pb::destination::Target::S3(pb::S3Target::default())),
            ..Default::default()
        };
        assert!(
            sink.build(&s3, &good)
                .unwrap_err()
                .detail
                .contains("of type s3")
        );
    }
}
