//! Human-readable output: aligned `label: value` blocks for single messages, tables for
//! lists. Secrets are never shown here (`--json` prints messages exactly as received).

use std::io::{self, Write};

use auditstream_proto::v1::{
    AppliesTo, Batching, Compression, Connection, DeleteNodeResponse, Destination,
    DestinationDetails, EventSelection, ExplainResponse, HealthState, HttpPreset,
    ListConnectionsResponse, ListDeadLettersResponse, ListNodesResponse, ListStreamsResponse,
    ListTargetsResponse, Node, NodeKind, ObjectFormat, ResealResponse, RoutingSnapshot,
    ServerSideEncryption, Stream, StreamStatus, TestDestinationResponse, azure_blob_credentials,
    azure_monitor_credentials, connection::Credentials, destination::Target, http_credentials,
    s3_credentials,
};

/// A message printed as text.
pub trait Render {
    fn render(&self, out: &mut dyn Write) -> io::Result<()>;
}

impl Render for Node {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(out, "", &node_fields(self))
    }
}

impl Render for ListNodesResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        node_table(out, "", &self.nodes)
    }
}

impl Render for DeleteNodeResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(
            out,
            "",
            &[
                ("deleted nodes", list_or_none(&self.deleted_nodes)),
                ("deleted streams", list_or_none(&self.deleted_streams)),
                (
                    "deleted connections",
                    list_or_none(&self.deleted_connections),
                ),
            ],
        )
    }
}

impl Render for Connection {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(out, "", &connection_fields(self))
    }
}

impl Render for ListConnectionsResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let rows = self
            .connections
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.node_id.clone(),
                    c.name.clone(),
                    credentials_type(c.credentials.as_ref()).to_owned(),
                    c.version.to_string(),
                ]
            })
            .collect::<Vec<_>>();
        table_or_none(
            out,
            "",
            &["ID", "NODE", "NAME", "TYPE", "VERSION"],
            &rows,
            "no connections",
        )
    }
}

impl Render for ListTargetsResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.targets.is_empty() {
            return writeln!(out, "(no targets)");
        }
        self.targets.iter().try_for_each(|t| writeln!(out, "{t}"))
    }
}

impl Render for ResealResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(
            out,
            "",
            &[
                ("resealed", self.resealed.to_string()),
                ("already current", self.already_current.to_string()),
                ("active key", self.active_key.clone()),
            ],
        )
    }
}

impl Render for Stream {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(out, "", &stream_fields(self))
    }
}

impl Render for ListStreamsResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        stream_table(out, "", &self.streams)
    }
}

impl Render for StreamStatus {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(
            out,
            "",
            &[
                ("stream", self.stream_id.clone()),
                ("state", health_state(self.state)),
                ("last error", self.last_error.clone()),
                ("hint", self.hint.clone()),
                ("backlog", self.backlog_depth.to_string()),
                ("expiring", expiring(self)),
                ("DLQ depth", self.dlq_depth.to_string()),
                ("delivered", self.delivered_events.to_string()),
                ("dead-lettered", self.dead_lettered_events.to_string()),
                ("expired", self.expired_events.to_string()),
                ("failed requests", self.failed_requests.to_string()),
                ("replayed", self.replayed_events.to_string()),
                ("last delivery", or(&self.last_delivery_at, "never")),
                ("updated", or(&self.updated_at, "never")),
            ],
        )
    }
}

/// Backlog events close to the retention, and when the first of them expires.
fn expiring(s: &StreamStatus) -> String {
    if s.expiring_events == 0 || s.oldest_expires_at.is_empty() {
        s.expiring_events.to_string()
    } else {
        format!(
            "{} (the oldest expires at {})",
            s.expiring_events, s.oldest_expires_at
        )
    }
}

impl Render for TestDestinationResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        fields(
            out,
            "",
            &[
                ("ok", yes_no(self.ok)),
                ("result", or(&self.result, "(none)")),
                ("detail", self.detail.clone()),
                ("hint", self.hint.clone()),
                ("latency", format!("{} ms", self.latency_ms)),
            ],
        )
    }
}

