//! `auditctl topology apply`: the operator's (or a Helm job's) way to own the JetStream
//! topology, beside the config service. It loads the `nats` section exactly as the services
//! do (defaults < file < `AUDITSTREAM_NATS__*`), connects with its credentials and TLS, and
//! runs the same `auditstream_bus::ensure_topology` the config service runs.

use std::io::Write;

use auditstream_bus::{NatsConfig, StreamChange, connect, ensure_topology, jetstream_context};
use serde::{Deserialize, Serialize};

use crate::{CliError, args::TopologyApplyArgs};

/// The part of a service configuration this command reads. Unknown sections are ignored
/// (not refused as the services do) so any service's file can be passed as it is.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct TopologyFile {
    nats: NatsConfig,
}

/// What happened to one stream, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Applied {
    stream: String,
    change: &'static str,
    /// Messages moved out of an earlier version's shared backlog.
    #[serde(skip_serializing_if = "Option::is_none")]
    moved: Option<u64>,
}

/// Loads the configuration (`env` is the process environment, passed in), applies the
/// topology and prints one line per stream.
pub async fn apply(
    args: &TopologyApplyArgs,
    env: impl IntoIterator<Item = (String, String)>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut nats = auditstream_telemetry::load::<TopologyFile>(args.config.as_deref(), env)
        .map_err(|e| CliError::Input(e.to_string()))?
        .config
        .nats;
    if let Some(url) = &args.nats_url {
        nats.url.clone_from(url);
    }
    let failed = |e: &dyn std::fmt::Display| {
        CliError::Topology(format!(
            "cannot apply the topology on NATS at {}: {e}",
            nats.redacted_url()
        ))
    };
    // The topology's owner: run with the config service's NATS user (only it may create
    // and update streams, README "NATS users and permissions").
    let client = connect(&nats, auditstream_bus::Service::ConfigService)
        .await
        .map_err(|e| failed(&e))?;
    let js = jetstream_context(client.clone(), nats.publish_timeout);
    let changes = ensure_topology(&js, &nats.topology)
        .await
        .map_err(|e| failed(&e))?;
    let applied: Vec<Applied> = changes
        .into_iter()
        .map(|(stream, change)| Applied {
            stream,
            change: match change {
                StreamChange::Created => "created",
                StreamChange::Updated => "updated",
                StreamChange::Unchanged => "unchanged",
                StreamChange::Migrated { .. } => "migrated",
            },
            moved: match change {
                StreamChange::Migrated { moved } => Some(moved),
                _ => None,
            },
        })
        .collect();
    // The connection only carried requests that were answered; nothing is left to flush.
    drop(client);
    if json {
        serde_json::to_writer_pretty(&mut *out, &applied).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        for a in &applied {
            match a.moved {
                Some(n) => writeln!(out, "{:<26} {} ({n} events moved)", a.stream, a.change)?,
                None => writeln!(out, "{:<26} {}", a.stream, a.change)?,
            }
        }
    }
    Ok(())
}
