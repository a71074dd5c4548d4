//! Checks on what admins save, each failing with INVALID_ARGUMENT naming the field. The
//! rules themselves live in `model` (destination names, URLs, address classes, templates)
//! so that the sinks apply the same ones at connect time; this module walks the wire types.

use std::net::IpAddr;

use auditstream_model::{
    EventType, LogLevel, SinkType,
    binding::parse_origin,
    destination::{self as rules, Host, HttpUrl, NetworkAllowList},
    http_settings,
    template::Template,
    validate_id,
};
use auditstream_proto::binding;
use auditstream_proto::v1::{
    AppliesTo, Connection, Destination, Node, NodeKind, ServerSideEncryption, Stream,
    azure_blob_credentials, azure_monitor_credentials, connection::Credentials,
    destination::Target, http_credentials, s3_credentials,
};
use serde::{Deserialize, Serialize};

use crate::error::{ServiceError, invalid};

/// Operator settings for HTTP(S) destinations (`http` in the configuration).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPolicyConfig {
    /// Allow `http://` URLs (plain text). Off: every URL must be https.
    pub allow_insecure_http: bool,
    /// Networks (CIDR) and host names that may be targeted although they are loopback,
    /// private, link-local or metadata addresses, e.g. an in-cluster receiver.
    pub allowed_networks: Vec<String>,
}

/// Operator settings for connections (`connections` in the configuration).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Nodes at which (and below which) an S3 connection may use the platform's own AWS
    /// identity: `default_chain`, or `assume_role` without `source_keys` (STS called as the
    /// sink pod). Empty: nowhere.
    pub platform_identity_nodes: Vec<String>,
}

pub struct Policy {
    pub allow_insecure_http: bool,
    pub allowed: NetworkAllowList,
    /// `connections.platform_identity_nodes`.
    pub platform_identity_nodes: Vec<String>,
}

impl Policy {
    pub fn new(config: &HttpPolicyConfig) -> Result<Policy, String> {
        Ok(Policy {
            allow_insecure_http: config.allow_insecure_http,
            allowed: NetworkAllowList::parse(&config.allowed_networks)
                .map_err(|e| format!("http.allowed_networks: {e}"))?,
            platform_identity_nodes: Vec::new(),
        })
    }

    pub fn with_platform_identity_nodes(mut self, config: &ConnectionsConfig) -> Policy {
        self.platform_identity_nodes = config.platform_identity_nodes.clone();
        self
    }
}

/// The field by which `conn` would act as the platform's own AWS identity, if it would: the
/// sink pod's IRSA role or instance profile writes directly (`default_chain`), or calls STS
/// for a role of the tenant's choosing (`assume_role` without `source_keys`).
pub fn platform_identity_field(conn: &Connection) -> Option<&'static str> {
    let Some(Credentials::S3(s3)) = conn.credentials.as_ref() else {
        return None;
    };
    match s3.method.as_ref()? {
        s3_credentials::Method::DefaultChain(_) => Some("connection.s3.default_chain"),
        s3_credentials::Method::AssumeRole(r) if r.source_keys.is_none() => {
            Some("connection.s3.assume_role.source_keys")
        }
        _ => None,
    }
}

/// H6: a connection may use the platform's identity only at a node the operator listed in
/// `connections.platform_identity_nodes`, or below one. Anyone else who could save one
/// would act as the platform in AWS (confused deputy): write to, or list, whatever the
/// platform's role may reach. Refused with FAILED_PRECONDITION: the request is well formed,
/// but the operator's setting does not allow it here.
pub fn platform_identity(
    conn: &Connection,
    tree: &auditstream_model::routing::Tree,
    policy: &Policy,
) -> Result<(), ServiceError> {
    let Some(field) = platform_identity_field(conn) else {
        return Ok(());
    };
    if policy
        .platform_identity_nodes
        .iter()
        .any(|allowed| tree.is_within(&conn.node_id, allowed))
    {
        return Ok(());
    }
    let what = if field.ends_with("default_chain") {
        "default_chain uses the platform's own AWS identity (the sink's IRSA role or instance profile)"
    } else {
        "assume_role without source_keys calls STS with the platform's own AWS identity"
    };
    Err(ServiceError::FailedPrecondition(format!(
        "{field}: {what}, which is allowed only at nodes the operator lists in connections.platform_identity_nodes (AUDITSTREAM_CONNECTIONS__PLATFORM_IDENTITY_NODES) and below them; node {} is not, so the operator must allow the node first. Otherwise use static_keys, or assume_role with source_keys",
        conn.node_id
    )))
}

