//! The JetStream streams (DESIGN §2), and who may change them.
//!
//! AUDIT_INGEST holds only events not routed yet (a work queue: ingest stops only when the
//! router falls behind), AUDIT_HISTORY what was routed, for backfill and replay (bounded,
//! oldest dropped first), AUDIT_PARKED the events of workspaces the directory does not know
//! yet (the router routes them once the workspace appears, or dead-letters them after its
//! parking window).
//!
//! AUDIT_INGEST, AUDIT_DELIVER, AUDIT_DLQ and AUDIT_CONTROL are shared; the backlog is one
//! stream per sink type (`AUDIT_BACKLOG_S3`, …, [`backlog`]), so a sink type's NATS user can
//! be granted pull, ack and direct-get on its own backlog and nothing of another type's
//! (NATS permissions name a stream and a consumer, never a consumer's filter).
//!
//! The topology has one owner: the config service (or an operator running `auditctl
//! topology apply`) calls [`ensure_topology`], which creates missing streams and updates
//! those whose settings differ. Running it again with the same configuration changes
//! nothing, and a changed limit (max_age, max_bytes, replicas) is applied in place.
//! Retention and storage cannot be changed on a live stream; JetStream refuses and the
//! error names the stream.
//!
//! Every other service only verifies ([`verify_topology`], [`TopologyGate::verify`]): one
//! service started with defaults must not lower `replicas` or `max_age` for everybody, since
//! JetStream then deletes data (security review L8). A missing stream, or one weaker than the
//! service's own configuration, is refused; a stronger one is fine.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self,
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};
use serde::{Deserialize, Serialize};

use auditstream_model::SinkType;

use crate::{permissions::Service, subjects};

pub const INGEST: &str = "AUDIT_INGEST";
/// What the router routed, kept for backfill and replay (bounded, oldest dropped first).
pub const HISTORY: &str = "AUDIT_HISTORY";
/// Events of workspaces not in the directory yet, waiting for it (the router expires them
/// itself, counted, into the dead letters).
pub const PARKED: &str = "AUDIT_PARKED";
pub const DELIVER: &str = "AUDIT_DELIVER";
/// The backlog stream of one sink type: see [`backlog`].
const BACKLOG_PREFIX: &str = "AUDIT_BACKLOG";
pub const DLQ: &str = "AUDIT_DLQ";
pub const CONTROL: &str = "AUDIT_CONTROL";

const GIB: i64 = 1024 * 1024 * 1024;

/// `AUDIT_BACKLOG_<TYPE>`: the backlog stream of sink type `t` (`AUDIT_BACKLOG_AZURE_BLOB`),
/// holding `audit.backlog.<type>.>`.
pub fn backlog(t: SinkType) -> String {
    format!("{BACKLOG_PREFIX}_{}", t.as_str().to_uppercase())
}

/// Before 0.12 every sink type shared this backlog stream; [`ensure_topology`] moves what it
/// still holds into the per-type streams and deletes it ([`migrate_shared_backlog`]).
pub const SHARED_BACKLOG: &str = BACKLOG_PREFIX;

