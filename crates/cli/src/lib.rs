//! `auditctl`, the command line for Auditstream's config service (`auditstream.v1.ConfigService`).
//!
//! This crate owns the command-line surface: argument parsing ([`Cli`]), turning arguments
//! and JSON files into requests ([`request`]), calling the service with the caller's bearer
//! token, and printing responses as proto3 JSON (`--json`) or as text ([`render`]). It holds
//! no configuration rules of its own: the service validates every request. One command
//! talks to NATS instead: `topology apply` ([`topology`]) creates or updates the JetStream
//! streams for an operator who owns them.
//!
//! Entry points: [`run_args`] (argv-like strings and a writer, for in-process tests) and
//! [`run`] (parsed arguments; used by the binary).

use std::{ffi::OsString, io::Write, time::Duration};

use auditstream_proto::v1::{
    DeleteConnectionRequest, DeleteNodeRequest, DeleteStreamRequest, ExplainRequest,
    GetConnectionRequest, GetNodeRequest, GetRoutingSnapshotRequest, GetStatusRequest,
    GetStreamRequest, ListChildrenRequest, ListConnectionsRequest, ListDeadLettersRequest,
    ListStreamsRequest, ListTargetsRequest, ReplayDeadLettersRequest, ResealRequest,
    SetStreamEnabledRequest, config_service_client::ConfigServiceClient,
};
use clap::Parser;
use serde::Serialize;
use tonic::{
    Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

pub mod args;
pub mod render;
pub mod request;
pub mod router_dlq;
pub mod topology;

pub use args::{Cli, Command, DEFAULT_SERVER};
use args::{
    ConnectionCommand, DestinationArgs, DestinationCommand, DlqCommand, NodeCommand,
    RouterDlqCommand, StatusCommand, StreamCommand, Token, TopologyCommand,
};
use render::Render;

/// Why a command failed. `Display` is the text after `auditctl: ` on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The service answered with an error: `<CODE>: <message>`.
    #[error("{}", status_text(.0))]
    Rpc(Status),
    /// The service could not be reached.
    #[error("UNAVAILABLE: cannot connect to the config service at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// An input file could not be read or is not the expected JSON.
    #[error("{0}")]
    Input(String),
    /// The call succeeded but what it checked did not (e.g. a destination test that is not
    /// ok); the answer was printed.
    #[error("{0}")]
    TestFailed(String),
    /// `auditctl topology`: NATS could not be reached or refused a stream change.
    #[error("{0}")]
    Topology(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The reader of our output went away (`auditctl ... | head`); not worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<Status> for CliError {
    fn from(status: Status) -> Self {
        CliError::Rpc(status)
    }
}

fn status_text(status: &Status) -> String {
    let code = code_name(status.code());
    if status.message().is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {}", status.message())
    }
}

/// The canonical gRPC name of a status code, e.g. `NOT_FOUND`.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Parses `args` (the first item is the program name, as in `std::env::args`) and runs the
/// command, writing its output to `out`. `--help` and `--version` write to `out` and succeed;
/// other parse errors are [`CliError::Usage`] with clap's message.
///
/// Without `--server`/`--token`, `AUDITSTREAM_CONFIG_URL`/`AUDITSTREAM_TOKEN` are read from
/// the environment as by the binary.
pub async fn run_args<I, T>(args: I, out: &mut impl Write) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli, out).await,
        Err(e) if !e.use_stderr() => Ok(write!(out, "{}", e.render())?),
        Err(e) => Err(CliError::Usage(
            e.render().to_string().trim_end().to_owned(),
        )),
    }
}

/// Calls `$method($req)` and prints the response. `$req` is evaluated first, so a bad
/// argument or file is reported before connecting.
macro_rules! show {
    ($conn:ident, $out:ident, $method:ident($req:expr)) => {{
        let req = $req;
        let response = $conn.client().await?.$method(req).await?.into_inner();
        $out.show(&response)
    }};
}

