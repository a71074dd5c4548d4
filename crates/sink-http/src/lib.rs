//! Auditstream's HTTP sink (DESIGN §6–§7): delivers a stream's events to an HTTP endpoint,
//! framed per preset. Batching, retries, health, backlog and DLQ are sink-core's; this crate
//! builds destinations ([`HttpSink`]) and sends requests ([`HttpDestination`]).
//!
//! # Presets
//!
//! Every event body is the rendered JSON of the message and is written into the request as
//! it is (never parsed and re-serialized).
//!
//! | preset | body | `Content-Type` | per request |
//! |---|---|---|---|
//! | generic (default) | JSON array `[e1,e2]`, or NDJSON (one event per line) | `application/json` / `application/x-ndjson` | `max_request_bytes`, `max_request_events` |
//! | sumo_logic | one event per line | `text/plain` (Sumo ingests it as logs) | 1 MB |
//! | datadog | JSON array | `application/json` | 5 MB, 1000 entries |
//! | splunk_hec | concatenated `{"time":…,"event":<event>,"sourcetype":…}` objects | `application/json` | 1 MB (Splunk Cloud's limit) |
//!
//! Byte limits apply to the body before compression. sink-core cuts batches by the sum of the
//! event bodies, so the caps reserve the framing of a full request from the byte limit (a JSON
//! array costs 1 byte per event plus 2, NDJSON 1 byte per event, a Splunk wrapper a computed
//! bound per event): a request within the caps is within the service's limit.
//!
//! ## Pseudo-settings
//!
//! `HttpTarget` has no per-preset fields, so these keys of the destination's `headers` map
//! (case-insensitive) configure the sink and are **never sent as headers**; a key for another
//! preset than the destination's is refused:
//!
//! - generic: `auditstream-framing` = `json_array` (default) | `ndjson`.
//! - datadog: `dd-source`, `dd-service`, `dd-tags`, `dd-hostname` become the query parameters
//!   `ddsource`, `service`, `ddtags`, `hostname` of the intake URL; `ddsource` and `service`
//!   default to `auditstream`. Parameters already in the URL's query are kept (giving one both
//!   ways is refused). The URL selects the Datadog site:
//!   `https://http-intake.logs.<site>/api/v2/logs` with site `datadoghq.com` (US1),
//!   `us3.datadoghq.com`, `us5.datadoghq.com`, `datadoghq.eu`, `ap1.datadoghq.com`,
//!   `ap2.datadoghq.com`, `uk1.datadoghq.com` or `ddog-gov.com`.
//! - splunk_hec: `splunk-sourcetype` (default `auditstream:<event_type>`), `splunk-index`,
//!   `splunk-host`, `splunk-source` (written into every event's wrapper when set). Each
//!   event's `time` is its `occurred_at` as epoch seconds with milliseconds.
//!
//! Other headers in the map are sent as given, except those the sink sets (`Content-Type`,
//! `Content-Encoding`, `Host`, …) and those that carry secrets (`Authorization`, `DD-API-KEY`,
//! …), which are refused: secrets belong in the connection. Sumo Logic's `X-Sumo-Category`,
//! `X-Sumo-Name` and `X-Sumo-Host` are ordinary headers.
//!
//! ## Authentication (the connection)
//!
//! - none; basic: `Authorization: Basic base64(user:password)`;
//! - bearer: `Authorization: Bearer <token>`; with splunk_hec `Authorization: Splunk <token>`;
//!   with datadog the token is the API key, sent as `DD-API-KEY: <token>` (Datadog's intake
//!   does not read bearer tokens, and this spares admins a custom header);
//! - header: the name and value as given (e.g. `DD-API-KEY`).
//!
//! `COMPRESSION_GZIP` gzips the body (`Content-Encoding: gzip`); otherwise bodies are sent
//! uncompressed.
//!
//! # Network safety
//!
//! URLs must be `https://` unless `allow_insecure_http`. Every address a destination's host
//! resolves to, and every IP-literal host, is checked when connecting
//! ([`check_destination_ip`](auditstream_model::destination::check_destination_ip)): loopback,
//! private, link-local, metadata and other non-public addresses are refused unless
//! `allowed_networks` allows them, and the connection goes to exactly the addresses that were
//! checked. Redirects are never followed (a 3xx is a configuration error), no proxy is used,
//! and TLS certificates are always verified (the system's roots plus `extra_ca_file`).
//!
//! Connections, TLS and the connect-time SSRF check are `auditstream-egress`'s, shared with
//! the Azure Monitor sink.

mod config;
mod destination;
mod preset;
mod target;

use std::sync::Arc;

use auditstream_egress::{Egress, EgressSettings};
use auditstream_model::SinkType;
use auditstream_proto::v1 as pb;
use auditstream_sink_core::{
    deliver::Answer,
    sink::{Sink, wrong_target},
};

pub use config::HttpSinkConfig;
pub use destination::HttpDestination;

use crate::target::Target;