/// Every stream name, in topology order.
pub fn stream_names() -> Vec<String> {
    let mut names = vec![INGEST.to_owned(), DELIVER.to_owned()];
    names.extend(SinkType::ALL.map(backlog));
    names.extend([
        DLQ.to_owned(),
        CONTROL.to_owned(),
        HISTORY.to_owned(),
        PARKED.to_owned(),
    ]);
    names
}

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
    /// Events not routed yet. The router takes each one out once it is routed, so this only
    /// fills when the router falls behind; then, and only then, the gateway answers 503.
    pub ingest: StreamLimits,
    /// Routed events, kept for backfill and replay: the history's horizon is whichever of
    /// `max_age` and `max_bytes` is reached first, and a full history drops its oldest
    /// events, never refusing new ones.
    pub history: StreamLimits,
    /// Events of workspaces the directory does not know yet. `max_age` should stay 0: the
    /// router moves events older than its `park.max_age` to the dead letters, counted; a
    /// stream age would drop them silently first.
    pub parked: StreamLimits,
    pub deliver: StreamLimits,
    /// The persistent cache of broken or slow destinations: the limits of each sink type's
    /// backlog stream (four streams, so the defaults hold 4 × 4 GiB).
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
            // Never expires: an unrouted event waits for the router however long it is down.
            // 4 GiB is the router's lag budget: about 70 minutes of 1 000 events/s of 1 KiB.
            ingest: StreamLimits {
                max_age: Duration::ZERO,
                max_bytes: 4 * GIB,
            },
            // At the expected 1 000 events/s of 1 KiB (packed: about 1 MiB/s stored), 16 GiB
            // keep about 4.5 hours; at 100 events/s the full day.
            history: StreamLimits {
                max_age: day,
                max_bytes: 16 * GIB,
            },
            // A workspace's first events race its registration for seconds to minutes; 1 GiB
            // holds about an hour of 300 events/s of 1 KiB for workspaces nobody registered.
            parked: StreamLimits {
                max_age: Duration::ZERO,
                max_bytes: GIB,
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
                max_bytes: 4 * GIB,
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
    /// The shared backlog of earlier versions: its messages were moved into the per-type
    /// backlog streams and it was deleted.
    Migrated {
        moved: u64,
    },
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
        let mut streams = vec![
            // A work queue: the router's ack removes a routed event. discard: new — when the
            // router falls behind until it is full, the gateway answers 503 instead of
            // JetStream dropping old, not yet routed events.
            stream(
                INGEST,
                subjects::INGEST_PREFIX,
                WorkQueue,
                New,
                &self.ingest,
            ),
            stream(
                DELIVER,
                subjects::DELIVER_PREFIX,
                WorkQueue,
                New,
                &self.deliver,
            ),
        ];
        for t in SinkType::ALL {
            let prefix = format!("{}.{t}", subjects::BACKLOG_PREFIX);
            streams.push(stream(&backlog(t), &prefix, WorkQueue, New, &self.backlog));
        }
        streams.extend([
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
            // The history drops its oldest events when full: a bounded horizon, never a
            // refusal.
            stream(
                HISTORY,
                subjects::HISTORY_PREFIX,
                Limits,
                Old,
                &self.history,
            ),
            // discard: new — a full parking stream makes the router dead-letter (counted)
            // rather than JetStream dropping the oldest parked events unseen.
            stream(PARKED, subjects::PARKED_PREFIX, Limits, New, &self.parked),
        ]);
        streams
    }

    /// The streams `service` works on (see [`Service::streams`]), in topology order.
    pub fn streams_of(&self, service: Service) -> Vec<jetstream::stream::Config> {
        let names = service.streams();
        self.streams()
            .into_iter()
            .filter(|s| names.contains(&s.name))
            .collect()
    }
}

/// Creates missing streams and updates those whose settings differ. Returns what happened
/// to each stream, in topology order. Only the topology's owner calls this (the config
/// service, `auditctl topology apply`); other services [`verify_topology`].
pub async fn ensure_topology(
    js: &jetstream::Context,
    config: &TopologyConfig,
) -> Result<Vec<(String, StreamChange)>, TopologyError> {
    let mut changes = Vec::new();
    let shared = release_shared_backlog(js).await?;
    for wanted in config.streams() {
        let name = wanted.name.clone();
        let err = |action, source: async_nats::Error| TopologyError {
            stream: name.clone(),
            action,
            source,
        };
        // Two owners starting together (config-service replicas, an apply job) may both
        // find the stream missing; the loser of the create sees it exist and compares again.
        let mut raced = false;
        let change = loop {
            match ensure_stream(js, &wanted).await {
                Ok(change) => break change,
                Err(Ensure::CreateRaced) if !raced => raced = true,
                Err(Ensure::CreateRaced) => {
                    return Err(err("create", "stream name already in use".into()));
                }
                Err(Ensure::Failed(action, source)) => return Err(err(action, source)),
            }
        };
        if change != StreamChange::Unchanged {
            tracing::info!(stream = %name, ?change, "jetstream stream ensured");
        }
        changes.push((name, change));
    }
    if let Some(stream) = shared {
        let moved = migrate_shared_backlog(js, stream).await?;
        changes.push((SHARED_BACKLOG.to_owned(), StreamChange::Migrated { moved }));
    }
    Ok(changes)
}

