//! Auditstream's Azure Blob Storage sink (DESIGN §6–§7): writes a stream's events as block
//! blobs into a container, on the official, maintained `azure_storage_blob` 1.x SDK. Batching,
//! retries, health, backlog and DLQ are sink-core's; this crate builds destinations
//! ([`AzureBlobSink`]), uploads objects and probes ([`AzureBlobDestination`]), classifies
//! storage errors, and lists a connection's containers. It must not retry on its own or keep
//! state beyond SDK clients.
//!
//! # Blobs
//!
//! The key layout and encoding are sink-core's [`object`](auditstream_sink_core::object)
//! (shared with the S3 sink, so a container and a bucket written by Auditstream look the
//! same): `ndjson` (default) writes a request's events grouped by org, workspace, event type
//! and hour to `<prefix>/<org>/<workspace>/<event_type>/YYYY/MM/DD/HH/<batch id>.ndjson.gz`
//! (gzip unless `COMPRESSION_NONE`, `Content-Encoding: gzip`); `per_event` writes
//! `…/HH/<event id>.json` (uncompressed unless `COMPRESSION_GZIP`). Keys are deterministic, so
//! a redelivered batch overwrites its blob instead of adding one. A request's blobs are
//! uploaded in parallel (at most `max_parallel_uploads`).
//!
//! # Endpoint and credentials (the connection)
//!
//! The blob service is the connection's `endpoint` if set (Azurite:
//! `http://127.0.0.1:10000/devstoreaccount1`, sovereign clouds:
//! `https://<account>.blob.core.usgovcloudapi.net`), else
//! `https://<account>.blob.core.windows.net`; `http://` only with `allow_insecure_http`.
//!
//! - **shared key**: `azure_storage_blob` 1.x has no shared-key credential (the deprecated
//!   `azure_storage_blobs` 0.x had one, and pulls openssl), so the sink signs an **account SAS**
//!   from the key itself ([`sas`]: HMAC-SHA256, `ss=b&srt=sco&sp=rwdlac`, valid one hour from
//!   five minutes back, `spr=https` on https endpoints) and appends it to its own request
//!   URLs; clients are rebuilt with a fresh SAS ten minutes before it expires. The key never
//!   leaves the process.
//! - **SAS token**: appended to every URL as given (with or without the leading `?`).
//!   Delivery needs create and write on objects; the probe also reads the container's
//!   properties (skipped when not allowed) and deletes its test blob (optional); listing
//!   containers needs an account SAS with list on the service.
//! - **client credentials**: `azure_identity::ClientSecretCredential` (tenant, client id,
//!   secret; `authority_host` for sovereign clouds, else the public cloud) as the SDK's token
//!   credential; https endpoints only.
//!
//! SAS signatures are removed (`sig=REDACTED`) from every error text the sink reports or logs.
//! The SDK's own retries are off (sink-core retries with backoff, once, for every sink); each
//! storage call is bounded by `request_timeout`.
//!
//! # Classification
//!
//! | storage answer | class | hint |
//! |---|---|---|
//! | 401, `AuthenticationFailed`, `InvalidAuthenticationInfo`, `AuthorizationFailure`, `NoAuthenticationInformation` | configuration | update the key / SAS / check the tenant; the account firewall |
//! | `AuthorizationPermissionMismatch`, `…ResourceTypeMismatch`, `…ServiceMismatch`, other 403 | configuration | grant *Storage Blob Data Contributor* on the container, or a SAS with create + write |
//! | `AuthorizationProtocolMismatch`, `AuthorizationSourceIPMismatch` | configuration | the SAS's `spr` / `sip` |
//! | `ContainerNotFound`, other 404 | configuration | container X does not exist in account Y |
//! | `ContainerBeingDeleted`, `ContainerDisabled`, `AccountIsDisabled` | configuration | what to do about it |
//! | 400 with a request-level code (`InvalidQueryParameterValue`, `InvalidHeaderValue`, …) | configuration | the endpoint or SAS is malformed |
//! | 408, 429, 500, 503 `ServerBusy`, other 5xx but 501; timeouts, connection errors | transient (`Retry-After` honoured) | |
//! | Entra ID token endpoint 400/401/403 | configuration | tenant, client id, secret, authority host |
//! | Entra ID unreachable or 5xx | transient | |
//! | 413, `RequestBodyTooLarge` | too large (split) | |
//! | other 4xx | rejected (DLQ) | |
//!
//! A request's blobs are uploaded separately; its answer is the worst of theirs
//! (configuration > transient > too large > rejected > delivered).
//!
//! # Probe and targets
//!
//! The probe (broken destinations, `TestDestination`) reads the container's properties (a 404
//! means it is missing; a 403 is ignored, since a container SAS can never read them and
//! delivery does not need it), writes a test blob at the layout's probe key and deletes it
//! (a failed delete is only logged: delete permission is optional). `list_targets` lists the
//! account's containers, every page, sorted.

