//! Every validation rule of the config service, through the real gRPC API: one request per
//! rule that breaks it, answered with INVALID_ARGUMENT naming the field and the rule, and
//! nothing stored. The rule texts asserted here are the ones in `model::destination`,
//! `model::template` and `config-service/src/validate.rs`.

mod common;

use auditstream_config_service::ConfigServiceConfig;
use auditstream_proto::v1::{
    self as pb, AppliesTo, AzureBlobCredentials, AzureBlobTarget, AzureClientCredentials,
    AzureMonitorCredentials, AzureMonitorTarget, AzureSasToken, AzureSharedKey, Batching,
    Connection, Destination, EventSelection, HttpBasicAuth, HttpBearerAuth, HttpCredentials,
    HttpHeaderAuth, HttpNoAuth, HttpTarget, HttpUrlAuth, LegacyDataCollector, Node, NodeKind,
    S3AssumeRole, S3Credentials, S3Target, ServerSideEncryption, Stream, azure_blob_credentials,
    azure_monitor_credentials, connection::Credentials, destination::Target, http_credentials,
    s3_credentials,
};
use auditstream_testkit::{ConfigClient, ConfigHarness, Database, NatsServer};
use common::config::*;
use tonic::Code;

/// A public address that needs no DNS; the sandbox has no internet and the service never
/// contacts a destination when saving it.
const PUBLIC_URL: &str = "https://8.8.8.8/ingest";
const DCR_ID: &str = "dcr-0123456789abcdef0123456789abcdef";

// ------------------------------------------------------------------------------- fixture

/// The destination types; each has a connection at `org` and a valid stream using it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    S3,
    Blob,
    Monitor,
    Http,
}

const KINDS: [Kind; 4] = [Kind::S3, Kind::Blob, Kind::Monitor, Kind::Http];

impl Kind {
    fn connection_id(self) -> &'static str {
        match self {
            Kind::S3 => "conn-s3",
            Kind::Blob => "conn-blob",
            Kind::Monitor => "conn-monitor",
            Kind::Http => "conn-http",
        }
    }
}

fn client_credentials() -> AzureClientCredentials {
    AzureClientCredentials {
        tenant_id: "00000000-0000-0000-0000-000000000001".into(),
        client_id: "00000000-0000-0000-0000-000000000002".into(),
        client_secret: SECRET.into(),
        authority_host: String::new(),
    }
}

/// A valid connection of `kind` at `org`.
fn valid_connection(kind: Kind, id: &str) -> Connection {
    let credentials = match kind {
        Kind::S3 => return s3_connection(id, "org", SECRET),
        Kind::Blob => Credentials::AzureBlob(AzureBlobCredentials {
            account: "auditstore".into(),
            endpoint: String::new(),
            method: Some(azure_blob_credentials::Method::SharedKey(AzureSharedKey {
                account_key: SECRET.into(),
            })),
        }),
        Kind::Monitor => Credentials::AzureMonitor(AzureMonitorCredentials {
            ingestion_endpoint: "https://8.8.8.8".into(),
            method: Some(azure_monitor_credentials::Method::ClientCredentials(
                client_credentials(),
            )),
        }),
        Kind::Http => Credentials::Http(HttpCredentials {
            auth: Some(http_credentials::Auth::None(HttpNoAuth {})),
            ..Default::default()
        }),
    };
    Connection {
        id: id.into(),
        node_id: "org".into(),
        name: format!("connection {id}"),
        credentials: Some(credentials),
        ..Default::default()
    }
}

/// A valid stream at `org` (applies to itself only) to the connection of `kind`.
fn valid_stream(kind: Kind, id: &str) -> Stream {
    let target = match kind {
        Kind::S3 => Target::S3(S3Target {
            bucket: "audit-logs".into(),
            ..Default::default()
        }),
        Kind::Blob => Target::AzureBlob(AzureBlobTarget {
            container: "audit-logs".into(),
            ..Default::default()
        }),
        Kind::Monitor => Target::AzureMonitor(AzureMonitorTarget {
            ingestion_endpoint: "https://8.8.8.8/".into(),
            dcr_immutable_id: DCR_ID.into(),
            stream_name: "Custom-AuditLogs_CL".into(),
            log_type: "AuditLogs".into(),
            ..Default::default()
        }),
        Kind::Http => Target::Http(HttpTarget {
            url: PUBLIC_URL.into(),
            ..Default::default()
        }),
    };
    Stream {
        id: id.into(),
        node_id: "org".into(),
        name: format!("stream {id}"),
        applies_to: AppliesTo::SelfOnly as i32,
        enabled: true,
        selection: Some(EventSelection {
            event_types: vec!["job_status".into(), "log_event".into()],
            ..Default::default()
        }),
        destination: Some(Destination {
            connection_id: kind.connection_id().into(),
            target: Some(target),
        }),
        ..Default::default()
    }
}

/// A config stack with `tweak` applied to the service configuration.
async fn stack_with(tweak: impl FnOnce(&mut ConfigServiceConfig)) -> ConfigStack {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, tweak).await;
    let admin = config
        .client_as(auditstream_config_service::authz::Role::PlatformAdmin, None)
        .await;
    ConfigStack {
        nats,
        config,
        admin,
    }
}

/// Node `org` with one connection of every type.
async fn fixture(s: &mut ConfigStack) {
    put(&mut s.admin, node("org", "", NodeKind::Organization)).await;
    for kind in KINDS {
        create_connection(&mut s.admin, valid_connection(kind, kind.connection_id())).await;
    }
}

// ------------------------------------------------------------------ mutable accessors

fn target(s: &mut Stream) -> &mut Target {
    s.destination
        .as_mut()
        .and_then(|d| d.target.as_mut())
        .expect("a target")
}

fn s3(s: &mut Stream) -> &mut S3Target {
    match target(s) {
        Target::S3(t) => t,
        other => panic!("not an S3 target: {other:?}"),
    }
}

fn blob(s: &mut Stream) -> &mut AzureBlobTarget {
    match target(s) {
        Target::AzureBlob(t) => t,
        other => panic!("not an Azure Blob target: {other:?}"),
    }
}

fn monitor(s: &mut Stream) -> &mut AzureMonitorTarget {
    match target(s) {
        Target::AzureMonitor(t) => t,
        other => panic!("not an Azure Monitor target: {other:?}"),
    }
}