/// Where the shared backlog's subjects go while it is drained: a name no service publishes
/// to, so the per-type streams can take `audit.backlog.<type>.>` (JetStream refuses
/// overlapping subjects). Stored messages keep their original subjects.
const SHARED_BACKLOG_RETIRED: &str = "audit.retired-backlog.>";

/// Finds the shared backlog of an earlier version and hands its subjects over, so the
/// per-type streams can be created. `None` when there is none.
async fn release_shared_backlog(
    js: &jetstream::Context,
) -> Result<Option<jetstream::stream::Stream>, TopologyError> {
    let err = |action, source: async_nats::Error| TopologyError {
        stream: SHARED_BACKLOG.to_owned(),
        action,
        source,
    };
    let mut stream = match js.get_stream(SHARED_BACKLOG).await {
        Ok(s) => s,
        Err(e) if is_stream_not_found(&e) => return Ok(None),
        Err(e) => return Err(err("read", e.into())),
    };
    let mut config = stream.cached_info().config.clone();
    if config.subjects != [SHARED_BACKLOG_RETIRED] {
        config.subjects = vec![SHARED_BACKLOG_RETIRED.to_owned()];
        js.update_stream(&config)
            .await
            .map_err(|e| err("update", e.into()))?;
        stream = js
            .get_stream(SHARED_BACKLOG)
            .await
            .map_err(|e| err("read", e.into()))?;
        tracing::warn!(
            stream = SHARED_BACKLOG,
            "shared backlog of an earlier version found; moving its events to the per-type backlog streams"
        );
    }
    Ok(Some(stream))
}

/// Republishes every message of the shared backlog to its own subject (now held by its
/// type's backlog stream), deleting each only after the new stream acknowledged it, then
/// deletes the shared stream. Interrupted, it starts again where it was: a message
/// republished but not yet deleted is stored twice at most (duplicates allowed, loss never).
/// A moved event's backlog age starts again at the move.
async fn migrate_shared_backlog(
    js: &jetstream::Context,
    mut stream: jetstream::stream::Stream,
) -> Result<u64, TopologyError> {
    let err = |action, source: async_nats::Error| TopologyError {
        stream: SHARED_BACKLOG.to_owned(),
        action,
        source,
    };
    let state = stream
        .info()
        .await
        .map_err(|e| err("read", e.into()))?
        .state
        .clone();
    let mut moved = 0;
    if state.messages > 0 {
        for seq in state.first_sequence..=state.last_sequence {
            let m = match stream.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::stream::RawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(err("read a message of", e.into())),
            };
            js.publish_with_headers(m.subject.clone(), m.headers.clone(), m.payload.clone())
                .await
                .map_err(|e| err("move a message of", e.into()))?
                .await
                .map_err(|e| err("move a message of", e.into()))?;
            stream
                .delete_message(seq)
                .await
                .map_err(|e| err("delete a moved message of", e.into()))?;
            moved += 1;
        }
    }
    js.delete_stream(SHARED_BACKLOG)
        .await
        .map_err(|e| err("delete", e.into()))?;
    tracing::info!(
        stream = SHARED_BACKLOG,
        moved,
        "shared backlog moved to the per-type backlog streams and deleted"
    );
    Ok(moved)
}