impl Render for ListDeadLettersResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let rows = self
            .dead_letters
            .iter()
            .map(|d| {
                vec![
                    d.sequence.to_string(),
                    d.event_id.clone(),
                    d.event_type.clone(),
                    d.workspace_id.clone(),
                    d.dead_lettered_at.clone(),
                    d.size_bytes.to_string(),
                    d.reason.clone(),
                ]
            })
            .collect::<Vec<_>>();
        table_or_none(
            out,
            "",
            &[
                "SEQ",
                "EVENT ID",
                "TYPE",
                "WORKSPACE",
                "DEAD-LETTERED AT",
                "BYTES",
                "REASON",
            ],
            &rows,
            "no dead letters",
        )?;
        // Paging: `--after <the last SEQ shown>`.
        writeln!(
            out,
            "shown: {} of {} in the DLQ",
            self.dead_letters.len(),
            self.total
        )
    }
}

/// Path root → workspace, then the effective streams, then the inactive ones with reasons.
impl Render for ExplainResponse {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Workspace {}", self.workspace_id)?;
        writeln!(out)?;
        writeln!(out, "Path (root → workspace):")?;
        let path = self
            .path
            .iter()
            .enumerate()
            .map(|(i, n)| {
                vec![
                    format!("{}.", i + 1),
                    node_kind(n.kind),
                    n.id.clone(),
                    n.name.clone(),
                ]
            })
            .collect::<Vec<_>>();
        if path.is_empty() {
            writeln!(out, "  (empty)")?;
        } else {
            table(out, "  ", &[], &path)?;
        }
        writeln!(out)?;
        writeln!(out, "Effective streams ({}):", self.effective.len())?;
        let effective = self
            .effective
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.node_id.clone(),
                    s.name.clone(),
                    applies_to(s.applies_to),
                    destination_short(s.destination.as_ref()),
                ]
            })
            .collect::<Vec<_>>();
        table_or_none(
            out,
            "  ",
            &["ID", "NODE", "NAME", "APPLIES TO", "DESTINATION"],
            &effective,
            "none",
        )?;
        writeln!(out)?;
        writeln!(out, "Inactive streams ({}):", self.inactive.len())?;
        let inactive = self
            .inactive
            .iter()
            .map(|i| {
                let s = i.stream.clone().unwrap_or_default();
                vec![s.id, s.node_id, s.name, i.code.clone(), i.reason.clone()]
            })
            .collect::<Vec<_>>();
        table_or_none(
            out,
            "  ",
            &["ID", "NODE", "NAME", "CODE", "REASON"],
            &inactive,
            "none",
        )
    }
}

impl Render for RoutingSnapshot {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Revision {}", self.revision)?;
        writeln!(out)?;
        writeln!(out, "Nodes ({}):", self.nodes.len())?;
        node_table(out, "  ", &self.nodes)?;
        writeln!(out)?;
        writeln!(out, "Streams ({}):", self.streams.len())?;
        stream_table(out, "  ", &self.streams)
    }
}

impl Render for DestinationDetails {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        if let Some(stream) = &self.stream {
            writeln!(out, "Stream:")?;
            fields(out, "  ", &stream_fields(stream))?;
        }
        if let Some(connection) = &self.connection {
            writeln!(out, "Connection (secrets hidden; --json prints them):")?;
            fields(out, "  ", &connection_fields(connection))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- message fields

fn node_fields(n: &Node) -> Vec<(&'static str, String)> {
    vec![
        ("id", n.id.clone()),
        ("kind", node_kind(n.kind)),
        ("parent", or(&n.parent_id, "(root)")),
        ("name", n.name.clone()),
        ("external id", n.external_id.clone()),
        ("managed", yes_no(n.managed)),
        ("admin emails", n.admin_emails.join(", ")),
        ("revision", n.revision.to_string()),
    ]
}

fn connection_fields(c: &Connection) -> Vec<(&'static str, String)> {
    let mut secrets: Vec<_> = c.secret_fingerprints.iter().collect();
    secrets.sort();
    let secrets = secrets
        .iter()
        .map(|(path, fp)| format!("{path} {fp}"))
        .collect::<Vec<_>>();
    vec![
        ("id", c.id.clone()),
        ("node", c.node_id.clone()),
        ("name", c.name.clone()),
        ("credentials", credentials_summary(c.credentials.as_ref())),
        ("secrets", secrets.join(", ")),
        ("version", c.version.to_string()),
        ("revision", c.revision.to_string()),
    ]
}

fn stream_fields(s: &Stream) -> Vec<(&'static str, String)> {
    let template = if s.template.is_empty() {
        "(none: messages sent as is)".to_owned()
    } else {
        format!("{} bytes (--json shows it)", s.template.len())
    };
    vec![
        ("id", s.id.clone()),
        ("node", s.node_id.clone()),
        ("name", s.name.clone()),
        ("applies to", applies_to(s.applies_to)),
        ("enabled", yes_no(s.enabled)),
        ("events", selection_summary(s.selection.as_ref())),
        ("template", template),
        ("destination", destination_summary(s.destination.as_ref())),
        ("batching", batching_summary(s.batching.as_ref())),
        ("version", s.version.to_string()),
        ("connection version", s.connection_version.to_string()),
        ("revision", s.revision.to_string()),
    ]
}

fn node_table(out: &mut dyn Write, indent: &str, nodes: &[Node]) -> io::Result<()> {
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                node_kind(n.kind),
                n.parent_id.clone(),
                n.name.clone(),
                n.external_id.clone(),
                yes_no(n.managed),
            ]
        })
        .collect::<Vec<_>>();
    let headers = ["ID", "KIND", "PARENT", "NAME", "EXTERNAL ID", "MANAGED"];
    table_or_none(out, indent, &headers, &rows, "no nodes")
}

