//! Command-line arguments (clap derive): global options, one subcommand per RPC, and the
//! friendly enum spellings accepted on flags.

use std::{convert::Infallible, fmt, path::PathBuf, str::FromStr};

use auditstream_proto::v1::{AppliesTo, NodeKind};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The config service's address when neither `--server` nor `AUDITSTREAM_CONFIG_URL` is set.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50052";

const GLOBAL: &str = "Global options";

/// `auditctl [--server URL] [--token TOKEN] [--json] <command>`
#[derive(Debug, Parser)]
#[command(
    name = "auditctl",
    version,
    about = "Configure Auditstream (tenants, connections, streams) through its config service"
)]
pub struct Cli {
    /// Config service URL.
    #[arg(long, global = true, help_heading = GLOBAL, env = "AUDITSTREAM_CONFIG_URL", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Bearer token sent as `authorization` metadata on every call.
    #[arg(long, global = true, help_heading = GLOBAL, env = "AUDITSTREAM_TOKEN", hide_env_values = true)]
    pub token: Option<Token>,
    /// PEM CA file to trust for an `https://` server (a private CA or a self-signed
    /// certificate), besides the system roots.
    #[arg(long, global = true, help_heading = GLOBAL, env = "AUDITSTREAM_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Print the response as JSON (proto3 JSON mapping) instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// A bearer token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl FromStr for Token {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenant directory: organizations, partners, customers, workspaces.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Credentials for one destination type, stored at a node.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Streams: which events go to which destination.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// The streams that apply to a workspace's events, and why the others do not.
    Explain {
        /// Workspace node id.
        workspace: String,
    },
    /// The whole tree and every stream at one revision (data plane; service token).
    Snapshot,
    /// A stream's or a connection's destination with its secrets (data plane; service token);
    /// `destination test` probes a destination.
    Destination(DestinationArgs),
    /// Dead letters: events a destination refused for good (AUDIT_DLQ, kept 7 days).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Destination health reports (data plane; service token).
    #[command(subcommand)]
    Status(StatusCommand),
    /// Re-encrypt every stored secret with the active secrets key, so older keys can be
    /// removed from the configuration (platform_admin).
    Reseal,
    /// The JetStream streams (talks to NATS, not to the config service).
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// The router's dead letters: events no stream could take for good (a workspace that
    /// never appeared, an unreadable or unknown pack, a delivery too large for NATS). Talks
    /// to NATS, as `topology` does.
    #[command(subcommand)]
    RouterDlq(RouterDlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum RouterDlqCommand {
    /// Oldest first: sequence, time, organization, workspace, event id and reason.
    List(RouterDlqArgs),
    /// Republish them to their ingest subjects (the router routes them again), each deleted
    /// from the DLQ after its PubAck.
    Replay(RouterDlqArgs),
}

#[derive(Debug, Args)]
pub struct RouterDlqArgs {
    /// A service's TOML configuration file: its `[nats]` section is used (run with the
    /// config service's NATS user). `AUDITSTREAM_NATS__*` variables override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS URL; overrides the file and `AUDITSTREAM_NATS__URL`.
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Only this organization's dead letters.
    #[arg(long)]
    pub org: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Create missing streams and update those that differ from the configured topology, as
    /// the config service does at start; prints what it created, updated or left alone.
    Apply(TopologyApplyArgs),
}

#[derive(Debug, Args)]
pub struct TopologyApplyArgs {
    /// A service's TOML configuration file: its `[nats]` section (URL, credentials, TLS,
    /// `topology`) is used, the rest ignored. `AUDITSTREAM_NATS__*` variables override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS URL; overrides the file and `AUDITSTREAM_NATS__URL`.
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Create or replace a node (PutNode).
    Put(NodePutArgs),
    /// Show a node.
    Get { id: String },
    /// List the children of a node; without --parent, the roots you may see.
    List {
        /// Parent node id; empty lists the roots.
        #[arg(long, default_value = "")]
        parent: String,
    },
    /// Delete a node (refused while it has children, streams or connections, unless --cascade).
    Delete {
        id: String,
        /// Also delete everything below the node.
        #[arg(long)]
        cascade: bool,
        /// Purge the backlog and dead letters of the streams the cascade deletes (refused
        /// without it while they hold undelivered events).
        #[arg(long)]
        discard_pending: bool,
    },
}

#[derive(Debug, Args)]
pub struct NodePutArgs {
    /// Node id, [A-Za-z0-9_-]{1,64}.
    pub id: String,
    #[arg(long, value_enum, ignore_case = true)]
    pub kind: KindArg,
    /// Parent node id; absent for a root.
    #[arg(long, default_value = "")]
    pub parent: String,
    #[arg(long, default_value = "")]
    pub name: String,
    /// The id the partner (or organization) gave this account.
    #[arg(long, default_value = "")]
    pub external_id: String,
    /// Streaming settings come only from a governing ancestor.
    #[arg(long)]
    pub managed: bool,
    /// Admin e-mailed when a destination breaks and recovers (repeatable).
    #[arg(long = "admin-email", value_name = "EMAIL")]
    pub admin_emails: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Create a connection from a Connection JSON file (at least its credentials).
    Create(ConnectionCreateArgs),
    /// Show a connection (secrets as fingerprints).
    Get { id: String },
    /// List a node's connections.
    List {
        #[arg(long)]
        node: String,
        /// Also the connections of the node's ancestors.
        #[arg(long)]
        inherited: bool,
    },
    /// Replace a connection's credentials (e.g. rotate a secret) from a Connection JSON file.
    Update {
        id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a connection (refused while a stream uses it).
    Delete { id: String },
    /// The buckets / containers the connection can reach (ListTargets).
    Targets { id: String },
}

#[derive(Debug, Args)]
pub struct ConnectionCreateArgs {
    /// Connection JSON: e.g. `{"s3": {"static_keys": {...}, "region": "us-east-1"}}`, or a
    /// whole Connection message.
    #[arg(long)]
    pub file: PathBuf,
    /// Overrides the file's `id`.
    #[arg(long)]
    pub id: Option<String>,
    /// Overrides the file's `node_id`.
    #[arg(long)]
    pub node: Option<String>,
    /// Overrides the file's `name`.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Create a stream from a Stream JSON file and/or flags (flags win).
    Create(StreamCreateArgs),
    /// Show a stream.
    Get { id: String },
    /// List a node's streams.
    List {
        #[arg(long)]
        node: String,
    },
    /// Change a stream's fields from a Stream JSON file (UpdateStream).
    Update {
        id: String,
        #[arg(long)]
        file: PathBuf,
        /// Fields to change (comma-separated); default: the top-level fields in the file,
        /// except id, node_id and output-only fields.
        #[arg(long, value_delimiter = ',', value_name = "FIELD,...")]
        mask: Vec<String>,
    },
    /// Enable a stream.
    Enable { id: String },
    /// Disable a stream.
    Disable { id: String },
    /// Delete a stream (refused while its backlog or DLQ holds events, unless
    /// --discard-pending; the purge is self-audited with its counts).
    Delete {
        id: String,
        #[arg(long)]
        discard_pending: bool,
    },
    /// A stream's destination health (GetStatus).
    Status { id: String },
}

#[derive(Debug, Args)]
pub struct StreamCreateArgs {
    /// Stream JSON file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Overrides the file's `id`.
    #[arg(long)]
    pub id: Option<String>,
    /// Overrides the file's `node_id`.
    #[arg(long)]
    pub node: Option<String>,
    /// Overrides the file's `name`.
    #[arg(long)]
    pub name: Option<String>,
    /// Overrides the file's `applies_to`.
    #[arg(long, value_enum, ignore_case = true)]
    pub applies_to: Option<AppliesToArg>,
    /// Create the stream disabled (by default it is enabled unless the file says otherwise).
    #[arg(long)]
    pub disabled: bool,
    /// Destination JSON file, e.g. `{"connection_id": "c1", "s3": {"bucket": "b"}}`.
    #[arg(long)]
    pub destination_file: Option<PathBuf>,
    /// Message template file, stored as is.
    #[arg(long)]
    pub template_file: Option<PathBuf>,
}

/// `destination --stream ID | --connection ID` (GetDestination), or `destination test …`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[group(required = true, multiple = false)]
pub struct DestinationArgs {
    #[arg(long)]
    pub stream: Option<String>,
    #[arg(long)]
    pub connection: Option<String>,
    #[command(subcommand)]
    pub command: Option<DestinationCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DestinationCommand {
    /// Probe a destination through the sink of its type (TestDestination): a saved stream's,
    /// or an unsaved one (`--connection` and `--destination-file`). Never delivers events;
    /// exits 1 when the destination is not ok.
    Test(DestinationTestArgs),
}

#[derive(Debug, Args)]
pub struct DestinationTestArgs {
    /// The saved stream whose destination to test.
    #[arg(
        required_unless_present_any = ["connection", "destination_file"],
        conflicts_with_all = ["connection", "destination_file"]
    )]
    pub stream: Option<String>,
    /// The saved connection of an unsaved destination; overrides the file's `connection_id`.
    #[arg(long, requires = "destination_file")]
    pub connection: Option<String>,
    /// An unsaved destination's JSON file, as for `stream create --destination-file`, e.g.
    /// `{"connection_id": "c1", "http": {"url": "https://logs.example.com/ingest"}}`.
    #[arg(long)]
    pub destination_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// A stream's dead letters, oldest first (ListDeadLetters).
    List {
        /// Stream id.
        stream: String,
        /// Only dead letters after this DLQ sequence (paging).
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// At most this many (0: 100; at most 1000).
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u32,
    },
    /// Send dead letters back to the stream's destination (ReplayDeadLetters): the given
    /// sequences, or every dead letter of the stream without `--seq`.
    Replay {
        /// Stream id.
        stream: String,
        /// DLQ sequence of a dead letter to replay (repeatable, or comma-separated).
        #[arg(long = "seq", value_name = "SEQ", value_delimiter = ',')]
        sequences: Vec<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatusCommand {
    /// Report a destination's health from a StreamStatus JSON file (ReportStatus).
    Report {
        #[arg(long)]
        file: PathBuf,
    },
}

/// `--kind`: friendly names, or the proto's full names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    #[value(alias = "org", alias = "NODE_KIND_ORGANIZATION")]
    Organization,
    #[value(alias = "NODE_KIND_PARTNER")]
    Partner,
    #[value(alias = "NODE_KIND_CUSTOMER")]
    Customer,
    #[value(alias = "NODE_KIND_WORKSPACE")]
    Workspace,
}

impl From<KindArg> for NodeKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Organization => NodeKind::Organization,
            KindArg::Partner => NodeKind::Partner,
            KindArg::Customer => NodeKind::Customer,
            KindArg::Workspace => NodeKind::Workspace,
        }
    }
}