const MAX_NAME: usize = 200;

fn id(field: &str, value: &str) -> Result<(), ServiceError> {
    validate_id(value).map_err(|e| invalid(field, format!("{value:?} {e}")))
}

fn name(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.chars().count() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("at most {MAX_NAME} characters, without control characters"),
        ));
    }
    Ok(())
}

fn required(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "required"));
    }
    Ok(())
}

pub fn node(node: &Node) -> Result<(), ServiceError> {
    id("node.id", &node.id)?;
    if !node.parent_id.is_empty() {
        id("node.parent_id", &node.parent_id)?;
        if node.parent_id == node.id {
            return Err(invalid("node.parent_id", "a node cannot be its own parent"));
        }
    }
    if node.kind() == NodeKind::Unspecified {
        return Err(invalid(
            "node.kind",
            "required: organization, partner, customer or workspace",
        ));
    }
    name("node.name", &node.name)?;
    if node.external_id.len() > 256 || node.external_id.chars().any(char::is_control) {
        return Err(invalid(
            "node.external_id",
            "at most 256 characters, without control characters",
        ));
    }
    for (i, email) in node.admin_emails.iter().enumerate() {
        let ok = email.len() <= 254
            && email.split_once('@').is_some_and(|(user, domain)| {
                !user.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !email
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ';');
        if !ok {
            return Err(invalid(
                &format!("node.admin_emails[{i}]"),
                format!("{email:?} is not an e-mail address"),
            ));
        }
    }
    Ok(())
}

/// Longest wait for the save-time DNS lookup of one host.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most sealed headers a connection may carry.
const MAX_CONNECTION_HEADERS: usize = 32;

/// Checks a connection whose secrets are already merged (on update, empty secrets were
/// filled from the stored ones). Returns its destination type and the URLs to resolve.
pub fn connection(
    conn: &Connection,
    policy: &Policy,
) -> Result<(SinkType, Vec<(String, HttpUrl)>), ServiceError> {
    id("connection.id", &conn.id)?;
    id("connection.node_id", &conn.node_id)?;
    name("connection.name", &conn.name)?;
    let mut urls = Vec::new();
    let sink = match conn.credentials.as_ref() {
        None => {
            return Err(invalid(
                "connection.credentials",
                "required: one of s3, azure_blob, azure_monitor, http",
            ));
        }
        Some(Credentials::S3(s3)) => {
            if !s3.region.is_empty() {
                rules::validate_s3_region("connection.s3.region", &s3.region)?;
            }
            if !s3.endpoint.is_empty() {
                urls.push(url("connection.s3.endpoint", &s3.endpoint, policy)?);
            }
            match s3.method.as_ref() {
                None => {
                    return Err(invalid(
                        "connection.s3",
                        "a method is required: static_keys, assume_role or default_chain",
                    ));
                }
                Some(s3_credentials::Method::StaticKeys(k)) => {
                    required("connection.s3.static_keys.access_key_id", &k.access_key_id)?;
                    required(
                        "connection.s3.static_keys.secret_access_key",
                        &k.secret_access_key,
                    )?;
                }
                Some(s3_credentials::Method::AssumeRole(r)) => {
                    let arn_ok = r.role_arn.starts_with("arn:")
                        && r.role_arn.split(':').count() == 6
                        && r.role_arn
                            .split(':')
                            .nth(5)
                            .is_some_and(|res| res.starts_with("role/") && res.len() > 5);
                    if !arn_ok {
                        return Err(invalid(
                            "connection.s3.assume_role.role_arn",
                            "must be an IAM role ARN like arn:aws:iam::123456789012:role/auditstream-writer",
                        ));
                    }
                    if let Some(k) = r.source_keys.as_ref() {
                        required(
                            "connection.s3.assume_role.source_keys.access_key_id",
                            &k.access_key_id,
                        )?;
                        required(
                            "connection.s3.assume_role.source_keys.secret_access_key",
                            &k.secret_access_key,
                        )?;
                    }
                }
                Some(s3_credentials::Method::DefaultChain(_)) => {}
            }
            SinkType::S3
        }
        Some(Credentials::AzureBlob(b)) => {
            if b.endpoint.is_empty() {
                rules::validate_azure_account("connection.azure_blob.account", &b.account)?;
            } else {
                urls.push(url("connection.azure_blob.endpoint", &b.endpoint, policy)?);
            }
            match b.method.as_ref() {
                None => {
                    return Err(invalid(
                        "connection.azure_blob",
                        "a method is required: shared_key, sas or client_credentials",
                    ));
                }
                Some(azure_blob_credentials::Method::SharedKey(k)) => required(
                    "connection.azure_blob.shared_key.account_key",
                    &k.account_key,
                )?,
                Some(azure_blob_credentials::Method::Sas(s)) => {
                    required("connection.azure_blob.sas.sas_token", &s.sas_token)?
                }
                Some(azure_blob_credentials::Method::ClientCredentials(c)) => client_credentials(
                    "connection.azure_blob.client_credentials",
                    c,
                    policy,
                    &mut urls,
                )?,
            }
            SinkType::AzureBlob
        }
        Some(Credentials::AzureMonitor(m)) => {
            match m.method.as_ref() {
                None => {
                    return Err(invalid(
                        "connection.azure_monitor",
                        "a method is required: client_credentials",
                    ));
                }
                Some(azure_monitor_credentials::Method::LegacyDataCollector(_)) => {
                    return Err(invalid(
                        "connection.azure_monitor.legacy_data_collector",
                        rules::LEGACY_DATA_COLLECTOR_RETIRED,
                    ));
                }
                Some(azure_monitor_credentials::Method::ClientCredentials(c)) => {
                    client_credentials(
                        "connection.azure_monitor.client_credentials",
                        c,
                        policy,
                        &mut urls,
                    )?
                }
            }
            // Where the Entra token minted from the secret may go (its binding).
            let field = "connection.azure_monitor.ingestion_endpoint";
            if m.ingestion_endpoint.is_empty() {
                return Err(invalid(
                    field,
                    "required: the data collection endpoint's origin, e.g. \
                     https://my-dce.westeurope-1.ingest.monitor.azure.com (the token minted \
                     from the client secret is sent only there)",
                ));
            }
            let endpoint = parse_origin(field, &m.ingestion_endpoint, policy.allow_insecure_http)?;
            urls.push((field.to_owned(), endpoint));
            SinkType::AzureMonitor
        }
        Some(Credentials::Http(h)) => {
            match h.auth.as_ref() {
                None => {
                    return Err(invalid(
                        "connection.http",
                        "auth is required: none, basic, bearer or header",
                    ));
                }
                Some(http_credentials::Auth::None(_)) => {}
                Some(http_credentials::Auth::Basic(b)) => {
                    required("connection.http.basic.username", &b.username)?;
                    if b.username.contains(':') {
                        return Err(invalid(
                            "connection.http.basic.username",
                            "must not contain ':'",
                        ));
                    }
                    required("connection.http.basic.password", &b.password)?;
                }
                Some(http_credentials::Auth::Bearer(b)) => {
                    required("connection.http.bearer.token", &b.token)?
                }
                Some(http_credentials::Auth::Header(h)) => {
                    header_name("connection.http.header.name", &h.name)?;
                    required("connection.http.header.value", &h.value)?;
                    if h.value.chars().any(|c| c.is_control()) {
                        return Err(invalid(
                            "connection.http.header.value",
                            "must not contain control characters",
                        ));
                    }
                }
                Some(http_credentials::Auth::Url(u)) => {
                    let field = "connection.http.url.url";
                    urls.push((field.to_owned(), secret_url(field, &u.url, policy)?));
                    if !h.origin.is_empty() {
                        return Err(invalid(
                            "connection.http.origin",
                            "leave empty with url auth: the URL itself is where requests go",
                        ));
                    }
                }
            }
            if h.headers.len() > MAX_CONNECTION_HEADERS {
                return Err(invalid(
                    "connection.http.headers",
                    format!("at most {MAX_CONNECTION_HEADERS} headers"),
                ));
            }
            for (name, value) in &h.headers {
                let field = format!("connection.http.headers.{name}");
                header_name(&field, name)?;
                required(&field, value)?;
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(invalid(&field, "must not contain control characters"));
                }
            }
            let field = "connection.http.origin";
            if h.origin.is_empty() {
                if binding::http_has_secret(h)
                    && !matches!(h.auth, Some(http_credentials::Auth::Url(_)))
                {
                    return Err(invalid(
                        field,
                        "required with credentials: the scheme, host and port they may be sent \
                         to, e.g. https://http-inputs.example.com (streams of this connection \
                         must use URLs of this origin)",
                    ));
                }
            } else {
                let origin = parse_origin(field, &h.origin, policy.allow_insecure_http)?;
                urls.push((field.to_owned(), origin));
            }
            SinkType::Http
        }
    };
    Ok((sink, urls))
}

