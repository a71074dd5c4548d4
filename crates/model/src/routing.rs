//! Which streams an audit event goes to: the streaming-settings hierarchy (DESIGN.md §3).
//!
//! Nodes form a tree of kinds `organization`, `partner`, `customer` and `workspace`. An
//! event's `workspace_id` names any node that holds a workspace: a partner node stands for
//! the partner's own OEM admin workspace, a customer node for that customer's workspace. A
//! node may be `managed`. A stream (a streaming setting) has a scope node, `applies_to`
//! (`self` or `descendants`) and an `enabled` flag.
//!
//! Kind rules ([`NodeKind::parent_kinds`], checked by [`Tree::check_shape`]): organizations
//! are roots, and every root is an organization; partners sit under an organization;
//! customers under a partner; workspaces are leaves under an organization or a customer.
//! Resolution does not depend on them, so [`Tree::new`] does not enforce them: a stored tree
//! that predates the rules keeps loading and routing, and config-service checks every node
//! it writes.
//!
//! The effective streams for an event from workspace W:
//!
//! 1. Walk from the root down to W. The first node holding an enabled `descendants` stream
//!    *governs*: its enabled `descendants` streams apply to W and no other stream does, not
//!    even a `self` stream on the governing node itself. A `descendants` stream covers its
//!    own node too (a partner's "all customer workspaces" setting overrides the OEM admin
//!    workspace's own setting), and an organization-level one covers every current and
//!    future workspace below it.
//! 2. If no node governs, W's own enabled `self` streams apply, unless W is `managed`: a
//!    managed workspace's own settings never apply, its streams come only from a governing
//!    ancestor.
//! 3. Otherwise the event is not streamed.
//!
//! Write rule: a `self` stream may not be created, changed or enabled on a node that is
//! governed (some node on root..=N, N included, holds an enabled `descendants` stream) or
//! that is managed. Enabling a `descendants` stream above existing streams shadows them
//! (they are kept, inactive) and disabling it makes them active again; that follows from
//! resolution, so nothing about it is stored.
//!
//! This module is the one implementation of the rule. config-service uses it for `Explain`
//! ([`Tree::explain`]) and the write rules ([`Tree::check_self_stream_allowed`]) before it
//! saves; the router builds a [`Tree`] per configuration revision and calls
//! [`Tree::resolve`] for every event. Never re-implement the rule elsewhere: two copies
//! drift, and then events go to destinations the UI reports as inactive, or the reverse.

use std::{collections::HashMap, fmt, ops::Range};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Organization,
    Partner,
    Customer,
    Workspace,
}

impl NodeKind {
    /// The configuration name, also used in [`Inactive`] and [`Refusal`] texts.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeKind::Organization => "organization",
            NodeKind::Partner => "partner",
            NodeKind::Customer => "customer",
            NodeKind::Workspace => "workspace",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NodeKind {
    /// The kinds a node of this kind may sit under (DESIGN.md §3); empty for an
    /// organization, the one kind that is a root. Nothing sits under a workspace.
    pub const fn parent_kinds(self) -> &'static [NodeKind] {
        match self {
            NodeKind::Organization => &[],
            NodeKind::Partner => &[NodeKind::Organization],
            NodeKind::Customer => &[NodeKind::Partner],
            NodeKind::Workspace => &[NodeKind::Organization, NodeKind::Customer],
        }
    }

    /// Whether a node of this kind may sit under `parent` (its id and kind; None for a root).
    pub fn check_placement(self, parent: Option<(&str, NodeKind)>) -> Result<(), KindRule> {
        match parent {
            None if self == NodeKind::Organization => Ok(()),
            None => Err(KindRule::RootNotOrganization { kind: self }),
            Some((parent_id, parent_kind)) if self == NodeKind::Organization => {
                Err(KindRule::OrganizationUnderParent {
                    parent_id: parent_id.to_owned(),
                    parent_kind,
                })
            }
            Some((_, parent_kind)) if self.parent_kinds().contains(&parent_kind) => Ok(()),
            Some((parent_id, parent_kind)) => Err(KindRule::WrongParent {
                kind: self,
                parent_id: parent_id.to_owned(),
                parent_kind,
            }),
        }
    }

    /// The kind with its indefinite article, as the rule texts use it ("an organization").
    fn with_article(self) -> String {
        match self {
            NodeKind::Organization => format!("an {self}"),
            _ => format!("a {self}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    #[serde(rename = "self")]
    SelfOnly,
    Descendants,
}

impl AppliesTo {
    /// The configuration name (`self` or `descendants`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AppliesTo::SelfOnly => "self",
            AppliesTo::Descendants => "descendants",
        }
    }
}

impl fmt::Display for AppliesTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    pub id: String,
    pub parent: Option<String>,
    pub kind: NodeKind,
    pub managed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamScope {
    pub id: String,
    pub node_id: String,
    pub applies_to: AppliesTo,
    pub enabled: bool,
}

/// Why a set of nodes and streams is not a tree [`Tree::new`] accepts. Each would make
/// resolution loop or silently drop events, so the revision is rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("node {node} names parent {parent}, which is not a known node")]
    UnknownParent { node: String, parent: String },
    #[error("node {node} is its own ancestor (the parent links form a cycle)")]
    Cycle { node: String },
    #[error("node {0} is defined more than once")]
    DuplicateNode(String),
    #[error("stream {stream} is scoped to node {node}, which is not a known node")]
    UnknownStreamNode { stream: String, node: String },
}