mod account;
mod classify;
mod config;
mod destination;
mod resolve;
pub use auditstream_azure_auth::sas;

use std::sync::Arc;

use auditstream_model::SinkType;
use auditstream_proto::v1 as pb;
use auditstream_sink_core::{
    Answer, RequestCaps,
    object::Layout,
    sink::{Sink, wrong_target},
};
use azure_core::http::Transport;
use futures_util::TryStreamExt as _;
use time::OffsetDateTime;

pub use config::AzureBlobSinkConfig;
pub use destination::AzureBlobDestination;

use crate::{
    account::{Account, ContainerClients},
    classify::{Ctx, Failure, Op, classify},
};

/// The Azure Blob sink: builds [`AzureBlobDestination`]s from streams' destinations and
/// connections, and lists a connection's containers.
pub struct AzureBlobSink {
    config: AzureBlobSinkConfig,
    /// One HTTP client for every destination, so connections to an account are pooled across
    /// the streams writing to it. Credentials are per request, nothing tenant-specific is
    /// bound to a connection.
    transport: Transport,
}

impl std::fmt::Debug for AzureBlobSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AzureBlobSink {
    pub fn new(config: AzureBlobSinkConfig) -> anyhow::Result<AzureBlobSink> {
        let check = auditstream_egress::AddressCheck::new(&config.allowed_networks)?;
        AzureBlobSink::with_check(config, check)
    }

    /// With another resolver behind the address rule (tests: a DNS answer that changes).
    pub fn with_resolver(
        config: AzureBlobSinkConfig,
        resolve: auditstream_egress::Resolve,
    ) -> anyhow::Result<AzureBlobSink> {
        let check =
            auditstream_egress::AddressCheck::new(&config.allowed_networks)?.with_resolver(resolve);
        AzureBlobSink::with_check(config, check)
    }

    fn with_check(
        config: AzureBlobSinkConfig,
        check: auditstream_egress::AddressCheck,
    ) -> anyhow::Result<AzureBlobSink> {
        anyhow::ensure!(
            !config.request_timeout.is_zero(),
            "request_timeout must be longer than 0s"
        );
        anyhow::ensure!(
            config.max_parallel_uploads >= 1,
            "max_parallel_uploads must be at least 1"
        );
        anyhow::ensure!(
            config.max_object_events >= 1,
            "max_object_events must be at least 1"
        );
        anyhow::ensure!(
            config.max_object_bytes >= 1024,
            "max_object_bytes must be at least 1024"
        );
        // One for all, resolving through the address rule (see `resolve`).
        let transport = Transport::new(Arc::new(resolve::http_client(check)?));
        Ok(AzureBlobSink { config, transport })
    }

    pub fn config(&self) -> &AzureBlobSinkConfig {
        &self.config
    }

    fn account(&self, connection: &pb::Connection) -> Result<Account, Answer> {
        use pb::connection::Credentials;
        match &connection.credentials {
            Some(Credentials::AzureBlob(c)) => {
                Account::new(c, self.config.allow_insecure_http, self.transport.clone())
            }
            _ => Err(Answer::configuration(
                "the destination's connection is not an Azure Blob connection",
                "choose an Azure Blob connection (account and shared key, SAS or client \
                 credentials) for this destination",
            )),
        }
    }
}

impl Sink for AzureBlobSink {
    type Destination = AzureBlobDestination;

    const TYPE: SinkType = SinkType::AzureBlob;

    fn build(
        &self,
        destination: &pb::Destination,
        connection: &pb::Connection,
    ) -> Result<AzureBlobDestination, Answer> {
        use pb::destination::Target as T;
        let target = match &destination.target {
            Some(T::AzureBlob(t)) => t,
            other => return Err(wrong_target(SinkType::AzureBlob, other.as_ref())),
        };
        let container = target.container.trim();
        if container.is_empty() {
            return Err(Answer::configuration(
                "the destination names no container",
                "set the destination's container",
            ));
        }
        let account = Arc::new(self.account(connection)?);
        let clients = ContainerClients::new(account.clone(), container).map_err(|e| {
            Answer::configuration(
                format!(
                    "cannot address container {container}: {}",
                    sas::redact(&e.to_string())
                ),
                "check the connection's endpoint and the destination's container",
            )
        })?;
        Ok(AzureBlobDestination {
            clients,
            container: container.to_owned(),
            layout: Layout::new(&target.prefix, target.format(), target.compression()),
            caps: RequestCaps {
                max_events: self.config.max_object_events,
                max_bytes: self.config.max_object_bytes,
            },
            request_timeout: self.config.request_timeout,
            max_parallel_uploads: self.config.max_parallel_uploads,
        })
    }