fn http(s: &mut Stream) -> &mut HttpTarget {
    match target(s) {
        Target::Http(t) => t,
        other => panic!("not an HTTP target: {other:?}"),
    }
}

fn selection(s: &mut Stream) -> &mut EventSelection {
    s.selection.as_mut().expect("a selection")
}

fn s3_creds(c: &mut Connection) -> &mut S3Credentials {
    match c.credentials.as_mut() {
        Some(Credentials::S3(x)) => x,
        other => panic!("not S3 credentials: {other:?}"),
    }
}

fn blob_creds(c: &mut Connection) -> &mut AzureBlobCredentials {
    match c.credentials.as_mut() {
        Some(Credentials::AzureBlob(x)) => x,
        other => panic!("not Azure Blob credentials: {other:?}"),
    }
}

fn monitor_creds(c: &mut Connection) -> &mut AzureMonitorCredentials {
    match c.credentials.as_mut() {
        Some(Credentials::AzureMonitor(x)) => x,
        other => panic!("not Azure Monitor credentials: {other:?}"),
    }
}

fn http_creds(c: &mut Connection) -> &mut HttpCredentials {
    match c.credentials.as_mut() {
        Some(Credentials::Http(x)) => x,
        other => panic!("not HTTP credentials: {other:?}"),
    }
}

fn http_auth(c: &mut Connection, auth: http_credentials::Auth) {
    c.credentials = Some(Credentials::Http(HttpCredentials {
        auth: Some(auth),
        origin: "https://8.8.8.8".into(),
        ..Default::default()
    }));
}

// ---------------------------------------------------------------------- assertions

/// Checks a refusal: INVALID_ARGUMENT, the message starts with `field: ` and contains every
/// text. Returns a description of what is wrong, if anything.
fn check_refusal(result: Result<(), tonic::Status>, field: &str, texts: &[&str]) -> Option<String> {
    let status = match result {
        Ok(()) => return Some("accepted".into()),
        Err(status) => status,
    };
    let message = status.message();
    let mut wrong = Vec::new();
    if status.code() != Code::InvalidArgument {
        wrong.push(format!("code {:?}", status.code()));
    }
    if !message.starts_with(&format!("{field}: ")) {
        wrong.push(format!("does not name field {field}"));
    }
    for text in texts {
        if !message.contains(text) {
            wrong.push(format!("lacks {text:?}"));
        }
    }
    (!wrong.is_empty()).then(|| format!("{}; message: {message}", wrong.join(", ")))
}