fn stream_table(out: &mut dyn Write, indent: &str, streams: &[Stream]) -> io::Result<()> {
    let rows = streams
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.node_id.clone(),
                s.name.clone(),
                applies_to(s.applies_to),
                yes_no(s.enabled),
                destination_short(s.destination.as_ref()),
                s.version.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    let headers = [
        "ID",
        "NODE",
        "NAME",
        "APPLIES TO",
        "ENABLED",
        "DESTINATION",
        "VERSION",
    ];
    table_or_none(out, indent, &headers, &rows, "no streams")
}

// ---------------------------------------------------------------- summaries

fn credentials_type(c: Option<&Credentials>) -> &'static str {
    match c {
        Some(Credentials::S3(_)) => "s3",
        Some(Credentials::AzureBlob(_)) => "azure_blob",
        Some(Credentials::AzureMonitor(_)) => "azure_monitor",
        Some(Credentials::Http(_)) => "http",
        None => "(none)",
    }
}

/// The credential type and method with non-secret details only.
fn credentials_summary(c: Option<&Credentials>) -> String {
    let mut parts = vec![credentials_type(c).to_owned()];
    match c {
        Some(Credentials::S3(s3)) => {
            parts.push(match &s3.method {
                Some(s3_credentials::Method::StaticKeys(k)) => {
                    format!("static keys {}", k.access_key_id)
                }
                Some(s3_credentials::Method::AssumeRole(r)) if !r.external_id.is_empty() => {
                    // What the customer puts in the role's trust policy.
                    format!("assume role {} external id {}", r.role_arn, r.external_id)
                }
                Some(s3_credentials::Method::AssumeRole(r)) => {
                    format!("assume role {}", r.role_arn)
                }
                Some(s3_credentials::Method::DefaultChain(_)) => "default chain".into(),
                None => "no method".into(),
            });
            push_labeled(&mut parts, "region", &s3.region);
            push_labeled(&mut parts, "endpoint", &s3.endpoint);
            if s3.force_path_style {
                parts.push("path style".into());
            }
        }
        Some(Credentials::AzureBlob(blob)) => {
            push_labeled(&mut parts, "account", &blob.account);
            push_labeled(&mut parts, "endpoint", &blob.endpoint);
            parts.push(match &blob.method {
                Some(azure_blob_credentials::Method::SharedKey(_)) => "shared key".into(),
                Some(azure_blob_credentials::Method::Sas(_)) => "SAS token".into(),
                Some(azure_blob_credentials::Method::ClientCredentials(cc)) => {
                    format!(
                        "client credentials (tenant {}, client {})",
                        cc.tenant_id, cc.client_id
                    )
                }
                None => "no method".into(),
            });
        }
        Some(Credentials::AzureMonitor(monitor)) => {
            push_labeled(&mut parts, "endpoint", &monitor.ingestion_endpoint);
            parts.push(match &monitor.method {
                Some(azure_monitor_credentials::Method::ClientCredentials(cc)) => {
                    format!(
                        "client credentials (tenant {}, client {})",
                        cc.tenant_id, cc.client_id
                    )
                }
                Some(azure_monitor_credentials::Method::LegacyDataCollector(l)) => {
                    format!("legacy data collector (workspace {})", l.workspace_id)
                }
                None => "no method".into(),
            })
        }
        Some(Credentials::Http(http)) => {
            push_labeled(&mut parts, "origin", &http.origin);
            parts.push(match &http.auth {
                Some(http_credentials::Auth::None(_)) => "no auth".into(),
                Some(http_credentials::Auth::Basic(b)) => {
                    format!("basic auth (user {})", b.username)
                }
                Some(http_credentials::Auth::Bearer(_)) => "bearer token".into(),
                Some(http_credentials::Auth::Header(h)) => format!("header {}", h.name),
                // The URL is the secret: only its fingerprint is ever shown.
                Some(http_credentials::Auth::Url(_)) => "secret URL".into(),
                None => "no auth method".into(),
            });
            let mut names: Vec<&String> = http.headers.keys().collect();
            names.sort();
            for name in names {
                parts.push(format!("sealed header {name}"));
            }
        }
        None => {}
    }
    parts.join(", ")
}