fn client_credentials(
    field: &str,
    c: &auditstream_proto::v1::AzureClientCredentials,
    policy: &Policy,
    urls: &mut Vec<(String, HttpUrl)>,
) -> Result<(), ServiceError> {
    required(&format!("{field}.tenant_id"), &c.tenant_id)?;
    required(&format!("{field}.client_id"), &c.client_id)?;
    required(&format!("{field}.client_secret"), &c.client_secret)?;
    if !c.authority_host.is_empty() {
        urls.push(url(
            &format!("{field}.authority_host"),
            &c.authority_host,
            policy,
        )?);
    }
    Ok(())
}

fn header_name(field: &str, name: &str) -> Result<(), ServiceError> {
    let token = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(invalid(
            field,
            format!("{name:?} is not a valid HTTP header name"),
        ));
    }
    Ok(())
}

/// Parses a URL that is itself a credential: an error never repeats it.
fn secret_url(field: &str, value: &str, policy: &Policy) -> Result<HttpUrl, ServiceError> {
    rules::parse_http_url(field, value, policy.allow_insecure_http).map_err(|e| {
        let message = if e.message.contains(value) {
            "is not an absolute https URL".to_owned()
        } else {
            e.message
        };
        invalid(field, message)
    })
}

fn url(field: &str, value: &str, policy: &Policy) -> Result<(String, HttpUrl), ServiceError> {
    let parsed = rules::parse_http_url(field, value, policy.allow_insecure_http)?;
    Ok((field.to_owned(), parsed))
}