/// Panics listing every failed case, so one run shows all of them.
fn report(what: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} {what} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn get_node(c: &mut ConfigClient, id: &str) -> Result<Node, tonic::Status> {
    c.get_node(pb::GetNodeRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

async fn get_connection(c: &mut ConfigClient, id: &str) -> Result<Connection, tonic::Status> {
    c.get_connection(pb::GetConnectionRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

async fn get_stream(c: &mut ConfigClient, id: &str) -> Result<Stream, tonic::Status> {
    c.get_stream(pb::GetStreamRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

/// Adds "stored although refused" to `problem` unless `lookup` of the refused object
/// answered NOT_FOUND.
fn not_stored<T>(problem: Option<String>, lookup: Result<T, tonic::Status>) -> Option<String> {
    match lookup {
        Err(status) if status.code() == Code::NotFound => problem,
        _ => Some(match problem {
            Some(p) => format!("{p}; stored although refused"),
            None => "stored although refused".into(),
        }),
    }
}

/// Creates `stream` and expects it refused for `field` with `texts`, and not stored.
async fn expect_stream_refused(
    c: &mut ConfigClient,
    stream: Stream,
    field: &str,
    texts: &[&str],
) -> Option<String> {
    let id = stream.id.clone();
    let result = create_stream(c, stream).await.map(drop);
    let problem = check_refusal(result, field, texts);
    not_stored(problem, get_stream(c, &id).await)
}

// --------------------------------------------------------------------------- nodes

type NodeCase = (
    &'static str,
    fn(&mut Node),
    &'static str,
    &'static [&'static str],
);

#[tokio::test]
async fn put_node_refuses_each_broken_rule_with_its_field() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    put(a, node("org", "", NodeKind::Organization)).await;
    let cases: &[NodeCase] = &[
        (
            "id with a dot",
            |n| n.id = "acme.eu".into(),
            "node.id",
            &[
                "\"acme.eu\" contains '.'",
                "only letters A-Z a-z, digits, '_' and '-' are allowed",
            ],
        ),
        (
            "id with a space",
            |n| n.id = "acme eu".into(),
            "node.id",
            &["\"acme eu\" contains a space"],
        ),
        (
            "id of 65 characters",
            |n| n.id = "a".repeat(65),
            "node.id",
            &["is 65 characters long; at most 64 are allowed"],
        ),
        (
            "empty id",
            |n| n.id.clear(),
            "node.id",
            &["must not be empty"],
        ),
        (
            "parent id with a wildcard",
            |n| n.parent_id = "org.*".into(),
            "node.parent_id",
            &["contains '.'"],
        ),
        (
            "its own parent",
            |n| n.parent_id = n.id.clone(),
            "node.parent_id",
            &["a node cannot be its own parent"],
        ),
        (
            "kind unspecified",
            |n| n.kind = NodeKind::Unspecified as i32,
            "node.kind",
            &["required: organization, partner, customer or workspace"],
        ),
        (
            "name of 201 characters",
            |n| n.name = "n".repeat(201),
            "node.name",
            &["at most 200 characters, without control characters"],
        ),
        (
            "name with a line break",
            |n| n.name = "Acme\nEvil log line".into(),
            "node.name",
            &["without control characters"],
        ),
        (
            "external id of 257 characters",
            |n| n.external_id = "x".repeat(257),
            "node.external_id",
            &["at most 256 characters, without control characters"],
        ),
        (
            "admin e-mail without @",
            |n| n.admin_emails = vec!["ops@acme.example".into(), "not-an-email".into()],
            "node.admin_emails[1]",
            &["\"not-an-email\" is not an e-mail address"],
        ),
        (
            "admin e-mail without a domain dot",
            |n| n.admin_emails = vec!["ops@localhost".into()],
            "node.admin_emails[0]",
            &["\"ops@localhost\" is not an e-mail address"],
        ),
        (
            "two admin e-mails in one entry",
            |n| n.admin_emails = vec!["a@acme.example, b@acme.example".into()],
            "node.admin_emails[0]",
            &["is not an e-mail address"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (rule, change, field, texts)) in cases.iter().enumerate() {
        let mut n = node(&format!("n{i}"), "org", NodeKind::Workspace);
        change(&mut n);
        let id = n.id.clone();
        let result = a.put_node(pb::PutNodeRequest { node: Some(n) }).await;
        let problem = check_refusal(result.map(drop), field, texts);
        if let Some(p) = not_stored(problem, get_node(a, &id).await) {
            failures.push(format!("{rule}: {p}"));
        }
    }
    report("PutNode", failures);

    // The valid node the cases started from is accepted, contacts included.
    let ok = put(
        a,
        Node {
            admin_emails: vec!["ops@acme.example".into(), "soc+audit@acme.example".into()],
            external_id: "CRM-0042".into(),
            ..node("acme_EU-1", "org", NodeKind::Workspace)
        },
    )
    .await;
    assert_eq!(ok.admin_emails.len(), 2);
}

// --------------------------------------------------------------------- connections

type ConnectionCase = (
    &'static str,
    Kind,
    fn(&mut Connection),
    &'static str,
    &'static [&'static str],
);

#[tokio::test]
async fn create_connection_refuses_each_broken_rule_with_its_field() {
    let mut s = config_stack().await;
    fixture(&mut s).await;
    let a = &mut s.admin;
    let cases: &[ConnectionCase] = &[
        (
            "no credentials",
            Kind::S3,
            |c| c.credentials = None,
            "connection.credentials",
            &["required: one of s3, azure_blob, azure_monitor, http"],
        ),
        (
            "id with a dot",
            Kind::S3,
            |c| c.id = "conn.1".into(),
            "connection.id",
            &["\"conn.1\" contains '.'"],
        ),
        (
            "name of 201 characters",
            Kind::S3,
            |c| c.name = "n".repeat(201),
            "connection.name",
            &["at most 200 characters"],
        ),
        // S3
        (
            "S3 region not a region code",
            Kind::S3,
            |c| s3_creds(c).region = "US-East-1".into(),
            "connection.s3.region",
            &[
                "\"US-East-1\" is not an AWS region code",
                "region codes look like us-east-1, eu-central-2 or us-gov-west-1",
            ],
        ),
        (
            "S3 region without its number",
            Kind::S3,
            |c| s3_creds(c).region = "eu-central".into(),
            "connection.s3.region",
            &["\"eu-central\" is not an AWS region code"],
        ),
        (
            "S3 without a method",
            Kind::S3,
            |c| s3_creds(c).method = None,
            "connection.s3",
            &["a method is required: static_keys, assume_role or default_chain"],
        ),
        (
            "S3 static keys without an access key id",
            Kind::S3,
            |c| match s3_creds(c).method.as_mut() {
                Some(s3_credentials::Method::StaticKeys(k)) => k.access_key_id.clear(),
                _ => unreachable!(),
            },
            "connection.s3.static_keys.access_key_id",
            &["required"],
        ),
        (
            "S3 static keys without the secret",
            Kind::S3,
            |c| match s3_creds(c).method.as_mut() {
                Some(s3_credentials::Method::StaticKeys(k)) => k.secret_access_key.clear(),
                _ => unreachable!(),
            },
            "connection.s3.static_keys.secret_access_key",
            &["required"],
        ),
        (
            "S3 assume role with a user ARN",
            Kind::S3,
            |c| {
                s3_creds(c).method = Some(s3_credentials::Method::AssumeRole(S3AssumeRole {
                    role_arn: "arn:aws:iam::123456789012:user/bob".into(),
                    ..Default::default()
                }))
            },
            "connection.s3.assume_role.role_arn",
            &["must be an IAM role ARN like arn:aws:iam::123456789012:role/auditstream-writer"],
        ),
        (
            "S3 endpoint over plain http",
            Kind::S3,
            |c| s3_creds(c).endpoint = "http://8.8.8.8:9000".into(),
            "connection.s3.endpoint",
            &["URL uses http, which would send audit events unencrypted; use https"],
        ),
        (
            "S3 endpoint on a private address",
            Kind::S3,
            |c| s3_creds(c).endpoint = "https://10.0.0.5:9000".into(),
            "connection.s3.endpoint",
            &["10.0.0.5 is a private address"],
        ),
        // Azure Blob
        (
            "Azure account in uppercase",
            Kind::Blob,
            |c| blob_creds(c).account = "AuditStore".into(),
            "connection.azure_blob.account",
            &[
                "Azure storage account name \"AuditStore\" contains 'A'",
                "(account names are all lowercase)",
            ],
        ),
        (
            "Azure account given as the endpoint host",
            Kind::Blob,
            |c| blob_creds(c).account = "auditstore.blob.core.windows.net".into(),
            "connection.azure_blob.account",
            &["give the account name only, not the endpoint host name"],
        ),
        (
            "Azure account too short",
            Kind::Blob,
            |c| blob_creds(c).account = "ab".into(),
            "connection.azure_blob.account",
            &["\"ab\" is 2 characters long; it must be 3 to 24"],
        ),
        (
            "Azure account missing",
            Kind::Blob,
            |c| blob_creds(c).account.clear(),
            "connection.azure_blob.account",
            &["an Azure storage account name is required"],
        ),
        (
            "Azure Blob without a method",
            Kind::Blob,
            |c| blob_creds(c).method = None,
            "connection.azure_blob",
            &["a method is required: shared_key, sas or client_credentials"],
        ),
        (
            "Azure Blob SAS without its token",
            Kind::Blob,
            |c| {
                blob_creds(c).method = Some(azure_blob_credentials::Method::Sas(AzureSasToken {
                    sas_token: String::new(),
                }))
            },
            "connection.azure_blob.sas.sas_token",
            &["required"],
        ),
        (
            "Azure Blob client credentials without the secret",
            Kind::Blob,
            |c| {
                blob_creds(c).method = Some(azure_blob_credentials::Method::ClientCredentials(
                    AzureClientCredentials {
                        client_secret: String::new(),
                        ..client_credentials()
                    },
                ))
            },
            "connection.azure_blob.client_credentials.client_secret",
            &["required"],
        ),
        // Azure Monitor
        (
            "Azure Monitor legacy Data Collector (shared key)",
            Kind::Monitor,
            |c| {
                monitor_creds(c).method = Some(
                    azure_monitor_credentials::Method::LegacyDataCollector(LegacyDataCollector {
                        workspace_id: "00000000-0000-0000-0000-000000000003".into(),
                        shared_key: SECRET.into(),
                    }),
                )
            },
            "connection.azure_monitor.legacy_data_collector",
            &[
                "HTTP Data Collector API",
                "was retired in September 2026",
                "use the Logs Ingestion API instead",
                "immutable ID (dcr-...)",
            ],
        ),
        (
            "Azure Monitor without a method",
            Kind::Monitor,
            |c| monitor_creds(c).method = None,
            "connection.azure_monitor",
            &["a method is required: client_credentials"],
        ),
        (
            "Azure Monitor client credentials without a tenant",
            Kind::Monitor,
            |c| {
                monitor_creds(c).method = Some(
                    azure_monitor_credentials::Method::ClientCredentials(AzureClientCredentials {
                        tenant_id: " ".into(),
                        ..client_credentials()
                    }),
                )
            },
            "connection.azure_monitor.client_credentials.tenant_id",
            &["required"],
        ),
        (
            "Azure Monitor authority host on the metadata address",
            Kind::Monitor,
            |c| {
                monitor_creds(c).method = Some(
                    azure_monitor_credentials::Method::ClientCredentials(AzureClientCredentials {
                        authority_host: "https://169.254.169.254/".into(),
                        ..client_credentials()
                    }),
                )
            },
            "connection.azure_monitor.client_credentials.authority_host",
            &["169.254.169.254 is a cloud metadata service address"],
        ),
        // HTTP
        (
            "HTTP without auth",
            Kind::Http,
            |c| c.credentials = Some(Credentials::Http(HttpCredentials::default())),
            "connection.http",
            &["auth is required: none, basic, bearer or header"],
        ),
        (
            "HTTP credentials without an origin",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Bearer(HttpBearerAuth {
                        token: SECRET.into(),
                    }),
                );
                http_creds(c).origin.clear();
            },
            "connection.http.origin",
            &["required with credentials"],
        ),
        (
            "HTTP origin with a path",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Bearer(HttpBearerAuth {
                        token: SECRET.into(),
                    }),
                );
                http_creds(c).origin = "https://8.8.8.8/ingest".into();
            },
            "connection.http.origin",
            &["must be an origin", "e.g. https://8.8.8.8"],
        ),
        (
            "HTTP origin on a private address",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Bearer(HttpBearerAuth {
                        token: SECRET.into(),
                    }),
                );
                http_creds(c).origin = "https://10.0.0.1".into();
            },
            "connection.http.origin",
            &["10.0.0.1 is a private address"],
        ),
        (
            "HTTP url auth with an origin",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Url(HttpUrlAuth {
                        url: "https://8.8.8.8/receiver/v1/http/SECRET".into(),
                    }),
                );
            },
            "connection.http.origin",
            &["leave empty with url auth"],
        ),
        (
            "HTTP url auth that is not a URL (never repeated)",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Url(HttpUrlAuth {
                        url: "collector-token-not-a-url".into(),
                    }),
                );
                http_creds(c).origin.clear();
            },
            "connection.http.url.url",
            &["is not an absolute https URL"],
        ),
        (
            "HTTP sealed header with a line break",
            Kind::Http,
            |c| {
                http_creds(c)
                    .headers
                    .insert("DD-API-KEY".into(), "abc\r\nX-Injected: 1".into());
                http_creds(c).origin = "https://8.8.8.8".into();
            },
            "connection.http.headers.DD-API-KEY",
            &["must not contain control characters"],
        ),
        (
            "Azure Monitor without an ingestion endpoint",
            Kind::Monitor,
            |c| monitor_creds(c).ingestion_endpoint.clear(),
            "connection.azure_monitor.ingestion_endpoint",
            &["required"],
        ),
        (
            "HTTP basic user name with a colon",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Basic(HttpBasicAuth {
                        username: "ops:admin".into(),
                        password: SECRET.into(),
                    }),
                )
            },
            "connection.http.basic.username",
            &["must not contain ':'"],
        ),
        (
            "HTTP basic without a password",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Basic(HttpBasicAuth {
                        username: "ops".into(),
                        password: String::new(),
                    }),
                )
            },
            "connection.http.basic.password",
            &["required"],
        ),
        (
            "HTTP bearer without a token",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Bearer(HttpBearerAuth {
                        token: String::new(),
                    }),
                )
            },
            "connection.http.bearer.token",
            &["required"],
        ),
        (
            "HTTP header auth with a bad header name",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Header(HttpHeaderAuth {
                        name: "DD API KEY".into(),
                        value: SECRET.into(),
                    }),
                )
            },
            "connection.http.header.name",
            &["\"DD API KEY\" is not a valid HTTP header name"],
        ),
        (
            "HTTP header auth value with a line break",
            Kind::Http,
            |c| {
                http_auth(
                    c,
                    http_credentials::Auth::Header(HttpHeaderAuth {
                        name: "DD-API-KEY".into(),
                        value: "abc\r\nX-Injected: 1".into(),
                    }),
                )
            },
            "connection.http.header.value",
            &["must not contain control characters"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (rule, kind, change, field, texts)) in cases.iter().enumerate() {
        let mut c = valid_connection(*kind, &format!("c{i}"));
        change(&mut c);
        let id = c.id.clone();
        let result = a
            .create_connection(pb::CreateConnectionRequest {
                connection: Some(c),
            })
            .await;
        let problem = check_refusal(result.map(drop), field, texts);
        if let Some(p) = not_stored(problem, get_connection(a, &id).await) {
            failures.push(format!("{rule}: {p}"));
        }
    }
    report("CreateConnection", failures);
}