/// Where a target writes, e.g. `s3 bucket/prefix`.
fn target_location(target: Option<&Target>) -> String {
    match target {
        Some(Target::S3(t)) => format!("s3 {}", join_path(&t.bucket, &t.prefix)),
        Some(Target::AzureBlob(t)) => format!("azure_blob {}", join_path(&t.container, &t.prefix)),
        Some(Target::AzureMonitor(t)) => {
            format!(
                "azure_monitor {} {}/{}",
                t.ingestion_endpoint, t.dcr_immutable_id, t.stream_name
            )
        }
        Some(Target::Http(t)) => format!("http {}", t.url),
        None => "(no target)".into(),
    }
}

/// A target's settings that differ from the defaults.
fn target_options(target: Option<&Target>) -> Vec<String> {
    let mut opts = Vec::new();
    match target {
        Some(Target::S3(t)) => {
            push_labeled(&mut opts, "region", &t.region);
            push_enum(
                &mut opts,
                "format",
                t.format,
                ObjectFormat::as_str_name,
                "OBJECT_FORMAT_",
            );
            push_enum(
                &mut opts,
                "compression",
                t.compression,
                Compression::as_str_name,
                "COMPRESSION_",
            );
            push_enum(
                &mut opts,
                "sse",
                t.sse,
                ServerSideEncryption::as_str_name,
                "SERVER_SIDE_ENCRYPTION_",
            );
            push_labeled(&mut opts, "kms key", &t.kms_key_id);
        }
        Some(Target::AzureBlob(t)) => {
            push_enum(
                &mut opts,
                "format",
                t.format,
                ObjectFormat::as_str_name,
                "OBJECT_FORMAT_",
            );
            push_enum(
                &mut opts,
                "compression",
                t.compression,
                Compression::as_str_name,
                "COMPRESSION_",
            );
        }
        Some(Target::AzureMonitor(t)) => {
            push_labeled(&mut opts, "log type", &t.log_type);
            push_labeled(&mut opts, "resource", &t.resource_id);
            push_enum(
                &mut opts,
                "compression",
                t.compression,
                Compression::as_str_name,
                "COMPRESSION_",
            );
        }
        Some(Target::Http(t)) => {
            push_enum(
                &mut opts,
                "preset",
                t.preset,
                HttpPreset::as_str_name,
                "HTTP_PRESET_",
            );
            push_enum(
                &mut opts,
                "compression",
                t.compression,
                Compression::as_str_name,
                "COMPRESSION_",
            );
            let mut headers: Vec<_> = t.headers.keys().map(String::as_str).collect();
            headers.sort_unstable();
            push_labeled(&mut opts, "headers", &headers.join(" "));
        }
        None => {}
    }
    opts
}

fn destination_summary(d: Option<&Destination>) -> String {
    let Some(d) = d else { return "(none)".into() };
    let mut text = format!(
        "{} via connection {}",
        target_location(d.target.as_ref()),
        d.connection_id
    );
    let opts = target_options(d.target.as_ref());
    if !opts.is_empty() {
        text.push_str(&format!(" ({})", opts.join(", ")));
    }
    text
}

fn destination_short(d: Option<&Destination>) -> String {
    match d {
        Some(d) => format!(
            "{} via {}",
            target_location(d.target.as_ref()),
            d.connection_id
        ),
        None => String::new(),
    }
}