/// `--applies-to`: `self` or `descendants`, or the proto's full names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppliesToArg {
    /// Only events of the stream's own node.
    #[value(
        name = "self",
        alias = "self-only",
        alias = "self_only",
        alias = "APPLIES_TO_SELF_ONLY"
    )]
    SelfOnly,
    /// Events of the node and everything below it; overrides streams below.
    #[value(alias = "APPLIES_TO_DESCENDANTS")]
    Descendants,
}

impl From<AppliesToArg> for AppliesTo {
    fn from(applies: AppliesToArg) -> Self {
        match applies {
            AppliesToArg::SelfOnly => AppliesTo::SelfOnly,
            AppliesToArg::Descendants => AppliesTo::Descendants,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("auditctl").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn parse_err(args: &[&str]) -> clap::error::ErrorKind {
        let argv = std::iter::once("auditctl").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .expect_err("should not parse")
            .kind()
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let cli = parse(&[
            "--server",
            "http://cfg:1",
            "--token",
            "t0k",
            "node",
            "get",
            "n1",
            "--json",
        ]);
        assert_eq!(cli.server, "http://cfg:1");
        assert_eq!(cli.token, Some(Token("t0k".into())));
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Node(NodeCommand::Get { id }) if id == "n1"));
    }

    #[test]
    fn token_debug_is_redacted() {
        let cli = parse(&["--token", "s3cr3t", "snapshot"]);
        assert!(!format!("{cli:?}").contains("s3cr3t"));
    }

