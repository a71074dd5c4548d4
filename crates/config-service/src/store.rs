//! Persistence: one implementation over sqlx's `Any` driver for SQLite (the embedded
//! default) and Postgres (production), with embedded migrations per backend.
//!
//! The configuration is small (a tree of accounts and their streams), so the unit of reading
//! is the whole [`World`] at one revision, loaded in one transaction and cached until the
//! revision changes. Writes go through [`Store::write`]: inside one transaction it locks the
//! revision counter, loads the world, lets the caller decide the mutations against it (so
//! checks and writes see the same state), stores them with consecutive revisions and
//! appends each to the `changes` outbox that feeds AUDIT_CONTROL. The self-audit events
//! stored with a change are published from a cursor of their own (`audit_cursor`, M14), so
//! a full AUDIT_INGEST never holds the feed back. The `mail_outbox` is shared by every
//! replica's mailer, which claims a mail before sending it ([`Store::claim_mails`]).

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use auditstream_model::routing::{self, Tree};
use auditstream_proto::v1::{
    ConfigChange, Connection, Node, Stream, StreamStatus, config_change::Change,
};
use prost::Message;
use sqlx::{
    AnyPool, Row, SqlSafeStr,
    any::AnyPoolOptions,
    migrate::{Migration, MigrationType, Migrator},
};

use crate::{
    crypto::{Sealed, Sealer},
    error::ServiceError,
};

/// The `feed_keys` row of the feed signing key (also its AAD when sealed).
pub const FEED_KEY_ROW: &str = "feed-signing-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(format!(
                "database.url must start with sqlite: or postgres://, got {:?}",
                url.split(':').next().unwrap_or_default()
            ))
        }
    }

    fn migrator(self) -> Migrator {
        // One schema for both backends; only the binary column type is spelled differently.
        const MIGRATIONS: [(i64, &str, &str); 6] = [
            (1, "initial", include_str!("../migrations/0001_initial.sql")),
            (
                2,
                "notifications",
                include_str!("../migrations/0002_notifications.sql"),
            ),
            (
                3,
                "status counters",
                include_str!("../migrations/0003_status_counters.sql"),
            ),
            (
                4,
                "feed signing key",
                include_str!("../migrations/0004_feed_signing_key.sql"),
            ),
            (
                5,
                "self-audit cursor",
                include_str!("../migrations/0005_self_audit_cursor.sql"),
            ),
            (
                6,
                "mail claims",
                include_str!("../migrations/0006_mail_claims.sql"),
            ),
        ];
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                let sql = match self {
                    Backend::Sqlite => sqlx::SqlStr::from_static(sql),
                    Backend::Postgres => {
                        sqlx::AssertSqlSafe(sql.replace("BLOB", "BYTEA")).into_sql_str()
                    }
                };
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql,
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
    }
}

/// What `Reseal` did: rows sealed again with the active key, and rows that already were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealCounts {
    pub resealed: u64,
    pub already_current: u64,
}

/// A connection as stored: public fields (secrets blanked, fingerprints set) and the sealed
/// credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnection {
    pub public: Connection,
    pub sealed: Sealed,
}

/// Everything configured, at one revision.
#[derive(Debug, Clone)]
pub struct World {
    pub revision: u64,
    pub nodes: BTreeMap<String, Node>,
    pub connections: BTreeMap<String, StoredConnection>,
    pub streams: BTreeMap<String, Stream>,
    /// The override-rule index over `nodes` and `streams`.
    pub tree: Tree,
}

impl World {
    pub fn new(
        revision: u64,
        nodes: BTreeMap<String, Node>,
        connections: BTreeMap<String, StoredConnection>,
        streams: BTreeMap<String, Stream>,
    ) -> Result<World, ServiceError> {
        let tree = build_tree(&nodes, &streams)?;
        Ok(World {
            revision,
            nodes,
            connections,
            streams,
            tree,
        })
    }