    /// The account's containers, sorted (every page).
    async fn list_targets(&self, connection: &pb::Connection) -> Result<Vec<String>, String> {
        let account = self
            .account(connection)
            .map_err(|a| format!("{}; {}", a.detail, a.hint))?;
        let ctx = Ctx {
            account: &account.name,
            container: "",
            method: account.method(),
            op: Op::List,
        };
        let explain = |f: Failure| {
            let a = classify(&f, &ctx, OffsetDateTime::now_utc());
            if a.hint.is_empty() {
                format!(
                    "cannot list the containers of {}: {}",
                    account.name, a.detail
                )
            } else {
                format!("{}; {}", a.detail, a.hint)
            }
        };
        let client = account
            .service_client(OffsetDateTime::now_utc())
            .map_err(|e| explain(Failure::from_error(&e)))?;
        let list = async {
            let mut pager = client.list_containers(None)?;
            let mut names = Vec::new();
            while let Some(item) = pager.try_next().await? {
                names.extend(item.name);
            }
            azure_core::Result::Ok(names)
        };
        let timeout = self.config.request_timeout;
        let mut names = match tokio::time::timeout(timeout, list).await {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => return Err(explain(Failure::from_error(&e))),
            Err(_) => return Err(explain(Failure::Timeout(timeout))),
        };
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use auditstream_sink_core::{Destination as _, classify::Class};

    use super::*;

    fn sink(allow_insecure_http: bool) -> AzureBlobSink {
        AzureBlobSink::new(AzureBlobSinkConfig {
            allow_insecure_http,
            ..Default::default()
        })
        .unwrap()
    }

    fn destination(container: &str) -> pb::Destination {
        pb::Destination {
            connection_id: "c".into(),
            target: Some(pb::destination::Target::AzureBlob(pb::AzureBlobTarget {
                container: container.into(),
                prefix: "audit/".into(),
                ..Default::default()
            })),
        }
    }

    fn connection(
        account: &str,
        endpoint: &str,
        method: pb::azure_blob_credentials::Method,
    ) -> pb::Connection {
        pb::Connection {
            credentials: Some(pb::connection::Credentials::AzureBlob(
                pb::AzureBlobCredentials {
                    account: account.into(),
                    endpoint: endpoint.into(),
                    method: Some(method),
                },
            )),
            ..Default::default()
        }
    }

    fn shared_key() -> pb::azure_blob_credentials::Method {
        pb::azure_blob_credentials::Method::SharedKey(pb::AzureSharedKey {
            account_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        })
    }

    #[test]
    fn config_defaults_and_parsing() {
        let c = AzureBlobSinkConfig::default();
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_parallel_uploads, 16);
        assert_eq!(c.max_object_events, 100_000);
        assert_eq!(c.max_object_bytes, 64 * 1024 * 1024);
        assert!(!c.allow_insecure_http);
        let parsed: AzureBlobSinkConfig =
            serde_json::from_str(r#"{"request_timeout":"5s","allow_insecure_http":true}"#).unwrap();
        assert_eq!(parsed.request_timeout, Duration::from_secs(5));
        assert!(parsed.allow_insecure_http);
        assert!(serde_json::from_str::<AzureBlobSinkConfig>(r#"{"timeout":"5s"}"#).is_err());
        let bad = AzureBlobSinkConfig {
            max_parallel_uploads: 0,
            ..Default::default()
        };
        assert!(AzureBlobSink::new(bad).is_err());
    }

    #[tokio::test]
    async fn endpoints_and_accounts() {
        let s = sink(false);
        let d = s
            .build(&destination("audit"), &connection("acme", "", shared_key()))
            .unwrap();
        let client = d.clients.get(OffsetDateTime::now_utc()).unwrap();
        assert_eq!(client.url().host_str(), Some("acme.blob.core.windows.net"));
        assert_eq!(client.url().path(), "/audit");
        let query = client.url().query().unwrap();
        assert!(
            query.contains("spr=https") && query.contains("sig="),
            "{query}"
        );
        assert_eq!(d.caps().max_events, 100_000);

        // Emulator-style endpoint: the account is its first path segment.
        let insecure = sink(true);
        let d = insecure
            .build(
                &destination("audit"),
                &connection("", "http://127.0.0.1:10000/devstoreaccount1/", shared_key()),
            )
            .unwrap();
        assert_eq!(d.clients.account().name, "devstoreaccount1");
        let client = d.clients.get(OffsetDateTime::now_utc()).unwrap();
        assert_eq!(client.url().path(), "/devstoreaccount1/audit");
        assert!(!client.url().query().unwrap().contains("spr="));

        // A sovereign cloud endpoint names the account in its host.
        let d = s
            .build(
                &destination("audit"),
                &connection("", "https://gov1.blob.core.usgovcloudapi.net", shared_key()),
            )
            .unwrap();
        assert_eq!(d.clients.account().name, "gov1");
    }

    #[tokio::test]
    async fn a_self_signed_sas_is_renewed_before_it_expires() {
        let d = sink(false)
            .build(&destination("audit"), &connection("acme", "", shared_key()))
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let first = d.clients.get(now).unwrap();
        let renew_at = d.clients.renew_at().unwrap();
        assert!(renew_at > now + time::Duration::minutes(45), "{renew_at}");
        assert!(renew_at < now + time::Duration::minutes(55), "{renew_at}");
        assert!(Arc::ptr_eq(&first, &d.clients.get(now).unwrap()));
        let later = d
            .clients
            .get(renew_at + time::Duration::seconds(1))
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &later));
        assert_ne!(first.url().query(), later.url().query());
    }

    #[tokio::test]
    async fn sas_tokens_with_or_without_question_mark() {
        let s = sink(false);
        for token in [
            "?sv=2022-11-02&sp=cw&sig=abc%3D",
            "sv=2022-11-02&sp=cw&sig=abc%3D",
        ] {
            let method = pb::azure_blob_credentials::Method::Sas(pb::AzureSasToken {
                sas_token: token.into(),
            });
            let d = s
                .build(&destination("audit"), &connection("acme", "", method))
                .unwrap();
            let client = d.clients.get(OffsetDateTime::now_utc()).unwrap();
            assert_eq!(client.url().query(), Some("sv=2022-11-02&sp=cw&sig=abc%3D"));
        }
        let method = pb::azure_blob_credentials::Method::Sas(pb::AzureSasToken {
            sas_token: "sv=2022-11-02".into(),
        });
        let err = s
            .build(&destination("audit"), &connection("acme", "", method))
            .unwrap_err();
        assert!(err.detail.contains("sig="), "{err:?}");
    }

    #[tokio::test]
    async fn unusable_destinations_are_configuration_errors_with_hints() {
        let s = sink(false);
        let cases = [
            (
                destination("audit"),
                connection("acme", "http://127.0.0.1:1/acme", shared_key()),
                "unencrypted",
            ),
            (
                destination(""),
                connection("acme", "", shared_key()),
                "no container",
            ),
            (
                destination("audit"),
                connection("", "", shared_key()),
                "neither",
            ),
            (
                destination("audit"),
                connection("acme", "ftp://x/acme", shared_key()),
                "scheme",
            ),
            (
                destination("audit"),
                connection("acme", "https://x/acme?sig=1", shared_key()),
                "query",
            ),
            (
                destination("audit"),
                connection(
                    "acme",
                    "",
                    pb::azure_blob_credentials::Method::SharedKey(pb::AzureSharedKey {
                        account_key: "not base64!".into(),
                    }),
                ),
                "base64",
            ),
            (
                pb::Destination {
                    connection_id: "c".into(),
                    target: Some(pb::destination::Target::S3(pb::S3Target::default())),
                },
                connection("acme", "", shared_key()),
                "s3",
            ),
            (
                destination("audit"),
                pb::Connection::default(),
                "not an Azure Blob connection",
            ),
        ];
        for (dest, conn, expected) in cases {
            let err = s.build(&dest, &conn).unwrap_err();
            assert_eq!(err.class, Class::Configuration, "{expected}");
            assert!(err.detail.contains(expected), "{expected}: {err:?}");
            assert!(!err.hint.is_empty(), "{expected}");
        }
    }

    #[tokio::test]
    async fn client_credentials_need_https_and_build_offline() {
        let creds = |authority: &str| {
            pb::azure_blob_credentials::Method::ClientCredentials(pb::AzureClientCredentials {
                tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                client_id: "00000000-0000-0000-0000-000000000001".into(),
                client_secret: "s3cret".into(),
                authority_host: authority.into(),
            })
        };
        let s = sink(true);
        let d = s
            .build(&destination("audit"), &connection("acme", "", creds("")))
            .unwrap();
        let client = d.clients.get(OffsetDateTime::now_utc()).unwrap();
        assert_eq!(client.url().query(), None, "a bearer token, no SAS");
        assert!(format!("{d:?}").contains("ClientCredentials"));
        assert!(!format!("{d:?}").contains("s3cret"));
        s.build(
            &destination("audit"),
            &connection("acme", "", creds("https://login.microsoftonline.us")),
        )
        .unwrap();
        let err = s
            .build(
                &destination("audit"),
                &connection("acme", "http://127.0.0.1:10000/acme", creds("")),
            )
            .unwrap_err();
        assert!(err.detail.contains("https"), "{err:?}");
        let err = s
            .build(
                &destination("audit"),
                &connection("acme", "", creds("http://login.example")),
            )
            .unwrap_err();
        assert_eq!(err.class, Class::Configuration);
    }
}