fn selection_summary(s: Option<&EventSelection>) -> String {
    let Some(s) = s else { return "(none)".into() };
    let mut parts = vec![or(&s.event_types.join(", "), "(none)")];
    if s.include_step_details {
        parts.push("with step details".into());
    }
    push_labeled(&mut parts, "log types", &s.log_types.join(", "));
    push_labeled(&mut parts, "log levels", &s.log_levels.join(", "));
    parts.join("; ")
}

fn batching_summary(b: Option<&Batching>) -> String {
    let b = b.copied().unwrap_or_default();
    let mut parts = Vec::new();
    if b.max_events > 0 {
        parts.push(format!("{} events", b.max_events));
    }
    if b.max_bytes > 0 {
        parts.push(format!("{} bytes", b.max_bytes));
    }
    if b.max_age_ms > 0 {
        parts.push(format!("{} ms", b.max_age_ms));
    }
    if parts.is_empty() {
        "destination defaults".into()
    } else {
        format!("at most {}", parts.join(", "))
    }
}

// ---------------------------------------------------------------- enums

/// `NODE_KIND_PARTNER` → `partner`.
pub fn node_kind(value: i32) -> String {
    enum_label(value, NodeKind::as_str_name, "NODE_KIND_")
}

/// `self` or `descendants`, the spellings `--applies-to` takes.
pub fn applies_to(value: i32) -> String {
    match AppliesTo::try_from(value) {
        Ok(AppliesTo::SelfOnly) => "self".into(),
        _ => enum_label(value, AppliesTo::as_str_name, "APPLIES_TO_"),
    }
}

fn health_state(value: i32) -> String {
    match HealthState::try_from(value) {
        Ok(HealthState::Unspecified) => "unknown (nothing reported yet)".into(),
        _ => enum_label(value, HealthState::as_str_name, "HEALTH_STATE_"),
    }
}

/// The proto name without its prefix, lowercase; `unknown(N)` for a value this build does
/// not know.
fn enum_label<E: TryFrom<i32>>(value: i32, name: fn(&E) -> &'static str, prefix: &str) -> String {
    match E::try_from(value) {
        Ok(e) => {
            let full = name(&e);
            full.strip_prefix(prefix)
                .unwrap_or(full)
                .to_ascii_lowercase()
        }
        Err(_) => format!("unknown({value})"),
    }
}

fn push_enum<E: TryFrom<i32>>(
    parts: &mut Vec<String>,
    label: &str,
    value: i32,
    name: fn(&E) -> &'static str,
    prefix: &str,
) {
    if value != 0 {
        parts.push(format!("{label} {}", enum_label(value, name, prefix)));
    }
}

// ---------------------------------------------------------------- layout

fn fields(out: &mut dyn Write, indent: &str, rows: &[(&str, String)]) -> io::Result<()> {
    let width = rows
        .iter()
        .map(|(label, _)| label.len() + 1)
        .max()
        .unwrap_or(0);
    for (label, value) in rows {
        let line = format!("{indent}{:<width$} {value}", format!("{label}:"));
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn table_or_none(
    out: &mut dyn Write,
    indent: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    empty: &str,
) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "{indent}({empty})");
    }
    table(out, indent, headers, rows)
}

/// Columns two spaces apart, each as wide as its widest cell; empty cells print as `-`.
fn table(
    out: &mut dyn Write,
    indent: &str,
    headers: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let header = (!headers.is_empty()).then(|| headers.iter().map(|h| (*h).to_owned()).collect());
    let rows: Vec<Vec<String>> = header
        .into_iter()
        .chain(rows.iter().map(|r| r.iter().map(|c| or(c, "-")).collect()))
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = indent.to_owned();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn push_labeled(parts: &mut Vec<String>, label: &str, value: &str) {
    if !value.is_empty() {
        parts.push(format!("{label} {value}"));
    }
}

fn join_path(base: &str, prefix: &str) -> String {
    let prefix = prefix.trim_start_matches('/');
    if prefix.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{prefix}")
    }
}

fn list_or_none(items: &[String]) -> String {
    or(&items.join(", "), "none")
}