/// A kind rule of DESIGN.md §3 that a placement breaks; the text names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindRule {
    #[error("an organization is a root; it cannot sit under {parent_kind} {parent_id}")]
    OrganizationUnderParent {
        parent_id: String,
        parent_kind: NodeKind,
    },
    #[error(
        "every root is an organization; {} must sit under {}",
        kind.with_article(),
        parents_text(*kind)
    )]
    RootNotOrganization { kind: NodeKind },
    #[error(
        "{} must sit under {}; {parent_id} is {}{}",
        kind.with_article(),
        parents_text(*kind),
        parent_kind.with_article(),
        if *parent_kind == NodeKind::Workspace { " (workspaces are leaves)" } else { "" }
    )]
    WrongParent {
        kind: NodeKind,
        parent_id: String,
        parent_kind: NodeKind,
    },
}

/// "an organization or a customer".
fn parents_text(kind: NodeKind) -> String {
    kind.parent_kinds()
        .iter()
        .map(|k| k.with_article())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Why a node write would leave the tree outside the kind rules ([`Tree::check_shape`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The node itself sits where its kind may not.
    #[error("node {node_id}: {rule}")]
    Misplaced { node_id: String, rule: KindRule },
    /// The node's kind would misplace one of its children.
    #[error("node {node_id} cannot be {} with its children: child {child_id}: {rule}", kind.with_article())]
    MisplacesChild {
        node_id: String,
        kind: NodeKind,
        child_id: String,
        rule: KindRule,
    },
}

/// The node that governs another one, with the stream that [`Inactive::OverriddenBy`] and
/// [`Refusal::Governed`] name, both found once in [`Tree::new`].
#[derive(Debug, Clone, Copy)]
struct Governor {
    node: usize,
    /// Index into `Tree::streams` of the node's first enabled `descendants` stream by id.
    first_stream: usize,
}

/// An immutable index over nodes and streams. Build once per configuration revision, then
/// query many times: everything [`Tree::resolve`] needs is precomputed, so resolving an
/// event is a hash lookup plus a scan of one node's streams, and allocates only the result.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<TreeNode>,
    index: HashMap<String, usize>,
    parent: Vec<Option<usize>>,
    /// Distance from the node's root (a root has depth 0).
    depth: Vec<usize>,
    /// All streams grouped by scope node and sorted by stream id within a node, so that
    /// `streams_at` is a slice and every result comes out sorted without a sort.
    streams: Vec<StreamScope>,
    /// Per node, its range in `streams`.
    stream_range: Vec<Range<usize>>,
    /// Per node, the first node on root..=node holding an enabled `descendants` stream.
    governor: Vec<Option<Governor>>,
}

impl Tree {
    /// Indexes `nodes` and `streams`. Nodes may come in any order and the forest may have
    /// several roots (several organizations). Rejects duplicate node ids, unknown parents,
    /// cycles and streams scoped to unknown nodes, so that no query can loop or miss a node.
    pub fn new(nodes: Vec<TreeNode>, streams: Vec<StreamScope>) -> Result<Tree, TreeError> {
        let len = nodes.len();
        let mut index = HashMap::with_capacity(len);
        for (i, node) in nodes.iter().enumerate() {
            if index.insert(node.id.clone(), i).is_some() {
                return Err(TreeError::DuplicateNode(node.id.clone()));
            }
        }

        let mut parent = Vec::with_capacity(len);
        for node in &nodes {
            parent.push(match &node.parent {
                None => None,
                Some(p) => {
                    Some(
                        *index
                            .get(p.as_str())
                            .ok_or_else(|| TreeError::UnknownParent {
                                node: node.id.clone(),
                                parent: p.clone(),
                            })?,
                    )
                }
            });
        }

        let depth = depths(&nodes, &parent)?;

        let mut keyed = Vec::with_capacity(streams.len());
        for stream in streams {
            let Some(&node) = index.get(stream.node_id.as_str()) else {
                return Err(TreeError::UnknownStreamNode {
                    stream: stream.id,
                    node: stream.node_id,
                });
            };
            keyed.push((node, stream));
        }
        keyed.sort_by(|(a, s), (b, t)| a.cmp(b).then_with(|| s.id.cmp(&t.id)));
        let mut stream_range = vec![0..0; len];
        let mut start = 0;
        while start < keyed.len() {
            let node = keyed[start].0;
            let end = start
                + keyed[start..]
                    .iter()
                    .take_while(|(n, _)| *n == node)
                    .count();
            stream_range[node] = start..end;
            start = end;
        }
        let streams: Vec<StreamScope> = keyed.into_iter().map(|(_, s)| s).collect();

        // Parents before children, so a node inherits its parent's already-final governor:
        // the one nearest the root wins, as rule 1 says.
        let mut order: Vec<usize> = (0..len).collect();
        order.sort_by_key(|&i| depth[i]);
        let mut governor: Vec<Option<Governor>> = vec![None; len];
        for i in order {
            governor[i] = parent[i].and_then(|p| governor[p]).or_else(|| {
                stream_range[i]
                    .clone()
                    .find(|&s| governs(&streams[s]))
                    .map(|first_stream| Governor {
                        node: i,
                        first_stream,
                    })
            });
        }

        Ok(Tree {
            nodes,
            index,
            parent,
            depth,
            streams,
            stream_range,
            governor,
        })
    }

    pub fn node(&self, id: &str) -> Option<&TreeNode> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    /// Nodes from the root down to `id`, inclusive; None if unknown.
    pub fn path(&self, id: &str) -> Option<Vec<&TreeNode>> {
        let i = *self.index.get(id)?;
        Some(
            self.path_of(i)
                .into_iter()
                .map(|n| &self.nodes[n])
                .collect(),
        )
    }

    /// True if `id` is `ancestor` or below it. False if either is unknown.
    pub fn is_within(&self, id: &str, ancestor: &str) -> bool {
        let (Some(&i), Some(&a)) = (self.index.get(id), self.index.get(ancestor)) else {
            return false;
        };
        let mut cur = Some(i);
        while let Some(n) = cur {
            if n == a {
                return true;
            }
            // Above the ancestor's depth it cannot be met any more.
            if self.depth[n] <= self.depth[a] {
                return false;
            }
            cur = self.parent[n];
        }
        false
    }

    /// The streams scoped to `node_id`, sorted by stream id; empty if the node is unknown.
    pub fn streams_at(&self, node_id: &str) -> &[StreamScope] {
        self.index
            .get(node_id)
            .map_or(&[], |&i| &self.streams[self.stream_range[i].clone()])
    }

    /// The governing node for `id` (the first on the root..=id path holding an enabled
    /// `descendants` stream) and that node's enabled `descendants` streams, sorted by id.
    pub fn governing(&self, id: &str) -> Option<(&TreeNode, Vec<&StreamScope>)> {
        let g = self.governor[*self.index.get(id)?]?;
        Some((&self.nodes[g.node], self.governing_streams(g).collect()))
    }

    /// The effective streams for workspace `id`, sorted by stream id; None if the node is
    /// unknown. An empty Vec means the event is not streamed.
    pub fn resolve(&self, id: &str) -> Option<Vec<&StreamScope>> {
        let w = *self.index.get(id)?;
        Some(match self.governor[w] {
            Some(g) => self.governing_streams(g).collect(),
            None if self.nodes[w].managed => Vec::new(),
            None => self
                .streams_of(w)
                .iter()
                .filter(|s| s.enabled && s.applies_to == AppliesTo::SelfOnly)
                .collect(),
        })
    }

    /// The effective streams for `id` and, for every other stream scoped to a node on the
    /// root..=id path, why it does not apply. None if the node is unknown.
    pub fn explain(&self, id: &str) -> Option<Explanation<'_>> {
        let w = *self.index.get(id)?;
        let mut explanation = Explanation {
            effective: Vec::new(),
            inactive: Vec::new(),
        };
        // Walking the path root first, each node's streams by id, yields the documented
        // (depth, stream id) order without sorting.
        for n in self.path_of(w) {
            for stream in self.streams_of(n) {
                match self.why_inactive(stream, n, w) {
                    None => explanation.effective.push(stream),
                    Some(reason) => explanation.inactive.push((stream, reason)),
                }
            }
        }
        Some(explanation)
    }

    /// Write rule: may a `self` stream on `node_id` be created, changed or enabled? Refused
    /// on a managed node, and on a node that an ancestor-or-self governs (a node's own
    /// enabled `descendants` stream governs the node itself), naming the governing node and
    /// its first governing stream by id. Disabling or deleting needs no check.
    ///
    /// Managed is reported before Governed: it is the permanent reason. A managed node that
    /// is also governed gets its settings from the governing stream, so the refusal names
    /// that stream as the one to change.
    ///
    /// An unknown node is not refused: nothing here can govern it, and whether the node
    /// exists is the caller's check.
    pub fn check_self_stream_allowed(&self, node_id: &str) -> Result<(), Refusal> {
        let Some(&i) = self.index.get(node_id) else {
            return Ok(());
        };
        let governor = self.governor[i].map(|g| GoverningStream {
            node_kind: self.nodes[g.node].kind,
            node_id: self.nodes[g.node].id.clone(),
            stream_id: self.streams[g.first_stream].id.clone(),
        });
        if self.nodes[i].managed {
            return Err(Refusal::Managed {
                node_id: node_id.to_owned(),
                governed_by: governor,
            });
        }
        match governor {
            Some(GoverningStream {
                node_kind,
                node_id,
                stream_id,
            }) => Err(Refusal::Governed {
                node_kind,
                node_id,
                stream_id,
            }),
            None => Ok(()),
        }
    }

    /// The kind rules for node `id` after a write: where it sits, and where its children then
    /// sit (a retyped node can misplace them; a moved one keeps its kind, so only its own
    /// placement changes). The one check config-service applies to every node it writes, so
    /// a single put and a cascade see the same rule. An unknown node is not refused.
    pub fn check_shape(&self, id: &str) -> Result<(), ShapeError> {
        let Some(&i) = self.index.get(id) else {
            return Ok(());
        };
        let placement = |n: usize| {
            let parent = self.parent[n].map(|p| (self.nodes[p].id.as_str(), self.nodes[p].kind));
            self.nodes[n].kind.check_placement(parent)
        };
        placement(i).map_err(|rule| ShapeError::Misplaced {
            node_id: id.to_owned(),
            rule,
        })?;
        // Children in id order, so the refusal names the same child every time.
        let mut children: Vec<usize> = (0..self.nodes.len())
            .filter(|&c| self.parent[c] == Some(i))
            .collect();
        children.sort_by(|&a, &b| self.nodes[a].id.cmp(&self.nodes[b].id));
        for c in children {
            placement(c).map_err(|rule| ShapeError::MisplacesChild {
                node_id: id.to_owned(),
                kind: self.nodes[i].kind,
                child_id: self.nodes[c].id.clone(),
                rule,
            })?;
        }
        Ok(())
    }

    fn streams_of(&self, node: usize) -> &[StreamScope] {
        &self.streams[self.stream_range[node].clone()]
    }

    /// The governing node's enabled `descendants` streams, in id order.
    fn governing_streams(&self, g: Governor) -> impl Iterator<Item = &StreamScope> {
        self.streams[g.first_stream..self.stream_range[g.node].end]
            .iter()
            .filter(|s| governs(s))
    }

    /// Node indices from the root down to `node`, inclusive.
    fn path_of(&self, node: usize) -> Vec<usize> {
        let mut path = Vec::with_capacity(self.depth[node] + 1);
        let mut cur = Some(node);
        while let Some(n) = cur {
            path.push(n);
            cur = self.parent[n];
        }
        path.reverse();
        path
    }

    /// Why `stream`, scoped to `node` on the path to workspace `w`, does not apply to `w`;
    /// None if it applies. Where several reasons hold, the one that would still hold after
    /// the governing stream were disabled is given, so the text never suggests a change
    /// that would not make the stream apply.
    fn why_inactive(&self, stream: &StreamScope, node: usize, w: usize) -> Option<Inactive> {
        if !stream.enabled {
            return Some(Inactive::Disabled);
        }
        let governor = self.governor[w];
        let overridden = || governor.map(|g| self.overridden_by(g));
        match stream.applies_to {
            AppliesTo::Descendants if governor.is_some_and(|g| g.node == node) => None,
            // An enabled `descendants` stream on the path means a node at or above its own
            // governs; it is not this one, so it is higher up and wins.
            AppliesTo::Descendants => overridden(),
            AppliesTo::SelfOnly if node != w => {
                let n = &self.nodes[node];
                Some(Inactive::OtherNodeOnly {
                    node_kind: n.kind,
                    node_id: n.id.clone(),
                })
            }
            AppliesTo::SelfOnly if self.nodes[w].managed => Some(Inactive::WorkspaceManaged),
            AppliesTo::SelfOnly => overridden(),
        }
    }

    fn overridden_by(&self, g: Governor) -> Inactive {
        let n = &self.nodes[g.node];
        Inactive::OverriddenBy {
            node_kind: n.kind,
            node_id: n.id.clone(),
            stream_id: self.streams[g.first_stream].id.clone(),
        }
    }
}

