//! The five JetStream streams (DESIGN §2), created or updated idempotently.
//!
//! Every service may call [`ensure_topology`] at start; running it again with the same
//! configuration changes nothing, and a changed limit (max_age, max_bytes, replicas) is
//! applied in place. Retention and storage cannot be changed on a live stream; JetStream
//! refuses and the error names the stream.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};
use serde::{Deserialize, Serialize};

use crate::subjects;

pub const INGEST: &str = "AUDIT_INGEST";
pub const DELIVER: &str = "AUDIT_DELIVER";
pub const BACKLOG: &str = "AUDIT_BACKLOG";
pub const DLQ: &str = "AUDIT_DLQ";
pub const CONTROL: &str = "AUDIT_CONTROL";

const GIB: i64 = 1024 * 1024 * 1024;

/// Size and age limits of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLimits {
    /// Oldest message kept; `0s` keeps messages until consumed or until `max_bytes`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Largest size on disk. JetStream reserves this much storage when the stream is created.
    pub max_bytes: i64,
}

/// Settings of the whole topology. Defaults suit one node; Kubernetes sets `replicas: 3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// Copies of every stream (1 locally, 3 in production so an ack means a quorum has it).
    pub replicas: usize,
    /// How long a producer `id` is remembered for de-duplication.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Also how far back a new stream can be backfilled.
    pub ingest: StreamLimits,
    pub deliver: StreamLimits,
    /// The persistent cache of broken or slow destinations.
    pub backlog: StreamLimits,
    pub dlq: StreamLimits,
    pub control: StreamLimits,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        let day = Duration::from_secs(24 * 3600);
        TopologyConfig {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ingest: StreamLimits {
                max_age: day,
                max_bytes: 4 * GIB,
            },
            // Delivery messages never expire: losing one would lose an event.
            deliver: StreamLimits {
                max_age: Duration::ZERO,
                max_bytes: 4 * GIB,
            },
            // Sinks move backlog events older than their retention (7 days by default) to the
            // DLQ, counted and reported; JetStream's own expiry is only the safety net a day
            // later, so nothing expires unnoticed.
            backlog: StreamLimits {
                max_age: 8 * day,
                max_bytes: 16 * GIB,
            },
            dlq: StreamLimits {
                max_age: 7 * day,
                max_bytes: GIB,
            },
            control: StreamLimits {
                max_age: 7 * day,
                max_bytes: 64 * 1024 * 1024,
            },
        }
    }
}

/// What [`ensure_topology`] did to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamChange {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} JetStream stream {stream}: {source}")]
pub struct TopologyError {
    pub stream: String,
    pub action: &'static str,
    #[source]
    pub source: async_nats::Error,
}

impl TopologyConfig {
    /// The stream configurations this topology asks for.
    pub fn streams(&self) -> Vec<jetstream::stream::Config> {
        let stream = |name: &str, prefix: &str, retention, discard, limits: &StreamLimits| {
            jetstream::stream::Config {
                name: name.to_owned(),
                subjects: vec![format!("{prefix}.>")],
                retention,
                discard,
                max_age: limits.max_age,
                max_bytes: limits.max_bytes,
                num_replicas: self.replicas,
                storage: StorageType::File,
                duplicate_window: self.duplicate_window,
                allow_direct: true,
                ..Default::default()
            }
        };
        use {DiscardPolicy::*, RetentionPolicy::*};
        vec![
            // discard: new — when full the gateway answers 503 instead of JetStream dropping
            // old, not yet routed events.
            stream(INGEST, subjects::INGEST_PREFIX, Limits, New, &self.ingest),
            stream(
                DELIVER,
                subjects::DELIVER_PREFIX,
                WorkQueue,
                New,
                &self.deliver,
            ),
            stream(
                BACKLOG,
                subjects::BACKLOG_PREFIX,
                WorkQueue,
                New,
                &self.backlog,
            ),
            stream(DLQ, subjects::DLQ_PREFIX, Limits, New, &self.dlq),
            // The control feed carries revisions; readers resync after a gap, so old
            // entries may go.
            stream(
                CONTROL,
                subjects::CONTROL_PREFIX,
                Limits,
                Old,
                &self.control,
            ),
        ]
    }
}

/// Creates missing streams and updates those whose settings differ. Returns what happened
/// to each stream, in topology order.
pub async fn ensure_topology(
    js: &jetstream::Context,
    config: &TopologyConfig,
) -> Result<Vec<(String, StreamChange)>, TopologyError> {
    let mut changes = Vec::new();
    for wanted in config.streams() {
        let name = wanted.name.clone();
        let err = |action, source: async_nats::Error| TopologyError {
            stream: name.clone(),
            action,
            source,
        };
        let change = match js.get_stream(&name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| err("read", e.into()))?;
                if same_settings(&info.config, &wanted) {
                    StreamChange::Unchanged
                } else {
                    js.update_stream(&wanted)
                        .await
                        .map_err(|e| err("update", e.into()))?;
                    StreamChange::Updated
                }
            }
            Err(e) if is_stream_not_found(&e) => {
                js.create_stream(wanted)
                    .await
                    .map_err(|e| err("create", e.into()))?;
                StreamChange::Created
            }
            Err(e) => return Err(err("read", e.into())),
        };
        if change != StreamChange::Unchanged {
            tracing::info!(stream = %name, ?change, "jetstream stream ensured");
        }
        changes.push((name, change));
    }
    Ok(changes)
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Compares the fields this module owns; anything else on the stream is left alone.
fn same_settings(have: &jetstream::stream::Config, want: &jetstream::stream::Config) -> bool {
    have.subjects == want.subjects
        && have.retention == want.retention
        && have.discard == want.discard
        && have.max_age == want.max_age
        && have.max_bytes == want.max_bytes
        && have.num_replicas == want.num_replicas
        && have.storage == want.storage
        && have.duplicate_window == want.duplicate_window
        && have.allow_direct == want.allow_direct
}

/// Follows a NATS connection and (re-)ensures the topology after every (re)connect, so a
/// NATS that lost its state gets its streams back. Services call [`TopologyKeeper::tick`]
/// from their readiness loop.
pub struct TopologyKeeper {
    client: async_nats::Client,
    js: jetstream::Context,
    config: crate::NatsConfig,
    was_connected: bool,
    ensured: bool,
}

/// What a tick saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologyState {
    pub connected: bool,
    /// The streams are in place (always true when `ensure_topology` is off: someone else
    /// owns them).
    pub ensured: bool,
    /// The connection came (back) since the previous tick.
    pub reconnected: bool,
}

impl TopologyKeeper {
    pub fn new(
        client: async_nats::Client,
        js: jetstream::Context,
        config: crate::NatsConfig,
    ) -> Self {
        let ensured = !config.ensure_topology;
        TopologyKeeper {
            client,
            js,
            config,
            was_connected: false,
            ensured,
        }
    }

    pub async fn tick(&mut self) -> TopologyState {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let reconnected = connected && !self.was_connected;
        if self.config.ensure_topology && connected && (reconnected || !self.ensured) {
            match ensure_topology(&self.js, &self.config.topology).await {
                Ok(_) => self.ensured = true,
                Err(e) => {
                    self.ensured = false;
                    tracing::error!(error = %e, "cannot ensure JetStream topology; will retry");
                }
            }
        }
        self.was_connected = connected;
        TopologyState {
            connected,
            ensured: self.ensured,
            reconnected,
        }
    }
}