    #[test]
    fn node_commands() {
        let cli = parse(&[
            "node",
            "put",
            "p1",
            "--kind",
            "partner",
            "--parent",
            "org1",
            "--name",
            "Partner One",
            "--external-id",
            "ext-9",
            "--managed",
            "--admin-email",
            "a@x.io",
            "--admin-email",
            "b@x.io",
        ]);
        let Command::Node(NodeCommand::Put(put)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(put.id, "p1");
        assert_eq!(put.kind, KindArg::Partner);
        assert_eq!(put.parent, "org1");
        assert_eq!(put.name, "Partner One");
        assert_eq!(put.external_id, "ext-9");
        assert!(put.managed);
        assert_eq!(put.admin_emails, ["a@x.io", "b@x.io"]);

        let cli = parse(&["node", "put", "o1", "--kind", "organization"]);
        let Command::Node(NodeCommand::Put(put)) = cli.command else {
            panic!()
        };
        assert_eq!(
            (put.parent.as_str(), put.managed, put.admin_emails.len()),
            ("", false, 0)
        );

        assert!(
            matches!(parse(&["node", "list"]).command, Command::Node(NodeCommand::List { parent }) if parent.is_empty())
        );
        assert!(matches!(
            parse(&["node", "list", "--parent", "p1"]).command,
            Command::Node(NodeCommand::List { parent }) if parent == "p1"
        ));
        assert!(matches!(
            parse(&["node", "delete", "p1", "--cascade"]).command,
            Command::Node(NodeCommand::Delete { id, cascade: true, discard_pending: false }) if id == "p1"
        ));
        assert_eq!(
            parse_err(&["node", "put", "p1"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["node", "put", "p1", "--kind", "galaxy"]),
            clap::error::ErrorKind::InvalidValue
        );
    }

    #[test]
    fn connection_commands() {
        let cli = parse(&[
            "connection",
            "create",
            "--node",
            "p1",
            "--name",
            "aws",
            "--file",
            "creds.json",
        ]);
        let Command::Connection(ConnectionCommand::Create(c)) = cli.command else {
            panic!()
        };
        assert_eq!(
            (c.node.as_deref(), c.name.as_deref(), c.id),
            (Some("p1"), Some("aws"), None)
        );
        assert_eq!(c.file, PathBuf::from("creds.json"));
        assert_eq!(
            parse_err(&["connection", "create", "--node", "p1"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );

        assert!(matches!(
            parse(&["connection", "list", "--node", "w1", "--inherited"]).command,
            Command::Connection(ConnectionCommand::List { node, inherited: true }) if node == "w1"
        ));
        assert!(matches!(
            parse(&["connection", "update", "c1", "--file", "new.json"]).command,
            Command::Connection(ConnectionCommand::Update { id, file }) if id == "c1" && file == Path::new("new.json")
        ));
        assert!(matches!(
            parse(&["connection", "get", "c1"]).command,
            Command::Connection(ConnectionCommand::Get { .. })
        ));
        assert!(matches!(
            parse(&["connection", "delete", "c1"]).command,
            Command::Connection(ConnectionCommand::Delete { .. })
        ));
        assert!(matches!(
            parse(&["connection", "targets", "c1"]).command,
            Command::Connection(ConnectionCommand::Targets { .. })
        ));
    }

    #[test]
    fn stream_commands() {
        let cli = parse(&[
            "stream",
            "create",
            "--file",
            "s.json",
            "--id",
            "s1",
            "--node",
            "p1",
            "--name",
            "all",
            "--applies-to",
            "descendants",
            "--disabled",
            "--destination-file",
            "d.json",
            "--template-file",
            "t.txt",
        ]);
        let Command::Stream(StreamCommand::Create(s)) = cli.command else {
            panic!()
        };
        assert_eq!(s.applies_to, Some(AppliesToArg::Descendants));
        assert!(s.disabled);
        assert_eq!(s.destination_file, Some(PathBuf::from("d.json")));
        assert_eq!(s.template_file, Some(PathBuf::from("t.txt")));

        let cli = parse(&[
            "stream",
            "update",
            "s1",
            "--file",
            "u.json",
            "--mask",
            "name,enabled",
            "--mask",
            "batching",
        ]);
        let Command::Stream(StreamCommand::Update { mask, .. }) = cli.command else {
            panic!()
        };
        assert_eq!(mask, ["name", "enabled", "batching"]);
        let cli = parse(&["stream", "update", "s1", "--file", "u.json"]);
        assert!(
            matches!(cli.command, Command::Stream(StreamCommand::Update { mask, .. }) if mask.is_empty())
        );

        let cmd = |args: &[&str]| match parse(args).command {
            Command::Stream(cmd) => cmd,
            other => panic!("{other:?}"),
        };
        assert!(matches!(cmd(&["stream", "get", "s1"]), StreamCommand::Get { id } if id == "s1"));
        assert!(
            matches!(cmd(&["stream", "list", "--node", "p1"]), StreamCommand::List { node } if node == "p1")
        );
        assert!(
            matches!(cmd(&["stream", "enable", "s1"]), StreamCommand::Enable { id } if id == "s1")
        );
        assert!(
            matches!(cmd(&["stream", "disable", "s1"]), StreamCommand::Disable { id } if id == "s1")
        );
        assert!(
            matches!(cmd(&["stream", "delete", "s1"]), StreamCommand::Delete { id, discard_pending: false } if id == "s1")
        );
        assert!(
            matches!(cmd(&["stream", "status", "s1"]), StreamCommand::Status { id } if id == "s1")
        );
        assert_eq!(
            parse_err(&["stream", "list"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn explain_and_data_plane_commands() {
        assert!(
            matches!(parse(&["explain", "w1"]).command, Command::Explain { workspace } if workspace == "w1")
        );
        assert!(matches!(parse(&["snapshot"]).command, Command::Snapshot));
        assert!(matches!(parse(&["reseal"]).command, Command::Reseal));
        let Command::Destination(d) = parse(&["destination", "--stream", "s1"]).command else {
            panic!()
        };
        assert_eq!((d.stream.as_deref(), d.connection), (Some("s1"), None));
        let Command::Destination(d) = parse(&["destination", "--connection", "c1"]).command else {
            panic!()
        };
        assert_eq!((d.stream, d.connection.as_deref()), (None, Some("c1")));
        assert_eq!(
            parse_err(&["destination"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["destination", "--stream", "s1", "--connection", "c1"]),
            clap::error::ErrorKind::ArgumentConflict
        );
        let Command::Destination(d) = parse(&["destination", "--stream", "test"]).command else {
            panic!()
        };
        assert_eq!(
            (d.stream.as_deref(), d.command.is_none()),
            (Some("test"), true)
        );
        assert!(matches!(
            parse(&["status", "report", "--file", "st.json"]).command,
            Command::Status(StatusCommand::Report { file }) if file == Path::new("st.json")
        ));
    }

    #[test]
    fn destination_test_and_dlq_commands() {
        let test = |args: &[&str]| match parse(args).command {
            Command::Destination(DestinationArgs {
                command: Some(DestinationCommand::Test(t)),
                stream: None,
                connection: None,
            }) => t,
            other => panic!("{other:?}"),
        };
        let t = test(&["destination", "test", "s1"]);
        assert_eq!(
            (t.stream.as_deref(), t.connection, t.destination_file),
            (Some("s1"), None, None)
        );
        let t = test(&[
            "destination",
            "test",
            "--connection",
            "c1",
            "--destination-file",
            "d.json",
        ]);
        assert_eq!(
            (t.stream, t.connection.as_deref(), t.destination_file),
            (None, Some("c1"), Some(PathBuf::from("d.json")))
        );
        let t = test(&["destination", "test", "--destination-file", "d.json"]);
        assert_eq!(t.destination_file, Some(PathBuf::from("d.json")));
        assert_eq!(
            parse_err(&["destination", "test"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["destination", "test", "--connection", "c1"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_err(&["destination", "test", "s1", "--destination-file", "d.json"]),
            clap::error::ErrorKind::ArgumentConflict
        );

        let dlq = |args: &[&str]| match parse(args).command {
            Command::Dlq(cmd) => cmd,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            dlq(&["dlq", "list", "s1"]),
            DlqCommand::List { stream, after: 0, limit: 0 } if stream == "s1"
        ));
        assert!(matches!(
            dlq(&["dlq", "list", "s1", "--after", "17", "--limit", "5"]),
            DlqCommand::List {
                after: 17,
                limit: 5,
                ..
            }
        ));
        assert!(matches!(
            dlq(&["dlq", "replay", "s1"]),
            DlqCommand::Replay { stream, sequences } if stream == "s1" && sequences.is_empty()
        ));
        assert!(matches!(
            dlq(&["dlq", "replay", "s1", "--seq", "3", "--seq", "5,8"]),
            DlqCommand::Replay { sequences, .. } if sequences == [3, 5, 8]
        ));
        assert_eq!(
            parse_err(&["dlq", "replay", "s1", "--seq", "x"]),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn friendly_enum_spellings() {
        let kind = |s: &str| match parse(&["node", "put", "n", "--kind", s]).command {
            Command::Node(NodeCommand::Put(put)) => NodeKind::from(put.kind),
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("organization"), NodeKind::Organization);
        assert_eq!(kind("org"), NodeKind::Organization);
        assert_eq!(kind("partner"), NodeKind::Partner);
        assert_eq!(kind("Partner"), NodeKind::Partner);
        assert_eq!(kind("NODE_KIND_PARTNER"), NodeKind::Partner);
        assert_eq!(kind("customer"), NodeKind::Customer);
        assert_eq!(kind("workspace"), NodeKind::Workspace);

        let applies = |s: &str| match parse(&["stream", "create", "--applies-to", s]).command {
            Command::Stream(StreamCommand::Create(c)) => {
                AppliesTo::from(c.applies_to.expect("set"))
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(applies("self"), AppliesTo::SelfOnly);
        assert_eq!(applies("self-only"), AppliesTo::SelfOnly);
        assert_eq!(applies("APPLIES_TO_SELF_ONLY"), AppliesTo::SelfOnly);
        assert_eq!(applies("descendants"), AppliesTo::Descendants);
        assert_eq!(applies("APPLIES_TO_DESCENDANTS"), AppliesTo::Descendants);
        assert_eq!(
            parse_err(&["stream", "create", "--applies-to", "everyone"]),
            clap::error::ErrorKind::InvalidValue
        );
    }
}