fn or(value: &str, fallback: &str) -> String {
    if value.is_empty() {
        fallback.to_owned()
    } else {
        value.to_owned()
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use auditstream_proto::v1::{
        Connection, InactiveStream, S3Credentials, S3StaticKeys, S3Target, connection, destination,
    };

    use super::*;

    fn text(msg: &impl Render) -> String {
        let mut out = Vec::new();
        msg.render(&mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    fn node(id: &str, parent: &str, kind: NodeKind, name: &str) -> Node {
        Node {
            id: id.into(),
            parent_id: parent.into(),
            kind: kind.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn stream(id: &str, node: &str, applies: AppliesTo) -> Stream {
        Stream {
            id: id.into(),
            node_id: node.into(),
            name: format!("{id} stream"),
            applies_to: applies.into(),
            enabled: true,
            destination: Some(Destination {
                connection_id: "c1".into(),
                target: Some(destination::Target::S3(S3Target {
                    bucket: "audit".into(),
                    prefix: "acme".into(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn explain_lists_path_effective_and_inactive_streams() {
        let explain = ExplainResponse {
            workspace_id: "w1".into(),
            path: vec![
                node("org1", "", NodeKind::Organization, "Acme"),
                node("p1", "org1", NodeKind::Partner, "Partner One"),
                node("w1", "p1", NodeKind::Customer, "Prod"),
            ],
            effective: vec![stream("s9", "p1", AppliesTo::Descendants)],
            inactive: vec![InactiveStream {
                stream: Some(stream("s2", "w1", AppliesTo::SelfOnly)),
                code: "overridden".into(),
                reason: "overridden by partner p1 stream s9".into(),
            }],
        };
        let text = text(&explain);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Workspace w1");
        let path = lines
            .iter()
            .position(|l| l.starts_with("Path (root → workspace)"))
            .expect("path");
        assert_eq!(lines[path + 1], "  1.  organization  org1  Acme");
        assert_eq!(lines[path + 2], "  2.  partner       p1    Partner One");
        assert_eq!(lines[path + 3], "  3.  customer      w1    Prod");
        let effective = lines
            .iter()
            .position(|l| *l == "Effective streams (1):")
            .expect("effective");
        assert!(lines[effective + 1].split_whitespace().eq([
            "ID",
            "NODE",
            "NAME",
            "APPLIES",
            "TO",
            "DESTINATION"
        ]));
        assert_eq!(
            lines[effective + 2],
            "  s9  p1    s9 stream  descendants  s3 audit/acme via c1"
        );
        let inactive = lines
            .iter()
            .position(|l| *l == "Inactive streams (1):")
            .expect("inactive");
        assert!(inactive > effective);
        assert_eq!(
            lines[inactive + 2],
            "  s2  w1    s2 stream  overridden  overridden by partner p1 stream s9"
        );
    }

    #[test]
    fn explain_with_nothing_says_none() {
        let text = text(&ExplainResponse {
            workspace_id: "w1".into(),
            ..Default::default()
        });
        assert!(
            text.contains("Effective streams (0):\n  (none)\n"),
            "{text}"
        );
        assert!(text.contains("Inactive streams (0):\n  (none)\n"), "{text}");
    }

    #[test]
    fn node_list_is_an_aligned_table() {
        let mut customer = node("cust-42", "p1", NodeKind::Customer, "Customer 42");
        customer.external_id = "crm-42".into();
        customer.managed = true;
        let list = ListNodesResponse {
            nodes: vec![
                node("p1", "org1", NodeKind::Partner, "Partner One"),
                customer,
            ],
        };
        let text = text(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "ID       KIND      PARENT  NAME         EXTERNAL ID  MANAGED"
        );
        assert_eq!(
            lines[1],
            "p1       partner   org1    Partner One  -            no"
        );
        assert_eq!(
            lines[2],
            "cust-42  customer  p1      Customer 42  crm-42       yes"
        );

        assert_eq!(
            super::tests::text(&ListNodesResponse::default()),
            "(no nodes)\n"
        );
    }

    #[test]
    fn single_node_is_labelled() {
        let mut n = node("org1", "", NodeKind::Organization, "Acme");
        n.admin_emails = vec!["a@x.io".into(), "b@x.io".into()];
        let text = text(&n);
        assert!(text.contains("kind:         organization\n"), "{text}");
        assert!(text.contains("parent:       (root)\n"), "{text}");
        assert!(text.contains("admin emails: a@x.io, b@x.io\n"), "{text}");
    }

    #[test]
    fn connections_never_show_secrets() {
        let c = Connection {
            id: "c1".into(),
            node_id: "p1".into(),
            credentials: Some(connection::Credentials::S3(S3Credentials {
                method: Some(s3_credentials::Method::StaticKeys(S3StaticKeys {
                    access_key_id: "AKIA1".into(),
                    secret_access_key: "very-secret".into(),
                    session_token: String::new(),
                })),
                region: "us-east-1".into(),
                ..Default::default()
            })),
            secret_fingerprints: [(
                "s3.static_keys.secret_access_key".to_owned(),
                "hmac-sha256:0123456789ab".to_owned(),
            )]
            .into(),
            ..Default::default()
        };
        let details = DestinationDetails {
            stream: None,
            connection: Some(c),
        };
        let text = text(&details);
        assert!(!text.contains("very-secret"), "{text}");
        assert!(
            text.contains("credentials: s3, static keys AKIA1, region us-east-1\n"),
            "{text}"
        );
        assert!(
            text.contains("s3.static_keys.secret_access_key hmac-sha256:0123456789ab"),
            "{text}"
        );
    }

    #[test]
    fn stream_summary() {
        let mut s = stream("s1", "p1", AppliesTo::SelfOnly);
        s.selection = Some(EventSelection {
            event_types: vec!["job_status".into()],
            ..Default::default()
        });
        s.batching = Some(Batching {
            max_events: 500,
            max_bytes: 0,
            max_age_ms: 2000,
        });
        let text = text(&s);
        assert!(text.contains("applies to:         self\n"), "{text}");
        assert!(text.contains("events:             job_status\n"), "{text}");
        assert!(
            text.contains("destination:        s3 audit/acme via connection c1\n"),
            "{text}"
        );
        assert!(
            text.contains("batching:           at most 500 events, 2000 ms\n"),
            "{text}"
        );
    }

    #[test]
    fn status_shows_counters_and_depths() {
        let status = StreamStatus {
            stream_id: "s1".into(),
            state: HealthState::Retrying as i32,
            backlog_depth: 12,
            dlq_depth: 3,
            delivered_events: 1000,
            dead_lettered_events: 4,
            expiring_events: 7,
            oldest_expires_at: "2026-11-30T10:00:00Z".into(),
            expired_events: 1,
            failed_requests: 9,
            replayed_events: 2,
            ..Default::default()
        };
        let text = text(&status);
        for line in [
            "state:           retrying\n",
            "backlog:         12\n",
            "expiring:        7 (the oldest expires at 2026-11-30T10:00:00Z)\n",
            "DLQ depth:       3\n",
            "delivered:       1000\n",
            "dead-lettered:   4\n",
            "expired:         1\n",
            "failed requests: 9\n",
            "replayed:        2\n",
            "last delivery:   never\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn dead_letters_table_and_total() {
        let list = ListDeadLettersResponse {
            dead_letters: vec![auditstream_proto::v1::DeadLetter {
                sequence: 7,
                event_id: "e1".into(),
                reason: "400 invalid field".into(),
                dead_lettered_at: "2026-11-23T10:00:00Z".into(),
                size_bytes: 321,
                event_type: "job_status".into(),
                workspace_id: "ws-1".into(),
            }],
            total: 4,
        };
        let text = text(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "SEQ  EVENT ID  TYPE        WORKSPACE  DEAD-LETTERED AT      BYTES  REASON",
                "7    e1        job_status  ws-1       2026-11-23T10:00:00Z  321    400 invalid field",
                "shown: 1 of 4 in the DLQ",
            ]
        );
        assert_eq!(
            super::tests::text(&ListDeadLettersResponse::default()),
            "(no dead letters)\nshown: 0 of 0 in the DLQ\n"
        );
    }

    #[test]
    fn destination_test_result() {
        let text = text(&TestDestinationResponse {
            ok: false,
            result: "configuration".into(),
            detail: "403 Forbidden".into(),
            hint: "rotate the token".into(),
            latency_ms: 42,
        });
        assert_eq!(
            text,
            "ok:      no\nresult:  configuration\ndetail:  403 Forbidden\nhint:    rotate the token\nlatency: 42 ms\n"
        );
    }

    #[test]
    fn enum_labels() {
        assert_eq!(node_kind(NodeKind::Organization as i32), "organization");
        assert_eq!(applies_to(AppliesTo::Descendants as i32), "descendants");
        assert_eq!(applies_to(AppliesTo::SelfOnly as i32), "self");
        assert_eq!(node_kind(99), "unknown(99)");
        assert_eq!(health_state(HealthState::Broken as i32), "broken");
    }
}