enum Ensure {
    /// Someone else created the stream between our read and our create.
    CreateRaced,
    Failed(&'static str, async_nats::Error),
}

async fn ensure_stream(
    js: &jetstream::Context,
    wanted: &jetstream::stream::Config,
) -> Result<StreamChange, Ensure> {
    match js.get_stream(&wanted.name).await {
        Ok(existing) => {
            if same_settings(&existing.cached_info().config, wanted) {
                Ok(StreamChange::Unchanged)
            } else {
                js.update_stream(wanted)
                    .await
                    .map_err(|e| Ensure::Failed("update", e.into()))?;
                Ok(StreamChange::Updated)
            }
        }
        Err(e) if is_stream_not_found(&e) => match js.create_stream(wanted.clone()).await {
            Ok(_) => Ok(StreamChange::Created),
            Err(e) if is_js_error(e.kind(), jetstream::ErrorCode::STREAM_NAME_EXIST) => {
                Err(Ensure::CreateRaced)
            }
            Err(e) => Err(Ensure::Failed("create", e.into())),
        },
        Err(e) => Err(Ensure::Failed("read", e.into())),
    }
}

fn is_js_error(
    kind: jetstream::context::CreateStreamErrorKind,
    code: jetstream::ErrorCode,
) -> bool {
    matches!(kind, jetstream::context::CreateStreamErrorKind::JetStream(js) if js.error_code() == code)
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

/// How a stored setting compares with what a service is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Holds less than configured (fewer replicas, a shorter age, a smaller limit), or is
    /// not the same where only the same will do (subjects, retention, discard, storage).
    Weaker,
    /// Holds more than configured: the owner chose so, and that is fine.
    Stronger,
}

/// One setting in which a stored stream differs from a service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub stream: String,
    pub field: &'static str,
    pub stored: String,
    pub configured: String,
    pub verdict: Verdict,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {}: {} is {} stored, {} configured",
            self.stream, self.field, self.stored, self.configured
        )
    }
}

/// Compares the settings [`TopologyConfig::streams`] sets (and `max_messages`, which it
/// leaves unlimited) between the `stored` stream and the `wanted` one. Pure, so the rules
/// are unit-tested without a server.
pub fn compare_stream(
    stored: &jetstream::stream::Config,
    wanted: &jetstream::stream::Config,
) -> Vec<Difference> {
    use std::cmp::Ordering::*;
    let mut out = Vec::new();
    let mut push = |field, verdict, stored: String, configured: String| {
        out.push(Difference {
            stream: wanted.name.clone(),
            field,
            stored,
            configured,
            verdict,
        })
    };
    let sorted = |s: &[String]| {
        let mut s = s.to_vec();
        s.sort();
        s
    };
    if sorted(&stored.subjects) != sorted(&wanted.subjects) {
        push(
            "subjects",
            Verdict::Weaker,
            stored.subjects.join(","),
            wanted.subjects.join(","),
        );
    }
    let name = |v: &dyn fmt::Debug| format!("{v:?}").to_lowercase();
    for (field, have, want) in [
        (
            "retention",
            name(&stored.retention),
            name(&wanted.retention),
        ),
        ("discard", name(&stored.discard), name(&wanted.discard)),
        ("storage", name(&stored.storage), name(&wanted.storage)),
    ] {
        if have != want {
            push(field, Verdict::Weaker, have, want);
        }
    }
    let by_order = |o: std::cmp::Ordering| match o {
        Less => Some(Verdict::Weaker),
        Greater => Some(Verdict::Stronger),
        Equal => None,
    };
    if let Some(v) = by_order(stored.num_replicas.max(1).cmp(&wanted.num_replicas.max(1))) {
        push(
            "replicas",
            v,
            stored.num_replicas.to_string(),
            wanted.num_replicas.to_string(),
        );
    }
    let age = |d: Duration| (d != Duration::ZERO).then_some(d);
    if let Some(v) = by_order(limit_order(age(stored.max_age), age(wanted.max_age))) {
        push(
            "max_age",
            v,
            show_age(stored.max_age),
            show_age(wanted.max_age),
        );
    }
    let size = |n: i64| (n > 0).then_some(n);
    for (field, have, want) in [
        ("max_bytes", stored.max_bytes, wanted.max_bytes),
        ("max_msgs", stored.max_messages, wanted.max_messages),
    ] {
        if let Some(v) = by_order(limit_order(size(have), size(want))) {
            push(field, v, show_size(have), show_size(want));
        }
    }
    // A shorter window de-duplicates less: a retried publish could be stored twice.
    if let Some(v) = by_order(stored.duplicate_window.cmp(&wanted.duplicate_window)) {
        push(
            "duplicate_window",
            v,
            show_age(stored.duplicate_window),
            show_age(wanted.duplicate_window),
        );
    }
    // Readers use direct get; a stream without it would fail them.
    if wanted.allow_direct && !stored.allow_direct {
        push(
            "allow_direct",
            Verdict::Weaker,
            "false".into(),
            "true".into(),
        );
    }
    out
}

