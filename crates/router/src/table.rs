//! The routing table: everything the per-event pipeline needs, compiled from one config
//! revision. Rebuilt when the revision moves; templates are compiled once per stream
//! version and carried over between rebuilds.

use std::collections::{HashMap, HashSet};

use auditstream_bus::subjects;
use auditstream_config_client::ConfigView;
use auditstream_model::{EventType, LogLevel, SinkType, routing::Tree, template::Template};
use auditstream_proto::v1::{Stream, destination::Target};

pub struct RoutingTable {
    pub revision: u64,
    pub tree: Tree,
    pub nodes: HashMap<String, NodeInfo>,
    pub streams: HashMap<String, CompiledStream>,
}

pub struct NodeInfo {
    /// The root of the node's path: the organization the event belongs to.
    pub org_id: String,
    /// The customer account its events name (see [`crate::enrich::Account`]): the nearest
    /// `customer` node at or above it, else the node itself.
    pub account_id: String,
    /// That account's external id, given by the partner or organization.
    pub account_external_id: Option<String>,
}

pub struct CompiledStream {
    pub id: String,
    /// The stream's immutable identity (`Stream::key`): its deliveries' subject token and
    /// de-duplication key, so a re-created id never shares either with the deleted stream.
    pub key: String,
    pub version: u64,
    pub sink: SinkType,
    /// `audit.deliver.<sink_type>.<stream key>`, built once.
    pub subject: String,
    event_types: HashSet<EventType>,
    pub include_step_details: bool,
    /// Empty: every log type.
    log_types: HashSet<String>,
    /// Empty: every level.
    log_levels: HashSet<LogLevel>,
    pub template: Option<Template>,
}

impl CompiledStream {
    fn compile(
        stream: &Stream,
        previous: Option<&CompiledStream>,
    ) -> Result<CompiledStream, String> {
        let target = stream
            .destination
            .as_ref()
            .and_then(|d| d.target.as_ref())
            .ok_or("no destination target")?;
        let sink = match target {
            Target::S3(_) => SinkType::S3,
            Target::AzureBlob(_) => SinkType::AzureBlob,
            Target::AzureMonitor(_) => SinkType::AzureMonitor,
            Target::Http(_) => SinkType::Http,
        };
        let selection = stream.selection.clone().unwrap_or_default();
        let template = match previous {
            Some(p) if p.version == stream.version && p.key == stream.key() => p.template.clone(),
            _ if stream.template.is_empty() => None,
            _ => Some(Template::compile(&stream.template).map_err(|e| e.to_string())?),
        };
        Ok(CompiledStream {
            id: stream.id.clone(),
            key: stream.key().to_owned(),
            version: stream.version,
            sink,
            subject: subjects::deliver(sink, stream.key()).map_err(|e| e.to_string())?,
            event_types: selection
                .event_types
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
            include_step_details: selection.include_step_details,
            log_types: selection.log_types.into_iter().collect(),
            log_levels: selection
                .log_levels
                .iter()
                .filter_map(|l| l.parse().ok())
                .collect(),
            template,
        })
    }

    /// The first cut of the selection, needing only the event type.
    pub fn wants_type(&self, event_type: EventType) -> bool {
        self.event_types.contains(&event_type)
    }

    /// The stream's event selection (DESIGN §4): the event type, and for log events their
    /// type and level.
    pub fn wants(&self, event_type: EventType, log: Option<(&str, Option<LogLevel>)>) -> bool {
        if !self.event_types.contains(&event_type) {
            return false;
        }
        match log {
            Some((log_type, level)) => {
                (self.log_types.is_empty() || self.log_types.contains(log_type))
                    && (self.log_levels.is_empty()
                        || level.is_some_and(|l| self.log_levels.contains(&l)))
            }
            None => true,
        }
    }
}

impl RoutingTable {
    /// Compiles `view`, reusing what `previous` already compiled for unchanged streams.
    pub fn build(
        view: &ConfigView,
        previous: Option<&RoutingTable>,
    ) -> Result<RoutingTable, String> {
        let tree_nodes = view
            .nodes
            .values()
            .map(|n| auditstream_model::routing::TreeNode {
                id: n.id.clone(),
                parent: (!n.parent_id.is_empty()).then(|| n.parent_id.clone()),
                kind: kind(n.kind()),
                managed: n.managed,
            })
            .collect();
        let scopes = view.streams.values().map(scope).collect();
        let tree = Tree::new(tree_nodes, scopes).map_err(|e| e.to_string())?;
        let nodes = view
            .nodes
            .values()
            .map(|n| {
                let path = tree.path(&n.id).unwrap_or_default();
                let org_id = path.first().map_or_else(|| n.id.clone(), |r| r.id.clone());
                let account = path
                    .iter()
                    .rev()
                    .find(|p| p.kind == auditstream_model::routing::NodeKind::Customer)
                    .and_then(|p| view.nodes.get(&p.id))
                    .unwrap_or(n);
                (
                    n.id.clone(),
                    NodeInfo {
                        org_id,
                        account_id: account.id.clone(),
                        account_external_id: (!account.external_id.is_empty())
                            .then(|| account.external_id.clone()),
                    },
                )
            })
            .collect();
        let mut streams = HashMap::new();
        for s in view.streams.values() {
            let before = previous.and_then(|p| p.streams.get(&s.id));
            match CompiledStream::compile(s, before) {
                Ok(c) => {
                    streams.insert(s.id.clone(), c);
                }
                // Config-service validated it; if it still fails, leave that stream out
                // rather than stop routing every other one.
                Err(e) => {
                    tracing::error!(stream = %s.id, error = %e, "stream cannot be compiled; not routed")
                }
            }
        }
        Ok(RoutingTable {
            revision: view.revision,
            tree,
            nodes,
            streams,
        })
    }
}

fn kind(k: auditstream_proto::v1::NodeKind) -> auditstream_model::routing::NodeKind {
    use auditstream_model::routing::NodeKind as R;
    use auditstream_proto::v1::NodeKind as P;
    match k {
        P::Organization => R::Organization,
        P::Partner => R::Partner,
        P::Customer => R::Customer,
        P::Workspace | P::Unspecified => R::Workspace,
    }
}

fn scope(s: &Stream) -> auditstream_model::routing::StreamScope {
    use auditstream_model::routing::AppliesTo as R;
    auditstream_model::routing::StreamScope {
        id: s.id.clone(),
        node_id: s.node_id.clone(),
        applies_to: match s.applies_to() {
            auditstream_proto::v1::AppliesTo::Descendants => R::Descendants,
            _ => R::SelfOnly,
        },
        enabled: s.enabled,
    }
}