/// Runs a parsed command: builds the request (reading any files), connects, calls, prints.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    let mut conn = Connector {
        url: cli.server,
        tls: auditstream_proto::tls::ClientTls {
            ca_file: cli.ca_file,
            ..Default::default()
        },
        token: cli.token,
        client: None,
    };
    let mut out = Printer {
        out,
        json: cli.json,
    };
    let (conn, out) = (&mut conn, &mut out);
    match cli.command {
        Command::Node(cmd) => match cmd {
            NodeCommand::Put(args) => show!(conn, out, put_node(request::put_node(&args))),
            NodeCommand::Get { id } => show!(conn, out, get_node(GetNodeRequest { id })),
            NodeCommand::List { parent } => {
                show!(
                    conn,
                    out,
                    list_children(ListChildrenRequest { parent_id: parent })
                )
            }
            NodeCommand::Delete {
                id,
                cascade,
                discard_pending,
            } => {
                let req = DeleteNodeRequest {
                    id,
                    cascade,
                    discard_pending,
                };
                show!(conn, out, delete_node(req))
            }
        },
        Command::Connection(cmd) => match cmd {
            ConnectionCommand::Create(args) => {
                show!(
                    conn,
                    out,
                    create_connection(request::create_connection(&args)?)
                )
            }
            ConnectionCommand::Get { id } => {
                show!(conn, out, get_connection(GetConnectionRequest { id }))
            }
            ConnectionCommand::List { node, inherited } => {
                let req = ListConnectionsRequest {
                    node_id: node,
                    include_inherited: inherited,
                };
                show!(conn, out, list_connections(req))
            }
            ConnectionCommand::Update { id, file } => {
                show!(
                    conn,
                    out,
                    update_connection(request::update_connection(&id, &file)?)
                )
            }
            ConnectionCommand::Delete { id } => {
                let req = DeleteConnectionRequest { id: id.clone() };
                let response = conn
                    .client()
                    .await?
                    .delete_connection(req)
                    .await?
                    .into_inner();
                out.done(&response, format_args!("deleted connection {id}"))
            }
            ConnectionCommand::Targets { id } => {
                show!(
                    conn,
                    out,
                    list_targets(ListTargetsRequest { connection_id: id })
                )
            }
        },
        Command::Stream(cmd) => match cmd {
            StreamCommand::Create(args) => {
                show!(conn, out, create_stream(request::create_stream(&args)?))
            }
            StreamCommand::Get { id } => show!(conn, out, get_stream(GetStreamRequest { id })),
            StreamCommand::List { node } => {
                show!(
                    conn,
                    out,
                    list_streams(ListStreamsRequest { node_id: node })
                )
            }
            StreamCommand::Update { id, file, mask } => {
                show!(
                    conn,
                    out,
                    update_stream(request::update_stream(&id, &file, &mask)?)
                )
            }
            StreamCommand::Enable { id } => {
                let req = SetStreamEnabledRequest { id, enabled: true };
                show!(conn, out, set_stream_enabled(req))
            }
            StreamCommand::Disable { id } => {
                let req = SetStreamEnabledRequest { id, enabled: false };
                show!(conn, out, set_stream_enabled(req))
            }
            StreamCommand::Delete {
                id,
                discard_pending,
            } => {
                let req = DeleteStreamRequest {
                    id: id.clone(),
                    discard_pending,
                };
                let response = conn.client().await?.delete_stream(req).await?.into_inner();
                out.done(&response, format_args!("deleted stream {id}"))
            }
            StreamCommand::Status { id } => {
                show!(conn, out, get_status(GetStatusRequest { stream_id: id }))
            }
        },
        Command::Explain { workspace } => {
            show!(
                conn,
                out,
                explain(ExplainRequest {
                    workspace_id: workspace
                })
            )
        }
        Command::Reseal => show!(conn, out, reseal(ResealRequest {})),
        Command::Snapshot => show!(
            conn,
            out,
            get_routing_snapshot(GetRoutingSnapshotRequest {})
        ),
        Command::Destination(DestinationArgs {
            command: Some(DestinationCommand::Test(args)),
            ..
        }) => {
            let req = request::test_destination(&args)?;
            let response = conn
                .client()
                .await?
                .test_destination(req)
                .await?
                .into_inner();
            out.show(&response)?;
            if response.ok {
                Ok(())
            } else {
                Err(CliError::TestFailed(format!(
                    "the destination test failed ({})",
                    if response.result.is_empty() {
                        "no result"
                    } else {
                        response.result.as_str()
                    }
                )))
            }
        }
        Command::Destination(args) => {
            show!(conn, out, get_destination(request::get_destination(&args)))
        }
        Command::Dlq(DlqCommand::List {
            stream,
            after,
            limit,
        }) => {
            let req = ListDeadLettersRequest {
                stream_id: stream,
                after_sequence: after,
                limit,
            };
            show!(conn, out, list_dead_letters(req))
        }
        Command::Dlq(DlqCommand::Replay { stream, sequences }) => {
            let req = ReplayDeadLettersRequest {
                stream_id: stream.clone(),
                sequences,
            };
            let response = conn
                .client()
                .await?
                .replay_dead_letters(req)
                .await?
                .into_inner();
            out.done(
                &response,
                format_args!(
                    "replayed {} dead letter{} to {stream}",
                    response.replayed,
                    if response.replayed == 1 { "" } else { "s" }
                ),
            )
        }
        Command::Status(StatusCommand::Report { file }) => {
            show!(conn, out, report_status(request::report_status(&file)?))
        }
        // The command line's edge: the environment is read here, as clap reads `--server`'s.
        Command::Topology(TopologyCommand::Apply(args)) => {
            topology::apply(&args, std::env::vars(), out.json, &mut *out.out).await
        }
        Command::RouterDlq(RouterDlqCommand::List(args)) => {
            router_dlq::list(&args, std::env::vars(), out.json, &mut *out.out).await
        }
        Command::RouterDlq(RouterDlqCommand::Replay(args)) => {
            router_dlq::replay(&args, std::env::vars(), out.json, &mut *out.out).await
        }
    }
}