/// Whether a stream makes its node govern (rule 1).
fn governs(stream: &StreamScope) -> bool {
    stream.enabled && stream.applies_to == AppliesTo::Descendants
}

/// Each node's depth, or the first cycle met. Walks up from every node until a root or a
/// node whose depth is known, then fills in the walked nodes; each node is walked once.
fn depths(nodes: &[TreeNode], parent: &[Option<usize>]) -> Result<Vec<usize>, TreeError> {
    const UNKNOWN: usize = usize::MAX;
    let mut depth = vec![UNKNOWN; nodes.len()];
    // Nodes on the current walk; meeting one again means the links go round.
    let mut walking = vec![false; nodes.len()];
    let mut walk = Vec::new();
    for start in 0..nodes.len() {
        walk.clear();
        let mut base = 0;
        let mut cur = Some(start);
        while let Some(n) = cur {
            if depth[n] != UNKNOWN {
                base = depth[n] + 1;
                break;
            }
            if walking[n] {
                return Err(TreeError::Cycle {
                    node: nodes[n].id.clone(),
                });
            }
            walking[n] = true;
            walk.push(n);
            cur = parent[n];
        }
        for (k, &n) in walk.iter().rev().enumerate() {
            depth[n] = base + k;
        }
    }
    Ok(depth)
}

