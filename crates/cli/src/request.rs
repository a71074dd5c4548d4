//! Building requests from arguments and JSON files, before any call is made (so a bad file
//! is reported without contacting the server).
//!
//! JSON files use the proto3 JSON mapping of the generated messages: snake_case (or
//! lowerCamelCase) field names, enums by full name, oneofs as the variant's field name,
//! uint64 as strings. Unknown fields are refused, so a typo is not silently dropped.

use std::path::Path;

use auditstream_proto::v1::{
    AppliesTo, Connection, CreateConnectionRequest, CreateStreamRequest, Destination,
    GetDestinationRequest, Node, NodeKind, PutNodeRequest, ReportStatusRequest, Stream,
    StreamStatus, TestDestinationRequest, UpdateConnectionRequest, UpdateStreamRequest,
    get_destination_request::Key,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    CliError,
    args::{
        ConnectionCreateArgs, DestinationArgs, DestinationTestArgs, NodePutArgs, StreamCreateArgs,
    },
};

/// Stream fields never inferred into an update mask: identity and output-only fields.
const NOT_UPDATABLE: &[&str] = &["id", "node_id", "version", "connection_version", "revision"];

pub fn put_node(args: &NodePutArgs) -> PutNodeRequest {
    PutNodeRequest {
        node: Some(Node {
            id: args.id.clone(),
            parent_id: args.parent.clone(),
            kind: NodeKind::from(args.kind).into(),
            name: args.name.clone(),
            external_id: args.external_id.clone(),
            managed: args.managed,
            admin_emails: args.admin_emails.clone(),
            revision: 0,
        }),
    }
}

/// The file is a `Connection` JSON (its credentials at least); `--id/--node/--name` win.
pub fn create_connection(args: &ConnectionCreateArgs) -> Result<CreateConnectionRequest, CliError> {
    let mut connection: Connection = read_message(&args.file, "Connection")?;
    override_with(&mut connection.id, &args.id);
    override_with(&mut connection.node_id, &args.node);
    override_with(&mut connection.name, &args.name);
    Ok(CreateConnectionRequest {
        connection: Some(connection),
    })
}

/// The file is a `Connection` JSON; the id argument wins over the file's.
pub fn update_connection(id: &str, file: &Path) -> Result<UpdateConnectionRequest, CliError> {
    let mut connection: Connection = read_message(file, "Connection")?;
    connection.id = id.to_owned();
    Ok(UpdateConnectionRequest {
        connection: Some(connection),
    })
}

/// The optional file is a `Stream` JSON; flags win. The stream is created enabled unless
/// `--disabled` is given or the file sets `enabled`.
pub fn create_stream(args: &StreamCreateArgs) -> Result<CreateStreamRequest, CliError> {
    let (mut stream, enabled_in_file) = match &args.file {
        Some(path) => {
            let value = read_json(path)?;
            let enabled_in_file = value.get("enabled").is_some();
            (
                from_value::<Stream>(value, path, "Stream")?,
                enabled_in_file,
            )
        }
        None => (Stream::default(), false),
    };
    override_with(&mut stream.id, &args.id);
    override_with(&mut stream.node_id, &args.node);
    override_with(&mut stream.name, &args.name);
    if let Some(applies) = args.applies_to {
        stream.applies_to = AppliesTo::from(applies).into();
    }
    if args.disabled {
        stream.enabled = false;
    } else if !enabled_in_file {
        stream.enabled = true;
    }
    if let Some(path) = &args.destination_file {
        stream.destination = Some(read_message::<Destination>(path, "Destination")?);
    }
    if let Some(path) = &args.template_file {
        stream.template = std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    }
    Ok(CreateStreamRequest {
        stream: Some(stream),
    })
}

/// The file is a `Stream` JSON holding the new values; the id argument wins over the file's.
/// Without an explicit mask, the mask is the file's top-level fields (see [`infer_mask`]).
pub fn update_stream(
    id: &str,
    file: &Path,
    mask: &[String],
) -> Result<UpdateStreamRequest, CliError> {
    let value = read_json(file)?;
    let update_mask = if mask.is_empty() {
        infer_mask(&value).map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?
    } else {
        let fields: Vec<String> = mask
            .iter()
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        if fields.is_empty() {
            return Err(CliError::Usage("--mask names no field".into()));
        }
        fields
    };
    let mut stream: Stream = from_value(value, file, "Stream")?;
    stream.id = id.to_owned();
    Ok(UpdateStreamRequest {
        stream: Some(stream),
        update_mask,
    })
}

