//! `auditctl` end to end: the real CLI code (`auditstream_cli::run_args`, in-process) against
//! the real config service (SQLite, its own nats-server), with the test tokens of
//! `auditstream_testkit::TOKENS`. Checks what an admin sees: the text output, the `--json`
//! output read back into the proto messages, and the error lines with their exit codes.

mod common;

use std::path::{Path, PathBuf};

use auditstream_cli::CliError;
use auditstream_proto::v1::{
    Connection, ExplainResponse, ListStreamsResponse, Node, NodeKind, Stream, connection,
    s3_credentials,
};
use common::config::{SECRET, config_stack};
use tonic::Code;

const PLATFORM: &str = "tok-platform-0123456789";
const PARTNER_P1: &str = "tok-partner-p1-0123456789";
const PARTNER_P2: &str = "tok-partner-p2-0123456789";

/// The template of DESIGN §5's example: the event as a string, and the time in microseconds.
const TEMPLATE: &str =
    "{\"log_message_str\": {{{log_message_str}}}, \"now_utc_micro\": {{{now_utc_micro}}}}\n";

/// Runs `auditctl --server <url> --token <token> <args...>` and returns what it printed.
async fn ctl(url: &str, token: &str, args: &[&str]) -> Result<String, CliError> {
    let argv = ["auditctl", "--server", url, "--token", token]
        .into_iter()
        .chain(args.iter().copied());
    let mut out = Vec::new();
    auditstream_cli::run_args(argv, &mut out).await?;
    Ok(String::from_utf8(out).expect("auditctl prints UTF-8"))
}

/// [`ctl`] that must succeed.
async fn ok(url: &str, token: &str, args: &[&str]) -> String {
    ctl(url, token, args)
        .await
        .unwrap_or_else(|e| panic!("auditctl {args:?} failed: {e}"))
}

/// [`ctl`] that must fail with a gRPC status; returns it with the rendered error line.
async fn rpc_err(url: &str, token: &str, args: &[&str]) -> (tonic::Status, String) {
    match ctl(url, token, args).await {
        Err(CliError::Rpc(status)) => {
            let err = CliError::Rpc(status.clone());
            assert_eq!(err.exit_code(), 1, "{err}");
            (status, err.to_string())
        }
        Err(other) => panic!("auditctl {args:?}: expected an RPC error, got {other:?}"),
        Ok(out) => panic!("auditctl {args:?} should have failed; printed:\n{out}"),
    }
}