// ------------------------------------------------------------------------- streams

type StreamCase = (
    &'static str,
    Kind,
    fn(&mut Stream),
    &'static str,
    &'static [&'static str],
);

/// The SSRF message tail every refused address carries.
const ALLOW_LIST_HINT: &str = "HTTP destinations must be public unless an operator allow-lists \
                               them (http.allowed_networks)";

#[tokio::test]
async fn create_stream_refuses_each_broken_rule_with_its_field() {
    let mut s = config_stack().await;
    fixture(&mut s).await;
    let a = &mut s.admin;
    let cases: &[StreamCase] = &[
        // The stream itself
        (
            "id with a dot",
            Kind::S3,
            |s| s.id = "s.1".into(),
            "stream.id",
            &["\"s.1\" contains '.'"],
        ),
        (
            "name of 201 characters",
            Kind::S3,
            |s| s.name = "n".repeat(201),
            "stream.name",
            &["at most 200 characters, without control characters"],
        ),
        (
            "applies_to unspecified",
            Kind::S3,
            |s| s.applies_to = AppliesTo::Unspecified as i32,
            "stream.applies_to",
            &["required: self or descendants"],
        ),
        // Event selection
        (
            "no selection",
            Kind::S3,
            |s| s.selection = None,
            "stream.selection",
            &["required: at least one event type"],
        ),
        (
            "no event type selected",
            Kind::S3,
            |s| selection(s).event_types.clear(),
            "stream.selection.event_types",
            &["select at least one event type"],
        ),
        (
            "unknown event type",
            Kind::S3,
            |s| selection(s).event_types = vec!["job_status".into(), "job_stats".into()],
            "stream.selection.event_types[1]",
            &[
                "unknown event type \"job_stats\"",
                "expected one of job_status, job_details, user_activity, api_platform, \
                 log_event, genie_conversation",
            ],
        ),
        (
            "unknown log level",
            Kind::S3,
            |s| selection(s).log_levels = vec!["verbose".into()],
            "stream.selection.log_levels[0]",
            &[
                "unknown level \"verbose\"",
                "expected one of trace, debug, info, warn (or warning), error, fatal (or \
                 critical)",
            ],
        ),
        (
            "empty log type",
            Kind::S3,
            |s| selection(s).log_types = vec!["audit".into(), String::new()],
            "stream.selection.log_types[1]",
            &["a non-empty log type of at most 64 characters"],
        ),
        // Template
        (
            "template with an unknown placeholder",
            Kind::S3,
            |s| s.template = r#"{"msg": {{{message}}}}"#.into(),
            "stream.template",
            &[
                "unknown placeholder `{{{message}}}` at line 1, column 9",
                "supported placeholders are {{{log_message}}}",
            ],
        ),
        (
            "template that is not JSON once filled",
            Kind::S3,
            |s| s.template = r#"{"msg": "{{{log_message}}}""#.into(),
            "stream.template",
            &["the template is not valid JSON once placeholders are filled in"],
        ),
        (
            // Each copy of the event grows every delivery by the event's size (H4).
            "template copying the event three times",
            Kind::S3,
            |s| {
                s.template =
                    r#"[{{{log_message}}}, {{{log_message}}}, "{{{log_message_str}}}"]"#.into()
            },
            "stream.template",
            &[
                "the template copies the event 3 times",
                "at most 2 are allowed",
            ],
        ),
        (
            "template with an unterminated placeholder",
            Kind::S3,
            |s| s.template = r#"{"msg": {{{log_message}}"#.into(),
            "stream.template",
            &["unterminated placeholder at line 1, column 9"],
        ),
        (
            "template placeholder at a key position",
            Kind::S3,
            |s| s.template = r#"{{{{now}}}: 1}"#.into(),
            "stream.template",
            &["is outside a string but not where a JSON value goes"],
        ),
        (
            "blank template",
            Kind::S3,
            |s| s.template = "  ".into(),
            "stream.template",
            &["the template is empty"],
        ),
        // Batching
        (
            "more than 100000 events per batch",
            Kind::S3,
            |s| {
                s.batching = Some(Batching {
                    max_events: 100_001,
                    ..Default::default()
                })
            },
            "stream.batching.max_events",
            &["at most 100000"],
        ),
        (
            "batches over 100 MiB",
            Kind::S3,
            |s| {
                s.batching = Some(Batching {
                    max_bytes: 100 * 1024 * 1024 + 1,
                    ..Default::default()
                })
            },
            "stream.batching.max_bytes",
            &["at most 104857600 (100 MiB)"],
        ),
        (
            "batches older than 15 minutes",
            Kind::S3,
            |s| {
                s.batching = Some(Batching {
                    max_age_ms: 15 * 60 * 1000 + 1,
                    ..Default::default()
                })
            },
            "stream.batching.max_age_ms",
            &["at most 900000 (15 minutes)"],
        ),
        // Destination: target against connection
        (
            "no target",
            Kind::S3,
            |s| s.destination.as_mut().unwrap().target = None,
            "stream.destination",
            &["a target is required: s3, azure_blob, azure_monitor or http"],
        ),
        (
            "HTTP target on an S3 connection",
            Kind::S3,
            |s| {
                *target(s) = Target::Http(HttpTarget {
                    url: PUBLIC_URL.into(),
                    ..Default::default()
                })
            },
            "stream.destination",
            &["connection conn-s3 is of type s3 but the target is of type http"],
        ),
        (
            "S3 target on an Azure Blob connection",
            Kind::Blob,
            |s| {
                *target(s) = Target::S3(S3Target {
                    bucket: "audit-logs".into(),
                    ..Default::default()
                })
            },
            "stream.destination",
            &["connection conn-blob is of type azure_blob but the target is of type s3"],
        ),
        // S3 bucket, region, encryption, prefix
        (
            "S3 bucket missing",
            Kind::S3,
            |s| s3(s).bucket.clear(),
            "stream.destination.s3.bucket",
            &["an S3 bucket name is required (3 to 63 characters"],
        ),
        (
            "S3 bucket too short",
            Kind::S3,
            |s| s3(s).bucket = "ab".into(),
            "stream.destination.s3.bucket",
            &["S3 bucket name \"ab\" is 2 characters long; it must be 3 to 63"],
        ),
        (
            "S3 bucket too long",
            Kind::S3,
            |s| s3(s).bucket = "a".repeat(64),
            "stream.destination.s3.bucket",
            &["is 64 characters long; it must be 3 to 63"],
        ),
        (
            "S3 bucket in uppercase",
            Kind::S3,
            |s| s3(s).bucket = "Audit-Logs".into(),
            "stream.destination.s3.bucket",
            &[
                "S3 bucket name \"Audit-Logs\" contains 'A'",
                "only lowercase letters a-z, digits, '.' and '-' are allowed (bucket names are \
                 all lowercase)",
            ],
        ),
        (
            "S3 bucket with an underscore",
            Kind::S3,
            |s| s3(s).bucket = "audit_logs".into(),
            "stream.destination.s3.bucket",
            &["contains '_'"],
        ),
        (
            "S3 bucket starting with a hyphen",
            Kind::S3,
            |s| s3(s).bucket = "-audit".into(),
            "stream.destination.s3.bucket",
            &["must begin with a lowercase letter or digit"],
        ),
        (
            "S3 bucket with adjacent dots",
            Kind::S3,
            |s| s3(s).bucket = "audit..logs".into(),
            "stream.destination.s3.bucket",
            &["must not contain two adjacent periods (\"..\")"],
        ),
        (
            "S3 bucket formatted as an IP address",
            Kind::S3,
            |s| s3(s).bucket = "192.168.5.4".into(),
            "stream.destination.s3.bucket",
            &["must not be formatted as an IP address (like 192.168.5.4)"],
        ),
        (
            "S3 bucket with the xn-- prefix",
            Kind::S3,
            |s| s3(s).bucket = "xn--audit".into(),
            "stream.destination.s3.bucket",
            &["must not start with \"xn--\" (reserved for internationalized domain names)"],
        ),
        (
            "S3 bucket with the -s3alias suffix",
            Kind::S3,
            |s| s3(s).bucket = "audit-s3alias".into(),
            "stream.destination.s3.bucket",
            &["must not end with \"-s3alias\" (reserved for S3 access point aliases)"],
        ),
        (
            "S3 bucket with the --x-s3 suffix",
            Kind::S3,
            |s| s3(s).bucket = "audit--x-s3".into(),
            "stream.destination.s3.bucket",
            &["must not end with \"--x-s3\" (reserved for S3 directory buckets)"],
        ),
        (
            "S3 region not a region code",
            Kind::S3,
            |s| s3(s).region = "Frankfurt".into(),
            "stream.destination.s3.region",
            &["\"Frankfurt\" is not an AWS region code"],
        ),
        (
            "S3 KMS encryption without a key",
            Kind::S3,
            |s| s3(s).sse = ServerSideEncryption::AwsKms as i32,
            "stream.destination.s3.kms_key_id",
            &["required with SERVER_SIDE_ENCRYPTION_AWS_KMS"],
        ),
        (
            "S3 KMS key without KMS encryption",
            Kind::S3,
            |s| s3(s).kms_key_id = "alias/audit".into(),
            "stream.destination.s3.kms_key_id",
            &["only used with SERVER_SIDE_ENCRYPTION_AWS_KMS"],
        ),
        (
            "S3 prefix starting with a slash",
            Kind::S3,
            |s| s3(s).prefix = "/audit/".into(),
            "stream.destination.s3.prefix",
            &["key prefix \"/audit/\" must not start with '/'"],
        ),
        (
            "S3 prefix with a .. segment",
            Kind::S3,
            |s| s3(s).prefix = "audit/../other/".into(),
            "stream.destination.s3.prefix",
            &["must not contain a \".\" or \"..\" segment"],
        ),
        // Azure Blob container and prefix
        (
            "Azure container in uppercase",
            Kind::Blob,
            |s| blob(s).container = "AuditLogs".into(),
            "stream.destination.azure_blob.container",
            &[
                "Azure blob container name \"AuditLogs\" contains 'A'",
                "(container names are all lowercase)",
            ],
        ),
        (
            "Azure container with a double hyphen",
            Kind::Blob,
            |s| blob(s).container = "audit--logs".into(),
            "stream.destination.azure_blob.container",
            &["must not contain consecutive hyphens (\"--\")"],
        ),
        (
            "Azure container too short",
            Kind::Blob,
            |s| blob(s).container = "ab".into(),
            "stream.destination.azure_blob.container",
            &["\"ab\" is 2 characters long; it must be 3 to 63"],
        ),
        (
            "Azure container ending with a hyphen",
            Kind::Blob,
            |s| blob(s).container = "audit-".into(),
            "stream.destination.azure_blob.container",
            &["must not end with a hyphen"],
        ),
        (
            "Azure $web container",
            Kind::Blob,
            |s| blob(s).container = "$web".into(),
            "stream.destination.azure_blob.container",
            &["could be publicly readable; use a regular container such as audit-logs"],
        ),
        (
            "Azure prefix with an empty segment",
            Kind::Blob,
            |s| blob(s).prefix = "audit//prod/".into(),
            "stream.destination.azure_blob.prefix",
            &["must not contain an empty segment (\"//\")"],
        ),
        // Azure Monitor Logs Ingestion
        (
            "Azure Monitor ingestion endpoint over plain http",
            Kind::Monitor,
            |s| monitor(s).ingestion_endpoint = "http://8.8.8.8/".into(),
            "stream.destination.azure_monitor.ingestion_endpoint",
            &["URL uses http"],
        ),
        (
            "DCR immutable id too short",
            Kind::Monitor,
            |s| monitor(s).dcr_immutable_id = "dcr-0123abcd".into(),
            "stream.destination.azure_monitor.dcr_immutable_id",
            &[
                "\"dcr-0123abcd\" is not a data collection rule immutable ID",
                "expected \"dcr-\" followed by 32 hexadecimal characters",
            ],
        ),
        (
            "DCR immutable id with non-hex characters",
            Kind::Monitor,
            |s| monitor(s).dcr_immutable_id = "dcr-0123456789abcdef0123456789abcdeg".into(),
            "stream.destination.azure_monitor.dcr_immutable_id",
            &["is not a data collection rule immutable ID"],
        ),
        (
            "DCR resource id instead of the immutable id",
            Kind::Monitor,
            |s| {
                monitor(s).dcr_immutable_id = "/subscriptions/0000/resourceGroups/rg/providers/\
                                               Microsoft.Insights/dataCollectionRules/audit"
                    .into()
            },
            "stream.destination.azure_monitor.dcr_immutable_id",
            &["this looks like the rule's resource ID, use its immutableId instead"],
        ),
        (
            "DCR immutable id missing",
            Kind::Monitor,
            |s| monitor(s).dcr_immutable_id.clear(),
            "stream.destination.azure_monitor.dcr_immutable_id",
            &["a data collection rule immutable ID is required"],
        ),
        (
            "stream name without Custom- or Microsoft-",
            Kind::Monitor,
            |s| monitor(s).stream_name = "AuditLogs_CL".into(),
            "stream.destination.azure_monitor.stream_name",
            &["stream name \"AuditLogs_CL\" must start with \"Custom-\""],
        ),
        (
            "stream name with a space",
            Kind::Monitor,
            |s| monitor(s).stream_name = "Custom-Audit Logs".into(),
            "stream.destination.azure_monitor.stream_name",
            &["contains a space; after \"Custom-\" only letters, digits, '_' and '-'"],
        ),
        (
            "log type with a hyphen",
            Kind::Monitor,
            |s| monitor(s).log_type = "Audit-Logs".into(),
            "stream.destination.azure_monitor.log_type",
            &["log type \"Audit-Logs\" contains '-'; only letters, digits and '_' are allowed"],
        ),
        (
            "log type of 101 characters",
            Kind::Monitor,
            |s| monitor(s).log_type = "L".repeat(101),
            "stream.destination.azure_monitor.log_type",
            &["is 101 characters long; at most 100 are allowed"],
        ),
        // HTTP URL: scheme and shape
        (
            "HTTP URL over plain http",
            Kind::Http,
            |s| http(s).url = "http://8.8.8.8/ingest".into(),
            "stream.destination.http.url",
            &[
                "URL uses http, which would send audit events unencrypted; use https",
                "an operator can allow plain http with the setting http.allow_insecure_http",
            ],
        ),
        (
            "HTTP URL with another scheme",
            Kind::Http,
            |s| http(s).url = "ftp://8.8.8.8/ingest".into(),
            "stream.destination.http.url",
            &["URL scheme \"ftp\" is not supported; use https"],
        ),
        (
            "HTTP URL with user and password",
            Kind::Http,
            |s| http(s).url = "https://user:pw@8.8.8.8/ingest".into(),
            "stream.destination.http.url",
            &["must not contain a user name or password"],
        ),
        (
            "HTTP URL not absolute",
            Kind::Http,
            |s| http(s).url = "logs.example.com/ingest".into(),
            "stream.destination.http.url",
            &["is not an absolute URL"],
        ),
        // HTTP URL: SSRF
        (
            "HTTP URL on loopback",
            Kind::Http,
            |s| http(s).url = "https://127.0.0.1/".into(),
            "stream.destination.http.url",
            &["127.0.0.1 is a loopback address", ALLOW_LIST_HINT],
        ),
        (
            "HTTP URL on a name that resolves to loopback",
            Kind::Http,
            |s| http(s).url = "https://localhost/".into(),
            "stream.destination.http.url",
            &["localhost resolves to a loopback address", ALLOW_LIST_HINT],
        ),
        (
            "HTTP URL on IPv6 loopback",
            Kind::Http,
            |s| http(s).url = "https://[::1]/".into(),
            "stream.destination.http.url",
            &["::1 is a loopback address", ALLOW_LIST_HINT],
        ),
        (
            "HTTP URL on a private address",
            Kind::Http,
            |s| http(s).url = "https://10.0.0.1/".into(),
            "stream.destination.http.url",
            &["10.0.0.1 is a private address", ALLOW_LIST_HINT],
        ),
        (
            "HTTP URL on the cloud metadata service",
            Kind::Http,
            |s| http(s).url = "https://169.254.169.254/latest/meta-data".into(),
            "stream.destination.http.url",
            &[
                "169.254.169.254 is a cloud metadata service address",
                ALLOW_LIST_HINT,
            ],
        ),
        (
            "HTTP URL on loopback written as a number",
            Kind::Http,
            |s| http(s).url = "https://2130706433/".into(),
            "stream.destination.http.url",
            &["non-standard way of writing the IPv4 address 127.0.0.1"],
        ),
        (
            "HTTP URL on an IPv4-mapped loopback address",
            Kind::Http,
            |s| http(s).url = "https://[::ffff:127.0.0.1]/".into(),
            "stream.destination.http.url",
            &["is a loopback address"],
        ),
        // HTTP headers
        (
            "HTTP Authorization header in the target",
            Kind::Http,
            |s| {
                http(s)
                    .headers
                    .insert("Authorization".into(), "Bearer abc".into());
            },
            "stream.destination.http.headers.Authorization",
            &["credentials belong in the connection (http.bearer, http.basic or http.header)"],
        ),
        (
            "HTTP authorization header in lowercase",
            Kind::Http,
            |s| {
                http(s)
                    .headers
                    .insert("authorization".into(), "Basic abc".into());
            },
            "stream.destination.http.headers.authorization",
            &["credentials belong in the connection"],
        ),
        (
            "HTTP header with a bad name",
            Kind::Http,
            |s| {
                http(s)
                    .headers
                    .insert("X Source".into(), "auditstream".into());
            },
            "stream.destination.http.headers.X Source",
            &["\"X Source\" is not a valid HTTP header name"],
        ),
        (
            "HTTP request header in the target (values can authenticate)",
            Kind::Http,
            |s| {
                http(s).headers.insert("DD-API-KEY".into(), "abc".into());
            },
            "stream.destination.http.headers.DD-API-KEY",
            &["belong in the connection's http.headers, where their values are sealed"],
        ),
        (
            "Azure Monitor target on another endpoint than its connection's",
            Kind::Monitor,
            |s| monitor(s).ingestion_endpoint = "https://8.8.4.4/".into(),
            "stream.destination.azure_monitor.ingestion_endpoint",
            &["https://8.8.4.4 is not the connection's ingestion endpoint https://8.8.8.8"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (rule, kind, change, field, texts)) in cases.iter().enumerate() {
        let mut stream = valid_stream(*kind, &format!("v{i}"));
        change(&mut stream);
        if let Some(p) = expect_stream_refused(a, stream, field, texts).await {
            failures.push(format!("{rule}: {p}"));
        }
    }
    report("CreateStream", failures);
}

/// The streams the refusal cases start from are accepted, with every optional field set.
#[tokio::test]
async fn valid_streams_of_every_type_are_accepted() {
    let mut s = config_stack().await;
    fixture(&mut s).await;
    let a = &mut s.admin;
    for kind in KINDS {
        let id = format!("ok-{}", kind.connection_id());
        let created = create_stream(a, valid_stream(kind, &id))
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));
        assert_eq!(created.version, 1);
        assert_eq!(get_stream(a, &id).await.unwrap().id, id);
    }
    let mut full = valid_stream(Kind::S3, "ok-s3-full");
    full.template = r#"{"event": {{{log_message}}}, "at": "{{now}}", "ts": {{{now_utc}}}}"#.into();
    full.batching = Some(Batching {
        max_events: 100_000,
        max_bytes: 100 * 1024 * 1024,
        max_age_ms: 15 * 60 * 1000,
    });
    *selection(&mut full) = EventSelection {
        event_types: vec!["log_event".into(), "job_details".into()],
        include_step_details: true,
        log_types: vec!["audit".into()],
        log_levels: vec!["warning".into(), "critical".into()],
    };
    *s3(&mut full) = S3Target {
        bucket: "audit.logs-2026".into(),
        region: "eusc-de-east-1".into(),
        prefix: "audit/prod/".into(),
        sse: ServerSideEncryption::AwsKms as i32,
        kms_key_id: "alias/audit".into(),
        ..Default::default()
    };
    create_stream(a, full).await.expect("full S3 stream");
    let mut v6 = valid_stream(Kind::Http, "ok-http-v6");
    http(&mut v6).url = "https://[2606:4700:4700::1111]:8443/services/collector".into();
    http(&mut v6)
        .headers
        .insert("auditstream-framing".into(), "ndjson".into());
    create_stream(a, v6).await.expect("public IPv6 literal");
}