/// The update mask implied by a Stream JSON object: its top-level field names (lowerCamelCase
/// turned into the proto's snake_case), sorted, without `id`, `node_id` and the
/// output-only fields (`version`, `connection_version`, `revision`).
pub fn infer_mask(value: &Value) -> Result<Vec<String>, String> {
    let object = value.as_object().ok_or("a Stream JSON must be an object")?;
    let mut mask = Vec::new();
    for key in object.keys() {
        let field = snake_case(key);
        if !NOT_UPDATABLE.contains(&field.as_str()) && !mask.contains(&field) {
            mask.push(field);
        }
    }
    if mask.is_empty() {
        return Err(
            "names no field to update (name, applies_to, enabled, selection, template, \
                    destination, batching)"
                .into(),
        );
    }
    Ok(mask)
}

pub fn get_destination(args: &DestinationArgs) -> GetDestinationRequest {
    let key = match (&args.stream, &args.connection) {
        (Some(stream), _) => Key::StreamId(stream.clone()),
        (None, Some(connection)) => Key::ConnectionId(connection.clone()),
        // clap's argument group requires exactly one of them.
        (None, None) => Key::StreamId(String::new()),
    };
    GetDestinationRequest { key: Some(key) }
}

/// A saved stream's destination by id, or an unsaved one from the file (`--connection`
/// wins over its `connection_id`).
pub fn test_destination(args: &DestinationTestArgs) -> Result<TestDestinationRequest, CliError> {
    if let Some(stream) = &args.stream {
        return Ok(TestDestinationRequest {
            stream_id: stream.clone(),
            destination: None,
        });
    }
    let Some(path) = &args.destination_file else {
        // clap requires a stream or a file.
        return Err(CliError::Usage(
            "give a stream id, or --destination-file (and --connection)".into(),
        ));
    };
    let mut destination: Destination = read_message(path, "Destination")?;
    override_with(&mut destination.connection_id, &args.connection);
    Ok(TestDestinationRequest {
        stream_id: String::new(),
        destination: Some(destination),
    })
}

/// The file is a `StreamStatus` JSON.
pub fn report_status(file: &Path) -> Result<ReportStatusRequest, CliError> {
    Ok(ReportStatusRequest {
        status: Some(read_message::<StreamStatus>(file, "StreamStatus")?),
    })
}

/// Reads a file holding the JSON of message `what`.
pub fn read_message<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T, CliError> {
    from_value(read_json(path)?, path, what)
}

fn read_json(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{}: not valid JSON: {e}", path.display())))
}

fn from_value<T: DeserializeOwned>(value: Value, path: &Path, what: &str) -> Result<T, CliError> {
    serde_json::from_value(value)
        .map_err(|e| CliError::Input(format!("{}: not a valid {what} JSON: {e}", path.display())))
}

fn override_with(field: &mut String, flag: &Option<String>) {
    if let Some(value) = flag {
        field.clone_from(value);
    }
}