// ---------------------------------------------------------------- output

/// Prints a response as pretty JSON or as text.
struct Printer<'w, W: Write> {
    out: &'w mut W,
    json: bool,
}

impl<W: Write> Printer<'_, W> {
    /// A response with a text rendering.
    fn show<M: Serialize + Render>(&mut self, msg: &M) -> Result<(), CliError> {
        if self.json {
            self.print_json(msg)
        } else {
            Ok(msg.render(&mut *self.out)?)
        }
    }

    /// A response with nothing to show: `text` (e.g. "deleted stream s1") unless `--json`.
    fn done<M: Serialize>(
        &mut self,
        msg: &M,
        text: std::fmt::Arguments<'_>,
    ) -> Result<(), CliError> {
        if self.json {
            self.print_json(msg)
        } else {
            Ok(writeln!(self.out, "{text}")?)
        }
    }

    fn print_json<M: Serialize>(&mut self, msg: &M) -> Result<(), CliError> {
        serde_json::to_writer_pretty(&mut *self.out, msg).map_err(std::io::Error::from)?;
        Ok(writeln!(self.out)?)
    }
}

// ---------------------------------------------------------------- connection

type Client = ConfigServiceClient<InterceptedService<Channel, BearerAuth>>;

/// The largest answer auditctl decodes (tonic's default is 4 MiB).
const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Connects on first use, so a bad argument or file is reported without a server.
struct Connector {
    url: String,
    tls: auditstream_proto::tls::ClientTls,
    token: Option<Token>,
    client: Option<Client>,
}