/// Checks a stream against its connection (its public part: the binding is not secret).
/// Returns the URLs to resolve.
pub fn stream(
    stream: &Stream,
    connection: &Connection,
    policy: &Policy,
) -> Result<Vec<(String, HttpUrl)>, ServiceError> {
    id("stream.id", &stream.id)?;
    id("stream.node_id", &stream.node_id)?;
    name("stream.name", &stream.name)?;
    if stream.applies_to() == AppliesTo::Unspecified {
        return Err(invalid(
            "stream.applies_to",
            "required: self or descendants",
        ));
    }
    let selection = stream
        .selection
        .as_ref()
        .ok_or_else(|| invalid("stream.selection", "required: at least one event type"))?;
    if selection.event_types.is_empty() {
        return Err(invalid(
            "stream.selection.event_types",
            "select at least one event type",
        ));
    }
    for (i, t) in selection.event_types.iter().enumerate() {
        t.parse::<EventType>()
            .map_err(|e| invalid(&format!("stream.selection.event_types[{i}]"), e))?;
    }
    for (i, level) in selection.log_levels.iter().enumerate() {
        level.parse::<LogLevel>().map_err(|()| {
            invalid(
                &format!("stream.selection.log_levels[{i}]"),
                format!(
                    "unknown level {level:?}; expected one of {}",
                    LogLevel::NAMES
                ),
            )
        })?;
    }
    for (i, t) in selection.log_types.iter().enumerate() {
        if t.is_empty() || t.len() > 64 {
            return Err(invalid(
                &format!("stream.selection.log_types[{i}]"),
                "a non-empty log type of at most 64 characters",
            ));
        }
    }
    if !stream.template.is_empty() {
        Template::compile(&stream.template)
            .and_then(|t| t.check_bounds().map(|()| t))
            .map_err(|e| invalid("stream.template", e))?;
    }
    if let Some(b) = stream.batching.as_ref() {
        if b.max_events > 100_000 {
            return Err(invalid("stream.batching.max_events", "at most 100000"));
        }
        if b.max_bytes > 100 * 1024 * 1024 {
            return Err(invalid(
                "stream.batching.max_bytes",
                "at most 104857600 (100 MiB)",
            ));
        }
        // No bound from the sinks' `consumer.ack_wait` (which this service cannot know, it
        // is each sink's setting): sinks keep every message they hold alive with in-progress
        // acks, so a batch may wait longer than `ack_wait` (M10). The cap bounds how long
        // events sit unseen in a sink.
        if b.max_age_ms > 15 * 60 * 1000 {
            return Err(invalid(
                "stream.batching.max_age_ms",
                "at most 900000 (15 minutes)",
            ));
        }
    }
    let destination = stream
        .destination
        .as_ref()
        .ok_or_else(|| invalid("stream.destination", "required: a connection and a target"))?;
    self::destination("stream.destination", destination, connection, policy)
}