/// UpdateStream and UpdateConnection apply the same rules, and a refused update changes
/// nothing.
#[tokio::test]
async fn updates_apply_the_same_rules() {
    let mut s = config_stack().await;
    fixture(&mut s).await;
    let a = &mut s.admin;
    create_stream(a, valid_stream(Kind::S3, "s1"))
        .await
        .unwrap();
    let mut bad = valid_stream(Kind::S3, "s1");
    s3(&mut bad).bucket = "Audit-Logs".into();
    let result = a
        .update_stream(pb::UpdateStreamRequest {
            stream: Some(bad),
            update_mask: vec!["destination".into()],
        })
        .await;
    let problem = check_refusal(
        result.map(drop),
        "stream.destination.s3.bucket",
        &["contains 'A'"],
    );
    assert_eq!(problem, None);
    let mut stored = get_stream(a, "s1").await.unwrap();
    assert_eq!(stored.version, 1, "a refused update is not stored");
    assert_eq!(s3(&mut stored).bucket, "audit-logs");

    let mut legacy = valid_connection(Kind::Monitor, Kind::Monitor.connection_id());
    monitor_creds(&mut legacy).method = Some(
        azure_monitor_credentials::Method::LegacyDataCollector(LegacyDataCollector {
            workspace_id: "w".into(),
            shared_key: SECRET.into(),
        }),
    );
    let result = a
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(legacy),
        })
        .await;
    let problem = check_refusal(
        result.map(drop),
        "connection.azure_monitor.legacy_data_collector",
        &["September 2026", "Logs Ingestion API"],
    );
    assert_eq!(problem, None);
    let stored = get_connection(a, Kind::Monitor.connection_id())
        .await
        .unwrap();
    assert_eq!(stored.version, 1, "a refused update is not stored");
}