    /// The world after `mutations`, for checking rules against the state a write would create.
    /// Refuses cycles, dangling parents and streams of unknown nodes, and, for every node the
    /// mutations put, the kind rules of DESIGN §3 (where it sits and where its children then
    /// sit). Every node write goes through here, so this is the one place they are enforced;
    /// loading a stored world does not check them, so a tree from before them keeps working.
    pub fn with(&self, mutations: &[Mutation]) -> Result<World, ServiceError> {
        let (mut nodes, mut connections, mut streams) = (
            self.nodes.clone(),
            self.connections.clone(),
            self.streams.clone(),
        );
        for m in mutations {
            match m {
                Mutation::PutNode(n) => {
                    nodes.insert(n.id.clone(), n.clone());
                }
                Mutation::DeleteNode(id) => {
                    nodes.remove(id);
                }
                Mutation::PutConnection(c) => {
                    connections.insert(c.public.id.clone(), c.clone());
                }
                Mutation::DeleteConnection(id) => {
                    connections.remove(id);
                }
                Mutation::PutStream(s) => {
                    streams.insert(s.id.clone(), s.clone());
                }
                Mutation::DeleteStream(id) => {
                    streams.remove(id);
                }
            }
        }
        let after = World::new(self.revision, nodes, connections, streams)?;
        for m in mutations {
            if let Mutation::PutNode(n) = m {
                after.tree.check_shape(&n.id).map_err(shape_error)?;
            }
        }
        Ok(after)
    }
}

/// A node placed against the kind rules is a wrong argument (its kind or parent); a node
/// whose new kind would misplace its existing children is refused for the state it meets.
fn shape_error(e: routing::ShapeError) -> ServiceError {
    match e {
        routing::ShapeError::Misplaced { .. } => ServiceError::InvalidArgument(e.to_string()),
        routing::ShapeError::MisplacesChild { .. } => {
            ServiceError::FailedPrecondition(e.to_string())
        }
    }
}

fn build_tree(
    nodes: &BTreeMap<String, Node>,
    streams: &BTreeMap<String, Stream>,
) -> Result<Tree, ServiceError> {
    let tree_nodes = nodes
        .values()
        .map(|n| routing::TreeNode {
            id: n.id.clone(),
            parent: (!n.parent_id.is_empty()).then(|| n.parent_id.clone()),
            kind: crate::convert::node_kind(n.kind()),
            managed: n.managed,
        })
        .collect();
    let scopes = streams.values().map(crate::convert::stream_scope).collect();
    Tree::new(tree_nodes, scopes).map_err(|e| ServiceError::FailedPrecondition(e.to_string()))
}

/// One change to store. Revisions (and, for nodes, the `revision` field) are filled in by
/// the store.
#[derive(Debug, Clone)]
pub enum Mutation {
    PutNode(Node),
    DeleteNode(String),
    PutConnection(StoredConnection),
    DeleteConnection(String),
    PutStream(Stream),
    DeleteStream(String),
}

/// What a write decided: the mutations, and the self-audit events (envelope JSON) to emit
/// with them.
#[derive(Debug, Default)]
pub struct Plan<T> {
    pub mutations: Vec<Mutation>,
    pub audit: Vec<Vec<u8>>,
    /// Whatever the caller wants back (e.g. the stored object).
    pub output: T,
}

/// The mails sent at most once per stream per `notifications.repeat_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// The destination broke.
    Broken,
    /// Backlog events are about to expire.
    Expiry,
}

impl MailKind {
    /// Where the time of the last one is kept: (table, column).
    fn table(self) -> (&'static str, &'static str) {
        match self {
            MailKind::Broken => ("mail_state", "last_broken_mail"),
            MailKind::Expiry => ("expiry_mail_state", "last_expiry_mail"),
        }
    }
}

/// An e-mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub recipients: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// What a notification mail is about, kept beside it so that the mailer writes it when it
/// sends it, with the figures of that moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub stream_id: String,
    /// The merged status that called for the mail (what broke: the error and the hint).
    pub status: StreamStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Broken,
    Recovered,
    Expiry,
}