/// The HTTP sink: builds [`HttpDestination`]s from streams' destinations and connections.
pub struct HttpSink {
    config: HttpSinkConfig,
    /// One client for every destination of this sink: the connection pool is keyed by
    /// scheme, host and port, so streams sending to the same intake (many streams to one
    /// Datadog site) share connections and TLS sessions. Credentials are per request headers,
    /// nothing about a tenant is bound to a connection, and the SSRF rules and trusted roots
    /// are the sink's, the same for every destination.
    egress: Egress,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    pub fn new(config: HttpSinkConfig) -> anyhow::Result<HttpSink> {
        anyhow::ensure!(
            config.max_request_bytes >= 1024,
            "max_request_bytes must be at least 1024"
        );
        anyhow::ensure!(
            config.max_request_events >= 1,
            "max_request_events must be at least 1"
        );
        let egress = Egress::new(EgressSettings {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            allowed_networks: &config.allowed_networks,
            extra_ca_file: config.extra_ca_file.as_deref(),
            user_agent: &config.user_agent,
            sink: "HTTP",
        })?;
        Ok(HttpSink { config, egress })
    }

    pub fn config(&self) -> &HttpSinkConfig {
        &self.config
    }
}

impl Sink for HttpSink {
    type Destination = HttpDestination;

    const TYPE: SinkType = SinkType::Http;

    fn build(
        &self,
        destination: &pb::Destination,
        connection: &pb::Connection,
    ) -> Result<HttpDestination, Answer> {
        use pb::{connection::Credentials, destination::Target as T};
        let http = match &destination.target {
            Some(T::Http(http)) => http,
            other => return Err(wrong_target(SinkType::Http, other.as_ref())),
        };
        let none = pb::HttpCredentials::default();
        let credentials = match &connection.credentials {
            Some(Credentials::Http(c)) => c,
            None => &none,
            Some(_) => {
                return Err(Answer::configuration(
                    "the destination's connection is not an HTTP connection",
                    "choose an HTTP connection for this destination",
                ));
            }
        };
        let target = Target::new(http, credentials, self.config.allow_insecure_http)
            .map_err(|u| Answer::configuration(u.detail, u.hint))?;
        let caps = target.preset.caps(&self.config);
        let (max_body, _) = target.preset.limits(&self.config);
        Ok(HttpDestination {
            egress: self.egress.clone(),
            target: Arc::new(target),
            caps,
            max_body,
        })
    }
}

#[cfg(test)]
mod tests {
    use auditstream_sink_core::classify::Class;

    use super::*;

    #[test]
    fn config_defaults_and_parsing() {
        let c = HttpSinkConfig::default();
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.connect_timeout, std::time::Duration::from_secs(10));
        assert!(!c.allow_insecure_http && c.allowed_networks.is_empty());
        let parsed: HttpSinkConfig = serde_json::from_str(
            r#"{"request_timeout":"5s","allowed_networks":["10.0.0.0/8"],"allow_insecure_http":true}"#,
        )
        .unwrap();
        assert_eq!(parsed.request_timeout, std::time::Duration::from_secs(5));
        assert_eq!(parsed.max_request_events, 1000);
        assert!(serde_json::from_str::<HttpSinkConfig>(r#"{"timeout":"5s"}"#).is_err());
    }

    #[tokio::test]
    async fn bad_settings_are_refused_at_start() {
        let bad = HttpSinkConfig {
            allowed_networks: vec!["10.0.0.0/33".into()],
            ..HttpSinkConfig::default()
        };
        let err = HttpSink::new(bad).unwrap_err().to_string();
        assert!(err.starts_with("allowed_networks:"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let bad = HttpSinkConfig {
            extra_ca_file: Some(path),
            ..HttpSinkConfig::default()
        };
        assert!(
            HttpSink::new(bad)
                .unwrap_err()
                .to_string()
                .contains("no certificate")
        );
    }

    #[tokio::test]
    async fn build_refuses_unusable_destinations_with_a_hint() {
        let sink = HttpSink::new(HttpSinkConfig::default()).unwrap();
        let http = |url: &str| pb::Destination {
            connection_id: "c".into(),
            target: Some(pb::destination::Target::Http(pb::HttpTarget {
                url: url.into(),
                ..Default::default()
            })),
        };
        let none = pb::Connection::default();
        let err = sink
            .build(&http("http://logs.example.com/"), &none)
            .unwrap_err();
        assert_eq!(err.class, Class::Configuration);
        assert!(err.detail.contains("unencrypted"), "{err:?}");
        assert!(!err.hint.is_empty());

        let s3 = pb::Destination {
            connection_id: "c".into(),
            target: Some(pb::destination::Target::S3(pb::S3Target::default())),
        };
        let err = sink.build(&s3, &none).unwrap_err();
        assert!(err.detail.contains("s3"), "{err:?}");

        let s3_connection = pb::Connection {
            credentials: Some(pb::connection::Credentials::S3(pb::S3Credentials::default())),
            ..Default::default()
        };
        let err = sink
            .build(&http("https://logs.example.com/"), &s3_connection)
            .unwrap_err();
        assert!(err.detail.contains("not an HTTP connection"), "{err:?}");

        let dest = sink
            .build(&http("https://logs.example.com/"), &none)
            .unwrap();
        assert_eq!(
            auditstream_sink_core::deliver::Destination::caps(&dest).max_events,
            1000
        );
    }
}