/// What [`Tree::explain`] reports for a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation<'a> {
    /// The streams events from the workspace go to, sorted by stream id (as `resolve`).
    pub effective: Vec<&'a StreamScope>,
    /// Every other stream scoped to a node on the root..=workspace path, with the reason,
    /// sorted by (depth of the scope node from the root, stream id).
    pub inactive: Vec<(&'a StreamScope, Inactive)>,
}

/// Why a stream on a workspace's path does not apply to it. A disabled stream is always
/// `Disabled`, whatever else holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inactive {
    Disabled,
    /// Shadowed by a governing descendants stream higher up or on the same node. When the
    /// governing node has several, this names the first by stream id.
    OverriddenBy {
        node_kind: NodeKind,
        node_id: String,
        stream_id: String,
    },
    /// A `self` stream of an ancestor: it applies to that node only.
    OtherNodeOnly {
        node_kind: NodeKind,
        node_id: String,
    },
    /// W's own self stream while W is managed.
    WorkspaceManaged,
}

impl fmt::Display for Inactive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inactive::Disabled => f.write_str("disabled"),
            Inactive::OverriddenBy {
                node_kind,
                node_id,
                stream_id,
            } => write!(f, "overridden by {node_kind} {node_id} stream {stream_id}"),
            Inactive::OtherNodeOnly { node_kind, node_id } => {
                write!(f, "applies to {node_kind} {node_id} only")
            }
            Inactive::WorkspaceManaged => f.write_str("workspace is managed"),
        }
    }
}

/// Why config-service must not save a `self` stream (see
/// [`Tree::check_self_stream_allowed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{node_kind} {node_id} governs this node with stream {stream_id} (applies to descendants); change or disable that stream instead"
    )]
    Governed {
        node_kind: NodeKind,
        node_id: String,
        stream_id: String,
    },
    #[error(
        "workspace {node_id} is managed; its streaming settings come only from an ancestor's stream that applies to descendants, so it cannot have its own{}",
        governed_by.as_ref().map_or(String::new(), |g| format!(
            "; {} {} governs it with stream {}: change that stream instead",
            g.node_kind, g.node_id, g.stream_id
        ))
    )]
    Managed {
        node_id: String,
        /// The stream its settings come from, if an ancestor-or-self governs it.
        governed_by: Option<GoverningStream>,
    },
}