impl NoticeKind {
    fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Broken => "broken",
            NoticeKind::Recovered => "recovered",
            NoticeKind::Expiry => "expiry",
        }
    }

    fn parse(s: &str) -> Option<NoticeKind> {
        [
            NoticeKind::Broken,
            NoticeKind::Recovered,
            NoticeKind::Expiry,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A mail waiting in the outbox.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub id: String,
    /// As written when it was queued (sent as is when no `notice` is known, or its stream
    /// is gone).
    pub mail: Mail,
    pub attempts: u32,
    pub notice: Option<Notice>,
}

/// Self-audit events still to publish to AUDIT_INGEST, from the `audit_cursor` on (M14).
#[derive(Debug, Clone)]
pub struct PendingAudit {
    pub revision: u64,
    /// The index (in this change's events) of `events[0]`: the cursor may stand inside a
    /// change whose first events are already published.
    pub first_index: u32,
    pub events: Vec<Vec<u8>>,
}

/// An unpublished change from the outbox.
#[derive(Debug, Clone)]
pub struct PendingChange {
    pub revision: u64,
    pub change: ConfigChange,
    pub audit: Vec<Vec<u8>>,
}

pub struct Store {
    pool: AnyPool,
    backend: Backend,
    cache: Mutex<Option<Arc<World>>>,
}

impl Store {
    /// Connects and applies the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, ServiceError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).map_err(ServiceError::Internal)?;
        // One SQLite writer at a time anyway; a single connection also keeps an in-memory
        // database alive.
        let max = if backend == Backend::Sqlite {
            1
        } else {
            max_connections.max(1)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(url)
            .await
            .map_err(|e| ServiceError::Internal(format!("cannot open database: {e}")))?;
        backend
            .migrator()
            .run(&pool)
            .await
            .map_err(|e| ServiceError::Internal(format!("database migration failed: {e}")))?;
        Ok(Store {
            pool,
            backend,
            cache: Mutex::new(None),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The current world, from cache when the revision has not moved.
    pub async fn load(&self) -> Result<Arc<World>, ServiceError> {
        let revision = self.revision().await?;
        if let Some(world) = self.cache.lock().expect("not poisoned").as_ref()
            && world.revision == revision
        {
            return Ok(world.clone());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        if self.backend == Backend::Postgres {
            // One consistent view of all tables.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let world = Arc::new(load_world(&mut tx).await?);
        tx.commit().await.map_err(db)?;
        *self.cache.lock().expect("not poisoned") = Some(world.clone());
        Ok(world)
    }

    pub async fn revision(&self) -> Result<u64, ServiceError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.try_get::<i64, _>(0).map_err(db)? as u64)
    }

    /// Runs `decide` against the current world inside one write transaction and stores what
    /// it returns. Returns the changes (with their revisions) and the decision's output.
    pub async fn write<T>(
        &self,
        decide: impl FnOnce(&World) -> Result<Plan<T>, ServiceError>,
    ) -> Result<(Vec<ConfigChange>, T), ServiceError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        match write_in(&mut tx, decide).await {
            Ok(done) => {
                tx.commit().await.map_err(db)?;
                Ok(done)
            }
            Err(e) => {
                // Release the revision lock now rather than whenever the pool reuses the
                // connection.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Bulk load into an empty store (seeding a large tree for a bench, or moving a tree over
    /// from another system): every node, connection and stream in one transaction at one new
    /// revision, many rows per statement. No change is appended to the feed, so nothing
    /// follows an import but a snapshot; which is why only an empty store (no node yet) takes
    /// one. The tree must load ([`World::new`]: no cycles, no dangling parents); the kind and
    /// write rules of the RPCs are not checked. Returns the new revision.
    pub async fn import(
        &self,
        nodes: Vec<Node>,
        connections: Vec<StoredConnection>,
        streams: Vec<Stream>,
    ) -> Result<u64, ServiceError> {
        // Rows per INSERT: 200 rows of at most 5 values stays below SQLite's oldest limit on
        // bound values (999).
        const ROWS: usize = 200;
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("UPDATE meta SET value = value WHERE key = 'revision'")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let world = load_world(&mut tx).await?;
        if !world.nodes.is_empty() {
            return Err(ServiceError::FailedPrecondition(
                "import needs an empty store (it appends nothing to the change feed)".into(),
            ));
        }
        let revision = world.revision + 1;
        let nodes: BTreeMap<_, _> = nodes
            .into_iter()
            .map(|mut n| {
                n.revision = revision;
                (n.id.clone(), n)
            })
            .collect();
        let connections: BTreeMap<_, _> = connections
            .into_iter()
            .map(|mut c| {
                c.public.revision = revision;
                (c.public.id.clone(), c)
            })
            .collect();
        let streams: BTreeMap<_, _> = streams
            .into_iter()
            .map(|mut s| {
                s.revision = revision;
                (s.id.clone(), s)
            })
            .collect();
        let imported = World::new(revision, nodes, connections, streams)?;
        let values = |row: usize, columns: usize| {
            (0..row)
                .map(|r| {
                    let params: Vec<_> = (1..=columns)
                        .map(|c| format!("${}", r * columns + c))
                        .collect();
                    format!("({})", params.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let nodes: Vec<_> = imported.nodes.values().collect();
        for chunk in nodes.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO nodes (id, parent_id, body) VALUES {}",
                values(chunk.len(), 3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                q = q
                    .bind(n.id.clone())
                    .bind((!n.parent_id.is_empty()).then(|| n.parent_id.clone()))
                    .bind(n.encode_to_vec());
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        let connections: Vec<_> = imported.connections.values().collect();
        for chunk in connections.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO connections (id, node_id, body, sealed, key_id) VALUES {}",
                values(chunk.len(), 5)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q
                    .bind(c.public.id.clone())
                    .bind(c.public.node_id.clone())
                    .bind(c.public.encode_to_vec())
                    .bind(c.sealed.blob.clone())
                    .bind(c.sealed.key_id.clone());
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        let streams: Vec<_> = imported.streams.values().collect();
        for chunk in streams.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO streams (id, node_id, connection_id, body) VALUES {}",
                values(chunk.len(), 4)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                q = q
                    .bind(s.id.clone())
                    .bind(s.node_id.clone())
                    .bind(
                        s.destination
                            .as_ref()
                            .map(|d| d.connection_id.clone())
                            .unwrap_or_default(),
                    )
                    .bind(s.encode_to_vec());
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'revision'")
            .bind(revision as i64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(revision)
    }

    /// The sealed feed signing key, stored as `sealed` unless a replica stored one first:
    /// every replica ends up with the first one stored.
    pub async fn feed_signing_key(&self, sealed: Sealed) -> Result<Sealed, ServiceError> {
        self.service_key(FEED_KEY_ROW, sealed).await
    }

    /// The sealed key of the service itself kept in row `row` of `feed_keys` (the feed
    /// signing key, the fingerprint key), stored as `sealed` unless a replica stored one
    /// first: every replica ends up with the first one stored.
    pub async fn service_key(&self, row: &str, sealed: Sealed) -> Result<Sealed, ServiceError> {
        sqlx::query(
            "INSERT INTO feed_keys (id, sealed, key_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(row)
        .bind(sealed.blob)
        .bind(sealed.key_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let row = sqlx::query("SELECT sealed, key_id FROM feed_keys WHERE id = $1")
            .bind(row)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(Sealed {
            blob: row.try_get(0).map_err(db)?,
            key_id: row.try_get(1).map_err(db)?,
        })
    }

    /// Whether any connection is stored (a database from before the stored fingerprint key).
    pub async fn has_connections(&self) -> Result<bool, ServiceError> {
        Ok(sqlx::query("SELECT id FROM connections LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .is_some())
    }

    /// Re-encrypts every sealed row (connections and the service's own keys in `feed_keys`)
    /// that is not under the active key, in one transaction that holds the writer lock, so no
    /// concurrent write can put back a row sealed with an older key. The plaintext, versions
    /// and revision stay as they are (nothing changes for the data plane), so no change is
    /// published. A row that does not open fails the whole call and nothing is written.
    pub async fn reseal(&self, sealer: &Sealer) -> Result<ResealCounts, ServiceError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("UPDATE meta SET value = value WHERE key = 'revision'")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut counts = ResealCounts::default();
        for table in ["connections", "feed_keys"] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, sealed, key_id FROM {table} ORDER BY id"
            )))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for row in rows {
                let id: String = row.try_get(0).map_err(db)?;
                let sealed = Sealed {
                    blob: row.try_get(1).map_err(db)?,
                    key_id: row.try_get(2).map_err(db)?,
                };
                let resealed = sealer.reseal(&sealed, &id).map_err(|e| match e {
                    // The operator's to fix, and nothing secret to hide: say which.
                    crate::crypto::CryptoError::UnknownKey(key) => {
                        ServiceError::FailedPrecondition(format!(
                            "{table} row {id} is sealed with key {key:?}, which secrets.keys lacks; configure it again and reseal (nothing was resealed)"
                        ))
                    }
                    e => ServiceError::Internal(format!("{table} row {id}: {e}")),
                })?;
                let Some(resealed) = resealed else {
                    counts.already_current += 1;
                    continue;
                };
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET sealed = $2, key_id = $3 WHERE id = $1"
                )))
                .bind(id.as_str())
                .bind(resealed.blob)
                .bind(resealed.key_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                counts.resealed += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        // The cached world holds the old ciphertexts and the revision did not move.
        *self.cache.lock().expect("not poisoned") = None;
        Ok(counts)
    }

    /// Key ids of every sealed row, `(table, row id, key id)`: what `Reseal` leaves behind.
    pub async fn sealed_key_ids(&self) -> Result<Vec<(String, String, String)>, ServiceError> {
        let mut out = Vec::new();
        for table in ["connections", "feed_keys"] {
            for row in sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, key_id FROM {table} ORDER BY id"
            )))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            {
                out.push((
                    table.to_owned(),
                    row.try_get(0).map_err(db)?,
                    row.try_get(1).map_err(db)?,
                ));
            }
        }
        Ok(out)
    }

    /// The oldest unpublished changes, in revision order.
    pub async fn pending_changes(&self, limit: i64) -> Result<Vec<PendingChange>, ServiceError> {
        let rows = sqlx::query("SELECT revision, body, audit FROM changes WHERE published = 0 ORDER BY revision LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|row| {
                let body: Vec<u8> = row.try_get(1).map_err(db)?;
                let audit: Option<Vec<u8>> = row.try_get(2).map_err(db)?;
                Ok(PendingChange {
                    revision: row.try_get::<i64, _>(0).map_err(db)? as u64,
                    change: ConfigChange::decode(body.as_slice()).map_err(corrupt)?,
                    audit: audit
                        .map(|a| decode_audit(&a))
                        .transpose()?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The self-audit events not yet published (M14: they have a cursor of their own, so the
    /// change feed never waits for AUDIT_INGEST), oldest first, at most `limit` changes.
    pub async fn pending_audit(&self, limit: i64) -> Result<Vec<PendingAudit>, ServiceError> {
        let (cursor_revision, cursor_index) = self.audit_cursor().await?;
        let rows = sqlx::query("SELECT revision, audit FROM changes WHERE revision >= $1 AND audit IS NOT NULL ORDER BY revision LIMIT $2")
            .bind(cursor_revision as i64)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let revision = row.try_get::<i64, _>(0).map_err(db)? as u64;
            let blob: Vec<u8> = row.try_get(1).map_err(db)?;
            let mut events = decode_audit(&blob)?;
            let first_index = if revision == cursor_revision {
                let skip = (cursor_index as usize).min(events.len());
                events.drain(..skip);
                skip as u32
            } else {
                0
            };
            if !events.is_empty() {
                out.push(PendingAudit {
                    revision,
                    first_index,
                    events,
                });
            }
        }
        Ok(out)
    }

    /// Where the self-audit publisher stands: `(revision, event index)` of the next event.
    pub async fn audit_cursor(&self) -> Result<(u64, u32), ServiceError> {
        let row =
            sqlx::query("SELECT revision, event_index FROM audit_cursor WHERE id = 'self-audit'")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok((
            row.try_get::<i64, _>(0).map_err(db)? as u64,
            row.try_get::<i64, _>(1).map_err(db)? as u32,
        ))
    }

    /// Moves the self-audit cursor to `(revision, event_index)`, only ever forwards: another
    /// replica publishing the same events may be ahead (`Nats-Msg-Id` de-duplicates what both
    /// publish).
    pub async fn advance_audit_cursor(
        &self,
        revision: u64,
        event_index: u32,
    ) -> Result<(), ServiceError> {
        sqlx::query(
            "UPDATE audit_cursor SET revision = $1, event_index = $2 WHERE id = 'self-audit' AND (revision < $1 OR (revision = $1 AND event_index < $2))",
        )
        .bind(revision as i64)
        .bind(i64::from(event_index))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub async fn mark_published(&self, revision: u64) -> Result<(), ServiceError> {
        sqlx::query("UPDATE changes SET published = 1 WHERE revision = $1")
            .bind(revision as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub async fn put_status(&self, status: &StreamStatus) -> Result<(), ServiceError> {
        let body = status.encode_to_vec();
        let updated = sqlx::query("UPDATE stream_status SET body = $2 WHERE stream_id = $1")
            .bind(status.stream_id.as_str())
            .bind(body.clone())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO stream_status (stream_id, body) VALUES ($1, $2)")
                .bind(status.stream_id.as_str())
                .bind(body)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// Queues a mail (sent by the mailer task).
    pub async fn enqueue_mail(&self, mail: &Mail, now_ms: i64) -> Result<(), ServiceError> {
        self.enqueue(mail, None, now_ms).await
    }

    /// Queues a notification mail about `notice` (written again when it is sent).
    pub async fn enqueue_notice(
        &self,
        mail: &Mail,
        notice: &Notice,
        now_ms: i64,
    ) -> Result<(), ServiceError> {
        self.enqueue(mail, Some(notice), now_ms).await
    }

    async fn enqueue(
        &self,
        mail: &Mail,
        notice: Option<&Notice>,
        now_ms: i64,
    ) -> Result<(), ServiceError> {
        sqlx::query("INSERT INTO mail_outbox (id, recipients, subject, body, attempts, next_attempt, sent, claimed_until, kind, stream_id, status) VALUES ($1, $2, $3, $4, 0, $5, 0, 0, $6, $7, $8)")
            .bind(auditstream_model::new_event_id())
            .bind(mail.recipients.join(","))
            .bind(mail.subject.as_str())
            .bind(mail.body.as_str())
            .bind(now_ms)
            .bind(notice.map(|n| n.kind.as_str()))
            .bind(notice.map(|n| n.stream_id.clone()))
            .bind(notice.map(|n| n.status.encode_to_vec()))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Unsent mails whose next attempt is due and that no mailer holds a claim on.
    pub async fn due_mails(&self, now_ms: i64) -> Result<Vec<QueuedMail>, ServiceError> {
        let rows = sqlx::query("SELECT id, recipients, subject, body, attempts, kind, stream_id, status FROM mail_outbox WHERE sent = 0 AND next_attempt <= $1 AND claimed_until <= $1 ORDER BY next_attempt LIMIT 50")
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                let recipients: String = r.try_get(1).map_err(db)?;
                let kind: Option<String> = r.try_get(5).map_err(db)?;
                let stream_id: Option<String> = r.try_get(6).map_err(db)?;
                let status: Option<Vec<u8>> = r.try_get(7).map_err(db)?;
                let notice = match (kind.as_deref().and_then(NoticeKind::parse), stream_id) {
                    (Some(kind), Some(stream_id)) => Some(Notice {
                        kind,
                        stream_id,
                        status: StreamStatus::decode(status.unwrap_or_default().as_slice())
                            .map_err(corrupt)?,
                    }),
                    _ => None,
                };
                Ok(QueuedMail {
                    id: r.try_get(0).map_err(db)?,
                    mail: Mail {
                        recipients: recipients.split(',').map(str::to_owned).collect(),
                        subject: r.try_get(2).map_err(db)?,
                        body: r.try_get(3).map_err(db)?,
                    },
                    attempts: r.try_get::<i64, _>(4).map_err(db)? as u32,
                    notice,
                })
            })
            .collect()
    }

    /// The due mails that `owner` (one mailer) now holds a claim on until `now_ms +
    /// lease_ms`: every replica's mailer reads the same outbox, and the claim is a
    /// conditional update only one of them can win, so each mail is sent by one replica.
    /// A claim of a replica that died runs out after the lease and the mail is sent then.
    pub async fn claim_mails(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
    ) -> Result<Vec<QueuedMail>, ServiceError> {
        let mut claimed = Vec::new();
        for mail in self.due_mails(now_ms).await? {
            let won = sqlx::query("UPDATE mail_outbox SET claimed_until = $2, claimed_by = $3 WHERE id = $1 AND sent = 0 AND next_attempt <= $4 AND claimed_until <= $4")
                .bind(mail.id.as_str())
                .bind(now_ms.saturating_add(lease_ms))
                .bind(owner)
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected()
                == 1;
            if won {
                claimed.push(mail);
            }
        }
        Ok(claimed)
    }

    pub async fn mail_sent(&self, id: &str) -> Result<(), ServiceError> {
        sqlx::query("UPDATE mail_outbox SET sent = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub async fn mail_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), ServiceError> {
        // The claim ends with the attempt: the next one may be any replica's.
        sqlx::query("UPDATE mail_outbox SET attempts = attempts + 1, next_attempt = $2, last_error = $3, claimed_until = 0 WHERE id = $1")
            .bind(id)
            .bind(next_attempt_ms)
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// When the last "broken" mail for `stream_id` was queued (ms since the epoch).
    pub async fn last_broken_mail(&self, stream_id: &str) -> Result<Option<i64>, ServiceError> {
        self.last_mail(MailKind::Broken, stream_id).await
    }

    pub async fn set_last_broken_mail(
        &self,
        stream_id: &str,
        at_ms: i64,
    ) -> Result<(), ServiceError> {
        self.set_last_mail(MailKind::Broken, stream_id, at_ms).await
    }

    /// When the last mail of `kind` for `stream_id` was queued (ms since the epoch).
    pub async fn last_mail(
        &self,
        kind: MailKind,
        stream_id: &str,
    ) -> Result<Option<i64>, ServiceError> {
        let (table, column) = kind.table();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {column} FROM {table} WHERE stream_id = $1"
        )))
        .bind(stream_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| r.try_get::<i64, _>(0).map_err(db)).transpose()
    }

    pub async fn set_last_mail(
        &self,
        kind: MailKind,
        stream_id: &str,
        at_ms: i64,
    ) -> Result<(), ServiceError> {
        let (table, column) = kind.table();
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET {column} = $2 WHERE stream_id = $1"
        )))
        .bind(stream_id)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (stream_id, {column}) VALUES ($1, $2)"
            )))
            .bind(stream_id)
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    /// Replaces a stream's status with `merge(stored)` in one transaction that holds the
    /// status row's lock, so reports from several sink replicas never lose each other's
    /// increments. Returns the stored status before and after.
    pub async fn update_status(
        &self,
        stream_id: &str,
        merge: impl FnOnce(Option<&StreamStatus>) -> StreamStatus,
    ) -> Result<(Option<StreamStatus>, StreamStatus), ServiceError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // An empty body stands for "no status yet"; the insert waits for a concurrent
        // inserter, and the update takes the row lock (Postgres) or the write lock (SQLite).
        sqlx::query(
            "INSERT INTO stream_status (stream_id, body) VALUES ($1, $2) ON CONFLICT (stream_id) DO NOTHING",
        )
        .bind(stream_id)
        .bind(Vec::<u8>::new())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE stream_status SET body = body WHERE stream_id = $1")
            .bind(stream_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let body: Vec<u8> = sqlx::query("SELECT body FROM stream_status WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        let previous = if body.is_empty() {
            None
        } else {
            Some(StreamStatus::decode(body.as_slice()).map_err(corrupt)?)
        };
        let next = merge(previous.as_ref());
        sqlx::query("UPDATE stream_status SET body = $2 WHERE stream_id = $1")
            .bind(stream_id)
            .bind(next.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok((previous, next))
    }

    pub async fn get_status(&self, stream_id: &str) -> Result<Option<StreamStatus>, ServiceError> {
        let row = sqlx::query("SELECT body FROM stream_status WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let body: Vec<u8> = row.try_get(0).map_err(db)?;
        if body.is_empty() {
            return Ok(None);
        }
        StreamStatus::decode(body.as_slice())
            .map(Some)
            .map_err(corrupt)
    }
}

async fn write_in<T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    decide: impl FnOnce(&World) -> Result<Plan<T>, ServiceError>,
) -> Result<(Vec<ConfigChange>, T), ServiceError> {
    // First statement: take the writer lock by touching the revision row.
    sqlx::query("UPDATE meta SET value = value WHERE key = 'revision'")
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    let world = load_world(tx).await?;
    let plan = decide(&world)?;
    let mut revision = world.revision;
    let mut changes = Vec::with_capacity(plan.mutations.len());
    let mut audit = plan.audit.into_iter();
    for mutation in plan.mutations {
        revision += 1;
        let change = apply(tx, mutation, revision).await?;
        let audit_blob = audit.next().map(|first| {
            // All audit events of a write travel with its first change.
            let mut events = vec![first];
            events.extend(audit.by_ref());
            encode_audit(&events)
        });
        sqlx::query(
            "INSERT INTO changes (revision, body, audit, published) VALUES ($1, $2, $3, 0)",
        )
        .bind(revision as i64)
        .bind(change.encode_to_vec())
        .bind(audit_blob)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        changes.push(change);
    }
    if revision != world.revision {
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'revision'")
            .bind(revision as i64)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok((changes, plan.output))
}

async fn load_world(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<World, ServiceError> {
    let revision = sqlx::query("SELECT value FROM meta WHERE key = 'revision'")
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?
        .try_get::<i64, _>(0)
        .map_err(db)? as u64;
    let mut nodes = BTreeMap::new();
    for row in sqlx::query("SELECT body FROM nodes")
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?
    {
        let node =
            Node::decode(row.try_get::<Vec<u8>, _>(0).map_err(db)?.as_slice()).map_err(corrupt)?;
        nodes.insert(node.id.clone(), node);
    }
    let mut connections = BTreeMap::new();
    for row in sqlx::query("SELECT body, sealed, key_id FROM connections")
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?
    {
        let public = Connection::decode(row.try_get::<Vec<u8>, _>(0).map_err(db)?.as_slice())
            .map_err(corrupt)?;
        let sealed = Sealed {
            blob: row.try_get(1).map_err(db)?,
            key_id: row.try_get(2).map_err(db)?,
        };
        connections.insert(public.id.clone(), StoredConnection { public, sealed });
    }
    let mut streams = BTreeMap::new();
    for row in sqlx::query("SELECT body FROM streams")
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?
    {
        let stream = Stream::decode(row.try_get::<Vec<u8>, _>(0).map_err(db)?.as_slice())
            .map_err(corrupt)?;
        streams.insert(stream.id.clone(), stream);
    }
    World::new(revision, nodes, connections, streams)
}

/// Stores one mutation at `revision` and returns its change event.
async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    mutation: Mutation,
    revision: u64,
) -> Result<ConfigChange, ServiceError> {
    let change = match mutation {
        Mutation::PutNode(mut node) => {
            node.revision = revision;
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(node.id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            sqlx::query("INSERT INTO nodes (id, parent_id, body) VALUES ($1, $2, $3)")
                .bind(node.id.as_str())
                .bind((!node.parent_id.is_empty()).then(|| node.parent_id.clone()))
                .bind(node.encode_to_vec())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            Change::NodePut(node)
        }
        Mutation::DeleteNode(id) => {
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            Change::NodeDeleted(id)
        }
        Mutation::PutConnection(StoredConnection { mut public, sealed }) => {
            public.revision = revision;
            sqlx::query("DELETE FROM connections WHERE id = $1")
                .bind(public.id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            sqlx::query("INSERT INTO connections (id, node_id, body, sealed, key_id) VALUES ($1, $2, $3, $4, $5)")
                .bind(public.id.as_str())
                .bind(public.node_id.as_str())
                .bind(public.encode_to_vec())
                .bind(sealed.blob)
                .bind(sealed.key_id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            Change::ConnectionPut(auditstream_proto::v1::ConnectionChanged {
                id: public.id,
                node_id: public.node_id,
                version: public.version,
            })
        }
        Mutation::DeleteConnection(id) => {
            sqlx::query("DELETE FROM connections WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            Change::ConnectionDeleted(id)
        }
        Mutation::PutStream(mut stream) => {
            stream.revision = revision;
            let connection_id = stream
                .destination
                .as_ref()
                .map(|d| d.connection_id.clone())
                .unwrap_or_default();
            sqlx::query("DELETE FROM streams WHERE id = $1")
                .bind(stream.id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            sqlx::query(
                "INSERT INTO streams (id, node_id, connection_id, body) VALUES ($1, $2, $3, $4)",
            )
            .bind(stream.id.as_str())
            .bind(stream.node_id.as_str())
            .bind(connection_id)
            .bind(stream.encode_to_vec())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            Change::StreamPut(stream)
        }
        Mutation::DeleteStream(id) => {
            sqlx::query("DELETE FROM streams WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            sqlx::query("DELETE FROM stream_status WHERE stream_id = $1")
                .bind(id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            Change::StreamDeleted(id)
        }
    };
    Ok(ConfigChange {
        revision,
        change: Some(change),
    })
}

/// Audit events are stored as length-prefixed JSON envelopes.
fn encode_audit(events: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn decode_audit(mut blob: &[u8]) -> Result<Vec<Vec<u8>>, ServiceError> {
    let mut out = Vec::new();
    while !blob.is_empty() {
        let (len, rest) = blob
            .split_at_checked(4)
            .ok_or_else(|| corrupt("truncated audit length"))?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (event, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| corrupt("truncated audit event"))?;
        out.push(event.to_vec());
        blob = rest;
    }
    Ok(out)
}

fn db(e: sqlx::Error) -> ServiceError {
    ServiceError::Internal(format!("database error: {e}"))
}

fn corrupt(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("stored data cannot be decoded: {e}"))
}