/// Orders two limits where `None` is unlimited (the largest).
fn limit_order<T: Ord>(stored: Option<T>, wanted: Option<T>) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (stored, wanted) {
        (None, None) => Equal,
        (None, Some(_)) => Greater,
        (Some(_), None) => Less,
        (Some(s), Some(w)) => s.cmp(&w),
    }
}

fn show_age(d: Duration) -> String {
    if d == Duration::ZERO {
        "unlimited".into()
    } else {
        humantime_serde::re::humantime::format_duration(d).to_string()
    }
}

fn show_size(n: i64) -> String {
    if n > 0 {
        n.to_string()
    } else {
        "unlimited".into()
    }
}

/// What [`verify_topology`] refuses in one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Missing { stream: String },
    Weaker(Difference),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing { stream } => write!(f, "stream {stream} is missing"),
            Mismatch::Weaker(d) => write!(f, "{d} (weaker)"),
        }
    }
}

/// Why a service that does not own the topology refuses it.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Streams are missing or weaker than configured; every one is listed.
    #[error(
        "jetstream topology refused: {}; only the config service or `auditctl topology apply` changes the topology",
        join(.0)
    )]
    Mismatch(Vec<Mismatch>),
    /// A stream could not be read (NATS or JetStream unavailable).
    #[error(transparent)]
    Read(#[from] TopologyError),
}

