//! The `ConfigService` RPCs: authentication, authorization, validation and the override
//! write rules, then one store transaction per change.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use auditstream_model::{SinkType, routing::Inactive};
use auditstream_proto::v1::{
    self as pb, AppliesTo, Connection, DeleteConnectionResponse, DeleteNodeResponse,
    DeleteStreamResponse, DestinationDetails, ExplainResponse, InactiveStream,
    ListConnectionsResponse, ListDeadLettersResponse, ListNodesResponse, ListStreamsResponse,
    ListTargetsResponse, Node, ReplayDeadLettersResponse, RoutingSnapshot, Stream, StreamStatus,
    TestDestinationResponse, config_service_server::ConfigService, get_destination_request::Key,
};
use prost::Message;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    audit,
    authz::{Authenticator, Principal},
    credentials,
    crypto::Sealer,
    error::{ServiceError, invalid},
    store::{Mutation, Plan, Store, StoredConnection, World},
    validate::{self, Policy},
};

pub struct Service {
    pub(crate) store: Arc<Store>,
    pub(crate) sealer: Arc<Sealer>,
    /// Handed to followers in the snapshot, to verify the signed change feed.
    pub(crate) feed_public_key: Vec<u8>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) policy: Arc<Policy>,
    /// Wakes the change-feed publisher after every commit.
    pub(crate) committed: Arc<Notify>,
    /// For ListTargets and TestDestination, answered by the sinks over NATS request-reply.
    pub(crate) nats: async_nats::Client,
    /// For the live backlog and DLQ depths, and dead-letter list and replay.
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) request_timeout: Duration,
    /// Longest wait for the PubAck of one replayed dead letter.
    pub(crate) publish_timeout: Duration,
    pub(crate) notifications: crate::notify::NotifyConfig,
    /// Largest page of `StreamRoutingSnapshot` (H5).
    pub(crate) snapshot_page_bytes: usize,
}

type Rpc<T> = Result<Response<T>, Status>;

/// A missing object, or one the caller may not read: the same answer for both
/// ([`Principal::unknown`]), so ids in other tenants' subtrees cannot be probed.
fn not_found(p: &Principal, what: &str, id: &str) -> ServiceError {
    p.unknown(what, id)
}

/// Creating `<what> <id>` that exists at `node_id`: ALREADY_EXISTS if the caller may read it,
/// otherwise the answer for an id it cannot see.
fn taken(p: &Principal, world: &World, what: &str, id: &str, node_id: &str) -> ServiceError {
    if p.check_read(world, node_id).is_ok() {
        ServiceError::AlreadyExists(format!("{what} {id} already exists"))
    } else {
        not_found(p, what, id)
    }
}

/// What Explain shows of a path node the caller may not read: where it is, not what it is.
fn node_outline(node: &Node) -> Node {
    Node {
        id: node.id.clone(),
        kind: node.kind,
        ..Default::default()
    }
}

/// What Explain shows of a stream at a node the caller may not read: enough to see why it
/// applies or not, nothing of where the events go or what they look like.
fn stream_outline(stream: &Stream) -> Stream {
    Stream {
        id: stream.id.clone(),
        node_id: stream.node_id.clone(),
        applies_to: stream.applies_to,
        enabled: stream.enabled,
        ..Default::default()
    }
}

fn reply<T>(r: Result<T, ServiceError>) -> Rpc<T> {
    r.map(Response::new).map_err(Status::from)
}