impl Connector {
    async fn client(&mut self) -> Result<&mut Client, CliError> {
        if self.client.is_none() {
            let auth = BearerAuth::new(self.token.as_ref())?;
            let endpoint = self
                .tls
                .endpoint(&self.url, "--ca-file")
                .map_err(|e| CliError::Usage(format!("--server {:?}: {e}", self.url)))?
                .connect_timeout(Duration::from_secs(10));
            let channel = endpoint.connect().await.map_err(|e| CliError::Connect {
                url: self.url.clone(),
                reason: error_chain(&e),
            })?;
            // `auditctl snapshot` reads the unary GetRoutingSnapshot, one message that
            // outgrows tonic's default 4 MiB decode limit with a large tree (H5).
            self.client = Some(
                ConfigServiceClient::with_interceptor(channel, auth)
                    .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES),
            );
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone)]
struct BearerAuth(Option<MetadataValue<Ascii>>);

impl BearerAuth {
    fn new(token: Option<&Token>) -> Result<Self, CliError> {
        let Some(token) = token.filter(|t| !t.0.is_empty()) else {
            return Ok(Self(None));
        };
        // The error would not show the token, but say so plainly rather than rely on it.
        let mut value = MetadataValue::try_from(format!("Bearer {}", token.0)).map_err(|_| {
            CliError::Usage("the token is not valid in gRPC metadata (visible ASCII only)".into())
        })?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// `outer: inner: innermost`, skipping a cause that repeats its parent's text.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut last = text.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let msg = cause.to_string();
        if !last.contains(&msg) {
            text.push_str(": ");
            text.push_str(&msg);
        }
        last = msg;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on port 1; connecting fails at once.
    const NO_SERVER: &str = "http://127.0.0.1:1";

    async fn run_str(args: &[&str]) -> (Result<(), CliError>, String) {
        let mut out = Vec::new();
        let argv = ["auditctl"].iter().chain(args);
        let result = run_args(argv.copied(), &mut out).await;
        (result, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn rpc_errors_print_code_name_and_message() {
        let err = CliError::from(Status::failed_precondition("node p1 has children"));
        assert_eq!(err.to_string(), "FAILED_PRECONDITION: node p1 has children");
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            CliError::from(Status::not_found("")).to_string(),
            "NOT_FOUND"
        );
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(CliError::Usage("bad".into()).exit_code(), 2);
    }

    #[tokio::test]
    async fn help_goes_to_the_writer() {
        let (result, out) = run_str(&["stream", "--help"]).await;
        result.expect("help is not an error");
        assert!(out.contains("Usage: auditctl stream"), "{out}");
    }

    #[tokio::test]
    async fn parse_errors_are_usage_errors() {
        let (result, _) = run_str(&["node", "put", "n1", "--kind", "planet"]).await;
        let err = result.expect_err("bad kind");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("planet"), "{err}");
    }

    #[tokio::test]
    async fn bad_files_are_reported_before_connecting() {
        let (result, _) = run_str(&[
            "--server",
            NO_SERVER,
            "status",
            "report",
            "--file",
            "/nonexistent/s.json",
        ])
        .await;
        let err = result.expect_err("missing file");
        assert!(matches!(err, CliError::Input(_)), "{err}");
    }

    #[tokio::test]
    async fn connection_errors_name_the_server() {
        let (result, out) = run_str(&[
            "--server",
            NO_SERVER,
            "--token",
            "t0p-s3cret",
            "node",
            "get",
            "n1",
        ])
        .await;
        let err = result.expect_err("no server").to_string();
        assert!(
            err.starts_with(
                "UNAVAILABLE: cannot connect to the config service at http://127.0.0.1:1"
            ),
            "{err}"
        );
        assert!(!err.contains("t0p-s3cret") && out.is_empty(), "{err}");
    }

    #[test]
    fn tokens_that_cannot_be_metadata_are_refused_without_echoing_them() {
        let err = BearerAuth::new(Some(&Token("bad\ntoken".into())))
            .err()
            .expect("refused");
        assert!(!err.to_string().contains("bad"), "{err}");
        assert!(
            BearerAuth::new(Some(&Token(String::new())))
                .expect("no token")
                .0
                .is_none()
        );
    }
}