fn join(m: &[Mismatch]) -> String {
    m.iter()
        .map(Mismatch::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the streams of `config` that `service` works on and refuses the topology when one
/// is missing or weaker than configured (see [`compare_stream`]). Changes nothing. Returns
/// the settings in which the stored streams are stronger than configured.
pub async fn verify_topology(
    js: &jetstream::Context,
    config: &TopologyConfig,
    service: Service,
) -> Result<Vec<Difference>, VerifyError> {
    let mut refused = Vec::new();
    let mut stronger = Vec::new();
    for wanted in config.streams_of(service) {
        match js.get_stream(&wanted.name).await {
            Ok(stream) => {
                for d in compare_stream(&stream.cached_info().config, &wanted) {
                    match d.verdict {
                        Verdict::Weaker => refused.push(Mismatch::Weaker(d)),
                        Verdict::Stronger => stronger.push(d),
                    }
                }
            }
            Err(e) if is_stream_not_found(&e) => refused.push(Mismatch::Missing {
                stream: wanted.name.clone(),
            }),
            Err(e) => {
                return Err(VerifyError::Read(TopologyError {
                    stream: wanted.name.clone(),
                    action: "read",
                    source: e.into(),
                }));
            }
        }
    }
    if refused.is_empty() {
        Ok(stronger)
    } else {
        Err(VerifyError::Mismatch(refused))
    }
}

/// Whether a service owns the topology (changes it) or only verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyRole {
    /// Creates and updates the streams: the config service with `nats.ensure_topology`.
    Owner,
    /// Reads the streams and refuses missing or weaker ones: every other service.
    Verifier,
}

/// One service's view of the topology, shared (by cloning) between the task that ensures or
/// verifies it and the readiness probe, which reports the last problem in words. Logs a
/// problem when it first appears, not on every retry.
#[derive(Clone)]
pub struct TopologyGate {
    topology: Arc<TopologyConfig>,
    /// Whose streams a verifier checks.
    service: Service,
    /// `None` until the first check; then its outcome (`Err` holds the text `/readyz` shows).
    last: Arc<Mutex<Option<Result<(), String>>>>,
}

impl TopologyGate {
    pub fn new(topology: TopologyConfig, service: Service) -> Self {
        TopologyGate {
            topology: Arc::new(topology),
            service,
            last: Arc::new(Mutex::new(None)),
        }
    }

    pub fn topology(&self) -> &TopologyConfig {
        &self.topology
    }

    /// `Ok` once the last check passed; otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        match &*self.last.lock().expect("topology gate lock") {
            None => Err("jetstream topology not checked yet".into()),
            Some(r) => r.clone(),
        }
    }

    /// [`verify_topology`] against this gate's topology, recording the outcome.
    pub async fn verify(&self, js: &jetstream::Context) -> Result<(), VerifyError> {
        let result = verify_topology(js, &self.topology, self.service).await;
        let first_ok = self.record(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        match result {
            Ok(stronger) => {
                if first_ok {
                    for d in &stronger {
                        tracing::info!(stream = %d.stream, field = d.field, stored = %d.stored, configured = %d.configured, "stored jetstream stream is stronger than configured; kept");
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// [`ensure_topology`] against this gate's topology (for the owner), recording the outcome.
    pub async fn ensure(
        &self,
        js: &jetstream::Context,
    ) -> Result<Vec<(String, StreamChange)>, TopologyError> {
        let result = ensure_topology(js, &self.topology).await;
        self.record(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        result
    }

    /// Stores `outcome` and logs a change of it. True when it turned to `Ok`.
    fn record(&self, outcome: Result<(), String>) -> bool {
        let mut last = self.last.lock().expect("topology gate lock");
        let changed = last.as_ref() != Some(&outcome);
        if changed {
            match &outcome {
                Ok(()) => tracing::info!("jetstream topology in place"),
                Err(e) => tracing::error!(error = %e, "jetstream topology not usable; will retry"),
            }
        } else if let Err(e) = &outcome {
            tracing::debug!(error = %e, "jetstream topology still not usable");
        }
        let turned_ok = changed && outcome.is_ok();
        *last = Some(outcome);
        turned_ok
    }
}

/// Follows a NATS connection and checks the topology after every (re)connect until it is in
/// place: the owner (re-)ensures it, so a NATS that lost its state gets its streams back;
/// a verifier waits for the owner. Services call [`TopologyKeeper::tick`] from their
/// readiness loop.
pub struct TopologyKeeper {
    client: async_nats::Client,
    js: jetstream::Context,
    gate: TopologyGate,
    role: TopologyRole,
    was_connected: bool,
    ready: bool,
}

/// What a tick saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologyState {
    pub connected: bool,
    /// The streams are in place: ensured by the owner, or verified as at least as strong
    /// as configured.
    pub ready: bool,
    /// The connection came (back) since the previous tick.
    pub reconnected: bool,
}

impl TopologyKeeper {
    pub fn new(
        client: async_nats::Client,
        js: jetstream::Context,
        gate: TopologyGate,
        role: TopologyRole,
    ) -> Self {
        TopologyKeeper {
            client,
            js,
            gate,
            role,
            was_connected: false,
            ready: false,
        }
    }

    /// The gate this keeper records into (for a readiness probe).
    pub fn gate(&self) -> &TopologyGate {
        &self.gate
    }

    pub async fn tick(&mut self) -> TopologyState {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let reconnected = connected && !self.was_connected;
        if connected && (reconnected || !self.ready) {
            self.ready = match self.role {
                TopologyRole::Owner => self.gate.ensure(&self.js).await.is_ok(),
                TopologyRole::Verifier => self.gate.verify(&self.js).await.is_ok(),
            };
        }
        self.was_connected = connected;
        TopologyState {
            connected,
            ready: self.ready,
            reconnected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AUDIT_HISTORY this topology asks for (limits retention, a day's age).
    fn history(config: &TopologyConfig) -> jetstream::stream::Config {
        let streams = config.streams();
        streams.into_iter().find(|s| s.name == HISTORY).unwrap()
    }

    fn weaker(
        stored: &jetstream::stream::Config,
        wanted: &jetstream::stream::Config,
    ) -> Vec<&'static str> {
        compare_stream(stored, wanted)
            .into_iter()
            .filter(|d| d.verdict == Verdict::Weaker)
            .map(|d| d.field)
            .collect()
    }

    #[test]
    fn the_same_settings_differ_in_nothing() {
        let c = TopologyConfig::default();
        for s in c.streams() {
            assert_eq!(compare_stream(&s, &s), vec![]);
        }
    }

    #[test]
    fn fewer_replicas_a_shorter_age_and_smaller_limits_are_weaker() {
        let wanted = TopologyConfig {
            replicas: 3,
            ..TopologyConfig::default()
        };
        let mut stored = wanted.clone();
        stored.replicas = 1;
        stored.history.max_age = Duration::from_secs(3600);
        stored.history.max_bytes = GIB;
        stored.duplicate_window = Duration::from_secs(30);
        let (s, w) = (history(&stored), history(&wanted));
        assert_eq!(
            weaker(&s, &w),
            ["replicas", "max_age", "max_bytes", "duplicate_window"]
        );
        let d = compare_stream(&s, &w);
        assert_eq!(
            d[1].to_string(),
            "stream AUDIT_HISTORY: max_age is 1h stored, 1day configured"
        );
        let mut capped = s.clone();
        capped.max_messages = 10;
        assert!(weaker(&capped, &w).contains(&"max_msgs"));
    }

    #[test]
    fn more_replicas_a_longer_age_and_larger_limits_are_stronger() {
        let wanted = TopologyConfig::default();
        let mut stored = wanted.clone();
        stored.replicas = 3;
        stored.history.max_age = Duration::from_secs(7 * 24 * 3600);
        stored.history.max_bytes = 32 * GIB;
        let diffs = compare_stream(&history(&stored), &history(&wanted));
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        assert!(diffs.iter().all(|d| d.verdict == Verdict::Stronger));
    }

    #[test]
    fn unlimited_is_the_largest_limit() {
        let wanted = TopologyConfig::default();
        // AUDIT_DELIVER keeps messages without an age limit.
        let deliver = wanted.streams().remove(1);
        let mut aged = deliver.clone();
        aged.max_age = Duration::from_secs(3600);
        assert_eq!(weaker(&aged, &deliver), ["max_age"]);
        assert_eq!(
            compare_stream(&deliver, &aged)[0].verdict,
            Verdict::Stronger
        );
        let mut unbounded = deliver.clone();
        unbounded.max_bytes = -1;
        assert_eq!(
            compare_stream(&unbounded, &deliver)[0].verdict,
            Verdict::Stronger
        );
        assert_eq!(weaker(&deliver, &unbounded), ["max_bytes"]);
        // JetStream reports "no limit" as -1 where the request said 0.
        let mut minus_one = deliver.clone();
        minus_one.max_messages = -1;
        assert_eq!(compare_stream(&minus_one, &deliver), vec![]);
    }

    #[test]
    fn other_retention_discard_storage_or_subjects_are_refused_either_way() {
        let wanted = history(&TopologyConfig::default());
        let mut other = wanted.clone();
        other.retention = RetentionPolicy::WorkQueue;
        other.discard = DiscardPolicy::New;
        other.storage = StorageType::Memory;
        other.subjects = vec!["audit.history.>".into(), "elsewhere.>".into()];
        other.allow_direct = false;
        assert_eq!(
            weaker(&other, &wanted),
            [
                "subjects",
                "retention",
                "discard",
                "storage",
                "allow_direct"
            ]
        );
        assert_eq!(
            weaker(&wanted, &other),
            ["subjects", "retention", "discard", "storage"]
        );
        let mut reordered = wanted.clone();
        reordered.subjects.reverse();
        assert_eq!(compare_stream(&reordered, &wanted), vec![]);
    }

    #[test]
    fn the_refusal_names_stream_field_both_values_and_the_owner() {
        let mut stored = TopologyConfig::default();
        stored.history.max_age = Duration::from_secs(3600);
        let d = compare_stream(&history(&stored), &history(&TopologyConfig::default()));
        let e = VerifyError::Mismatch(vec![
            Mismatch::Weaker(d[0].clone()),
            Mismatch::Missing { stream: DLQ.into() },
        ]);
        assert_eq!(
            e.to_string(),
            "jetstream topology refused: stream AUDIT_HISTORY: max_age is 1h stored, 1day configured (weaker); \
             stream AUDIT_DLQ is missing; only the config service or `auditctl topology apply` changes the topology"
        );
    }
}