impl Service {
    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, ServiceError> {
        self.auth.authenticate(
            request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes()),
        )
    }

    async fn commit<T>(
        &self,
        decide: impl FnOnce(&World) -> Result<Plan<T>, ServiceError>,
    ) -> Result<T, ServiceError> {
        let (changes, output) = self.store.write(decide).await?;
        if !changes.is_empty() {
            self.committed.notify_one();
        }
        Ok(output)
    }

    /// A stream as shown to callers: with the current version of its connection.
    fn present(world: &World, stream: &Stream) -> Stream {
        let mut s = stream.clone();
        if let Some(c) = s
            .destination
            .as_ref()
            .and_then(|d| world.connections.get(&d.connection_id))
        {
            s.connection_version = c.public.version;
        }
        s
    }

    // The lookups: an object the caller may not read is answered as one that does not exist.

    fn node<'w>(p: &Principal, world: &'w World, id: &str) -> Result<&'w Node, ServiceError> {
        world
            .nodes
            .get(id)
            .filter(|_| p.check_read(world, id).is_ok())
            .ok_or_else(|| not_found(p, "node", id))
    }

    fn stream<'w>(p: &Principal, world: &'w World, id: &str) -> Result<&'w Stream, ServiceError> {
        world
            .streams
            .get(id)
            .filter(|s| p.check_read(world, &s.node_id).is_ok())
            .ok_or_else(|| not_found(p, "stream", id))
    }

    fn connection<'w>(
        p: &Principal,
        world: &'w World,
        id: &str,
    ) -> Result<&'w StoredConnection, ServiceError> {
        world
            .connections
            .get(id)
            .filter(|c| p.check_read(world, &c.public.node_id).is_ok())
            .ok_or_else(|| not_found(p, "connection", id))
    }

    /// The stored connection with its secrets.
    fn open(&self, stored: &StoredConnection) -> Result<Connection, ServiceError> {
        let plain = self
            .sealer
            .open(&stored.sealed, &stored.public.id)
            .map_err(|e| ServiceError::Internal(format!("connection {}: {e}", stored.public.id)))?;
        let mut full = Connection::decode(plain.as_slice()).map_err(|e| {
            ServiceError::Internal(format!(
                "connection {} cannot be decoded: {e}",
                stored.public.id
            ))
        })?;
        full.version = stored.public.version;
        full.revision = stored.public.revision;
        full.secret_fingerprints = stored.public.secret_fingerprints.clone();
        Ok(full)
    }

    /// Seals `full` and returns what is stored: public fields with secrets blanked and
    /// fingerprinted.
    fn seal(&self, mut full: Connection) -> StoredConnection {
        full.secret_fingerprints.clear();
        let sealed = self.sealer.seal(&full.encode_to_vec(), &full.id);
        let mut public = full;
        let mut fingerprints = std::collections::HashMap::new();
        for (path, value) in credentials::secret_slots(&mut public) {
            if !value.is_empty() {
                fingerprints.insert(path.to_owned(), self.sealer.fingerprint(value));
            }
            value.clear();
        }
        public.secret_fingerprints = fingerprints;
        StoredConnection { public, sealed }
    }

    /// Checks that `stream` may use its connection: it exists and the caller may read it (one
    /// answer for both), it is stored at the stream's node or an ancestor, and it is of the
    /// target's type.
    fn check_connection_use<'w>(
        world: &'w World,
        principal: &Principal,
        stream: &Stream,
    ) -> Result<&'w StoredConnection, ServiceError> {
        let cid = stream
            .destination
            .as_ref()
            .map(|d| d.connection_id.as_str())
            .unwrap_or_default();
        if cid.is_empty() {
            return Err(invalid(
                "stream.destination.connection_id",
                "required: a connection and a target",
            ));
        }
        let conn = Self::connection(principal, world, cid)?;
        // The caller may read the connection's node, so naming it tells nothing new.
        if !world.tree.is_within(&stream.node_id, &conn.public.node_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "stream {} cannot use connection {cid}: it belongs to node {}, which is not {} or one of its ancestors",
                stream.id, conn.public.node_id, stream.node_id,
            )));
        }
        Self::connection_sink(conn)?;
        Ok(conn)
    }

    /// [`Self::check_connection_use`] and the endpoint binding, inside the transaction: the
    /// connection may have moved since the stream was validated.
    fn check_connection_binding(
        world: &World,
        principal: &Principal,
        stream: &Stream,
    ) -> Result<(), ServiceError> {
        let conn = Self::check_connection_use(world, principal, stream)?;
        match &stream.destination {
            Some(d) => validate::binding("stream.destination", d, &conn.public),
            None => Ok(()),
        }
    }

    /// The destination type of a connection.
    fn connection_sink(conn: &StoredConnection) -> Result<SinkType, ServiceError> {
        credentials::sink_type(&conn.public).ok_or_else(|| {
            ServiceError::Internal(format!("connection {} has no credentials", conn.public.id))
        })
    }

    /// The destination type of a saved stream (its connection's).
    fn stream_sink(world: &World, stream: &Stream) -> Result<SinkType, ServiceError> {
        let conn = stream
            .destination
            .as_ref()
            .and_then(|d| world.connections.get(&d.connection_id))
            .ok_or_else(|| {
                ServiceError::Internal(format!(
                    "stream {} has no destination with a known connection",
                    stream.id
                ))
            })?;
        Self::connection_sink(conn)
    }

    /// The rules for a stream's scope, on create, change and enable: a `descendants` stream
    /// needs a principal that may read every node below (M4); a `self` stream follows the
    /// override write rule (not on a governed or managed node).
    fn check_scope_rules(
        world: &World,
        principal: &Principal,
        stream: &Stream,
    ) -> Result<(), ServiceError> {
        match stream.applies_to() {
            AppliesTo::Descendants => principal.check_descendants_stream(&stream.node_id),
            AppliesTo::SelfOnly | AppliesTo::Unspecified => world
                .tree
                .check_self_stream_allowed(&stream.node_id)
                .map_err(|r| {
                    ServiceError::FailedPrecondition(format!("stream {}: {r}", stream.id))
                }),
        }
    }

    /// What a tenant admin may change of a node: its name and admin contacts. The rest is the
    /// platform's directory.
    fn check_tenant_node_change(p: &Principal, old: &Node, new: &Node) -> Result<(), ServiceError> {
        let changed: Vec<&str> = [
            ("parent_id", old.parent_id != new.parent_id),
            ("kind", old.kind != new.kind),
            ("external_id", old.external_id != new.external_id),
            ("managed", old.managed != new.managed),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect();
        if changed.is_empty() {
            return Ok(());
        }
        p.check_directory(&format!(
            "change the {} of node {}",
            changed.join(", "),
            new.id
        ))
    }

    async fn validate_stream(
        &self,
        world: &World,
        principal: &Principal,
        stream: &Stream,
    ) -> Result<(), ServiceError> {
        let conn = Self::check_connection_use(world, principal, stream)?;
        let urls = validate::stream(stream, &conn.public, &self.policy)?;
        validate::check_addresses(&urls, &self.policy).await
    }

    /// What a delete would strand: each stream's `(backlog, DLQ)` depths. A stream that still
    /// holds events is only deleted when the caller asked to discard them (`discard`); they
    /// are then purged here, before the delete commits, and the counts go into its audit
    /// event. A re-created id gets a new uid, so nothing left behind could ever reach it; the
    /// check is there so no undelivered event disappears without someone choosing that.
    async fn settle_pending(
        &self,
        world: &World,
        streams: &[&Stream],
        discard: bool,
    ) -> Result<Vec<(u64, u64)>, ServiceError> {
        let mut out = Vec::with_capacity(streams.len());
        for stream in streams {
            let sink = Self::stream_sink(world, stream)?;
            let (backlog, dlq) = tokio::time::timeout(
                self.request_timeout,
                crate::dlq::depths(&self.js, sink, stream.key()),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.request_timeout)))
            .map_err(|e| {
                ServiceError::Unavailable(format!(
                    "cannot tell whether stream {} still holds undelivered events, so it is not deleted: {e}",
                    stream.id
                ))
            })?;
            if backlog + dlq == 0 {
                out.push((0, 0));
            } else if discard {
                let purged = crate::dlq::purge(&self.js, sink, stream.key()).await?;
                tracing::warn!(stream = %stream.id, uid = %stream.key(), backlog = purged.0, dead_letters = purged.1, "undelivered events of a deleted stream discarded");
                out.push(purged);
            } else {
                return Err(ServiceError::FailedPrecondition(format!(
                    "stream {} still holds {backlog} backlog event(s) and {dlq} dead letter(s); let the backlog drain and replay or discard the dead letters first, or delete with discard_pending to purge them",
                    stream.id
                )));
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl ConfigService for Service {
    async fn put_node(&self, request: Request<pb::PutNodeRequest>) -> Rpc<Node> {
        let p = self.principal(&request)?;
        let mut node = request
            .into_inner()
            .node
            .ok_or_else(|| Status::from(invalid("node", "required")))?;
        validate::node(&node)?;
        node.revision = 0;
        reply(
            self.commit(|world| {
                if p.shapes_directory() {
                    // Any node anywhere; the kind rules are checked on the world after it.
                    if !node.parent_id.is_empty() {
                        Self::node(&p, world, &node.parent_id)?;
                    }
                } else {
                    // A tenant admin only renames and re-contacts nodes it may see. Creating
                    // one is refused with the same answer whether the id is free or another
                    // tenant's, so the refusal says nothing about other tenants.
                    let Some(old) = world
                        .nodes
                        .get(&node.id)
                        .filter(|_| p.check_read(world, &node.id).is_ok())
                    else {
                        return Err(p.directory_refusal(&format!("create node {}", node.id)));
                    };
                    p.check_write(world, &node.id)?;
                    Self::check_tenant_node_change(&p, old, &node)?;
                }
                let mutations = vec![Mutation::PutNode(node.clone())];
                // Refuses cycles, dangling parents and shapes outside the kind rules before
                // anything is written.
                world.with(&mutations)?;
                // The store gives the write's first mutation the next revision.
                let stored = Node {
                    revision: world.revision + 1,
                    ..node.clone()
                };
                Ok(Plan {
                    mutations,
                    audit: vec![],
                    output: stored,
                })
            })
            .await,
        )
    }

    async fn get_node(&self, request: Request<pb::GetNodeRequest>) -> Rpc<Node> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let id = &request.get_ref().id;
        let node = Self::node(&p, &world, id)?;
        Ok(Response::new(node.clone()))
    }

    async fn list_children(
        &self,
        request: Request<pb::ListChildrenRequest>,
    ) -> Rpc<ListNodesResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let parent = &request.get_ref().parent_id;
        let nodes = if parent.is_empty() {
            match p.scope() {
                // A scoped admin's root is the node it administers.
                Some(scope) => world.nodes.get(scope).cloned().into_iter().collect(),
                None => world
                    .nodes
                    .values()
                    .filter(|n| n.parent_id.is_empty())
                    .cloned()
                    .collect(),
            }
        } else {
            Self::node(&p, &world, parent)?;
            // A workspace admin of a customer reads the customer, not the workspaces below.
            world
                .nodes
                .values()
                .filter(|n| &n.parent_id == parent && p.check_read(&world, &n.id).is_ok())
                .cloned()
                .collect()
        };
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn delete_node(
        &self,
        request: Request<pb::DeleteNodeRequest>,
    ) -> Rpc<DeleteNodeResponse> {
        let p = self.principal(&request)?;
        let pb::DeleteNodeRequest {
            id,
            cascade,
            discard_pending,
        } = request.into_inner();
        // The streams a cascade would delete must not strand undelivered events (see
        // `settle_pending`); checked before the delete, against the world as it is now.
        let discarded: std::collections::HashMap<String, (u64, u64)> = {
            let world = self.store.load().await?;
            Self::node(&p, &world, &id)?;
            p.check_directory(&format!("delete node {id}"))?;
            // Only for a principal that may delete the streams are their depths looked at
            // (and purged); any other is refused by the transaction below.
            let streams: Vec<&Stream> = world
                .streams
                .values()
                .filter(|s| cascade && world.tree.is_within(&s.node_id, &id))
                .filter(|_| p.check_write(&world, &id).is_ok())
                .collect();
            let settled = self
                .settle_pending(&world, &streams, discard_pending)
                .await?;
            streams
                .iter()
                .map(|s| s.key().to_owned())
                .zip(settled)
                .collect()
        };
        reply(
            self.commit(|world| {
                Self::node(&p, world, &id)?;
                p.check_directory(&format!("delete node {id}"))?;
                // Deepest nodes first, so children go before their parents.
                let mut subtree: Vec<&Node> = world.nodes.values().filter(|n| world.tree.is_within(&n.id, &id)).collect();
                subtree.sort_by_key(|n| std::cmp::Reverse(world.tree.path(&n.id).map_or(0, |p| p.len())));
                let in_subtree: BTreeSet<&str> = subtree.iter().map(|n| n.id.as_str()).collect();
                let streams: Vec<&Stream> = world.streams.values().filter(|s| in_subtree.contains(s.node_id.as_str())).collect();
                let connections: Vec<&StoredConnection> =
                    world.connections.values().filter(|c| in_subtree.contains(c.public.node_id.as_str())).collect();
                if !cascade && (subtree.len() > 1 || !streams.is_empty() || !connections.is_empty()) {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "node {id} has {} child node(s), {} stream(s) and {} connection(s) in its subtree; delete them first or set cascade",
                        subtree.len() - 1,
                        streams.len(),
                        connections.len()
                    )));
                }
                // Deleting streams and connections changes configuration: it needs write access
                // to the node, which directory_sync does not have.
                if (!streams.is_empty() || !connections.is_empty()) && p.check_write(world, &id).is_err() {
                    return Err(ServiceError::PermissionDenied(format!(
                        "{} ({}) may not delete the {} stream(s) and {} connection(s) in the subtree of node {id}; a platform_admin deletes them (or the node with cascade)",
                        p.name,
                        p.role_name(),
                        streams.len(),
                        connections.len()
                    )));
                }
                let mut mutations = Vec::new();
                let mut audit = Vec::new();
                for s in &streams {
                    mutations.push(Mutation::DeleteStream(s.id.clone()));
                    let discarded = discarded.get(s.key()).copied().unwrap_or_default();
                    audit.extend(audit::stream_deleted(world, &p, s, discarded));
                }
                mutations.extend(connections.iter().map(|c| Mutation::DeleteConnection(c.public.id.clone())));
                mutations.extend(subtree.iter().map(|n| Mutation::DeleteNode(n.id.clone())));
                // The same rules as every other write (nothing below is left behind).
                world.with(&mutations)?;
                let output = DeleteNodeResponse {
                    deleted_nodes: subtree.iter().map(|n| n.id.clone()).collect(),
                    deleted_streams: streams.iter().map(|s| s.id.clone()).collect(),
                    deleted_connections: connections.iter().map(|c| c.public.id.clone()).collect(),
                };
                Ok(Plan { mutations, audit, output })
            })
            .await,
        )
    }

    async fn create_connection(
        &self,
        request: Request<pb::CreateConnectionRequest>,
    ) -> Rpc<Connection> {
        let p = self.principal(&request)?;
        let mut conn = request
            .into_inner()
            .connection
            .ok_or_else(|| Status::from(invalid("connection", "required")))?;
        conn.version = 1;
        conn.revision = 0;
        conn.secret_fingerprints.clear();
        {
            // Authorize before validating (L1): no DNS lookups, and no word about addresses,
            // for a caller who may not write here.
            let world = self.store.load().await?;
            Self::node(&p, &world, &conn.node_id)?;
            p.check_write(&world, &conn.node_id)?;
        }
        credentials::assign_external_id(&mut conn, None)?;
        let (_, urls) = validate::connection(&conn, &self.policy)?;
        validate::check_addresses(&urls, &self.policy).await?;
        let stored = self.seal(conn);
        reply(
            self.commit(|world| {
                Self::node(&p, world, &stored.public.node_id)?;
                p.check_write(world, &stored.public.node_id)?;
                validate::platform_identity(&stored.public, &world.tree, &self.policy)?;
                if let Some(existing) = world.connections.get(&stored.public.id) {
                    return Err(taken(
                        &p,
                        world,
                        "connection",
                        &stored.public.id,
                        &existing.public.node_id,
                    ));
                }
                Ok(Plan {
                    mutations: vec![Mutation::PutConnection(stored.clone())],
                    audit: vec![],
                    output: Connection {
                        revision: world.revision + 1,
                        ..stored.public.clone()
                    },
                })
            })
            .await,
        )
    }

    async fn get_connection(&self, request: Request<pb::GetConnectionRequest>) -> Rpc<Connection> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let conn = Self::connection(&p, &world, &request.get_ref().id)?;
        Ok(Response::new(conn.public.clone()))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Rpc<ListConnectionsResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let pb::ListConnectionsRequest {
            node_id,
            include_inherited,
        } = request.into_inner();
        Self::node(&p, &world, &node_id)?;
        let connections = world
            .connections
            .values()
            .filter(|c| {
                let at = &c.public.node_id;
                at == &node_id
                    || (include_inherited
                        && world.tree.is_within(&node_id, at)
                        && p.check_read(&world, at).is_ok())
            })
            .map(|c| c.public.clone())
            .collect();
        Ok(Response::new(ListConnectionsResponse { connections }))
    }

    async fn update_connection(
        &self,
        request: Request<pb::UpdateConnectionRequest>,
    ) -> Rpc<Connection> {
        let p = self.principal(&request)?;
        let update = request
            .into_inner()
            .connection
            .ok_or_else(|| Status::from(invalid("connection", "required")))?;
        let world = self.store.load().await?;
        let old = Self::connection(&p, &world, &update.id)?;
        p.check_write(&world, &old.public.node_id)?;
        if !update.node_id.is_empty() && update.node_id != old.public.node_id {
            return Err(invalid(
                "connection.node_id",
                "cannot change; create a new connection at the other node",
            )
            .into());
        }
        let old_full = self.open(old)?;
        let mut full = update;
        full.node_id = old.public.node_id.clone();
        if full.credentials.is_none() {
            full.credentials = old_full.credentials.clone();
        }
        if full.name.is_empty() {
            full.name = old_full.name.clone();
        }
        if credentials::sink_type(&full) != credentials::sink_type(&old_full) {
            return Err(invalid(
                "connection.credentials",
                "the destination type of a connection cannot change",
            )
            .into());
        }
        credentials::keep_stored_secrets(&mut full, &old_full)?;
        let (_, urls) = validate::connection(&full, &self.policy)?;
        validate::check_addresses(&urls, &self.policy).await?;
        // H6: the service's external id, and the platform's identity only where allowed.
        credentials::assign_external_id(&mut full, Some(&old_full))?;
        validate::platform_identity(&full, &world.tree, &self.policy)?;
        let expected_version = old.public.version;
        full.version = expected_version + 1;
        let stored = self.seal(full);
        reply(
            self.commit(|world| {
                let current = Self::connection(&p, world, &stored.public.id)?;
                if current.public.version != expected_version {
                    return Err(ServiceError::Aborted(format!(
                        "connection {} changed concurrently; retry",
                        stored.public.id
                    )));
                }
                let users: Vec<&Stream> = world
                    .streams
                    .values()
                    .filter(|s| {
                        s.destination
                            .as_ref()
                            .is_some_and(|d| d.connection_id == stored.public.id)
                    })
                    .collect();
                // A new endpoint must still hold every stream that uses the connection: a
                // secret never follows a stream to a host it was not given for.
                for s in &users {
                    if let Some(d) = &s.destination {
                        validate::binding("stream.destination", d, &stored.public).map_err(|e| {
                            ServiceError::FailedPrecondition(format!(
                                "stream {} uses this connection and would no longer be under its endpoint: {}; point the stream elsewhere first",
                                if p.check_read(world, &s.node_id).is_ok() { s.id.as_str() } else { "(one you may not read)" },
                                e
                            ))
                        })?;
                    }
                }
                let audit = users
                    .into_iter()
                    .map(|s| audit::destination_updated(world, &p, s))
                    .collect();
                Ok(Plan {
                    mutations: vec![Mutation::PutConnection(stored.clone())],
                    audit,
                    output: Connection {
                        revision: world.revision + 1,
                        ..stored.public.clone()
                    },
                })
            })
            .await,
        )
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Rpc<DeleteConnectionResponse> {
        let p = self.principal(&request)?;
        let id = request.into_inner().id;
        reply(
            self.commit(|world| {
                let conn = Self::connection(&p, world, &id)?;
                p.check_write(world, &conn.public.node_id)?;
                let (visible, hidden): (Vec<&Stream>, Vec<&Stream>) = world
                    .streams
                    .values()
                    .filter(|s| s.destination.as_ref().is_some_and(|d| d.connection_id == id))
                    .partition(|s| p.check_read(world, &s.node_id).is_ok());
                if !visible.is_empty() || !hidden.is_empty() {
                    // Streams below the caller's read scope are counted, not named.
                    let mut users: Vec<String> = visible.iter().map(|s| s.id.clone()).collect();
                    if !hidden.is_empty() {
                        users.push(format!("{} you may not read", hidden.len()));
                    }
                    return Err(ServiceError::FailedPrecondition(format!(
                        "connection {id} is used by stream(s) {}; point them elsewhere or delete them first",
                        users.join(", ")
                    )));
                }
                Ok(Plan { mutations: vec![Mutation::DeleteConnection(id.clone())], audit: vec![], output: DeleteConnectionResponse {} })
            })
            .await,
        )
    }

    async fn list_targets(
        &self,
        request: Request<pb::ListTargetsRequest>,
    ) -> Rpc<ListTargetsResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let id = request.into_inner().connection_id;
        let conn = Self::connection(&p, &world, &id)?;
        // Never list with an identity the caller could not save, e.g. a default_chain
        // connection stored before the platform-identity rule (H6).
        validate::platform_identity(&conn.public, &world.tree, &self.policy)?;
        let sink = Self::connection_sink(conn)?;
        reply(crate::sink_rpc::list_targets(&self.nats, sink, &id, self.request_timeout).await)
    }

    async fn create_stream(&self, request: Request<pb::CreateStreamRequest>) -> Rpc<Stream> {
        let p = self.principal(&request)?;
        let mut stream = request
            .into_inner()
            .stream
            .ok_or_else(|| Status::from(invalid("stream", "required")))?;
        stream.version = 1;
        stream.revision = 0;
        // A new stream, whatever its id was used for before (see `Stream::uid`).
        stream.uid = auditstream_model::new_stream_uid();
        {
            let world = self.store.load().await?;
            Self::node(&p, &world, &stream.node_id)?;
            p.check_write(&world, &stream.node_id)?;
            self.validate_stream(&world, &p, &stream).await?;
        }
        reply(
            self.commit(|world| {
                // Re-checked inside the transaction: the world may have moved since.
                Self::node(&p, world, &stream.node_id)?;
                p.check_write(world, &stream.node_id)?;
                Self::check_connection_binding(world, &p, &stream)?;
                if let Some(existing) = world.streams.get(&stream.id) {
                    return Err(taken(&p, world, "stream", &stream.id, &existing.node_id));
                }
                Self::check_scope_rules(world, &p, &stream)?;
                let mutations = vec![Mutation::PutStream(stream.clone())];
                let after = world.with(&mutations)?;
                let audit = if stream.enabled {
                    vec![audit::streaming_toggled(world, &p, &stream, true)]
                } else {
                    vec![]
                };
                Ok(Plan {
                    mutations,
                    audit,
                    output: Self::present(&after, &stream),
                })
            })
            .await,
        )
    }

    async fn get_stream(&self, request: Request<pb::GetStreamRequest>) -> Rpc<Stream> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let stream = Self::stream(&p, &world, &request.get_ref().id)?;
        Ok(Response::new(Self::present(&world, stream)))
    }

    async fn list_streams(
        &self,
        request: Request<pb::ListStreamsRequest>,
    ) -> Rpc<ListStreamsResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let node_id = &request.get_ref().node_id;
        Self::node(&p, &world, node_id)?;
        let streams = world
            .streams
            .values()
            .filter(|s| &s.node_id == node_id)
            .map(|s| Self::present(&world, s))
            .collect();
        Ok(Response::new(ListStreamsResponse { streams }))
    }

    async fn update_stream(&self, request: Request<pb::UpdateStreamRequest>) -> Rpc<Stream> {
        let p = self.principal(&request)?;
        let pb::UpdateStreamRequest {
            stream: update,
            update_mask,
        } = request.into_inner();
        let update = update.ok_or_else(|| Status::from(invalid("stream", "required")))?;
        if update_mask.is_empty() {
            return Err(invalid("update_mask", "name at least one field to change").into());
        }
        let world = self.store.load().await?;
        let old = Self::stream(&p, &world, &update.id)?.clone();
        p.check_write(&world, &old.node_id)?;
        let mut new = old.clone();
        for field in &update_mask {
            match field.as_str() {
                "name" => new.name.clone_from(&update.name),
                "applies_to" => new.applies_to = update.applies_to,
                "enabled" => new.enabled = update.enabled,
                "selection" => new.selection.clone_from(&update.selection),
                "template" => new.template.clone_from(&update.template),
                "destination" => new.destination.clone_from(&update.destination),
                "batching" => new.batching.clone_from(&update.batching),
                other => {
                    return Err(invalid(
                        "update_mask",
                        format!("{other:?} cannot be updated; use name, applies_to, enabled, selection, template, destination or batching"),
                    )
                    .into());
                }
            }
        }
        new.version = old.version + 1;
        self.validate_stream(&world, &p, &new).await?;
        reply(
            self.commit(|world| {
                let current = Self::stream(&p, world, &new.id)?;
                if current.version != old.version {
                    return Err(ServiceError::Aborted(format!(
                        "stream {} changed concurrently; retry",
                        new.id
                    )));
                }
                p.check_write(world, &new.node_id)?;
                Self::check_connection_binding(world, &p, &new)?;
                Self::check_scope_rules(world, &p, &new)?;
                let mutations = vec![Mutation::PutStream(new.clone())];
                let after = world.with(&mutations)?;
                let audit = audit::stream_changes(world, &p, current, &new);
                Ok(Plan {
                    mutations,
                    audit,
                    output: Stream {
                        revision: world.revision + 1,
                        ..Self::present(&after, &new)
                    },
                })
            })
            .await,
        )
    }

    async fn set_stream_enabled(
        &self,
        request: Request<pb::SetStreamEnabledRequest>,
    ) -> Rpc<Stream> {
        let p = self.principal(&request)?;
        let pb::SetStreamEnabledRequest { id, enabled } = request.into_inner();
        reply(
            self.commit(|world| {
                let old = Self::stream(&p, world, &id)?;
                p.check_write(world, &old.node_id)?;
                let mut new = old.clone();
                if old.enabled == enabled {
                    return Ok(Plan {
                        mutations: vec![],
                        audit: vec![],
                        output: Self::present(world, old),
                    });
                }
                new.enabled = enabled;
                new.version += 1;
                if enabled {
                    Self::check_scope_rules(world, &p, &new)?;
                }
                let mutations = vec![Mutation::PutStream(new.clone())];
                let after = world.with(&mutations)?;
                Ok(Plan {
                    mutations,
                    audit: vec![audit::streaming_toggled(world, &p, &new, enabled)],
                    output: Stream {
                        revision: world.revision + 1,
                        ..Self::present(&after, &new)
                    },
                })
            })
            .await,
        )
    }

    async fn delete_stream(
        &self,
        request: Request<pb::DeleteStreamRequest>,
    ) -> Rpc<DeleteStreamResponse> {
        let p = self.principal(&request)?;
        let pb::DeleteStreamRequest {
            id,
            discard_pending,
        } = request.into_inner();
        let (uid, (discarded_backlog, discarded_dead_letters)) = {
            let world = self.store.load().await?;
            let stream = Self::stream(&p, &world, &id)?;
            p.check_write(&world, &stream.node_id)?;
            let settled = self
                .settle_pending(&world, &[stream], discard_pending)
                .await?;
            (stream.key().to_owned(), settled[0])
        };
        reply(
            self.commit(|world| {
                let stream = Self::stream(&p, world, &id)?;
                p.check_write(world, &stream.node_id)?;
                if stream.key() != uid {
                    return Err(ServiceError::Aborted(format!(
                        "stream {id} was re-created concurrently; retry"
                    )));
                }
                Ok(Plan {
                    mutations: vec![Mutation::DeleteStream(id.clone())],
                    audit: audit::stream_deleted(
                        world,
                        &p,
                        stream,
                        (discarded_backlog, discarded_dead_letters),
                    ),
                    output: DeleteStreamResponse {
                        discarded_backlog,
                        discarded_dead_letters,
                    },
                })
            })
            .await,
        )
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Rpc<ExplainResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let ws = request.into_inner().workspace_id;
        Self::node(&p, &world, &ws)?;
        let explanation = world
            .tree
            .explain(&ws)
            .ok_or_else(|| not_found(&p, "node", &ws))?;
        // The path above the caller's scope is another tenant's business: of the nodes and
        // streams there, only what says why a stream applies or not (M1).
        let readable = |node_id: &str| p.check_read(&world, node_id).is_ok();
        let path = world
            .tree
            .path(&ws)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| world.nodes.get(&n.id))
            .map(|n| {
                if readable(&n.id) {
                    n.clone()
                } else {
                    node_outline(n)
                }
            })
            .collect();
        let stream = |id: &str| {
            world.streams.get(id).map(|s| {
                if readable(&s.node_id) {
                    Self::present(&world, s)
                } else {
                    stream_outline(s)
                }
            })
        };
        Ok(Response::new(ExplainResponse {
            workspace_id: ws.clone(),
            path,
            effective: explanation
                .effective
                .iter()
                .filter_map(|s| stream(&s.id))
                .collect(),
            inactive: explanation
                .inactive
                .iter()
                .map(|(s, why)| InactiveStream {
                    stream: stream(&s.id),
                    code: match why {
                        Inactive::Disabled => "disabled",
                        Inactive::OverriddenBy { .. } => "overridden",
                        Inactive::OtherNodeOnly { .. } => "other_node_only",
                        Inactive::WorkspaceManaged => "workspace_managed",
                    }
                    .into(),
                    reason: why.to_string(),
                })
                .collect(),
        }))
    }

    async fn get_status(&self, request: Request<pb::GetStatusRequest>) -> Rpc<StreamStatus> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let id = request.into_inner().stream_id;
        let stream = Self::stream(&p, &world, &id)?;
        let mut status = self
            .store
            .get_status(&id)
            .await?
            .unwrap_or_else(|| StreamStatus {
                stream_id: id.clone(),
                ..Default::default()
            });
        // The depths are read live; the sink's last report stands in while JetStream
        // cannot be asked (GetStatus never fails for it).
        let live = match Self::stream_sink(&world, stream) {
            Ok(sink) => tokio::time::timeout(
                self.request_timeout,
                crate::dlq::depths(&self.js, sink, stream.key()),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.request_timeout))),
            Err(e) => Err(e.to_string()),
        };
        match live {
            Ok((backlog, dlq)) => {
                status.backlog_depth = backlog;
                status.dlq_depth = dlq;
            }
            Err(e) => tracing::warn!(
                stream = %id,
                error = %e,
                "cannot read the backlog and DLQ depths from JetStream; showing the last reported ones"
            ),
        }
        Ok(Response::new(status))
    }

    async fn test_destination(
        &self,
        request: Request<pb::TestDestinationRequest>,
    ) -> Rpc<TestDestinationResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let pb::TestDestinationRequest {
            stream_id,
            destination,
        } = request.into_inner();
        let (sink, destination) = match (stream_id.is_empty(), destination) {
            (false, None) => {
                let stream = Self::stream(&p, &world, &stream_id)?;
                (
                    Self::stream_sink(&world, stream)?,
                    stream.destination.clone(),
                )
            }
            (true, Some(destination)) => {
                if destination.connection_id.is_empty() {
                    return Err(invalid(
                        "destination.connection_id",
                        "required: a saved connection",
                    )
                    .into());
                }
                let conn = Self::connection(&p, &world, &destination.connection_id)?;
                // Testing an unsaved destination sends the connection's secret: only those
                // who may change the connection may choose where (H2).
                p.check_write(&world, &conn.public.node_id)?;
                let sink = Self::connection_sink(conn)?;
                // The same rules as a saved stream's destination, addresses included: the
                // sink is about to connect there.
                let urls =
                    validate::destination("destination", &destination, &conn.public, &self.policy)?;
                validate::check_addresses(&urls, &self.policy).await?;
                (sink, Some(destination))
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "destination",
                    "give either stream_id (a saved stream) or destination (an unsaved one), not both",
                )
                .into());
            }
            (true, None) => {
                return Err(invalid(
                    "stream_id",
                    "required: a saved stream's id, or an unsaved destination",
                )
                .into());
            }
        };
        let forwarded = pb::TestDestinationRequest {
            stream_id,
            destination,
        };
        reply(
            crate::sink_rpc::test_destination(&self.nats, sink, &forwarded, self.request_timeout)
                .await,
        )
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Rpc<ListDeadLettersResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let pb::ListDeadLettersRequest {
            stream_id,
            after_sequence,
            limit,
        } = request.into_inner();
        let stream = Self::stream(&p, &world, &stream_id)?;
        let sink = Self::stream_sink(&world, stream)?;
        reply(crate::dlq::list(&self.js, sink, stream.key(), after_sequence, limit).await)
    }

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Rpc<ReplayDeadLettersResponse> {
        let p = self.principal(&request)?;
        let world = self.store.load().await?;
        let pb::ReplayDeadLettersRequest {
            stream_id,
            sequences,
        } = request.into_inner();
        let stream = Self::stream(&p, &world, &stream_id)?;
        p.check_write(&world, &stream.node_id)?;
        let sink = Self::stream_sink(&world, stream)?;
        let replayed =
            crate::dlq::replay(&self.js, sink, stream, &sequences, self.publish_timeout).await?;
        // Not a settings change, so no self-audit event (see the README); logged instead.
        tracing::info!(
            stream = %stream_id,
            principal = %p.name,
            role = %p.role_name(),
            requested = sequences.len(),
            replayed,
            "dead letters replayed"
        );
        Ok(Response::new(ReplayDeadLettersResponse { replayed }))
    }

    async fn get_routing_snapshot(
        &self,
        request: Request<pb::GetRoutingSnapshotRequest>,
    ) -> Rpc<RoutingSnapshot> {
        self.principal(&request)?.check_service()?;
        let world = self.store.load().await?;
        Ok(Response::new(RoutingSnapshot {
            revision: world.revision,
            nodes: world.nodes.values().cloned().collect(),
            streams: world
                .streams
                .values()
                .map(|s| Self::present(&world, s))
                .collect(),
            feed_public_key: self.feed_public_key.clone(),
        }))
    }

    type StreamRoutingSnapshotStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::RoutingSnapshotPage, Status>> + Send>,
    >;

    async fn stream_routing_snapshot(
        &self,
        request: Request<pb::StreamRoutingSnapshotRequest>,
    ) -> Rpc<Self::StreamRoutingSnapshotStream> {
        self.principal(&request)?.check_service()?;
        // One world for every page: the revision is the same throughout.
        let world = self.store.load().await?;
        let pages = crate::snapshot::Pager::new(
            world,
            self.snapshot_page_bytes,
            self.feed_public_key.clone(),
            Self::present,
        );
        Ok(Response::new(Box::pin(tokio_stream::iter(pages.map(Ok)))))
    }

    async fn get_destination(
        &self,
        request: Request<pb::GetDestinationRequest>,
    ) -> Rpc<DestinationDetails> {
        let p = self.principal(&request)?;
        p.check_service()?;
        let world = self.store.load().await?;
        let (stream, connection_id) = match request.into_inner().key {
            Some(key @ (Key::StreamId(_) | Key::StreamKey(_))) => {
                let stream = match &key {
                    Key::StreamId(id) => Self::stream(&p, &world, id)?,
                    Key::StreamKey(k) => world
                        .streams
                        .values()
                        .find(|s| s.key() == k)
                        .ok_or_else(|| not_found(&p, "stream", k))?,
                    Key::ConnectionId(_) => unreachable!("matched above"),
                };
                let s = Self::present(&world, stream);
                let cid = s
                    .destination
                    .as_ref()
                    .map(|d| d.connection_id.clone())
                    .unwrap_or_default();
                (Some(s), cid)
            }
            Some(Key::ConnectionId(id)) => (None, id),
            None => return Err(invalid("key", "stream_id or connection_id is required").into()),
        };
        let stored = Self::connection(&p, &world, &connection_id)?;
        // Only the sink of the connection's type gets its secrets (L9).
        p.check_sink_of(crate::credentials::sink_type(&stored.public))?;
        let connection = self.open(stored)?;
        Ok(Response::new(DestinationDetails {
            stream,
            connection: Some(connection),
        }))
    }

    async fn reseal(&self, request: Request<pb::ResealRequest>) -> Rpc<pb::ResealResponse> {
        let p = self.principal(&request)?;
        p.check_platform_admin("reseal the stored secrets")?;
        let counts = self.store.reseal(&self.sealer).await?;
        tracing::info!(
            actor = %p.name,
            active_key = self.sealer.active_key_id(),
            resealed = counts.resealed,
            already_current = counts.already_current,
            "stored secrets resealed with the active key"
        );
        Ok(Response::new(pb::ResealResponse {
            resealed: counts.resealed,
            already_current: counts.already_current,
            active_key: self.sealer.active_key_id().to_owned(),
        }))
    }

    async fn report_status(&self, request: Request<pb::ReportStatusRequest>) -> Rpc<StreamStatus> {
        let p = self.principal(&request)?;
        p.check_service()?;
        let mut status = request
            .into_inner()
            .status
            .ok_or_else(|| Status::from(invalid("status", "required")))?;
        let world = self.store.load().await?;
        let stream = Self::stream(&p, &world, &status.stream_id)?;
        p.check_sink_of(
            stream
                .destination
                .as_ref()
                .and_then(|d| d.target.as_ref())
                .map(crate::credentials::target_type),
        )?;
        // A sink still working off a deleted stream of the same id reports about another
        // stream: its counts and health must not become the new stream's.
        if !status.stream_uid.is_empty() && status.stream_uid != stream.key() {
            return Err(ServiceError::NotFound(format!(
                "stream {} with uid {} no longer exists",
                status.stream_id, status.stream_uid
            ))
            .into());
        }
        let stream_id = status.stream_id.clone();
        let report = std::mem::take(&mut status);
        let (previous, merged) = self
            .store
            .update_status(&stream_id, |stored| {
                crate::status::merge(stored, report, audit::now_rfc3339())
            })
            .await?;
        // Mail is queued, not sent, here: a slow SMTP server never slows a sink's report.
        // It sees the merged totals (e.g. the replayed count since the break).
        crate::notify::on_status(
            &self.store,
            &world,
            &self.notifications,
            previous.as_ref(),
            &merged,
        )
        .await?;
        Ok(Response::new(merged))
    }
}