/// `appliesTo` → `applies_to`; snake_case names are unchanged.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, path::PathBuf};

    use auditstream_proto::v1::{
        Batching, EventSelection, ObjectFormat, S3Credentials, S3StaticKeys, S3Target,
        connection::Credentials, destination::Target, s3_credentials::Method,
    };
    use serde_json::json;
    use tempfile::NamedTempFile;

    use super::*;
    use crate::args::KindArg;

    fn file(text: &str) -> NamedTempFile {
        let mut f = NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    const S3_CREDS: &str = r#"{"s3": {"static_keys": {"access_key_id": "AKIA1", "secret_access_key": "shh"}, "region": "us-east-1"}}"#;

    fn s3_static() -> Option<Credentials> {
        Some(Credentials::S3(S3Credentials {
            method: Some(Method::StaticKeys(S3StaticKeys {
                access_key_id: "AKIA1".into(),
                secret_access_key: "shh".into(),
                session_token: String::new(),
            })),
            region: "us-east-1".into(),
            ..Default::default()
        }))
    }

    fn create_args(file: PathBuf) -> StreamCreateArgs {
        StreamCreateArgs {
            file: Some(file),
            id: None,
            node: None,
            name: None,
            applies_to: None,
            disabled: false,
            destination_file: None,
            template_file: None,
        }
    }

    #[test]
    fn put_node_maps_every_flag() {
        let args = NodePutArgs {
            id: "p1".into(),
            kind: KindArg::Partner,
            parent: "org1".into(),
            name: "Partner".into(),
            external_id: "ext".into(),
            managed: true,
            admin_emails: vec!["a@x.io".into()],
        };
        let node = put_node(&args).node.expect("node");
        assert_eq!(node.kind, NodeKind::Partner as i32);
        assert_eq!(
            (
                node.id.as_str(),
                node.parent_id.as_str(),
                node.name.as_str()
            ),
            ("p1", "org1", "Partner")
        );
        assert_eq!((node.external_id.as_str(), node.managed), ("ext", true));
        assert_eq!(node.admin_emails, ["a@x.io"]);
    }

    #[test]
    fn connection_from_credentials_only_file_and_flags() {
        let f = file(S3_CREDS);
        let args = ConnectionCreateArgs {
            file: f.path().into(),
            id: None,
            node: Some("p1".into()),
            name: Some("aws".into()),
        };
        let c = create_connection(&args)
            .expect("request")
            .connection
            .expect("connection");
        assert_eq!(
            c,
            Connection {
                node_id: "p1".into(),
                name: "aws".into(),
                credentials: s3_static(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn connection_from_whole_message_flags_win() {
        let whole = json!({
            "id": "c1", "node_id": "p1", "name": "from file",
            "s3": {"static_keys": {"access_key_id": "AKIA1", "secret_access_key": "shh"}, "region": "us-east-1"},
        });
        let f = file(&whole.to_string());
        let args = ConnectionCreateArgs {
            file: f.path().into(),
            id: None,
            node: None,
            name: Some("flag".into()),
        };
        let c = create_connection(&args)
            .expect("request")
            .connection
            .expect("connection");
        assert_eq!(
            (c.id.as_str(), c.node_id.as_str(), c.name.as_str()),
            ("c1", "p1", "flag")
        );
        assert_eq!(c.credentials, s3_static());

        let rotated = update_connection("c9", f.path())
            .expect("request")
            .connection
            .expect("connection");
        assert_eq!(
            (rotated.id.as_str(), rotated.node_id.as_str()),
            ("c9", "p1")
        );
    }

    #[test]
    fn bad_files_name_the_file_and_message() {
        let f = file(r#"{"s3": {"static_keys": {"acces_key_id": "typo"}}}"#);
        let args = ConnectionCreateArgs {
            file: f.path().into(),
            id: None,
            node: None,
            name: None,
        };
        let err = create_connection(&args)
            .expect_err("unknown field")
            .to_string();
        assert!(
            err.contains("not a valid Connection JSON") && err.contains("acces_key_id"),
            "{err}"
        );
        assert!(err.contains(&f.path().display().to_string()), "{err}");

        let err = report_status(Path::new("/nonexistent/status.json"))
            .expect_err("missing")
            .to_string();
        assert!(
            err.starts_with("cannot read /nonexistent/status.json"),
            "{err}"
        );

        let f = file("{not json");
        let err = report_status(f.path()).expect_err("syntax").to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn stream_from_file_with_overrides() {
        let stream = json!({
            "id": "s1", "node_id": "p1", "name": "everything", "applies_to": "APPLIES_TO_SELF_ONLY",
            "selection": {"event_types": ["job_status", "log_event"], "log_levels": ["error"]},
            "batching": {"max_events": 100, "max_bytes": "1048576"},
        });
        let stream_file = file(&stream.to_string());
        let destination_file = file(
            r#"{"connection_id": "c1", "s3": {"bucket": "audit", "prefix": "logs/", "format": "OBJECT_FORMAT_PER_EVENT"}}"#,
        );
        let template_file = file("{\"msg\": {{{log_message}}}}\n");
        let args = StreamCreateArgs {
            node: Some("w1".into()),
            applies_to: Some(crate::args::AppliesToArg::Descendants),
            destination_file: Some(destination_file.path().into()),
            template_file: Some(template_file.path().into()),
            ..create_args(stream_file.path().into())
        };
        let s = create_stream(&args)
            .expect("request")
            .stream
            .expect("stream");
        assert_eq!(
            s,
            Stream {
                id: "s1".into(),
                node_id: "w1".into(),
                name: "everything".into(),
                applies_to: AppliesTo::Descendants as i32,
                enabled: true,
                selection: Some(EventSelection {
                    event_types: vec!["job_status".into(), "log_event".into()],
                    log_levels: vec!["error".into()],
                    ..Default::default()
                }),
                template: "{\"msg\": {{{log_message}}}}\n".into(),
                destination: Some(Destination {
                    connection_id: "c1".into(),
                    target: Some(Target::S3(S3Target {
                        bucket: "audit".into(),
                        prefix: "logs/".into(),
                        format: ObjectFormat::PerEvent as i32,
                        ..Default::default()
                    })),
                }),
                batching: Some(Batching {
                    max_events: 100,
                    max_bytes: 1_048_576,
                    max_age_ms: 0
                }),
                ..Default::default()
            }
        );
    }

    #[test]
    fn stream_enabled_defaults_to_true_unless_file_or_flag_says_otherwise() {
        let enabled = |text: &str, disabled: bool| {
            let f = file(text);
            let args = StreamCreateArgs {
                disabled,
                ..create_args(f.path().into())
            };
            create_stream(&args)
                .expect("request")
                .stream
                .expect("stream")
                .enabled
        };
        assert!(enabled(r#"{"name": "a"}"#, false));
        assert!(!enabled(r#"{"name": "a"}"#, true));
        assert!(!enabled(r#"{"enabled": false}"#, false));
        assert!(!enabled(r#"{"enabled": true}"#, true));
    }

    #[test]
    fn mask_is_inferred_from_top_level_fields() {
        let value = json!({
            "id": "s1", "node_id": "p1", "name": "n", "appliesTo": "APPLIES_TO_DESCENDANTS",
            "selection": {"event_types": ["job_status"]}, "version": "3", "revision": "9",
        });
        assert_eq!(
            infer_mask(&value).expect("mask"),
            ["applies_to", "name", "selection"]
        );
        assert!(infer_mask(&json!({"id": "s1"})).is_err());
        assert!(infer_mask(&json!(["name"])).is_err());
    }

    #[test]
    fn update_stream_uses_the_argument_id_and_mask() {
        let f = file(r#"{"id": "other", "enabled": false, "template": "x"}"#);
        let req = update_stream("s1", f.path(), &[]).expect("request");
        assert_eq!(req.update_mask, ["enabled", "template"]);
        let stream = req.stream.expect("stream");
        assert_eq!(
            (stream.id.as_str(), stream.enabled, stream.template.as_str()),
            ("s1", false, "x")
        );

        let req =
            update_stream("s1", f.path(), &[" template".into(), String::new()]).expect("request");
        assert_eq!(req.update_mask, ["template"]);
        assert!(matches!(
            update_stream("s1", f.path(), &[" ".into()]),
            Err(CliError::Usage(_))
        ));

        let f = file(r#"{"id": "s1", "version": "2"}"#);
        let err = update_stream("s1", f.path(), &[])
            .expect_err("nothing to update")
            .to_string();
        assert!(err.contains("names no field to update"), "{err}");
    }

    #[test]
    fn destination_and_status_requests() {
        let args = DestinationArgs {
            stream: None,
            connection: Some("c1".into()),
            command: None,
        };
        assert_eq!(
            get_destination(&args).key,
            Some(Key::ConnectionId("c1".into()))
        );
        let args = DestinationArgs {
            stream: Some("s1".into()),
            connection: None,
            command: None,
        };
        assert_eq!(get_destination(&args).key, Some(Key::StreamId("s1".into())));

        let saved = DestinationTestArgs {
            stream: Some("s1".into()),
            connection: None,
            destination_file: None,
        };
        let req = test_destination(&saved).expect("request");
        assert_eq!((req.stream_id.as_str(), req.destination), ("s1", None));
        let f = file(
            r#"{"connection_id": "from-file", "http": {"url": "https://logs.example.com/x"}}"#,
        );
        let unsaved = DestinationTestArgs {
            stream: None,
            connection: Some("c9".into()),
            destination_file: Some(f.path().into()),
        };
        let req = test_destination(&unsaved).expect("request");
        let d = req.destination.expect("destination");
        assert_eq!(
            (req.stream_id.as_str(), d.connection_id.as_str()),
            ("", "c9")
        );
        assert!(matches!(
            d.target,
            Some(auditstream_proto::v1::destination::Target::Http(t)) if t.url == "https://logs.example.com/x"
        ));
        let bad = file(r#"{"connection_id": "c1", "htp": {}}"#);
        let err = test_destination(&DestinationTestArgs {
            destination_file: Some(bad.path().into()),
            ..unsaved
        })
        .expect_err("unknown field")
        .to_string();
        assert!(err.contains("not a valid Destination JSON"), "{err}");

        let f = file(
            r#"{"stream_id": "s1", "state": "HEALTH_STATE_BROKEN", "last_error": "403", "backlog_depth": "12"}"#,
        );
        let status = report_status(f.path())
            .expect("request")
            .status
            .expect("status");
        assert_eq!(
            status.state,
            auditstream_proto::v1::HealthState::Broken as i32
        );
        assert_eq!(
            (status.stream_id.as_str(), status.backlog_depth),
            ("s1", 12)
        );
    }
}