/// Checks a destination (a stream's, or one tested before it is saved) against its
/// connection: the type, and the endpoint binding (the target lies under what the
/// connection's secret was given for). `field` is its path in the request
/// (`stream.destination`, `destination`). Returns the URLs to resolve.
pub fn destination(
    field: &str,
    destination: &Destination,
    connection: &Connection,
    policy: &Policy,
) -> Result<Vec<(String, HttpUrl)>, ServiceError> {
    let connection_type = crate::credentials::sink_type(connection).ok_or_else(|| {
        ServiceError::Internal(format!("connection {} has no credentials", connection.id))
    })?;
    let f = |sub: &str| format!("{field}.{sub}");
    required(&f("connection_id"), &destination.connection_id)?;
    let target = destination.target.as_ref().ok_or_else(|| {
        invalid(
            field,
            "a target is required: s3, azure_blob, azure_monitor or http",
        )
    })?;
    let target_type = crate::credentials::target_type(target);
    if target_type != connection_type {
        return Err(invalid(
            field,
            format!(
                "connection {} is of type {connection_type} but the target is of type {target_type}",
                destination.connection_id
            ),
        ));
    }
    let mut urls = Vec::new();
    match target {
        Target::S3(t) => {
            rules::validate_s3_bucket(&f("s3.bucket"), &t.bucket)?;
            if !t.region.is_empty() {
                rules::validate_s3_region(&f("s3.region"), &t.region)?;
            }
            rules::validate_key_prefix(&f("s3.prefix"), &t.prefix)?;
            let kms = t.sse() == ServerSideEncryption::AwsKms;
            if kms && t.kms_key_id.is_empty() {
                return Err(invalid(
                    &f("s3.kms_key_id"),
                    "required with SERVER_SIDE_ENCRYPTION_AWS_KMS",
                ));
            }
            if !kms && !t.kms_key_id.is_empty() {
                return Err(invalid(
                    &f("s3.kms_key_id"),
                    "only used with SERVER_SIDE_ENCRYPTION_AWS_KMS",
                ));
            }
        }
        Target::AzureBlob(t) => {
            rules::validate_azure_container(&f("azure_blob.container"), &t.container)?;
            rules::validate_key_prefix(&f("azure_blob.prefix"), &t.prefix)?;
        }
        Target::AzureMonitor(t) => {
            let field = f("azure_monitor.ingestion_endpoint");
            // Empty: the connection's endpoint, checked with the connection.
            if !t.ingestion_endpoint.is_empty() {
                urls.push(url(&field, &t.ingestion_endpoint, policy)?);
            }
            rules::validate_dcr_immutable_id(
                &f("azure_monitor.dcr_immutable_id"),
                &t.dcr_immutable_id,
            )?;
            rules::validate_monitor_stream_name(&f("azure_monitor.stream_name"), &t.stream_name)?;
            rules::validate_log_type(&f("azure_monitor.log_type"), &t.log_type)?;
        }
        Target::Http(t) => {
            let field = f("http.url");
            // With url auth the URL is the connection's, checked with the connection.
            if !t.url.is_empty() {
                urls.push(url(&field, &t.url, policy)?);
            }
            for name in t.headers.keys() {
                let header = f(&format!("http.headers.{name}"));
                header_name(&header, name)?;
                if name.eq_ignore_ascii_case("authorization") {
                    return Err(invalid(
                        &header,
                        "credentials belong in the connection (http.bearer, http.basic or http.header), where they are encrypted",
                    ));
                }
                if !http_settings::is_setting(name) {
                    return Err(invalid(
                        &header,
                        "request headers belong in the connection's http.headers, where their \
                         values are sealed (a header value can authenticate); a target keeps \
                         only sink settings (auditstream-framing, dd-*, splunk-*)",
                    ));
                }
            }
        }
    }
    // Last, so that a malformed URL gets its own message first.
    self::binding(field, destination, connection)?;
    Ok(urls)
}