/// A governing node's first enabled `descendants` stream by id, as [`Refusal`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoverningStream {
    pub node_kind: NodeKind,
    pub node_id: String,
    pub stream_id: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    use AppliesTo::{Descendants, SelfOnly};
    use NodeKind::{Customer, Organization, Partner, Workspace};

    fn node(id: &str, parent: Option<&str>, kind: NodeKind, managed: bool) -> TreeNode {
        TreeNode {
            id: id.to_owned(),
            parent: parent.map(str::to_owned),
            kind,
            managed,
        }
    }

    fn stream(id: &str, node_id: &str, applies_to: AppliesTo, enabled: bool) -> StreamScope {
        StreamScope {
            id: id.to_owned(),
            node_id: node_id.to_owned(),
            applies_to,
            enabled,
        }
    }

    fn ids<'a>(streams: &[&'a StreamScope]) -> Vec<&'a str> {
        streams.iter().map(|s| s.id.as_str()).collect()
    }

    /// Automation HQ: an organization with an internal workspace and partner p1, whose
    /// customers c1 and c2 each hold a workspace; c2 is managed by the partner.
    fn automation_hq() -> Vec<TreeNode> {
        vec![
            node("ahq", None, Organization, false),
            node("ahq-ops", Some("ahq"), Workspace, false),
            node("p1", Some("ahq"), Partner, false),
            node("c1", Some("p1"), Customer, false),
            node("c2", Some("p1"), Customer, true),
        ]
    }

    struct Case {
        name: &'static str,
        nodes: Vec<TreeNode>,
        streams: Vec<StreamScope>,
        /// Nodes created in a later revision; the expectations are checked against the tree
        /// that includes them.
        added_later: Vec<TreeNode>,
        /// (workspace, effective stream ids).
        resolves: Vec<(&'static str, Vec<&'static str>)>,
        /// (workspace, stream id, the stream's explained reason).
        reasons: Vec<(&'static str, &'static str, &'static str)>,
        /// (node, outcome of the write rule for a self stream there).
        self_writes: Vec<(&'static str, Result<(), Refusal>)>,
    }

    fn governed(kind: NodeKind, node_id: &str, stream_id: &str) -> Result<(), Refusal> {
        Err(Refusal::Governed {
            node_kind: kind,
            node_id: node_id.to_owned(),
            stream_id: stream_id.to_owned(),
        })
    }

    fn managed(node_id: &str) -> Result<(), Refusal> {
        Err(Refusal::Managed {
            node_id: node_id.to_owned(),
            governed_by: None,
        })
    }

    fn managed_and_governed(
        node_id: &str,
        kind: NodeKind,
        governor: &str,
        stream_id: &str,
    ) -> Result<(), Refusal> {
        Err(Refusal::Managed {
            node_id: node_id.to_owned(),
            governed_by: Some(GoverningStream {
                node_kind: kind,
                node_id: governor.to_owned(),
                stream_id: stream_id.to_owned(),
            }),
        })
    }

    fn seed_cases() -> Vec<Case> {
        // (d) customer self streams, with the partner's descendants stream s9 absent,
        // enabled, then disabled again.
        let customers = |partner_stream: Option<bool>| {
            let mut streams = vec![
                stream("s1", "c1", SelfOnly, true),
                stream("s2", "c3", SelfOnly, true),
            ];
            streams.extend(partner_stream.map(|enabled| stream("s9", "p1", Descendants, enabled)));
            streams
        };
        let mut customer_nodes = automation_hq();
        customer_nodes.push(node("c3", Some("p1"), Customer, false));

        vec![
            Case {
                name: "a: organization descendants stream covers a workspace created after it",
                nodes: automation_hq(),
                streams: vec![
                    stream("s-org", "ahq", Descendants, true),
                    stream("s-ops", "ahq-ops", SelfOnly, true),
                ],
                added_later: vec![
                    node("ahq-new", Some("ahq"), Workspace, false),
                    node("c-new", Some("p1"), Customer, false),
                ],
                resolves: vec![
                    ("ahq-new", vec!["s-org"]),
                    ("c-new", vec!["s-org"]),
                    ("ahq", vec!["s-org"]),
                    ("ahq-ops", vec!["s-org"]),
                    ("c2", vec!["s-org"]),
                ],
                reasons: vec![(
                    "ahq-ops",
                    "s-ops",
                    "overridden by organization ahq stream s-org",
                )],
                self_writes: vec![("ahq-new", governed(Organization, "ahq", "s-org"))],
            },
            Case {
                name: "b1: managed workspace's own self stream never applies",
                nodes: automation_hq(),
                streams: vec![stream("s-c2", "c2", SelfOnly, true)],
                added_later: vec![],
                resolves: vec![("c2", vec![])],
                reasons: vec![("c2", "s-c2", "workspace is managed")],
                self_writes: vec![("c2", managed("c2")), ("c1", Ok(()))],
            },
            Case {
                name: "b2: managed workspace gets its streams from a governing ancestor",
                nodes: automation_hq(),
                streams: vec![
                    stream("s-c2", "c2", SelfOnly, true),
                    stream("s9", "p1", Descendants, true),
                ],
                added_later: vec![],
                resolves: vec![("c2", vec!["s9"])],
                // Managed is the permanent reason: disabling s9 would not make s-c2 apply.
                // The refusal names s9, where c2's settings come from.
                reasons: vec![("c2", "s-c2", "workspace is managed")],
                self_writes: vec![("c2", managed_and_governed("c2", Partner, "p1", "s9"))],
            },
            Case {
                name: "c: partner descendants stream overrides the OEM admin workspace's own",
                nodes: automation_hq(),
                streams: vec![
                    stream("s9", "p1", Descendants, true),
                    stream("s3-admin", "p1", SelfOnly, true),
                ],
                added_later: vec![],
                resolves: vec![("p1", vec!["s9"]), ("c1", vec!["s9"]), ("ahq", vec![])],
                reasons: vec![
                    ("p1", "s3-admin", "overridden by partner p1 stream s9"),
                    ("c1", "s3-admin", "applies to partner p1 only"),
                ],
                self_writes: vec![
                    ("p1", governed(Partner, "p1", "s9")),
                    ("ahq", Ok(())),
                    ("ahq-ops", Ok(())),
                ],
            },
            Case {
                name: "d1: per-customer self streams apply while the partner has none",
                nodes: customer_nodes.clone(),
                streams: customers(None),
                added_later: vec![],
                resolves: vec![("c1", vec!["s1"]), ("c3", vec!["s2"]), ("p1", vec![])],
                reasons: vec![],
                self_writes: vec![("c1", Ok(())), ("p1", Ok(()))],
            },
            Case {
                name: "d2: partner enables a descendants stream, customer streams are shadowed",
                nodes: customer_nodes.clone(),
                streams: customers(Some(true)),
                added_later: vec![],
                resolves: vec![("c1", vec!["s9"]), ("c3", vec!["s9"]), ("p1", vec!["s9"])],
                reasons: vec![
                    ("c1", "s1", "overridden by partner p1 stream s9"),
                    ("c3", "s2", "overridden by partner p1 stream s9"),
                ],
                self_writes: vec![("c1", governed(Partner, "p1", "s9"))],
            },
            Case {
                name: "d3: partner disables it again, customer streams apply again",
                nodes: customer_nodes,
                streams: customers(Some(false)),
                added_later: vec![],
                resolves: vec![("c1", vec!["s1"]), ("c3", vec!["s2"]), ("p1", vec![])],
                reasons: vec![("c1", "s9", "disabled"), ("c1", "s1", "")],
                self_writes: vec![("c1", Ok(()))],
            },
            Case {
                name: "e: highest governor wins, names its first stream, covers both streams",
                nodes: automation_hq(),
                streams: vec![
                    stream("s-org-b", "ahq", Descendants, true),
                    stream("s-org-a", "ahq", Descendants, true),
                    stream("s-org-off", "ahq", Descendants, false),
                    stream("s9", "p1", Descendants, true),
                    stream("s1", "c1", SelfOnly, false),
                ],
                added_later: vec![],
                resolves: vec![("c1", vec!["s-org-a", "s-org-b"])],
                reasons: vec![
                    ("c1", "s-org-off", "disabled"),
                    ("c1", "s9", "overridden by organization ahq stream s-org-a"),
                    ("c1", "s1", "disabled"),
                ],
                self_writes: vec![("c1", governed(Organization, "ahq", "s-org-a"))],
            },
            Case {
                name: "f: organizations are separate roots",
                nodes: vec![
                    node("o1", None, Organization, false),
                    node("o2", None, Organization, false),
                    node("o2-ws", Some("o2"), Workspace, false),
                ],
                streams: vec![
                    stream("s1", "o1", Descendants, true),
                    stream("s2", "o2", SelfOnly, true),
                    stream("s3", "o2-ws", SelfOnly, true),
                ],
                added_later: vec![],
                resolves: vec![
                    ("o1", vec!["s1"]),
                    ("o2", vec!["s2"]),
                    ("o2-ws", vec!["s3"]),
                ],
                reasons: vec![("o2-ws", "s2", "applies to organization o2 only")],
                self_writes: vec![
                    ("o2-ws", Ok(())),
                    ("o1", governed(Organization, "o1", "s1")),
                ],
            },
        ]
    }

    #[test]
    fn seed_scenarios() {
        for case in seed_cases() {
            let name = case.name;
            let before = Tree::new(case.nodes.clone(), case.streams.clone()).unwrap();
            let mut nodes = case.nodes;
            nodes.extend(case.added_later.iter().cloned());
            let tree = Tree::new(nodes, case.streams).unwrap();
            for added in &case.added_later {
                assert_eq!(before.resolve(&added.id), None, "{name}: {}", added.id);
            }
            for (w, want) in &case.resolves {
                let got = tree.resolve(w).unwrap();
                assert_eq!(ids(&got), *want, "{name}: resolve {w}");
                assert_eq!(tree.explain(w).unwrap().effective, got, "{name}: {w}");
            }
            for (w, stream_id, want) in &case.reasons {
                let explanation = tree.explain(w).unwrap();
                let reason = explanation
                    .inactive
                    .iter()
                    .find(|(s, _)| s.id == *stream_id)
                    .map(|(_, r)| r.to_string());
                // An empty expected reason means the stream applies.
                let want = (!want.is_empty()).then(|| want.to_string());
                assert_eq!(reason, want, "{name}: explain {w} {stream_id}");
            }
            for (n, want) in &case.self_writes {
                assert_eq!(&tree.check_self_stream_allowed(n), want, "{name}: {n}");
            }
        }
    }

    #[test]
    fn shadowed_streams_are_kept_and_the_governor_is_reported() {
        let tree = Tree::new(
            automation_hq(),
            vec![
                stream("s9", "p1", Descendants, true),
                stream("s8", "p1", Descendants, true),
                stream("s1", "c1", SelfOnly, true),
            ],
        )
        .unwrap();
        let (g, streams) = tree.governing("c1").unwrap();
        assert_eq!(g.id, "p1");
        assert_eq!(ids(&streams), ["s8", "s9"]);
        assert!(tree.governing("ahq").is_none());
        assert_eq!(
            ids(&tree.streams_at("c1").iter().collect::<Vec<_>>()),
            ["s1"]
        );
        assert_eq!(
            tree.explain("c1").unwrap().inactive,
            vec![(
                &tree.streams_at("c1")[0],
                Inactive::OverriddenBy {
                    node_kind: Partner,
                    node_id: "p1".into(),
                    stream_id: "s8".into()
                }
            )]
        );
        assert!(tree.streams_at("nope").is_empty());
        assert_eq!(tree.resolve("nope"), None);
        assert_eq!(tree.explain("nope"), None);
        assert_eq!(tree.check_self_stream_allowed("nope"), Ok(()));
    }

    #[test]
    fn paths_and_ancestry() {
        let tree = Tree::new(automation_hq(), vec![]).unwrap();
        let path: Vec<&str> = tree
            .path("c1")
            .unwrap()
            .iter()
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(path, ["ahq", "p1", "c1"]);
        assert_eq!(tree.path("zz"), None);
        assert!(tree.is_within("c1", "c1"));
        assert!(tree.is_within("c1", "ahq"));
        assert!(!tree.is_within("ahq", "c1"));
        assert!(!tree.is_within("c1", "c2"));
        assert!(!tree.is_within("c1", "ahq-ops"));
        assert!(!tree.is_within("zz", "ahq"));
        assert_eq!(tree.node("p1").unwrap().kind, Partner);
    }

    #[test]
    fn texts_and_serde_names() {
        assert_eq!(serde_json::to_string(&SelfOnly).unwrap(), r#""self""#);
        assert_eq!(
            serde_json::from_str::<AppliesTo>(r#""descendants""#).unwrap(),
            Descendants
        );
        assert_eq!(
            serde_json::to_string(&Organization).unwrap(),
            r#""organization""#
        );
        assert_eq!(Customer.to_string(), "customer");
        assert_eq!(
            governed(Partner, "p1", "s9").unwrap_err().to_string(),
            "partner p1 governs this node with stream s9 (applies to descendants); \
             change or disable that stream instead"
        );
        assert!(
            managed("c2")
                .unwrap_err()
                .to_string()
                .starts_with("workspace c2 is managed")
        );
        assert!(!managed("c2").unwrap_err().to_string().contains("governs"));
        assert!(
            managed_and_governed("c2", Partner, "p1", "s9")
                .unwrap_err()
                .to_string()
                .ends_with(
                    "so it cannot have its own; partner p1 governs it with stream s9: \
                     change that stream instead"
                )
        );
    }

    /// Every (kind, parent kind) pair and the root case, against DESIGN.md §3 written out.
    #[test]
    fn kind_rules() {
        let allowed = [
            (Partner, Organization),
            (Customer, Partner),
            (Workspace, Organization),
            (Workspace, Customer),
        ];
        for kind in [Organization, Partner, Customer, Workspace] {
            assert_eq!(
                kind.check_placement(None).is_ok(),
                kind == Organization,
                "{kind} as a root"
            );
            for parent in [Organization, Partner, Customer, Workspace] {
                assert_eq!(
                    kind.check_placement(Some(("x", parent))).is_ok(),
                    allowed.contains(&(kind, parent)),
                    "{kind} under {parent}"
                );
            }
        }
        let text = |kind: NodeKind, parent: Option<(&str, NodeKind)>| {
            kind.check_placement(parent).unwrap_err().to_string()
        };
        assert_eq!(
            text(Customer, Some(("ws-1", Workspace))),
            "a customer must sit under a partner; ws-1 is a workspace (workspaces are leaves)"
        );
        assert_eq!(
            text(Workspace, Some(("p1", Partner))),
            "a workspace must sit under an organization or a customer; p1 is a partner"
        );
        assert_eq!(
            text(Partner, None),
            "every root is an organization; a partner must sit under an organization"
        );
        assert_eq!(
            text(Organization, Some(("o2", Organization))),
            "an organization is a root; it cannot sit under organization o2"
        );
    }

    #[test]
    fn check_shape_sees_the_node_and_its_children() {
        let mut nodes = automation_hq();
        nodes.push(node("c1-ws", Some("c1"), Workspace, false));
        let tree = Tree::new(nodes.clone(), vec![]).unwrap();
        for n in &nodes {
            assert_eq!(tree.check_shape(&n.id), Ok(()), "{}", n.id);
        }
        assert_eq!(tree.check_shape("nope"), Ok(()));

        // p1 retyped to a customer: its own placement is reported before its children's.
        let retyped = |id: &str, kind: NodeKind| {
            let nodes = nodes
                .iter()
                .map(|n| {
                    if n.id == id {
                        TreeNode { kind, ..n.clone() }
                    } else {
                        n.clone()
                    }
                })
                .collect();
            Tree::new(nodes, vec![]).unwrap()
        };
        assert_eq!(
            retyped("p1", Customer)
                .check_shape("p1")
                .unwrap_err()
                .to_string(),
            "node p1: a customer must sit under a partner; ahq is an organization"
        );
        // c1 moved under the organization as a workspace is placed well itself, but its
        // child c1-ws would then sit under a workspace.
        let mut moved = nodes.clone();
        for n in &mut moved {
            if n.id == "c1" {
                n.parent = Some("ahq".into());
                n.kind = Workspace;
            }
        }
        let tree = Tree::new(moved, vec![]).unwrap();
        assert_eq!(
            tree.check_shape("c1").unwrap_err(),
            ShapeError::MisplacesChild {
                node_id: "c1".into(),
                kind: Workspace,
                child_id: "c1-ws".into(),
                rule: KindRule::WrongParent {
                    kind: Workspace,
                    parent_id: "c1".into(),
                    parent_kind: Workspace
                },
            }
        );
        assert_eq!(
            tree.check_shape("c1").unwrap_err().to_string(),
            "node c1 cannot be a workspace with its children: child c1-ws: a workspace must \
             sit under an organization or a customer; c1 is a workspace (workspaces are leaves)"
        );
    }

    #[test]
    fn tree_errors() {
        let cases = [
            (
                "cycle of two",
                vec![
                    node("a", Some("b"), Partner, false),
                    node("b", Some("a"), Customer, false),
                ],
                vec![],
                TreeError::Cycle { node: "a".into() },
            ),
            (
                "own parent",
                vec![
                    node("o", None, Organization, false),
                    node("a", Some("a"), Partner, false),
                ],
                vec![],
                TreeError::Cycle { node: "a".into() },
            ),
            (
                "cycle above a valid-looking chain",
                vec![
                    node("leaf", Some("x"), Workspace, false),
                    node("x", Some("y"), Customer, false),
                    node("y", Some("x"), Partner, false),
                ],
                vec![],
                TreeError::Cycle { node: "x".into() },
            ),
            (
                "unknown parent",
                vec![node("c1", Some("p9"), Customer, false)],
                vec![],
                TreeError::UnknownParent {
                    node: "c1".into(),
                    parent: "p9".into(),
                },
            ),
            (
                "duplicate node",
                vec![
                    node("o", None, Organization, false),
                    node("o", None, Partner, false),
                ],
                vec![],
                TreeError::DuplicateNode("o".into()),
            ),
            (
                "stream on unknown node",
                vec![node("o", None, Organization, false)],
                vec![stream("s1", "p9", SelfOnly, true)],
                TreeError::UnknownStreamNode {
                    stream: "s1".into(),
                    node: "p9".into(),
                },
            ),
        ];
        for (name, nodes, streams, want) in cases {
            assert_eq!(Tree::new(nodes, streams).unwrap_err(), want, "{name}");
        }
        // Children may precede their parents in the input.
        let tree = Tree::new(
            vec![
                node("c", Some("p"), Customer, false),
                node("p", None, Partner, false),
            ],
            vec![],
        )
        .unwrap();
        assert!(tree.is_within("c", "p"));
    }

    /// The rule as DESIGN.md §3 states it, on the raw lists, with nothing precomputed.
    fn reference_resolve<'a>(
        nodes: &'a [TreeNode],
        streams: &'a [StreamScope],
        w: &str,
    ) -> Vec<&'a str> {
        let find = |id: &str| nodes.iter().find(|n| n.id == id).unwrap();
        let mut path = vec![find(w)];
        while let Some(parent) = &path[path.len() - 1].parent {
            path.push(find(parent));
        }
        path.reverse();
        // 1. The first node from the root with an enabled descendants stream governs.
        for n in path {
            let mut governing: Vec<&str> = streams
                .iter()
                .filter(|s| s.node_id == n.id && s.applies_to == Descendants && s.enabled)
                .map(|s| s.id.as_str())
                .collect();
            if !governing.is_empty() {
                governing.sort();
                return governing;
            }
        }
        // 2. Otherwise W's own enabled self streams, unless W is managed.
        if find(w).managed {
            return vec![];
        }
        let mut own: Vec<&str> = streams
            .iter()
            .filter(|s| s.node_id == w && s.applies_to == SelfOnly && s.enabled)
            .map(|s| s.id.as_str())
            .collect();
        own.sort();
        own
    }

    /// 1–30 nodes, each with a parent among the nodes before it (so acyclic) or none, then
    /// shuffled so the input order says nothing; 0–40 streams on random nodes.
    fn forest() -> impl Strategy<Value = (Vec<TreeNode>, Vec<StreamScope>)> {
        let kinds = prop::sample::select(vec![Organization, Partner, Customer, Workspace]);
        let node_specs = prop::collection::vec(
            (
                prop::option::weighted(0.8, any::<prop::sample::Index>()),
                kinds,
                prop::bool::weighted(0.2),
            ),
            1..=30,
        );
        let stream_specs = prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<bool>(),
                prop::bool::weighted(0.7),
            ),
            0..=40,
        );
        (node_specs, stream_specs).prop_flat_map(|(node_specs, stream_specs)| {
            let count = node_specs.len();
            let nodes: Vec<TreeNode> = node_specs
                .into_iter()
                .enumerate()
                .map(|(i, (parent, kind, managed))| TreeNode {
                    id: format!("n{i}"),
                    parent: parent.filter(|_| i > 0).map(|p| format!("n{}", p.index(i))),
                    kind,
                    managed,
                })
                .collect();
            let streams: Vec<StreamScope> = stream_specs
                .into_iter()
                .enumerate()
                .map(|(i, (on, descendants, enabled))| StreamScope {
                    id: format!("s{i:02}"),
                    node_id: format!("n{}", on.index(count)),
                    applies_to: if descendants { Descendants } else { SelfOnly },
                    enabled,
                })
                .collect();
            (Just(nodes).prop_shuffle(), Just(streams).prop_shuffle())
        })
    }

    proptest! {
        #[test]
        fn resolve_and_explain_follow_the_rule((nodes, streams) in forest()) {
            let tree = Tree::new(nodes.clone(), streams.clone()).unwrap();
            for w in &nodes {
                let got = tree.resolve(&w.id).unwrap();
                prop_assert_eq!(ids(&got), reference_resolve(&nodes, &streams, &w.id));
                for s in &got {
                    prop_assert!(tree.is_within(&w.id, &s.node_id));
                }

                let path: Vec<&str> = tree.path(&w.id).unwrap().iter().map(|n| n.id.as_str()).collect();
                let explanation = tree.explain(&w.id).unwrap();
                prop_assert_eq!(&explanation.effective, &got);
                let on_path: BTreeSet<&str> = streams
                    .iter()
                    .filter(|s| path.contains(&s.node_id.as_str()))
                    .map(|s| s.id.as_str())
                    .collect();
                let mut explained = BTreeSet::new();
                for s in explanation.effective.iter().chain(explanation.inactive.iter().map(|(s, _)| s)) {
                    prop_assert!(explained.insert(s.id.as_str()), "{} explained twice", s.id);
                }
                prop_assert_eq!(explained, on_path);

                let order: Vec<(usize, &str)> = explanation
                    .inactive
                    .iter()
                    .map(|(s, _)| (tree.path(&s.node_id).unwrap().len(), s.id.as_str()))
                    .collect();
                prop_assert!(order.is_sorted());
                for (s, reason) in &explanation.inactive {
                    prop_assert_eq!(!s.enabled, *reason == Inactive::Disabled);
                    if *reason == Inactive::WorkspaceManaged {
                        prop_assert!(w.managed && s.node_id == w.id);
                    }
                    if let Inactive::OtherNodeOnly { node_id, .. } = reason {
                        prop_assert!(*node_id == s.node_id && s.node_id != w.id);
                    }
                }

                let governed = path.iter().any(|n| {
                    streams.iter().any(|s| s.node_id == *n && s.applies_to == Descendants && s.enabled)
                });
                prop_assert_eq!(tree.governing(&w.id).is_some(), governed);
                prop_assert_eq!(
                    tree.check_self_stream_allowed(&w.id).is_ok(),
                    !governed && !w.managed
                );
                if let Err(Refusal::Managed { governed_by, .. }) = tree.check_self_stream_allowed(&w.id) {
                    prop_assert_eq!(governed_by.is_some(), governed);
                }
            }
        }
    }
}
