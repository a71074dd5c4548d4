//! The data plane's view of the configuration.
//!
//! The router and the sinks never ask config-service per event. [`Follower`] keeps an
//! in-memory [`ConfigView`]: loaded from `StreamRoutingSnapshot` (the snapshot in pages, so
//! no tree is too large to load, H5; `GetRoutingSnapshot` from a config service that does
//! not page), then updated from the change feed on AUDIT_CONTROL (`audit.ctl.config`), one
//! revision at a time. A revision other than `last + 1` means something was missed, so the
//! view is replaced by a fresh snapshot. While config-service is unreachable the last view
//! stays in force (last known good).
//!
//! The feed is signed (H7): a change whose `Auditstream-Signature` does not verify against
//! the snapshot's `feed_public_key` is ignored and counted (`forged`), so a NATS client that
//! is not the config service cannot inject a revision, and the genuine one is still applied
//! when it comes.
//!
//! Ordering argument: the feed consumer is created *before* the snapshot is fetched, and a
//! change is published only after it committed. So every revision newer than the snapshot
//! reaches the consumer, and older ones are recognised and skipped.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use auditstream_bus::{headers, subjects, topology};
use auditstream_proto::v1::{
    ConfigChange, GetRoutingSnapshotRequest, Node, RoutingSnapshot, Stream,
    StreamRoutingSnapshotRequest, config_change::Change,
    config_service_client::ConfigServiceClient,
};
use base64::Engine as _;
use futures_util::StreamExt;
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use prost::Message;
use ring::signature::{ED25519, UnparsedPublicKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;

/// The configuration at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigView {
    pub revision: u64,
    pub nodes: BTreeMap<String, Node>,
    pub streams: BTreeMap<String, Stream>,
    /// Stream key (`Stream::key`, the immutable uid) → stream id: sinks know a stream by the
    /// key in its subjects, which a deleted and re-created id never shares.
    stream_keys: BTreeMap<String, String>,
    /// Connection id → version, so a sink notices a rotated credential.
    pub connection_versions: BTreeMap<String, u64>,
    /// False until the first snapshot arrived.
    pub synced: bool,
    /// The key the feed's changes must be signed with (from the snapshot); empty: a config
    /// service that does not sign, whose changes are taken unsigned.
    pub feed_public_key: Vec<u8>,
}

impl ConfigView {
    fn from_snapshot(s: RoutingSnapshot) -> ConfigView {
        let mut connection_versions = BTreeMap::new();
        for stream in &s.streams {
            if let Some(d) = &stream.destination {
                connection_versions.insert(d.connection_id.clone(), stream.connection_version);
            }
        }
        ConfigView {
            revision: s.revision,
            nodes: s.nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
            stream_keys: s
                .streams
                .iter()
                .map(|s| (s.key().to_owned(), s.id.clone()))
                .collect(),
            streams: s.streams.into_iter().map(|s| (s.id.clone(), s)).collect(),
            connection_versions,
            synced: true,
            feed_public_key: s.feed_public_key,
        }
    }

    /// The stream whose key (`Stream::key`) is `key`, if it still exists.
    pub fn stream_by_key(&self, key: &str) -> Option<&Stream> {
        self.stream_keys
            .get(key)
            .and_then(|id| self.streams.get(id))
    }

    /// Adds or replaces a stream (tests and sinks' fixed configurations build views so).
    pub fn put_stream(&mut self, stream: Stream) {
        if let Some(old) = self.streams.get(&stream.id) {
            self.stream_keys.remove(old.key());
        }
        self.stream_keys
            .insert(stream.key().to_owned(), stream.id.clone());
        self.streams.insert(stream.id.clone(), stream);
    }

    fn remove_stream(&mut self, id: &str) {
        if let Some(old) = self.streams.remove(id) {
            self.stream_keys.remove(old.key());
        }
    }