/// Checks that `destination` lies under what its connection's secret was given for
/// ([`auditstream_proto::binding`]); the sinks apply the same rule before they send.
pub fn binding(
    field: &str,
    destination: &Destination,
    connection: &Connection,
) -> Result<(), ServiceError> {
    match (&destination.target, &connection.credentials) {
        (Some(Target::Http(t)), Some(Credentials::Http(h))) => {
            binding::check_http(&format!("{field}.http.url"), h, t)?;
        }
        (Some(Target::AzureMonitor(t)), Some(Credentials::AzureMonitor(m))) => {
            binding::monitor_endpoint(&format!("{field}.azure_monitor.ingestion_endpoint"), m, t)?;
        }
        // S3 and Blob targets name only a bucket or container: bound by construction.
        _ => {}
    }
    Ok(())
}

/// Resolves every URL host and applies the address rules to each address it resolves to.
/// Done at save time; the HTTP sink repeats the check at connect time (DNS can change).
pub async fn check_addresses(
    urls: &[(String, HttpUrl)],
    policy: &Policy,
) -> Result<(), ServiceError> {
    for (field, url) in urls {
        match &url.host {
            Host::Ip(ip) => {
                rules::check_destination_ip(field, &ip.to_string(), *ip, &policy.allowed)?
            }
            Host::Name(name) => {
                if policy.allowed.allows_host(name) {
                    continue;
                }
                // Bounded: a slow resolver must not hold a request (and its caller) open.
                let lookup = tokio::net::lookup_host((name.as_str(), url.port));
                let addrs: Vec<IpAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
                    .await
                    .map_err(|_| {
                        invalid(
                            field,
                            format!("cannot resolve host {name} within {RESOLVE_TIMEOUT:?}"),
                        )
                    })?
                    .map_err(|e| invalid(field, format!("cannot resolve host {name}: {e}")))?
                    .map(|a| a.ip())
                    .collect();
                if addrs.is_empty() {
                    return Err(invalid(
                        field,
                        format!("host {name} resolves to no address"),
                    ));
                }
                for ip in addrs {
                    rules::check_destination_ip(field, name, ip, &policy.allowed)?;
                }
            }
        }
    }
    Ok(())
}