/// `http.allow_insecure_http` lifts the https rule and nothing else.
#[tokio::test]
async fn plain_http_passes_only_when_the_operator_allows_it() {
    let mut strict = config_stack().await;
    fixture(&mut strict).await;
    let mut plain = valid_stream(Kind::Http, "plain");
    http(&mut plain).url = "http://8.8.8.8/ingest".into();
    assert_eq!(
        expect_stream_refused(
            &mut strict.admin,
            plain.clone(),
            "stream.destination.http.url",
            &["URL uses http"],
        )
        .await,
        None
    );

    let mut lax = stack_with(|c| c.http.allow_insecure_http = true).await;
    fixture(&mut lax).await;
    let created = create_stream(&mut lax.admin, plain)
        .await
        .expect("http to a public IP literal passes when allowed");
    assert_eq!(http(&mut created.clone()).url, "http://8.8.8.8/ingest");
    // The address rules still hold for plain http.
    let mut local = valid_stream(Kind::Http, "plain-local");
    http(&mut local).url = "http://127.0.0.1:8080/".into();
    assert_eq!(
        expect_stream_refused(
            &mut lax.admin,
            local,
            "stream.destination.http.url",
            &["127.0.0.1 is a loopback address"],
        )
        .await,
        None
    );
}

/// `http.allowed_networks` lets an operator target an internal receiver; only the listed
/// networks pass, and the metadata service stays refused.
#[tokio::test]
async fn allow_listed_networks_pass_the_ssrf_check() {
    let mut s = stack_with(|c| c.http.allowed_networks = vec!["127.0.0.0/8".into()]).await;
    fixture(&mut s).await;
    let a = &mut s.admin;
    let mut internal = valid_stream(Kind::Http, "internal");
    http(&mut internal).url = "https://127.0.0.1:9/".into();
    create_stream(a, internal)
        .await
        .expect("127.0.0.1 is in an allow-listed network");
    for (id, url, text) in [
        (
            "private",
            "https://10.0.0.1/",
            "10.0.0.1 is a private address",
        ),
        (
            "metadata",
            "https://169.254.169.254/latest/meta-data",
            "169.254.169.254 is a cloud metadata service address",
        ),
        (
            "v6-loopback",
            "https://[::1]:9/",
            "::1 is a loopback address",
        ),
    ] {
        let mut stream = valid_stream(Kind::Http, id);
        http(&mut stream).url = url.into();
        assert_eq!(
            expect_stream_refused(a, stream, "stream.destination.http.url", &[text]).await,
            None,
            "{url}"
        );
    }
}

/// A stream without a destination, or without its connection id, is a missing field:
/// INVALID_ARGUMENT naming it (not NOT_FOUND for a connection with an empty id).
#[tokio::test]
async fn a_missing_destination_is_an_invalid_argument() {
    let mut s = config_stack().await;
    fixture(&mut s).await;
    let a = &mut s.admin;
    let cases: &[StreamCase] = &[
        (
            "no destination",
            Kind::S3,
            |s| s.destination = None,
            "stream.destination.connection_id",
            &["required: a connection and a target"],
        ),
        (
            "no connection id",
            Kind::S3,
            |s| s.destination.as_mut().unwrap().connection_id.clear(),
            "stream.destination.connection_id",
            &["required"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (rule, kind, change, field, texts)) in cases.iter().enumerate() {
        let mut stream = valid_stream(*kind, &format!("d{i}"));
        change(&mut stream);
        if let Some(p) = expect_stream_refused(a, stream, field, texts).await {
            failures.push(format!("{rule}: {p}"));
        }
    }
    report("missing destination", failures);
}