    fn apply(&mut self, change: ConfigChange) {
        self.revision = change.revision;
        match change.change {
            Some(Change::NodePut(n)) => {
                self.nodes.insert(n.id.clone(), n);
            }
            Some(Change::NodeDeleted(id)) => {
                self.nodes.remove(&id);
            }
            Some(Change::StreamPut(mut s)) => {
                if let Some(v) = s
                    .destination
                    .as_ref()
                    .and_then(|d| self.connection_versions.get(&d.connection_id))
                {
                    s.connection_version = s.connection_version.max(*v);
                }
                self.put_stream(s);
            }
            Some(Change::StreamDeleted(id)) => self.remove_stream(&id),
            Some(Change::ConnectionPut(c)) => {
                for s in self.streams.values_mut() {
                    if s.destination
                        .as_ref()
                        .is_some_and(|d| d.connection_id == c.id)
                    {
                        s.connection_version = c.version;
                    }
                }
                self.connection_versions.insert(c.id, c.version);
            }
            Some(Change::ConnectionDeleted(id)) => {
                self.connection_versions.remove(&id);
            }
            None => {}
        }
    }
}

/// Where to reach config-service, and as whom.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub url: String,
    /// A token of the `service` role.
    pub token: String,
    /// For an `https://` URL.
    pub tls: auditstream_proto::tls::ClientTls,
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct FollowerStats {
    /// Snapshots loaded (1 at start, +1 per resync).
    pub snapshots: AtomicU64,
    /// Changes applied from the feed.
    pub applied: AtomicU64,
    /// Changes on the feed that were not signed by the config service: ignored.
    pub forged: Counter,
}

/// How often, at most, a change that fails verification makes the follower load a fresh
/// snapshot, in case the feed key itself changed. Bounds what a forger can make a follower
/// ask of the config service.
const KEY_RECHECK: Duration = Duration::from_secs(60);

/// Whether `signature` (the `Auditstream-Signature` header: base64) is `public_key`'s
/// Ed25519 signature of `payload`.
pub fn verify_change(public_key: &[u8], payload: &[u8], signature: &str) -> bool {
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(payload, &signature)
        .is_ok()
}

/// A running follower. Dropping it does not stop it; cancel the token passed to `start`.
pub struct Follower {
    view: watch::Receiver<Arc<ConfigView>>,
    pub stats: Arc<FollowerStats>,
}

impl Follower {
    /// Starts following at once; the view is empty (`synced: false`) until config-service
    /// answers.
    pub fn start(
        source: ConfigSource,
        nats: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Follower {
        let (tx, view) = watch::channel(Arc::new(ConfigView::default()));
        let stats = Arc::new(FollowerStats::default());
        tokio::spawn(run(
            source,
            jetstream::new(nats),
            tx,
            stats.clone(),
            shutdown,
        ));
        Follower { view, stats }
    }

    /// Registers the follower's metrics (`auditstream_config_follower_*`) in a service's
    /// registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("auditstream_config_follower")
            .register(
                "changes_forged",
                "Config changes on the feed without a valid config-service signature (ignored)",
                self.stats.forged.clone(),
            );
    }

    /// The current view.
    pub fn view(&self) -> Arc<ConfigView> {
        self.view.borrow().clone()
    }

    /// A receiver that is notified of every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ConfigView>> {
        self.view.clone()
    }

    /// Waits until the view reaches `revision` or `timeout` passes; returns the view.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> Arc<ConfigView> {
        let mut rx = self.view.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| v.synced && v.revision >= revision))
            .await;
        self.view()
    }
}