/// The output's lines with runs of spaces collapsed, so checks do not depend on column widths.
fn lines(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[track_caller]
fn assert_lines(out: &str, expected: &[&str]) {
    let got = lines(out);
    for want in expected {
        assert!(
            got.iter().any(|l| l == want),
            "no line {want:?} in the output:\n{out}"
        );
    }
}

/// The value after `label:` in a `label: value` block.
#[track_caller]
fn field(out: &str, label: &str) -> String {
    let prefix = format!("{label}:");
    lines(out)
        .into_iter()
        .find_map(|l| Some(l.strip_prefix(&prefix)?.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

/// A directory for the JSON input files, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        let dir =
            std::env::temp_dir().join(format!("auditctl-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Files(dir)
    }

    /// Writes `name` and returns its path as an argument.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write input file");
        path_arg(&path)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

fn s3_credentials(secret: &str) -> String {
    serde_json::json!({
        "s3": {
            "static_keys": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": secret},
            "region": "us-east-1",
        }
    })
    .to_string()
}

/// org → p1 (partner) → c1 (customer), and the S3 connection `p1-s3` stored at p1.
async fn seed(url: &str, files: &Files) {
    for args in [
        &[
            "node",
            "put",
            "org",
            "--kind",
            "organization",
            "--name",
            "Org",
        ][..],
        &[
            "node",
            "put",
            "p1",
            "--kind",
            "partner",
            "--parent",
            "org",
            "--name",
            "Partner One",
        ],
        &[
            "node",
            "put",
            "c1",
            "--kind",
            "customer",
            "--parent",
            "p1",
            "--name",
            "Customer One",
        ],
    ] {
        ok(url, PLATFORM, args).await;
    }
    let creds = files.write("creds.json", &s3_credentials(SECRET));
    let created = ok(
        url,
        PLATFORM,
        &[
            "connection",
            "create",
            "--file",
            &creds,
            "--id",
            "p1-s3",
            "--node",
            "p1",
            "--name",
            "P1 archive",
        ],
    )
    .await;
    assert!(!created.contains(SECRET), "{created}");
}

#[tokio::test]
async fn nodes_are_put_read_and_listed_as_text_and_json() {
    let s = config_stack().await;
    let url = s.config.url();

    let org = ok(
        &url,
        PLATFORM,
        &["node", "put", "org", "--kind", "org", "--name", "Org"],
    )
    .await;
    assert_lines(&org, &["id: org", "kind: organization", "parent: (root)"]);
    let p1 = ok(
        &url,
        PLATFORM,
        &[
            "node",
            "put",
            "p1",
            "--kind",
            "partner",
            "--parent",
            "org",
            "--name",
            "Partner One",
            "--external-id",
            "ext-p1",
            "--admin-email",
            "ops@p1.example",
        ],
    )
    .await;
    assert_lines(
        &p1,
        &[
            "id: p1",
            "kind: partner",
            "parent: org",
            "name: Partner One",
            "external id: ext-p1",
            "managed: no",
            "admin emails: ops@p1.example",
        ],
    );
    // The directory is the platform's: p1's admin may not create its customer; the platform
    // admin does (the proto's enum name works too).
    let (status, line) = rpc_err(
        &url,
        PARTNER_P1,
        &["node", "put", "c1", "--kind", "customer", "--parent", "p1"],
    )
    .await;
    assert_eq!(status.code(), Code::PermissionDenied, "{line}");
    assert!(
        line.starts_with(
            "PERMISSION_DENIED: admin@p1 (partner_admin of p1) may not create node c1: \
             the tenant directory is the platform's"
        ),
        "{line}"
    );
    ok(
        &url,
        PLATFORM,
        &[
            "node",
            "put",
            "c1",
            "--kind",
            "NODE_KIND_CUSTOMER",
            "--parent",
            "p1",
            "--name",
            "Customer One",
            "--managed",
        ],
    )
    .await;

    let got = ok(&url, PARTNER_P1, &["node", "get", "c1"]).await;
    assert_lines(
        &got,
        &["id: c1", "kind: customer", "parent: p1", "managed: yes"],
    );
    assert_eq!(field(&got, "name"), "Customer One");

    let children = ok(&url, PLATFORM, &["node", "list", "--parent", "p1"]).await;
    assert_eq!(
        lines(&children),
        [
            "ID KIND PARENT NAME EXTERNAL ID MANAGED",
            "c1 customer p1 Customer One - yes",
        ]
    );
    // Without --parent: the roots the caller may see; a partner admin's root is its node.
    let roots = ok(&url, PARTNER_P1, &["node", "list"]).await;
    assert_eq!(lines(&roots)[1..], ["p1 partner org Partner One ext-p1 no"]);

    // --json is the proto3 JSON mapping: it reads back into the message.
    let json = ok(&url, PLATFORM, &["--json", "node", "get", "p1"]).await;
    let node: Node = serde_json::from_str(&json).expect("node JSON");
    assert_eq!(
        (node.id.as_str(), node.parent_id.as_str(), node.kind()),
        ("p1", "org", NodeKind::Partner)
    );
    assert_eq!(node.admin_emails, ["ops@p1.example"]);
    assert_eq!(node.revision.to_string(), field(&p1, "revision"));
    let raw: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(raw["kind"], "NODE_KIND_PARTNER", "{json}");
    let listed: auditstream_proto::v1::ListNodesResponse = serde_json::from_str(
        &ok(
            &url,
            PLATFORM,
            &["node", "list", "--parent", "p1", "--json"],
        )
        .await,
    )
    .expect("list JSON");
    assert_eq!(listed.nodes.len(), 1);
    assert!(listed.nodes[0].managed);
}

#[tokio::test]
async fn connections_never_show_secrets_and_rotation_bumps_the_version() {
    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed(&url, &files).await;

    let shown = ok(&url, PLATFORM, &["connection", "get", "p1-s3"]).await;
    assert!(!shown.contains(SECRET), "{shown}");
    assert_lines(
        &shown,
        &[
            "id: p1-s3",
            "node: p1",
            "name: P1 archive",
            "credentials: s3, static keys AKIAEXAMPLE, region us-east-1",
            "version: 1",
        ],
    );
    let secrets = field(&shown, "secrets");
    let fingerprint = secrets
        .strip_prefix("s3.static_keys.secret_access_key ")
        .unwrap_or_else(|| panic!("{secrets}"))
        .to_owned();
    assert!(fingerprint.starts_with("hmac-sha256:"), "{fingerprint}");

    // --json prints the message as received: the secret field is blank, the fingerprint set.
    let json = ok(&url, PLATFORM, &["connection", "get", "p1-s3", "--json"]).await;
    assert!(!json.contains(SECRET), "{json}");
    let c: Connection = serde_json::from_str(&json).expect("connection JSON");
    assert_eq!(
        c.secret_fingerprints["s3.static_keys.secret_access_key"],
        fingerprint
    );
    let Some(connection::Credentials::S3(s3)) = &c.credentials else {
        panic!("{c:?}")
    };
    let Some(s3_credentials::Method::StaticKeys(keys)) = &s3.method else {
        panic!("{s3:?}")
    };
    assert_eq!(
        (keys.access_key_id.as_str(), keys.secret_access_key.as_str()),
        ("AKIAEXAMPLE", "")
    );

    // Rotation: a new secret, a new fingerprint, version 2; the name is kept.
    let rotated_secret = "rotated-9f8e7d6c5b4a3f2e1d0c";
    let rotated = files.write("rotated.json", &s3_credentials(rotated_secret));
    let out = ok(
        &url,
        PLATFORM,
        &["connection", "update", "p1-s3", "--file", &rotated],
    )
    .await;
    assert!(!out.contains(rotated_secret), "{out}");
    assert_eq!(field(&out, "version"), "2");
    assert_eq!(field(&out, "name"), "P1 archive");
    let new_fingerprint = field(&out, "secrets");
    assert!(!new_fingerprint.contains(&fingerprint), "{out}");

    // An update that leaves the secret empty keeps the stored one (same fingerprint).
    let no_secret = files.write(
        "no-secret.json",
        r#"{"s3": {"static_keys": {"access_key_id": "AKIAEXAMPLE"}, "region": "eu-west-1"}}"#,
    );
    let out = ok(
        &url,
        PARTNER_P1,
        &["connection", "update", "p1-s3", "--file", &no_secret],
    )
    .await;
    assert_eq!(field(&out, "version"), "3");
    assert_eq!(field(&out, "secrets"), new_fingerprint);
    assert_eq!(
        field(&out, "credentials"),
        "s3, static keys AKIAEXAMPLE, region eu-west-1"
    );

    let listed = ok(&url, PARTNER_P1, &["connection", "list", "--node", "p1"]).await;
    assert_eq!(
        lines(&listed),
        ["ID NODE NAME TYPE VERSION", "p1-s3 p1 P1 archive s3 3"]
    );
    // c1 has none of its own; --inherited adds its ancestors' (those its streams may use).
    let own = ok(&url, PARTNER_P1, &["connection", "list", "--node", "c1"]).await;
    assert_eq!(lines(&own), ["(no connections)"]);
    let inherited = ok(
        &url,
        PARTNER_P1,
        &["connection", "list", "--node", "c1", "--inherited"],
    )
    .await;
    assert_lines(&inherited, &["p1-s3 p1 P1 archive s3 3"]);
}

#[tokio::test]
async fn streams_from_files_their_lifecycle_and_explain() {
    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed(&url, &files).await;

    let stream = files.write(
        "stream.json",
        r#"{"id": "s-c1", "node_id": "c1", "name": "Customer archive",
            "applies_to": "APPLIES_TO_SELF_ONLY",
            "selection": {"event_types": ["job_status", "user_activity"]},
            "batching": {"max_events": 500, "max_age_ms": 60000}}"#,
    );
    let destination = files.write(
        "destination.json",
        r#"{"connection_id": "p1-s3",
            "s3": {"bucket": "c1-audit", "prefix": "audit/c1/", "format": "OBJECT_FORMAT_NDJSON"}}"#,
    );
    let template = files.write("template.json", TEMPLATE);
    let created = ok(
        &url,
        PARTNER_P1,
        &[
            "stream",
            "create",
            "--file",
            &stream,
            "--destination-file",
            &destination,
            "--template-file",
            &template,
        ],
    )
    .await;
    assert_lines(
        &created,
        &[
            "id: s-c1",
            "node: c1",
            "name: Customer archive",
            "applies to: self",
            // Created enabled: the file does not say otherwise.
            "enabled: yes",
            "events: job_status, user_activity",
            "destination: s3 c1-audit/audit/c1/ via connection p1-s3 (format ndjson)",
            "batching: at most 500 events, 60000 ms",
            "version: 1",
            "connection version: 1",
        ],
    );
    assert_eq!(
        field(&created, "template"),
        format!("{} bytes (--json shows it)", TEMPLATE.len())
    );

    // The template is stored byte for byte; --json shows it.
    let json = ok(&url, PLATFORM, &["stream", "get", "s-c1", "--json"]).await;
    let got: Stream = serde_json::from_str(&json).expect("stream JSON");
    assert_eq!(got.template, TEMPLATE);
    assert_eq!(got.batching.map(|b| b.max_events), Some(500));
    assert_eq!(
        got.destination.as_ref().map(|d| d.connection_id.as_str()),
        Some("p1-s3")
    );

    let listed = ok(&url, PARTNER_P1, &["stream", "list", "--node", "c1"]).await;
    assert_eq!(
        lines(&listed),
        [
            "ID NODE NAME APPLIES TO ENABLED DESTINATION VERSION",
            "s-c1 c1 Customer archive self yes s3 c1-audit/audit/c1/ via p1-s3 1",
        ]
    );

    // Update from a file: the mask is the file's fields (name, selection); the rest stays.
    let update = files.write(
        "update.json",
        r#"{"name": "Customer jobs", "selection": {"event_types": ["job_status"]}}"#,
    );
    let updated = ok(
        &url,
        PARTNER_P1,
        &["stream", "update", "s-c1", "--file", &update],
    )
    .await;
    assert_lines(
        &updated,
        &[
            "name: Customer jobs",
            "events: job_status",
            "batching: at most 500 events, 60000 ms",
            "destination: s3 c1-audit/audit/c1/ via connection p1-s3 (format ndjson)",
            "version: 2",
        ],
    );
    let json = ok(&url, PARTNER_P1, &["--json", "stream", "get", "s-c1"]).await;
    assert_eq!(
        serde_json::from_str::<Stream>(&json).unwrap().template,
        TEMPLATE
    );

    let disabled = ok(&url, PARTNER_P1, &["stream", "disable", "s-c1"]).await;
    assert_eq!(
        (field(&disabled, "enabled"), field(&disabled, "version")),
        ("no".into(), "3".into())
    );
    let enabled = ok(&url, PARTNER_P1, &["stream", "enable", "s-c1"]).await;
    assert_eq!(
        (field(&enabled, "enabled"), field(&enabled, "version")),
        ("yes".into(), "4".into())
    );

    // No sink has reported on it yet.
    let status = ok(&url, PARTNER_P1, &["stream", "status", "s-c1"]).await;
    assert_lines(
        &status,
        &[
            "stream: s-c1",
            "state: unknown (nothing reported yet)",
            "backlog: 0",
            "last delivery: never",
            "updated: never",
        ],
    );

    let before = ok(&url, PARTNER_P1, &["explain", "c1"]).await;
    assert_lines(
        &before,
        &[
            "Effective streams (1):",
            "s-c1 c1 Customer jobs self s3 c1-audit/audit/c1/ via p1-s3",
            "Inactive streams (0):",
            "(none)",
        ],
    );

    // The partner's "all customers" stream, from flags and a file with the selection only.
    let selection = files.write(
        "all-customers.json",
        r#"{"selection": {"event_types": ["user_activity"]}}"#,
    );
    let partner_destination = files.write(
        "p1-destination.json",
        r#"{"connection_id": "p1-s3", "s3": {"bucket": "p1-audit"}}"#,
    );
    ok(
        &url,
        PARTNER_P1,
        &[
            "stream",
            "create",
            "--file",
            &selection,
            "--id",
            "s-p1",
            "--node",
            "p1",
            "--name",
            "All customers",
            "--applies-to",
            "descendants",
            "--destination-file",
            &partner_destination,
        ],
    )
    .await;

    // The organization is above p1's admin: Explain shows it only by id and kind.
    let explained = ok(&url, PARTNER_P1, &["explain", "c1"]).await;
    assert_eq!(
        lines(&explained),
        [
            "Workspace c1",
            "",
            "Path (root → workspace):",
            "1. organization org -",
            "2. partner p1 Partner One",
            "3. customer c1 Customer One",
            "",
            "Effective streams (1):",
            "ID NODE NAME APPLIES TO DESTINATION",
            "s-p1 p1 All customers descendants s3 p1-audit via p1-s3",
            "",
            "Inactive streams (1):",
            "ID NODE NAME CODE REASON",
            "s-c1 c1 Customer jobs overridden overridden by partner p1 stream s-p1",
        ]
    );
    let json = ok(&url, PLATFORM, &["explain", "c1", "--json"]).await;
    let e: ExplainResponse = serde_json::from_str(&json).expect("explain JSON");
    assert_eq!(e.inactive[0].code, "overridden");

    // The write rule: the customer's self stream may not change while p1 governs.
    let (status, line) = rpc_err(
        &url,
        PARTNER_P1,
        &["stream", "update", "s-c1", "--file", &update],
    )
    .await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{line}");
    assert!(
        line.starts_with("FAILED_PRECONDITION: ")
            && line.contains("partner p1 governs this node with stream s-p1"),
        "{line}"
    );

    // Deleting the governing stream makes the customer's own stream effective again.
    let deleted = ok(&url, PARTNER_P1, &["stream", "delete", "s-p1"]).await;
    assert_eq!(deleted.trim_end(), "deleted stream s-p1");
    let streams: ListStreamsResponse = serde_json::from_str(
        &ok(
            &url,
            PLATFORM,
            &["--json", "stream", "list", "--node", "p1"],
        )
        .await,
    )
    .unwrap();
    assert!(streams.streams.is_empty(), "{streams:?}");
    let after = ok(&url, PARTNER_P1, &["explain", "c1"]).await;
    assert_lines(
        &after,
        &["s-c1 c1 Customer jobs self s3 c1-audit/audit/c1/ via p1-s3"],
    );
}

#[tokio::test]
async fn list_targets_is_unavailable_until_the_sink_runs() {
    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed(&url, &files).await;

    let (status, line) = rpc_err(&url, PLATFORM, &["connection", "targets", "p1-s3"]).await;
    assert_eq!(status.code(), Code::Unavailable, "{line}");
    assert!(line.starts_with("UNAVAILABLE: "), "{line}");
    assert!(line.contains("auditstream-sink-s3"), "{line}");
}

#[tokio::test]
async fn wrong_tokens_and_other_partners_are_refused() {
    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed(&url, &files).await;

    let (status, line) = rpc_err(&url, "tok-wrong-0123456789", &["node", "get", "p1"]).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(line, "UNAUTHENTICATED: invalid bearer token");
    // An empty --token sends no authorization at all.
    let (status, line) = rpc_err(&url, "", &["node", "get", "p1"]).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(line, "UNAUTHENTICATED: missing bearer token");

    // Partner p2's admin may neither read nor change partner p1's subtree.
    for args in [
        &["node", "get", "p1"][..],
        &["connection", "get", "p1-s3"],
        &["explain", "c1"],
        &["node", "delete", "c1"],
    ] {
        let (status, line) = rpc_err(&url, PARTNER_P2, args).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{args:?}: {line}");
        assert!(
            line.starts_with("PERMISSION_DENIED: admin@p2 (partner_admin of p2) may not "),
            "{line}"
        );
    }
    // Data-plane calls are for the service principal only.
    let (status, _) = rpc_err(&url, PLATFORM, &["snapshot"]).await;
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn streams_and_whole_subtrees_are_deleted() {
    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed(&url, &files).await;
    let destination = files.write(
        "destination.json",
        r#"{"connection_id": "p1-s3", "s3": {"bucket": "c1-audit"}}"#,
    );
    let selection = files.write(
        "stream.json",
        r#"{"selection": {"event_types": ["log_event"]}}"#,
    );
    for id in ["s-a", "s-b"] {
        ok(
            &url,
            PLATFORM,
            &[
                "stream",
                "create",
                "--file",
                &selection,
                "--id",
                id,
                "--node",
                "c1",
                "--applies-to",
                "self",
                "--destination-file",
                &destination,
            ],
        )
        .await;
    }

    assert_eq!(
        ok(&url, PLATFORM, &["stream", "delete", "s-a"]).await,
        "deleted stream s-a\n"
    );
    let (status, _) = rpc_err(&url, PLATFORM, &["stream", "get", "s-a"]).await;
    assert_eq!(status.code(), Code::NotFound);

    // A connection in use, and a node with a subtree, are not deleted by accident.
    let (status, line) = rpc_err(&url, PLATFORM, &["connection", "delete", "p1-s3"]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{line}");
    assert!(line.contains("used by stream(s) s-b"), "{line}");
    let (status, line) = rpc_err(&url, PLATFORM, &["node", "delete", "p1"]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{line}");
    assert!(line.contains("set cascade"), "{line}");

    let out = ok(&url, PLATFORM, &["node", "delete", "p1", "--cascade"]).await;
    assert_eq!(
        lines(&out),
        [
            "deleted nodes: c1, p1",
            "deleted streams: s-b",
            "deleted connections: p1-s3",
        ]
    );
    for args in [
        &["node", "get", "p1"][..],
        &["node", "get", "c1"],
        &["connection", "get", "p1-s3"],
        &["stream", "get", "s-b"],
    ] {
        let (status, line) = rpc_err(&url, PLATFORM, args).await;
        assert_eq!(status.code(), Code::NotFound, "{args:?}: {line}");
    }
    let roots = ok(&url, PLATFORM, &["node", "list"]).await;
    assert_eq!(lines(&roots)[1..], ["org organization - Org - no"]);
}

// ---------------------------------------------------------------- destinations and dead letters

/// sink-http's service token: `s-h` is an HTTP stream.
const SERVICE: &str = "tok-service-sink-http-0123456789";
const HTTP_URL: &str = "https://8.8.8.8/ingest";

/// [`seed`], plus the HTTP connection `p1-http` at p1 and the stream `s-h` at c1 using it.
async fn seed_http(url: &str, files: &Files) {
    seed(url, files).await;
    let creds = files.write(
        "http-creds.json",
        &serde_json::json!({"http": {"bearer": {"token": SECRET}, "origin": "https://8.8.8.8"}})
            .to_string(),
    );
    ok(
        url,
        PLATFORM,
        &[
            "connection",
            "create",
            "--file",
            &creds,
            "--id",
            "p1-http",
            "--node",
            "p1",
        ],
    )
    .await;
    let destination = files.write(
        "http-destination.json",
        &serde_json::json!({"connection_id": "p1-http", "http": {"url": HTTP_URL}}).to_string(),
    );
    let selection = files.write(
        "http-stream.json",
        r#"{"selection": {"event_types": ["job_status"]}}"#,
    );
    ok(
        url,
        PLATFORM,
        &[
            "stream",
            "create",
            "--file",
            &selection,
            "--id",
            "s-h",
            "--node",
            "c1",
            "--applies-to",
            "self",
            "--destination-file",
            &destination,
        ],
    )
    .await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_and_status_shows_the_counters() {
    use auditstream_bus::{headers, topology};
    use auditstream_proto::v1::{ListDeadLettersResponse, StreamStatus};

    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed_http(&url, &files).await;
    let js = s.nats.jetstream().await;
    let bodies = [
        r#"{"event": "e1"}"#,
        r#"{"event": "e2", "pad": "xx"}"#,
        r#"{"event": "e3"}"#,
    ];
    let key = common::stream_key(&s.admin, "s-h").await;
    let mut seqs = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let reason = format!("400 Bad Request: field {i} rejected");
        seqs.push(
            common::dead_letter(&js, ("s-h", &key), &format!("e{}", i + 1), &reason, body).await,
        );
    }

    // Two sink replicas report their counts; the DLQ depth is read live.
    let report = |file: &str, json: serde_json::Value| files.write(file, &json.to_string());
    let a = report(
        "a.json",
        serde_json::json!({"stream_id": "s-h", "state": "HEALTH_STATE_RETRYING",
            "last_error": "503", "delivered_events": "40", "dead_lettered_events": "2",
            "failed_requests": "3"}),
    );
    let b = report(
        "b.json",
        serde_json::json!({"stream_id": "s-h", "state": "HEALTH_STATE_RETRYING",
            "last_error": "503", "delivered_events": "2", "dead_lettered_events": "1",
            "expired_events": "4", "failed_requests": "1", "expiring_events": "6",
            "oldest_expires_at": "2026-11-30T10:00:00Z"}),
    );
    ok(&url, SERVICE, &["status", "report", "--file", &a]).await;
    let reported = ok(&url, SERVICE, &["--json", "status", "report", "--file", &b]).await;
    let reported: StreamStatus = serde_json::from_str(&reported).expect("status JSON");
    assert_eq!(reported.delivered_events, 42);
    let status = ok(&url, PARTNER_P1, &["stream", "status", "s-h"]).await;
    assert_lines(
        &status,
        &[
            "stream: s-h",
            "state: retrying",
            "last error: 503",
            "backlog: 0",
            "expiring: 6 (the oldest expires at 2026-11-30T10:00:00Z)",
            "DLQ depth: 3",
            "delivered: 42",
            "dead-lettered: 3",
            "expired: 4",
            "failed requests: 4",
            "replayed: 0",
        ],
    );

    let listed = ok(&url, PARTNER_P1, &["dlq", "list", "s-h"]).await;
    let got = lines(&listed);
    assert_eq!(
        got[0],
        "SEQ EVENT ID TYPE WORKSPACE DEAD-LETTERED AT BYTES REASON"
    );
    for (i, row) in got[1..4].iter().enumerate() {
        let cells: Vec<&str> = row.splitn(7, ' ').collect();
        assert_eq!(
            (cells[0], cells[1], cells[2], cells[3], cells[5]),
            (
                seqs[i].to_string().as_str(),
                format!("e{}", i + 1).as_str(),
                "job_status",
                "c1",
                bodies[i].len().to_string().as_str()
            ),
            "{row}"
        );
        assert_eq!(cells[6], format!("400 Bad Request: field {i} rejected"));
    }
    assert_eq!(got[4], "shown: 3 of 3 in the DLQ");
    let page = ok(
        &url,
        PARTNER_P1,
        &[
            "dlq",
            "list",
            "s-h",
            "--after",
            &seqs[0].to_string(),
            "--limit",
            "1",
            "--json",
        ],
    )
    .await;
    let page: ListDeadLettersResponse = serde_json::from_str(&page).expect("list JSON");
    assert_eq!(page.total, 3);
    assert_eq!(
        page.dead_letters
            .iter()
            .map(|d| (d.sequence, d.event_id.as_str()))
            .collect::<Vec<_>>(),
        [(seqs[1], "e2")]
    );

    // Replay one by sequence, then the rest; a stranger's sequence is refused.
    let (status, line) = rpc_err(&url, PARTNER_P1, &["dlq", "replay", "s-h", "--seq", "999"]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{line}");
    assert_eq!(
        line,
        "INVALID_ARGUMENT: sequences[0]: 999 is not a dead letter of stream s-h"
    );
    let (status, _) = rpc_err(&url, PARTNER_P2, &["dlq", "replay", "s-h"]).await;
    assert_eq!(status.code(), Code::PermissionDenied);
    let one = ok(
        &url,
        PARTNER_P1,
        &["dlq", "replay", "s-h", "--seq", &seqs[1].to_string()],
    )
    .await;
    assert_eq!(one, "replayed 1 dead letter to s-h\n");
    let rest = ok(&url, PARTNER_P1, &["dlq", "replay", "s-h"]).await;
    assert_eq!(rest, "replayed 2 dead letters to s-h\n");

    // Back on the stream's delivery subject: same body and event headers, a replay id, no
    // error header.
    let deliver =
        auditstream_bus::subjects::deliver(auditstream_model::SinkType::Http, &key).unwrap();
    let out: Vec<_> = auditstream_testkit::read_stream(&js, topology::DELIVER)
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == deliver)
        .collect();
    let header = |m: &async_nats::jetstream::message::StreamMessage, name: &str| {
        m.headers.get(name).map(|v| v.as_str().to_owned())
    };
    let mut got: Vec<(String, String, String)> = out
        .iter()
        .map(|m| {
            assert_eq!(header(m, headers::ERROR), None);
            assert_eq!(header(m, headers::WORKSPACE_ID).as_deref(), Some("c1"));
            assert_eq!(header(m, headers::STREAM_ID).as_deref(), Some("s-h"));
            assert_eq!(
                header(m, headers::RECEIVED_AT).as_deref(),
                Some("2026-11-21T10:15:02.500Z")
            );
            (
                header(m, headers::EVENT_ID).unwrap(),
                header(m, headers::MSG_ID).unwrap(),
                String::from_utf8(m.payload.to_vec()).unwrap(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> = (0..3)
        .map(|i| {
            (
                format!("e{}", i + 1),
                format!("e{}.{key}.replay.{}", i + 1, seqs[i]),
                bodies[i].to_owned(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // The DLQ is empty now.
    let listed = ok(&url, PARTNER_P1, &["dlq", "list", "s-h"]).await;
    assert_eq!(
        lines(&listed),
        ["(no dead letters)", "shown: 0 of 0 in the DLQ"]
    );
    let status = ok(&url, PARTNER_P1, &["stream", "status", "s-h"]).await;
    assert_eq!(field(&status, "DLQ depth"), "0");
}

#[tokio::test]
async fn destination_test_prints_the_sinks_answer() {
    use auditstream_proto::v1::{TestDestinationRequest, TestDestinationResponse, destination};
    use futures_util::StreamExt;
    use prost::Message;

    let s = config_stack().await;
    let url = s.config.url();
    let files = Files::new();
    seed_http(&url, &files).await;

    // Without a sink: UNAVAILABLE, naming the one that is missing.
    let (status, line) = rpc_err(&url, PARTNER_P1, &["destination", "test", "s-h"]).await;
    assert_eq!(status.code(), Code::Unavailable, "{line}");
    assert!(
        line.contains("no auditstream-sink-http is running"),
        "{line}"
    );

    // A stand-in for the HTTP sink: ok unless the URL says "forbidden".
    let nats = s.nats.connect().await;
    let mut requests = nats
        .subscribe(auditstream_bus::subjects::rpc(
            auditstream_model::SinkType::Http,
            "test_destination",
        ))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            let asked = TestDestinationRequest::decode(msg.payload.as_ref()).unwrap();
            let d = asked.destination.unwrap();
            let Some(destination::Target::Http(t)) = d.target else {
                panic!("{d:?}")
            };
            let ok = !t.url.contains("forbidden");
            let answer = TestDestinationResponse {
                ok,
                result: if ok { "delivered" } else { "configuration" }.into(),
                detail: format!("{} via {} ({})", t.url, d.connection_id, asked.stream_id),
                hint: if ok { "" } else { "check the token" }.into(),
                latency_ms: 15,
            };
            nats.publish(msg.reply.unwrap(), answer.encode_to_vec().into())
                .await
                .unwrap();
            nats.flush().await.unwrap();
        }
    });

    let out = ok(&url, PARTNER_P1, &["destination", "test", "s-h"]).await;
    assert_eq!(
        lines(&out),
        [
            "ok: yes",
            "result: delivered",
            &format!("detail: {HTTP_URL} via p1-http (s-h)"),
            "hint:",
            "latency: 15 ms",
        ]
    );

    // An unsaved destination: the file's target, --connection for its connection. Not ok:
    // the answer is printed and the command fails.
    let unsaved = files.write(
        "unsaved.json",
        r#"{"http": {"url": "https://8.8.8.8/forbidden"}}"#,
    );
    let argv = [
        "auditctl",
        "--server",
        &url,
        "--token",
        PARTNER_P1,
        "destination",
        "test",
        "--connection",
        "p1-http",
        "--destination-file",
        &unsaved,
    ];
    let mut printed = Vec::new();
    let err = auditstream_cli::run_args(argv, &mut printed)
        .await
        .expect_err("not ok");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.to_string(),
        "the destination test failed (configuration)"
    );
    let printed = String::from_utf8(printed).unwrap();
    assert_lines(
        &printed,
        &[
            "ok: no",
            "result: configuration",
            "detail: https://8.8.8.8/forbidden via p1-http ()",
            "hint: check the token",
        ],
    );

    // An invalid unsaved destination never reaches the sink.
    let invalid = files.write(
        "invalid.json",
        r#"{"connection_id": "p1-http", "http": {"url": "https://10.0.0.1/x"}}"#,
    );
    let (status, line) = rpc_err(
        &url,
        PARTNER_P1,
        &["destination", "test", "--destination-file", &invalid],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{line}");
    assert!(
        line.starts_with("INVALID_ARGUMENT: destination.http.url: "),
        "{line}"
    );
}