async fn run(
    source: ConfigSource,
    js: jetstream::Context,
    tx: watch::Sender<Arc<ConfigView>>,
    stats: Arc<FollowerStats>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    // Outer loop: (re)create the feed consumer, then (re)load the snapshot.
    while !shutdown.is_cancelled() {
        match follow_once(&source, &js, &tx, &stats, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "config feed interrupted; keeping the last known configuration");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn follow_once(
    source: &ConfigSource,
    js: &jetstream::Context,
    tx: &watch::Sender<Arc<ConfigView>>,
    stats: &FollowerStats,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let stream = js
        .get_stream(topology::CONTROL)
        .await
        .map_err(|e| format!("AUDIT_CONTROL: {e}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects::CONFIG_CHANGES.to_owned(),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("feed consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("feed: {e}"))?;
    // Created before the snapshot (see the module doc). Also after a reconnect: changes made
    // while the consumer was gone are only in the snapshot. If config-service cannot be
    // reached, the error keeps the current view in force and the caller retries.
    let mut view = reload(source, stats, tx).await?;
    let mut loaded_at = Instant::now();
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => m,
        };
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("feed: {e}")),
            None => return Err("feed ended".into()),
        };
        // Verified before anything else is read, so a forgery cannot even cause a resync.
        if !view.feed_public_key.is_empty() {
            let signature = message
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::SIGNATURE))
                .map(|v| v.as_str());
            if !signature.is_some_and(|s| verify_change(&view.feed_public_key, &message.payload, s))
            {
                let forged = stats.forged.inc() + 1;
                if forged <= 10 || forged.is_multiple_of(1000) {
                    tracing::warn!(
                        forged,
                        revision = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(headers::REVISION))
                            .map(|v| v.as_str())
                            .unwrap_or(""),
                        "ignoring a config change that the config service did not sign"
                    );
                }
                if loaded_at.elapsed() >= KEY_RECHECK {
                    // Perhaps the feed key changed: the snapshot has the current one.
                    view = reload(source, stats, tx).await?;
                    loaded_at = Instant::now();
                }
                continue;
            }
        }
        let change = match ConfigChange::decode(message.payload.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "undecodable config change; resyncing");
                view = reload(source, stats, tx).await?;
                loaded_at = Instant::now();
                continue;
            }
        };
        if change.revision <= view.revision {
            continue; // Already in the snapshot.
        }
        if change.revision != view.revision + 1 {
            tracing::warn!(
                have = view.revision,
                got = change.revision,
                "config feed gap; loading a fresh snapshot"
            );
            view = reload(source, stats, tx).await?;
            loaded_at = Instant::now();
            if change.revision != view.revision + 1 {
                // Already covered by the snapshot, or ahead of anything committed (not a
                // real change): nothing to apply.
                continue;
            }
        }
        view.apply(change);
        stats.applied.fetch_add(1, Ordering::Relaxed);
        tx.send_replace(Arc::new(view.clone()));
    }
}

/// Loads a fresh snapshot and publishes it as the current view.
async fn reload(
    source: &ConfigSource,
    stats: &FollowerStats,
    tx: &watch::Sender<Arc<ConfigView>>,
) -> Result<ConfigView, String> {
    let view = snapshot(source).await?;
    stats.snapshots.fetch_add(1, Ordering::Relaxed);
    tx.send_replace(Arc::new(view.clone()));
    Ok(view)
}

/// The largest single message the follower accepts from config-service. Pages of
/// `StreamRoutingSnapshot` are far smaller (1 MiB by default); the limit matters for the
/// unary `GetRoutingSnapshot` a config service from before paging answers with, which
/// tonic's default of 4 MiB refused for any larger tree (H5).
pub const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

async fn snapshot(source: &ConfigSource) -> Result<ConfigView, String> {
    let channel = source
        .tls
        .endpoint(&source.url, "config_service.tls")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| format!("cannot reach config-service at {}: {e}", source.url))?;
    let token: MetadataValue<_> = format!("Bearer {}", source.token)
        .parse()
        .map_err(|_| "token is not ASCII".to_string())?;
    let mut client =
        ConfigServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", token.clone());
            Ok(r)
        })
        .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
    let mut pages = match client
        .stream_routing_snapshot(StreamRoutingSnapshotRequest {})
        .await
    {
        Ok(pages) => pages.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            // A config service from before paging: one message.
            let snapshot = client
                .get_routing_snapshot(GetRoutingSnapshotRequest {})
                .await
                .map_err(|e| format!("GetRoutingSnapshot: {e}"))?
                .into_inner();
            return Ok(ConfigView::from_snapshot(snapshot));
        }
        Err(e) => return Err(format!("StreamRoutingSnapshot: {e}")),
    };
    let mut snapshot: Option<RoutingSnapshot> = None;
    loop {
        let page = pages
            .message()
            .await
            .map_err(|e| format!("StreamRoutingSnapshot: {e}"))?
            .ok_or_else(|| "StreamRoutingSnapshot ended before its last page".to_string())?;
        let whole = snapshot.get_or_insert_with(|| RoutingSnapshot {
            revision: page.revision,
            ..Default::default()
        });
        // The server pages one world; a page of another revision is not part of this
        // snapshot, and mixing two revisions would be a view that never existed.
        if page.revision != whole.revision {
            return Err(format!(
                "StreamRoutingSnapshot: a page of revision {} in a snapshot of revision {}",
                page.revision, whole.revision
            ));
        }
        whole.nodes.extend(page.nodes);
        whole.streams.extend(page.streams);
        if !page.feed_public_key.is_empty() {
            whole.feed_public_key = page.feed_public_key;
        }
        if page.last {
            break;
        }
    }
    Ok(ConfigView::from_snapshot(snapshot.unwrap_or_default()))
}
